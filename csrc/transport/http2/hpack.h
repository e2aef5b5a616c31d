// HPACK (RFC 7541): the decoder for request header blocks (static table, dynamic table with
// size updates, Huffman strings) and the few encoders the server needs. The server encodes
// literals without indexing and without Huffman, so it never adds to the peer's dynamic table
// and any SETTINGS_HEADER_TABLE_SIZE the peer announces (including 0) is honoured as is.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

namespace tritonlite {
namespace http2 {

struct HeaderField {
  std::string name;
  std::string value;
};
using HeaderList = std::vector<HeaderField>;

// Size of a field as HPACK and SETTINGS_MAX_HEADER_LIST_SIZE count it.
inline size_t HeaderFieldSize(const std::string& name, const std::string& value) {
  return name.size() + value.size() + 32;
}

class HpackDecoder {
 public:
  // `table_size_limit`: the SETTINGS_HEADER_TABLE_SIZE this side announced (4096 by default).
  explicit HpackDecoder(uint32_t table_size_limit = 4096);

  // Decodes one complete header block into `out`, replacing what it held (its elements are
  // reused in place: their strings keep their capacity, so a connection whose requests repeat
  // their headers decodes them without allocating). Returns false with
  // `error` set when the block is malformed (a connection-level COMPRESSION_ERROR) or decodes
  // to more than `max_list_size` bytes (counted as HeaderFieldSize). With `too_large`, a list
  // beyond `max_list_size` is not an error: the whole block is still decoded (so the dynamic
  // table stays in step with the peer's encoder) but no more fields are kept, and
  // `*too_large` says so (the caller fails that one stream).
  bool Decode(const uint8_t* data, size_t size, size_t max_list_size, HeaderList* out,
              std::string* error, bool* too_large = nullptr);

  size_t table_size() const { return table_size_; }
  size_t table_entries() const { return table_.size(); }

 private:
  void Insert(HeaderField field);
  void EvictTo(size_t size);

  std::deque<HeaderField> table_;  // newest first (dynamic index 62 is table_[0])
  size_t table_size_ = 0;
  size_t table_max_size_;    // as set by the peer's size updates
  const uint32_t table_size_limit_;
};

// Encoders (no Huffman, no dynamic table).
void HpackAppendIndexed(std::string* block, uint32_t static_index);
void HpackAppendLiteralWithIndexedName(std::string* block, uint32_t static_index,
                                       const std::string& value);
void HpackAppendLiteral(std::string* block, const std::string& name, const std::string& value);

// Static table indices the server uses.
constexpr uint32_t kStaticStatus200 = 8;
constexpr uint32_t kStaticContentType = 31;

}  // namespace http2
}  // namespace tritonlite
