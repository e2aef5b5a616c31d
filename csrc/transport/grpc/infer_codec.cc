#include "transport/grpc/infer_codec.h"

#include <cstring>

#include "core/cuda_runtime.h"
#include "core/datatype.h"
#include "core/status.h"


namespace tritonlite {

namespace {

enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

// Reads protobuf wire primitives from [p, end); every read is bounds-checked.
class WireReader {
 public:
  WireReader(const uint8_t* p, size_t size) : p_(p), end_(p + size) {}
  bool done() const { return p_ >= end_; }

  bool ReadVarint(uint64_t* value) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p_ >= end_) return false;
      const uint8_t b = *p_++;
      v |= uint64_t{b & 0x7fu} << shift;
      if ((b & 0x80) == 0) {
        *value = v;
        return true;
      }
    }
    return false;  // more than 10 bytes
  }

  bool ReadTag(uint32_t* field, uint32_t* wire_type) {
    uint64_t tag = 0;
    if (!ReadVarint(&tag) || tag > 0xffffffffull) return false;
    *field = static_cast<uint32_t>(tag >> 3);
    *wire_type = static_cast<uint32_t>(tag & 7);
    return *field != 0;
  }

  bool ReadBytes(std::string_view* out) {
    uint64_t size = 0;
    if (!ReadVarint(&size) || size > static_cast<uint64_t>(end_ - p_)) return false;
    *out = std::string_view(reinterpret_cast<const char*>(p_), static_cast<size_t>(size));
    p_ += size;
    return true;
  }

  bool ReadFixed64(uint64_t* value) {
    if (end_ - p_ < 8) return false;
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | p_[i];  // little-endian
    p_ += 8;
    *value = v;
    return true;
  }

  bool Skip(uint32_t wire_type) {
    uint64_t v = 0;
    std::string_view bytes;
    switch (wire_type) {
      case kVarint: return ReadVarint(&v);
      case kFixed64: return ReadFixed64(&v);
      case kLengthDelimited: return ReadBytes(&bytes);
      case kFixed32:
        if (end_ - p_ < 4) return false;
        p_ += 4;
        return true;
      default: return false;  // groups (deprecated) are not expected in these messages
    }
  }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
};

WireReader SubReader(std::string_view bytes) {
  return WireReader(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

// proto3 `string` fields must be valid UTF-8, or parsing fails.
bool ValidUtf8(std::string_view s) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  const uint8_t* end = p + s.size();
  while (p < end) {
    const uint8_t c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    int extra;
    uint32_t cp;
    if ((c & 0xe0) == 0xc0) {
      extra = 1;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      extra = 2;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      extra = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (end - p <= extra) return false;
    for (int i = 1; i <= extra; ++i) {
      if ((p[i] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (p[i] & 0x3f);
    }
    const bool overlong = (extra == 1 && cp < 0x80) || (extra == 2 && cp < 0x800) ||
                          (extra == 3 && cp < 0x10000);
    if (overlong || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    p += extra + 1;
  }
  return true;
}

bool ReadString(WireReader& r, std::string_view* out) {
  return r.ReadBytes(out) && ValidUtf8(*out);
}

// Fields of a known number but another wire type are unknown fields to protobuf: skipped.
bool DecodeParameter(std::string_view bytes, WireParameter* out) {
  WireReader r = SubReader(bytes);
  while (!r.done()) {
    uint32_t field = 0, type = 0;
    if (!r.ReadTag(&field, &type)) return false;
    uint64_t v = 0;
    if (field == 1 && type == kVarint) {
      if (!r.ReadVarint(&v)) return false;
      out->kind = WireParameter::Kind::kBool;
      out->bool_value = v != 0;
    } else if (field == 2 && type == kVarint) {
      if (!r.ReadVarint(&v)) return false;
      out->kind = WireParameter::Kind::kInt64;
      out->int64_value = static_cast<int64_t>(v);
    } else if (field == 3 && type == kLengthDelimited) {
      if (!ReadString(r, &out->string_value)) return false;
      out->kind = WireParameter::Kind::kString;
    } else if (field == 4 && type == kFixed64) {
      if (!r.ReadFixed64(&v)) return false;
      out->kind = WireParameter::Kind::kDouble;
      std::memcpy(&out->double_value, &v, sizeof(v));
    } else if (field == 5 && type == kVarint) {
      if (!r.ReadVarint(&v)) return false;
      out->kind = WireParameter::Kind::kUint64;
      out->uint64_value = v;
    } else if (!r.Skip(type)) {
      return false;
    }
  }
  return true;
}

// One entry of map<string, InferParameter>.
bool DecodeParameterEntry(std::string_view bytes, WireParameters* out) {
  WireReader r = SubReader(bytes);
  std::string_view key;
  WireParameter value;
  while (!r.done()) {
    uint32_t field = 0, type = 0;
    if (!r.ReadTag(&field, &type)) return false;
    std::string_view sub;
    if (field == 1 && type == kLengthDelimited) {
      if (!ReadString(r, &key)) return false;
    } else if (field == 2 && type == kLengthDelimited) {
      if (!r.ReadBytes(&sub) || !DecodeParameter(sub, &value)) return false;
    } else if (!r.Skip(type)) {
      return false;
    }
  }
  out->emplace_back(key, value);
  return true;
}

bool DecodeShape(WireReader& r, uint32_t type, Shape* shape) {
  uint64_t v = 0;
  if (type == kVarint) {
    if (!r.ReadVarint(&v)) return false;
    shape->push_back(static_cast<int64_t>(v));
    return true;
  }
  if (type != kLengthDelimited) return r.Skip(type);
  std::string_view packed;
  if (!r.ReadBytes(&packed)) return false;
  // One allocation for the dims: a varint ends at each byte below 0x80 (received bytes, so
  // never more than the message holds).
  size_t dims = 0;
  for (const char c : packed) dims += (static_cast<uint8_t>(c) & 0x80) == 0;
  shape->reserve(shape->size() + dims);
  WireReader pr = SubReader(packed);
  while (!pr.done()) {
    if (!pr.ReadVarint(&v)) return false;
    shape->push_back(static_cast<int64_t>(v));
  }
  return true;
}

bool DecodeInput(std::string_view bytes, WireInferInput* out) {
  WireReader r = SubReader(bytes);
  while (!r.done()) {
    uint32_t field = 0, type = 0;
    if (!r.ReadTag(&field, &type)) return false;
    std::string_view sub;
    bool ok = true;
    if (field == 1 && type == kLengthDelimited) {
      ok = ReadString(r, &out->name);
    } else if (field == 2 && type == kLengthDelimited) {
      ok = ReadString(r, &out->datatype);
    } else if (field == 3) {
      ok = DecodeShape(r, type, &out->shape);
    } else if (field == 4 && type == kLengthDelimited) {
      ok = r.ReadBytes(&sub) && DecodeParameterEntry(sub, &out->parameters);
    } else if (field == 5 && type == kLengthDelimited) {
      ok = r.ReadBytes(&sub);
      out->has_contents = true;
    } else {
      ok = r.Skip(type);
    }
    if (!ok) return false;
  }
  return true;
}

bool DecodeRequestedOutput(std::string_view bytes, WireRequestedOutput* out) {
  WireReader r = SubReader(bytes);
  while (!r.done()) {
    uint32_t field = 0, type = 0;
    if (!r.ReadTag(&field, &type)) return false;
    std::string_view sub;
    bool ok = true;
    if (field == 1 && type == kLengthDelimited) {
      ok = ReadString(r, &out->name);
    } else if (field == 2 && type == kLengthDelimited) {
      ok = r.ReadBytes(&sub) && DecodeParameterEntry(sub, &out->parameters);
    } else {
      ok = r.Skip(type);
    }
    if (!ok) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Encoding

size_t VarintSize(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

// Writes protobuf wire data into memory sized beforehand (ModelInferResponseSize): no
// bounds checks and no std::string::append per field (a call and a capacity check each).
class WireWriter {
 public:
  explicit WireWriter(char* p) : p_(p) {}
  char* position() const { return p_; }
  void Varint(uint64_t v) {
    while (v >= 0x80) {
      *p_++ = static_cast<char>((v & 0x7f) | 0x80);
      v >>= 7;
    }
    *p_++ = static_cast<char>(v);
  }
  void Tag(uint32_t field, WireType type) { Varint((uint64_t{field} << 3) | type); }
  void Raw(const void* data, size_t n) {
    if (n == 0) return;
    std::memcpy(p_, data, n);
    p_ += n;
  }
  // proto3: empty strings are not written.
  void StringField(uint32_t field, std::string_view s) {
    if (s.empty()) return;
    Tag(field, kLengthDelimited);
    Varint(s.size());
    Raw(s.data(), s.size());
  }
  void Skip(size_t n) { p_ += n; }

 private:
  char* p_;
};

size_t LengthDelimitedSize(size_t payload) { return 1 + VarintSize(payload) + payload; }

// proto3: empty strings are not written.
size_t StringFieldSize(std::string_view s) { return s.empty() ? 0 : LengthDelimitedSize(s.size()); }

size_t PackedShapeSize(const Shape& shape) {
  size_t n = 0;
  for (int64_t d : shape) n += VarintSize(static_cast<uint64_t>(d));
  return n;
}

size_t OutputTensorSize(const std::string& name, std::string_view datatype, const Tensor& t) {
  const size_t packed = PackedShapeSize(t.shape());
  return StringFieldSize(name) + StringFieldSize(datatype) +
         (t.shape().empty() ? 0 : LengthDelimitedSize(packed));
}

// The tensor's bytes at `to` (byte_size() of them).
void CopyTensorBytes(const Tensor& t, char* to) {
  const size_t n = t.byte_size();
  if (n == 0) return;
  if (t.device().kind == DeviceKind::kCPU) {
    std::memcpy(to, t.data(), n);
    return;
  }
  std::string error;
  if (!cuda::CopyDeviceToHost(to, t.data(), n, &error)) {
    throw Error(StatusCode::kInternal, "copying a GPU output tensor to the host failed: " + error);
  }
}

}  // namespace

const WireParameter* FindParameter(const WireParameters& parameters, std::string_view key) {
  const WireParameter* found = nullptr;
  for (const auto& kv : parameters) {
    if (kv.first == key) found = &kv.second;
  }
  return found;
}

bool DecodeModelInferRequest(const uint8_t* data, size_t size, WireInferRequest* out) {
  WireReader r(data, size);
  while (!r.done()) {
    uint32_t field = 0, type = 0;
    if (!r.ReadTag(&field, &type)) return false;
    std::string_view sub;
    bool ok = true;
    if (type != kLengthDelimited || field > 7) {
      ok = r.Skip(type);
    } else {
      switch (field) {
        case 1: ok = ReadString(r, &out->model_name); break;
        case 2: ok = ReadString(r, &out->model_version); break;
        case 3: ok = ReadString(r, &out->id); break;
        case 4: ok = r.ReadBytes(&sub) && DecodeParameterEntry(sub, &out->parameters); break;
        case 5:
          out->inputs.emplace_back();
          ok = r.ReadBytes(&sub) && DecodeInput(sub, &out->inputs.back());
          break;
        case 6:
          out->outputs.emplace_back();
          ok = r.ReadBytes(&sub) && DecodeRequestedOutput(sub, &out->outputs.back());
          break;
        case 7:
          ok = r.ReadBytes(&sub);
          out->raw_input_contents.push_back(sub);
          break;
        default: ok = r.Skip(type); break;
      }
    }
    if (!ok) return false;
  }
  return true;
}

size_t ModelInferResponseSize(std::string_view model_name, std::string_view model_version,
                              std::string_view id, const NamedTensors& outputs) {
  size_t n = StringFieldSize(model_name) + StringFieldSize(model_version) + StringFieldSize(id);
  for (const auto& kv : outputs) {
    n += LengthDelimitedSize(OutputTensorSize(kv.first, DataTypeName(kv.second.dtype()), kv.second));
    n += LengthDelimitedSize(kv.second.byte_size());
  }
  return n;
}

void EncodeModelInferResponse(std::string_view model_name, std::string_view model_version,
                              std::string_view id, const NamedTensors& outputs, std::string* out) {
  // Sized once, then written in place: one allocation at most, no append per field.
  const size_t start = out->size();
  out->resize(start + ModelInferResponseSize(model_name, model_version, id, outputs));
  WireWriter w(&(*out)[start]);
  w.StringField(1, model_name);
  w.StringField(2, model_version);
  w.StringField(3, id);
  for (const auto& kv : outputs) {
    const Tensor& t = kv.second;
    const std::string_view datatype = DataTypeName(t.dtype());
    w.Tag(5, kLengthDelimited);
    w.Varint(OutputTensorSize(kv.first, datatype, t));
    w.StringField(1, kv.first);
    w.StringField(2, datatype);
    if (!t.shape().empty()) {
      w.Tag(3, kLengthDelimited);
      w.Varint(PackedShapeSize(t.shape()));
      for (int64_t d : t.shape()) w.Varint(static_cast<uint64_t>(d));
    }
  }
  for (const auto& kv : outputs) {
    const size_t n = kv.second.byte_size();
    w.Tag(6, kLengthDelimited);
    w.Varint(n);
    try {
      CopyTensorBytes(kv.second, w.position());
    } catch (...) {
      out->resize(start);  // nothing of this response stays behind
      throw;
    }
    w.Skip(n);
  }
  if (w.position() != out->data() + out->size()) {  // the size and the writes disagree: a bug
    out->resize(start);
    throw Error(StatusCode::kInternal, "ModelInferResponse encoding size mismatch");
  }
}

}  // namespace tritonlite
