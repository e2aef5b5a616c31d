#include "transport/http2/hpack.h"

#include "transport/http2/huffman.h"

namespace tritonlite {
namespace http2 {

namespace {

struct StaticEntry {
  const char* name;
  const char* value;
};

// RFC 7541 Appendix A (index 1 is kStaticTable[0]).
const StaticEntry kStaticTable[] = {
    {":authority", ""},
    {":method", "GET"},
    {":method", "POST"},
    {":path", "/"},
    {":path", "/index.html"},
    {":scheme", "http"},
    {":scheme", "https"},
    {":status", "200"},
    {":status", "204"},
    {":status", "206"},
    {":status", "304"},
    {":status", "400"},
    {":status", "404"},
    {":status", "500"},
    {"accept-charset", ""},
    {"accept-encoding", "gzip, deflate"},
    {"accept-language", ""},
    {"accept-ranges", ""},
    {"accept", ""},
    {"access-control-allow-origin", ""},
    {"age", ""},
    {"allow", ""},
    {"authorization", ""},
    {"cache-control", ""},
    {"content-disposition", ""},
    {"content-encoding", ""},
    {"content-language", ""},
    {"content-length", ""},
    {"content-location", ""},
    {"content-range", ""},
    {"content-type", ""},
    {"cookie", ""},
    {"date", ""},
    {"etag", ""},
    {"expect", ""},
    {"expires", ""},
    {"from", ""},
    {"host", ""},
    {"if-match", ""},
    {"if-modified-since", ""},
    {"if-none-match", ""},
    {"if-range", ""},
    {"if-unmodified-since", ""},
    {"last-modified", ""},
    {"link", ""},
    {"location", ""},
    {"max-forwards", ""},
    {"proxy-authenticate", ""},
    {"proxy-authorization", ""},
    {"range", ""},
    {"referer", ""},
    {"refresh", ""},
    {"retry-after", ""},
    {"server", ""},
    {"set-cookie", ""},
    {"strict-transport-security", ""},
    {"transfer-encoding", ""},
    {"user-agent", ""},
    {"vary", ""},
    {"via", ""},
    {"www-authenticate", ""},
};
constexpr uint64_t kStaticTableSize = sizeof(kStaticTable) / sizeof(kStaticTable[0]);

// Reads an HPACK integer with an N-bit prefix (section 5.1). Values above 2^32 are rejected:
// nothing legitimate needs them, and it keeps the arithmetic safe.
bool ReadInteger(const uint8_t*& p, const uint8_t* end, int prefix_bits, uint64_t* value) {
  if (p >= end) return false;
  const uint64_t max_prefix = (uint64_t{1} << prefix_bits) - 1;
  uint64_t v = *p++ & max_prefix;
  if (v < max_prefix) {
    *value = v;
    return true;
  }
  int shift = 0;
  while (true) {
    if (p >= end || shift > 28) return false;
    const uint8_t b = *p++;
    v += uint64_t{b & 0x7fu} << shift;
    shift += 7;
    if ((b & 0x80) == 0) break;
  }
  if (v > 0xffffffffull) return false;
  *value = v;
  return true;
}

bool ReadString(const uint8_t*& p, const uint8_t* end, std::string* out, std::string* error) {
  if (p >= end) {
    *error = "truncated string literal";
    return false;
  }
  const bool huffman = (*p & 0x80) != 0;
  uint64_t length = 0;
  if (!ReadInteger(p, end, 7, &length)) {
    *error = "bad string length";
    return false;
  }
  if (length > static_cast<uint64_t>(end - p)) {
    *error = "string literal runs past the end of the header block";
    return false;
  }
  out->clear();
  if (huffman) {
    if (!HuffmanDecode(p, static_cast<size_t>(length), out)) {
      *error = "invalid Huffman-encoded string";
      return false;
    }
  } else {
    out->assign(reinterpret_cast<const char*>(p), static_cast<size_t>(length));
  }
  p += length;
  return true;
}

void AppendInteger(std::string* block, uint8_t first_byte_flags, int prefix_bits, uint64_t v) {
  const uint64_t max_prefix = (uint64_t{1} << prefix_bits) - 1;
  if (v < max_prefix) {
    block->push_back(static_cast<char>(first_byte_flags | v));
    return;
  }
  block->push_back(static_cast<char>(first_byte_flags | max_prefix));
  v -= max_prefix;
  while (v >= 0x80) {
    block->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  block->push_back(static_cast<char>(v));
}

void AppendString(std::string* block, const std::string& s) {
  AppendInteger(block, 0x00, 7, s.size());  // H = 0: raw octets
  block->append(s);
}

}  // namespace

HpackDecoder::HpackDecoder(uint32_t table_size_limit)
    : table_max_size_(table_size_limit), table_size_limit_(table_size_limit) {}

void HpackDecoder::EvictTo(size_t size) {
  while (table_size_ > size && !table_.empty()) {
    table_size_ -= HeaderFieldSize(table_.back().name, table_.back().value);
    table_.pop_back();
  }
}

void HpackDecoder::Insert(HeaderField field) {
  const size_t size = HeaderFieldSize(field.name, field.value);
  if (size > table_max_size_) {
    EvictTo(0);  // an entry larger than the table empties it and is not added (section 4.4)
    return;
  }
  EvictTo(table_max_size_ - size);
  table_size_ += size;
  table_.push_front(std::move(field));
}

bool HpackDecoder::Decode(const uint8_t* data, size_t size, size_t max_list_size,
                          HeaderList* out, std::string* error, bool* too_large) {
  if (too_large != nullptr) *too_large = false;
  const uint8_t* p = data;
  const uint8_t* const end = data + size;
  size_t list_size = 0;
  bool field_seen = false;
  // Resolves an index into (name, value) copies.
  auto resolve = [&](uint64_t index, std::string* name, std::string* value) {
    if (index == 0 || index > kStaticTableSize + table_.size()) {
      *error = "header index " + std::to_string(index) + " is out of range";
      return false;
    }
    if (index <= kStaticTableSize) {
      *name = kStaticTable[index - 1].name;
      if (value != nullptr) *value = kStaticTable[index - 1].value;
    } else {
      const HeaderField& f = table_[index - kStaticTableSize - 1];
      *name = f.name;
      if (value != nullptr) *value = f.value;
    }
    return true;
  };
  // Fields are decoded into out's elements in place (assigning into strings that keep their
  // capacity from earlier blocks: no allocation per field once a connection's headers repeat);
  // `count` of them are kept, the rest cut off at the end.
  size_t count = 0;
  auto slot = [&]() -> HeaderField& {
    if (count == out->size()) out->emplace_back();
    return (*out)[count];
  };
  auto emit = [&](const HeaderField& field) {
    if (too_large != nullptr && *too_large) return true;  // already over: nothing more is kept
    list_size += HeaderFieldSize(field.name, field.value);
    if (list_size > max_list_size) {
      if (too_large == nullptr) {
        *error = "header list is larger than " + std::to_string(max_list_size) + " bytes";
        return false;
      }
      *too_large = true;  // keep decoding for the table's sake
      return true;
    }
    ++count;
    return true;
  };

  while (p < end) {
    const uint8_t b = *p;
    if (b & 0x80) {  // indexed header field
      uint64_t index = 0;
      if (!ReadInteger(p, end, 7, &index)) {
        *error = "bad header index";
        return false;
      }
      HeaderField& f = slot();
      if (!resolve(index, &f.name, &f.value) || !emit(f)) return false;
      field_seen = true;
    } else if ((b & 0xe0) == 0x20) {  // dynamic table size update
      uint64_t new_size = 0;
      if (!ReadInteger(p, end, 5, &new_size)) {
        *error = "bad dynamic table size update";
        return false;
      }
      if (field_seen) {
        *error = "dynamic table size update after a header field";
        return false;
      }
      if (new_size > table_size_limit_) {
        *error = "dynamic table size update to " + std::to_string(new_size) +
                 " exceeds the limit of " + std::to_string(table_size_limit_);
        return false;
      }
      table_max_size_ = static_cast<size_t>(new_size);
      EvictTo(table_max_size_);
    } else {  // literal: with incremental indexing (01), without (0000) or never indexed (0001)
      const bool indexing = (b & 0xc0) == 0x40;
      const int prefix = indexing ? 6 : 4;
      uint64_t name_index = 0;
      if (!ReadInteger(p, end, prefix, &name_index)) {
        *error = "bad literal header name index";
        return false;
      }
      HeaderField& f = slot();
      if (name_index == 0) {
        if (!ReadString(p, end, &f.name, error)) return false;
      } else if (!resolve(name_index, &f.name, nullptr)) {
        return false;
      }
      if (!ReadString(p, end, &f.value, error)) return false;
      if (indexing) Insert(f);
      if (!emit(f)) return false;
      field_seen = true;
    }
  }
  out->resize(count);
  return true;
}

void HpackAppendIndexed(std::string* block, uint32_t static_index) {
  AppendInteger(block, 0x80, 7, static_index);
}

void HpackAppendLiteralWithIndexedName(std::string* block, uint32_t static_index,
                                       const std::string& value) {
  AppendInteger(block, 0x00, 4, static_index);
  AppendString(block, value);
}

void HpackAppendLiteral(std::string* block, const std::string& name, const std::string& value) {
  block->push_back(0x00);
  AppendString(block, name);
  AppendString(block, value);
}

}  // namespace http2
}  // namespace tritonlite
