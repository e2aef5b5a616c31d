// Triton's tensor data types: names ("INT32"), config names ("TYPE_INT32"), element sizes and
// DLPack type codes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tritonlite {

enum class DataType : uint8_t {
  kInvalid = 0,
  kBool,
  kUint8,
  kUint16,
  kUint32,
  kUint64,
  kInt8,
  kInt16,
  kInt32,
  kInt64,
  kFp16,
  kBf16,
  kFp32,
  kFp64,
  kBytes,
};

// "INT32" etc. Returns "INVALID" for kInvalid.
const char* DataTypeName(DataType dtype);
// Accepts "INT32" and the config spelling "TYPE_INT32" ("TYPE_STRING" is BYTES). kInvalid if
// unknown.
DataType DataTypeFromName(std::string_view name);
// Bytes per element; 0 for BYTES (variable size) and kInvalid.
size_t DataTypeSize(DataType dtype);

// DLPack type code/bits mapping. Returns kInvalid when there is no Triton equivalent.
DataType DataTypeFromDLPack(uint8_t code, uint8_t bits, uint16_t lanes);
// Fills code/bits; returns false for BYTES (no DLPack representation).
bool DataTypeToDLPack(DataType dtype, uint8_t* code, uint8_t* bits);

}  // namespace tritonlite
