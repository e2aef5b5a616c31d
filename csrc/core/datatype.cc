#include "core/datatype.h"

#include "core/dlpack.h"

namespace tritonlite {

namespace {
struct TypeInfo {
  DataType dtype;
  std::string_view name;  // NUL-terminated literals
  size_t size;
  uint8_t dl_code;
  uint8_t dl_bits;
};

constexpr TypeInfo kTypes[] = {
    {DataType::kBool, "BOOL", 1, kDLBool, 8},
    {DataType::kUint8, "UINT8", 1, kDLUInt, 8},
    {DataType::kUint16, "UINT16", 2, kDLUInt, 16},
    {DataType::kUint32, "UINT32", 4, kDLUInt, 32},
    {DataType::kUint64, "UINT64", 8, kDLUInt, 64},
    {DataType::kInt8, "INT8", 1, kDLInt, 8},
    {DataType::kInt16, "INT16", 2, kDLInt, 16},
    {DataType::kInt32, "INT32", 4, kDLInt, 32},
    {DataType::kInt64, "INT64", 8, kDLInt, 64},
    {DataType::kFp16, "FP16", 2, kDLFloat, 16},
    {DataType::kBf16, "BF16", 2, kDLBfloat, 16},
    {DataType::kFp32, "FP32", 4, kDLFloat, 32},
    {DataType::kFp64, "FP64", 8, kDLFloat, 64},
    {DataType::kBytes, "BYTES", 0, 0, 0},
};

const TypeInfo* Find(DataType dtype) {
  for (const auto& info : kTypes) {
    if (info.dtype == dtype) return &info;
  }
  return nullptr;
}
}  // namespace

const char* DataTypeName(DataType dtype) {
  const TypeInfo* info = Find(dtype);
  return info ? info->name.data() : "INVALID";
}

DataType DataTypeFromName(std::string_view name) {
  // On every input of every request: no copy, no strlen (string_view literals know their size).
  using namespace std::string_view_literals;
  if (name.substr(0, 5) == "TYPE_"sv) name.remove_prefix(5);
  if (name == "STRING"sv) return DataType::kBytes;
  for (const auto& info : kTypes) {
    if (name == info.name) return info.dtype;
  }
  return DataType::kInvalid;
}

size_t DataTypeSize(DataType dtype) {
  const TypeInfo* info = Find(dtype);
  return info ? info->size : 0;
}

DataType DataTypeFromDLPack(uint8_t code, uint8_t bits, uint16_t lanes) {
  if (lanes != 1) return DataType::kInvalid;
  for (const auto& info : kTypes) {
    if (info.dtype != DataType::kBytes && info.dl_code == code && info.dl_bits == bits) {
      return info.dtype;
    }
  }
  return DataType::kInvalid;
}

bool DataTypeToDLPack(DataType dtype, uint8_t* code, uint8_t* bits) {
  const TypeInfo* info = Find(dtype);
  if (info == nullptr || dtype == DataType::kBytes) return false;
  *code = info->dl_code;
  *bits = info->dl_bits;
  return true;
}

}  // namespace tritonlite
