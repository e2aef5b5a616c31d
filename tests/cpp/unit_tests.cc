// C++ unit tests of the decoders' edge cases: HPACK (RFC 7541 examples, malformed blocks),
// HTTP/2 frames and connection errors, gRPC message framing and decompression, the BYTES codec,
// the ModelInferRequest decoder, tensor views, the rate limiter's rules and the CPU budget that
// decides spinning and batches run on the I/O thread (util/spin_wait.h), the transport's Fifo and
// deferred wakeups. A tiny runner: each
// TEST registers itself; `tritonlite_cpp_tests [substring]` runs those whose name contains the
// substring, prints one line per test and exits non-zero if any failed. tests/test_cpp.py builds
// and runs it.
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/bytes_codec.h"
#include "core/request.h"
#include "core/stats.h"
#include "core/status.h"
#include "core/tensor.h"
#include "scheduling/ragged.h"
#include "scheduling/rate_limiter.h"
#include "scheduling/response_cache.h"
#include "transport/grpc/compression.h"
#include "transport/grpc/infer_codec.h"
#include "transport/grpc/protocol.h"
#include "transport/http2/connection.h"
#include "transport/http2/frame.h"
#include "transport/http2/hpack.h"
#include "transport/http2/huffman.h"
#include "util/fifo.h"
#include "util/spin_wait.h"
#include "util/wakeup_queue.h"

using namespace tritonlite;
using namespace tritonlite::http2;

// ---------------------------------------------------------------------------------------------
// Runner

namespace {

struct Failure : std::exception {
  std::string what_;
  Failure(const char* file, int line, const std::string& what)
      : what_(std::string(file) + ":" + std::to_string(line) + ": " + what) {}
  const char* what() const noexcept override { return what_.c_str(); }
};

struct TestCase {
  const char* name;
  void (*fn)();
};

std::vector<TestCase>& Registry() {
  static std::vector<TestCase> tests;
  return tests;
}

struct Registrar {
  Registrar(const char* name, void (*fn)()) { Registry().push_back({name, fn}); }
};

}  // namespace

#define TEST(name)                                  \
  static void test_##name();                        \
  static Registrar registrar_##name(#name, test_##name); \
  static void test_##name()

#define CHECK(cond)                                                 \
  do {                                                              \
    if (!(cond)) throw Failure(__FILE__, __LINE__, "CHECK(" #cond ")"); \
  } while (0)

#define CHECK_EQ(a, b)                                                                   \
  do {                                                                                   \
    if (!((a) == (b))) throw Failure(__FILE__, __LINE__, "CHECK_EQ(" #a ", " #b ")");   \
  } while (0)

// `expr` must throw tritonlite::Error with `code` (any other exception fails the test).
#define CHECK_THROWS_CODE(expr, code_)                                                     \
  do {                                                                                     \
    bool thrown_ = false;                                                                  \
    try {                                                                                  \
      expr;                                                                                \
    } catch (const Error& e_) {                                                            \
      thrown_ = true;                                                                      \
      if (e_.code() != (code_)) {                                                          \
        throw Failure(__FILE__, __LINE__, "wrong code from " #expr ": " + std::string(e_.what())); \
      }                                                                                    \
    } catch (const Failure&) {                                                             \
      throw;                                                                               \
    } catch (const std::exception& e_) {                                                   \
      throw Failure(__FILE__, __LINE__,                                                    \
                    "expected Error from " #expr ", got std::exception: " + std::string(e_.what())); \
    }                                                                                      \
    if (!thrown_) throw Failure(__FILE__, __LINE__, "no exception from " #expr);          \
  } while (0)

namespace {

std::vector<uint8_t> Hex(const char* hex) {
  std::vector<uint8_t> out;
  auto nibble = [](char c) {
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
  };
  for (const char* p = hex; *p;) {
    if (*p == ' ') {
      ++p;
      continue;
    }
    out.push_back(static_cast<uint8_t>(nibble(p[0]) << 4 | nibble(p[1])));
    p += 2;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// HPACK

bool DecodeHex(HpackDecoder& d, const char* hex, HeaderList* out, std::string* error,
               size_t max_list = 1u << 20) {
  const auto block = Hex(hex);
  return d.Decode(block.data(), block.size(), max_list, out, error);
}

void CheckHeaders(const HeaderList& got, const std::vector<std::pair<std::string, std::string>>& want) {
  CHECK_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    CHECK_EQ(got[i].name, want[i].first);
    CHECK_EQ(got[i].value, want[i].second);
  }
}

// RFC 7541 C.3 (plain) and C.4 (Huffman): three requests on one connection, the dynamic table
// carrying over; sizes from the RFC.
void CheckRfcRequests(const char* const blocks[3]) {
  HpackDecoder d;
  std::string error;
  HeaderList h1, h2, h3;
  CHECK(DecodeHex(d, blocks[0], &h1, &error));
  CheckHeaders(h1, {{":method", "GET"}, {":scheme", "http"}, {":path", "/"},
                    {":authority", "www.example.com"}});
  CHECK_EQ(d.table_size(), 57u);
  CHECK(DecodeHex(d, blocks[1], &h2, &error));
  CheckHeaders(h2, {{":method", "GET"}, {":scheme", "http"}, {":path", "/"},
                    {":authority", "www.example.com"}, {"cache-control", "no-cache"}});
  CHECK_EQ(d.table_size(), 110u);
  CHECK(DecodeHex(d, blocks[2], &h3, &error));
  CheckHeaders(h3, {{":method", "GET"}, {":scheme", "https"}, {":path", "/index.html"},
                    {":authority", "www.example.com"}, {"custom-key", "custom-value"}});
  CHECK_EQ(d.table_size(), 164u);
  CHECK_EQ(d.table_entries(), 3u);
}

}  // namespace

// The latency histograms' bucket search agrees with std::lower_bound (a value on a bound is in
// that bound's bucket, Prometheus' `le`) on and around every bound, at the ends, and on many
// values spread over every bit length; RecordSuccess files each duration in its histogram.
TEST(latency_bucket_matches_lower_bound) {
  const uint64_t* bounds = LatencyBoundsNs();
  auto reference = [&](uint64_t v) {
    return static_cast<size_t>(std::lower_bound(bounds, bounds + kLatencyBounds, v) - bounds);
  };
  std::vector<uint64_t> values = {0, 1, 999, std::numeric_limits<uint64_t>::max()};
  for (size_t i = 0; i < kLatencyBounds; ++i) {
    CHECK(i == 0 || bounds[i - 1] < bounds[i]);
    values.insert(values.end(), {bounds[i] - 1, bounds[i], bounds[i] + 1});
  }
  uint64_t x = 88172645463325252ULL;
  for (int i = 0; i < 200000; ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    values.push_back(x >> (x % 64));
  }
  for (uint64_t v : values) CHECK_EQ(LatencyBucket(v), reference(v));
  CHECK_EQ(LatencyBucket(bounds[0]), 0u);
  CHECK_EQ(LatencyBucket(bounds[kLatencyBounds - 1] + 1), kLatencyBounds);

  ModelStats stats;
  stats.RecordSuccess(/*total*/ 3'000'000, /*queue*/ 1'000, 0, 2'500'000, 1'200, 4);
  stats.RecordSuccess(3'000'001, 1'000, 0, 2'500'000, 1'200, 1);
  const StatsSnapshot s = stats.Snapshot();
  const auto& request = s.latency[static_cast<size_t>(Latency::kRequest)];
  CHECK_EQ(request.counts[LatencyBucket(3'000'000)], 1u);  // 3 ms: on the 3 ms bound
  CHECK_EQ(request.counts[LatencyBucket(3'000'001)], 1u);  // just above: the 4 ms bucket
  CHECK_EQ(s.latency[static_cast<size_t>(Latency::kComputeInfer)].counts[LatencyBucket(2'500'000)],
           2u);
  CHECK_EQ(s.latency[static_cast<size_t>(Latency::kQueue)].counts[0], 2u);  // 1 us: bucket 0
}

TEST(hpack_rfc7541_c3_plain) {
  const char* const blocks[3] = {
      "828684410f7777772e6578616d706c652e636f6d",
      "828684be58086e6f2d6361636865",
      "828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565"};
  CheckRfcRequests(blocks);
}

TEST(hpack_rfc7541_c4_huffman) {
  const char* const blocks[3] = {
      "828684418cf1e3c2e5f23a6ba0ab90f4ff",
      "828684be5886a8eb10649cbf",
      "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf"};
  CheckRfcRequests(blocks);
}

TEST(hpack_rejects_malformed_blocks) {
  const char* const bad[] = {
      "80",                  // index 0
      "be",                  // dynamic index 62 with an empty table
      "ff808080808010",      // index integer beyond 2^32
      "ffffffffffffffffff",  // integer that never ends within the block
      "0f",                  // literal with a truncated name index
      "0003616263",          // literal whose value is missing
      "00056162",            // name length past the end of the block
      "3fe21f",              // size update to 4096 + 2^12 > the 4096 limit
      "8220",                // size update after a header field
  };
  for (const char* hex : bad) {
    HpackDecoder d;
    HeaderList h;
    std::string error;
    if (DecodeHex(d, hex, &h, &error)) throw Failure(__FILE__, __LINE__, std::string("accepted ") + hex);
    CHECK(!error.empty());
  }
}

TEST(hpack_size_updates_and_eviction) {
  HpackDecoder d(4096);
  HeaderList h;
  std::string error;
  CHECK(DecodeHex(d, "400a637573746f6d2d6b65790c637573746f6d2d76616c7565", &h, &error));
  CHECK_EQ(d.table_size(), 54u);
  CHECK(DecodeHex(d, "20", &h, &error));  // size update to 0 empties the table
  CHECK_EQ(d.table_entries(), 0u);
  CHECK(DecodeHex(d, "3f11", &h, &error));  // back to 48: an entry of 54 bytes does not fit
  h.clear();
  CHECK(DecodeHex(d, "400a637573746f6d2d6b65790c637573746f6d2d76616c7565", &h, &error));
  CHECK_EQ(d.table_entries(), 0u);  // larger than the table: emptied, not added (4.4)
  CHECK_EQ(h.size(), 1u);
}

TEST(hpack_header_list_limit) {
  HpackDecoder d;
  HeaderList h;
  std::string error;
  // custom-key: custom-value is 54 bytes as counted by SETTINGS_MAX_HEADER_LIST_SIZE.
  CHECK(!DecodeHex(d, "000a637573746f6d2d6b65790c637573746f6d2d76616c7565", &h, &error, 53));
  CHECK(error.find("larger than 53") != std::string::npos);
  h.clear();
  CHECK(DecodeHex(d, "000a637573746f6d2d6b65790c637573746f6d2d76616c7565", &h, &error, 54));
}

TEST(huffman_padding_and_eos) {
  std::string out;
  CHECK(HuffmanDecode(Hex("1f").data(), 1, &out));  // 'a' (00011) + 111 padding
  CHECK_EQ(out, "a");
  out.clear();
  CHECK(!HuffmanDecode(Hex("18").data(), 1, &out));  // padding of zeros
  CHECK(!HuffmanDecode(Hex("ffff").data(), 2, &out));  // 16 bits of padding
  CHECK(!HuffmanDecode(Hex("fffffffc").data(), 4, &out));  // EOS (30 ones) then 00
  out.clear();
  CHECK(HuffmanDecode(nullptr, 0, &out));
  CHECK(out.empty());
}

// ---------------------------------------------------------------------------------------------
// HTTP/2 frames and connection errors

namespace {

struct RecordingHandler : ConnectionHandler {
  std::vector<std::pair<uint32_t, HeaderList>> requests;
  std::string body;
  int resets = 0;
  void OnRequestHeaders(uint32_t id, HeaderList&& headers, bool) override {
    requests.emplace_back(id, std::move(headers));
  }
  void OnRequestData(uint32_t, const uint8_t* data, size_t size, bool) override {
    body.append(reinterpret_cast<const char*>(data), size);
  }
  void OnStreamReset(uint32_t, ErrorCode) override { ++resets; }
};

std::string ClientStart() {
  std::string wire(kClientPreface, kClientPrefaceSize);
  AppendSettingsFrame(&wire, "");
  return wire;
}

std::string RequestBlock() {
  std::string block;
  HpackAppendIndexed(&block, 3);  // :method POST
  HpackAppendIndexed(&block, 6);  // :scheme http
  HpackAppendLiteralWithIndexedName(&block, 4, "/svc/Method");  // :path
  return block;
}

// Feeds `wire` to a fresh connection; returns it failed or not, with the GOAWAY's error code
// (or -1 when there is none) in `goaway_code`.
struct Fed {
  RecordingHandler handler;
  Connection conn{&handler, ConnectionOptions{}};
  int goaway_code = -1;
  explicit Fed(const std::string& wire, size_t piece = SIZE_MAX) {
    conn.Start();
    for (size_t pos = 0; pos < wire.size(); pos += piece) {
      const size_t n = std::min(piece, wire.size() - pos);
      conn.Feed(reinterpret_cast<const uint8_t*>(wire.data()) + pos, n, 1);
    }
    const std::string out(conn.output_data(), conn.output_size());
    for (size_t pos = 0; pos + kFrameHeaderSize <= out.size();) {
      const FrameHeader h = ParseFrameHeader(reinterpret_cast<const uint8_t*>(out.data()) + pos);
      if (h.type == static_cast<uint8_t>(FrameType::kGoAway)) {
        goaway_code = static_cast<int>(
            ReadUint32(reinterpret_cast<const uint8_t*>(out.data()) + pos + kFrameHeaderSize + 4));
      }
      pos += kFrameHeaderSize + h.length;
    }
  }
};

}  // namespace

TEST(frame_header_parse_and_continuation_split) {
  const auto raw = Hex("00400a01059abcdef0");
  const FrameHeader h = ParseFrameHeader(raw.data());
  CHECK_EQ(h.length, 0x400au);
  CHECK_EQ(h.type, 1);
  CHECK_EQ(h.flags, 5);
  CHECK_EQ(h.stream_id, 0x1abcdef0u);  // reserved bit cleared
  std::string out;
  AppendHeaderBlock(&out, 3, std::string(40000, 'x'), true, 16384);
  // HEADERS 16384 (END_STREAM), CONTINUATION 16384, CONTINUATION 7232 (END_HEADERS)
  const auto* p = reinterpret_cast<const uint8_t*>(out.data());
  FrameHeader a = ParseFrameHeader(p);
  FrameHeader b = ParseFrameHeader(p + 9 + 16384);
  FrameHeader c = ParseFrameHeader(p + 18 + 2 * 16384);
  CHECK(a.type == 1 && a.length == 16384 && a.flags == flags::kEndStream);
  CHECK(b.type == 9 && b.length == 16384 && b.flags == 0);
  CHECK(c.type == 9 && c.length == 7232 && c.flags == flags::kEndHeaders);
  CHECK_EQ(out.size(), 27u + 40000u);
}

TEST(connection_request_in_one_byte_pieces) {
  std::string wire = ClientStart();
  const std::string block = RequestBlock();
  AppendFrameHeader(&wire, static_cast<uint32_t>(block.size() - 3), FrameType::kHeaders, 0, 1);
  wire.append(block, 0, block.size() - 3);
  AppendFrameHeader(&wire, 3, FrameType::kContinuation, flags::kEndHeaders, 1);
  wire.append(block, block.size() - 3, 3);
  // Padded DATA: pad length 2, body "hello", 2 bytes of padding.
  AppendFrameHeader(&wire, 8, FrameType::kData, flags::kPadded | flags::kEndStream, 1);
  wire += std::string("\x02hello\0\0", 8);
  Fed f(wire, 1);
  CHECK(!f.conn.failed());
  CHECK_EQ(f.handler.requests.size(), 1u);
  CHECK_EQ(f.handler.requests[0].second[2].value, "/svc/Method");
  CHECK_EQ(f.handler.body, "hello");
}

TEST(connection_errors) {
  struct Case {
    const char* what;
    std::string frames;
    ErrorCode code;
  };
  std::vector<Case> cases;
  auto frame = [](FrameType type, uint8_t fl, uint32_t stream, const std::string& payload) {
    std::string f;
    AppendFrameHeader(&f, static_cast<uint32_t>(payload.size()), type, fl, stream);
    return f + payload;
  };
  std::string headers1 = frame(FrameType::kHeaders, flags::kEndHeaders, 1, RequestBlock());
  cases.push_back({"frame above SETTINGS_MAX_FRAME_SIZE",
                   frame(FrameType::kPing, 0, 0, std::string(16385, '\0')),
                   ErrorCode::kFrameSizeError});
  cases.push_back({"DATA on stream 0", frame(FrameType::kData, 0, 0, "x"),
                   ErrorCode::kProtocolError});
  cases.push_back({"DATA padding covering the frame",
                   headers1 + frame(FrameType::kData, flags::kPadded, 1, std::string("\x04xyz", 4)),
                   ErrorCode::kProtocolError});
  cases.push_back({"SETTINGS not a multiple of 6", frame(FrameType::kSettings, 0, 0, "12345"),
                   ErrorCode::kFrameSizeError});
  cases.push_back({"connection window overflow",
                   frame(FrameType::kWindowUpdate, 0, 0, "\x7f\xff\xff\xff"),
                   ErrorCode::kFlowControlError});
  cases.push_back({"HEADERS padding beyond the frame",
                   frame(FrameType::kHeaders, flags::kPadded | flags::kEndHeaders, 1, "\x09" "ab"),
                   ErrorCode::kProtocolError});
  cases.push_back({"bad HPACK", frame(FrameType::kHeaders, flags::kEndHeaders, 1, "\x80"),
                   ErrorCode::kCompressionError});
  cases.push_back({"CONTINUATION expected",
                   frame(FrameType::kHeaders, 0, 1, "\x83") + frame(FrameType::kPing, 0, 0, "12345678"),
                   ErrorCode::kProtocolError});
  cases.push_back({"even stream id",
                   frame(FrameType::kHeaders, flags::kEndHeaders, 2, RequestBlock()),
                   ErrorCode::kProtocolError});
  for (const Case& c : cases) {
    Fed f(ClientStart() + c.frames);
    if (!f.conn.failed() || f.goaway_code != static_cast<int>(c.code)) {
      throw Failure(__FILE__, __LINE__, std::string(c.what) + ": got GOAWAY code " +
                                            std::to_string(f.goaway_code));
    }
  }
  Fed bad_preface("PRI * HTTP/1.1\r\n");
  CHECK(bad_preface.conn.failed());
  CHECK_EQ(bad_preface.goaway_code, static_cast<int>(ErrorCode::kProtocolError));
}

// ---------------------------------------------------------------------------------------------
// gRPC messages

TEST(grpc_message_reader_framing) {
  grpc::MessageReader reader(10);
  std::vector<grpc::ReceivedMessage> out;
  std::string error;
  const std::string wire = std::string("\0\0\0\0\3abc\0\0\0\0\0\1\0\0\0\2xy", 20);
  for (char c : wire) {
    CHECK(reader.Append(reinterpret_cast<const uint8_t*>(&c), 1, &out, &error));
  }
  CHECK_EQ(out.size(), 3u);
  CHECK_EQ(std::string(reinterpret_cast<const char*>(out[0].message->data()), 3), "abc");
  CHECK_EQ(out[1].message->size(), 0u);
  CHECK(out[2].compressed);
  CHECK(!reader.partial());
  CHECK(reader.Append(reinterpret_cast<const uint8_t*>("\0\0"), 2, &out, &error));
  CHECK(reader.partial());
  grpc::MessageReader small(10);
  CHECK(!small.Append(reinterpret_cast<const uint8_t*>("\0\0\0\0\x0b"), 5, &out, &error));
  CHECK_EQ(error, "Received message larger than max (11 vs. 10)");
}

TEST(grpc_decompress_limits) {
  if (!grpc::CanDecompress("gzip")) return;  // built without zlib
  const std::string message(100000, 'a');
  std::string framed;
  CHECK(grpc::FrameCompressed(grpc::Encoding::kGzip,
                              reinterpret_cast<const uint8_t*>(message.data()), message.size(),
                              &framed));
  const auto* z = reinterpret_cast<const uint8_t*>(framed.data()) + grpc::kMessagePrefixSize;
  const size_t zsize = framed.size() - grpc::kMessagePrefixSize;
  std::string out;
  CHECK(grpc::Decompress("gzip", z, zsize, message.size(), &out) == grpc::DecompressResult::kOk);
  CHECK(out == message);
  // A bomb: refused as soon as the output passes the maximum.
  CHECK(grpc::Decompress("gzip", z, zsize, 1000, &out) == grpc::DecompressResult::kTooLarge);
  CHECK(grpc::Decompress("gzip", z, zsize - 1, message.size(), &out) ==
        grpc::DecompressResult::kCorrupt);  // truncated
  CHECK(grpc::Decompress("deflate", z, zsize, message.size(), &out) ==
        grpc::DecompressResult::kCorrupt);  // wrong format
  CHECK(grpc::Decompress("br", z, zsize, message.size(), &out) ==
        grpc::DecompressResult::kCorrupt);
}

TEST(grpc_timeout_parse) {
  uint64_t ns = 0;
  CHECK(grpc::ParseGrpcTimeout("1S", &ns) && ns == 1000000000ull);
  CHECK(grpc::ParseGrpcTimeout("99999999m", &ns) && ns == 99999999000000ull);
  CHECK(!grpc::ParseGrpcTimeout("99999999H", &ns));  // beyond 2^62 ns: no deadline
  CHECK(!grpc::ParseGrpcTimeout("123456789S", &ns));  // 9 digits
  CHECK(!grpc::ParseGrpcTimeout("1X", &ns));
  CHECK(!grpc::ParseGrpcTimeout("S", &ns));
  CHECK(!grpc::ParseGrpcTimeout("", &ns));
  CHECK(!grpc::ParseGrpcTimeout("-1S", &ns));
}

// ---------------------------------------------------------------------------------------------
// BYTES codec

namespace {

std::string BytesBuffer(const std::vector<std::string>& elements) {
  std::string out;
  for (const std::string& e : elements) AppendBytesElement(&out, e.data(), e.size());
  return out;
}

const uint8_t* U8(const std::string& s) { return reinterpret_cast<const uint8_t*>(s.data()); }

}  // namespace

TEST(bytes_codec_parse) {
  const std::string buf = BytesBuffer({"hello", "", "x"});
  const auto elements = ParseBytes(U8(buf), buf.size(), 3);
  CHECK_EQ(elements.size(), 3u);
  CHECK(elements[0].offset == 4 && elements[0].size == 5);
  CHECK(elements[1].offset == 13 && elements[1].size == 0);
  CHECK(elements[2].offset == 17 && elements[2].size == 1);
  CHECK_EQ(BytesElementOffset(U8(buf), buf.size(), 2), 13u);
  CHECK_EQ(BytesElementOffset(U8(buf), buf.size(), 3), buf.size());
  CHECK_THROWS_CODE(ParseBytes(U8(buf), buf.size(), 2), StatusCode::kInvalidArg);
  CHECK_THROWS_CODE(ParseBytes(U8(buf), buf.size() - 1, -1), StatusCode::kInvalidArg);
  CHECK_THROWS_CODE(ParseBytes(U8(buf), 2, -1), StatusCode::kInvalidArg);
  CHECK_THROWS_CODE(BytesElementOffset(U8(buf), buf.size(), 4), StatusCode::kInvalidArg);
  const std::string past = std::string("\xff\xff\xff\xff", 4) + "ab";
  CHECK_THROWS_CODE(ParseBytes(U8(past), past.size(), -1), StatusCode::kInvalidArg);
  CHECK(ParseBytes(nullptr, 0, 0).empty());
}

// Found by fuzz_bytes_codec / fuzz_infer_decoder: the element count of a shape from the wire
// was reserved before anything was parsed (a 20-byte request could ask for terabytes).
TEST(bytes_codec_huge_expected_count_is_invalid_arg) {
  const std::string buf = BytesBuffer({"ab"});
  CHECK_THROWS_CODE(ParseBytes(U8(buf), buf.size(), int64_t{1} << 50), StatusCode::kInvalidArg);
  CHECK_THROWS_CODE(ParseBytes(U8(buf), buf.size(), std::numeric_limits<int64_t>::max()),
                    StatusCode::kInvalidArg);
  CHECK_THROWS_CODE(Tensor::View(DataType::kBytes, Shape{int64_t{1} << 50}, buf.data(),
                                 buf.size(), nullptr),
                    StatusCode::kInvalidArg);
}

// ---------------------------------------------------------------------------------------------
// ModelInferRequest decoder

namespace {

// A minimal protobuf writer for building requests.
struct Pb {
  std::string s;
  Pb& Varint(uint64_t v) {
    while (v >= 0x80) {
      s.push_back(static_cast<char>(v | 0x80));
      v >>= 7;
    }
    s.push_back(static_cast<char>(v));
    return *this;
  }
  Pb& Tag(uint32_t field, uint32_t type) { return Varint(field << 3 | type); }
  Pb& Bytes(uint32_t field, const std::string& v) {
    Tag(field, 2).Varint(v.size());
    s += v;
    return *this;
  }
  Pb& Int(uint32_t field, uint64_t v) { return Tag(field, 0).Varint(v); }
};

std::string Input(const std::string& name, const std::string& dtype, std::vector<int64_t> shape) {
  Pb in;
  in.Bytes(1, name).Bytes(2, dtype);
  for (int64_t d : shape) in.Int(3, static_cast<uint64_t>(d));
  return in.s;
}

}  // namespace

TEST(infer_decoder_request) {
  Pb param_value;
  param_value.Int(2, 5);  // int64_param
  Pb entry;
  entry.Bytes(1, "priority").Bytes(2, param_value.s);
  Pb req;
  req.Bytes(1, "model").Bytes(2, "1").Bytes(3, "id-1").Bytes(4, entry.s);
  req.Bytes(5, Input("INPUT0", "FP32", {1, 2}));
  req.Tag(99, 5).s += "abcd";  // unknown fixed32 field: skipped
  req.Bytes(6, Pb().Bytes(1, "OUTPUT0").s);
  req.Bytes(7, std::string(8, '\0'));
  WireInferRequest w;
  CHECK(DecodeModelInferRequest(U8(req.s), req.s.size(), &w));
  CHECK(w.model_name == "model" && w.model_version == "1" && w.id == "id-1");
  CHECK_EQ(w.inputs.size(), 1u);
  CHECK(w.inputs[0].name == "INPUT0" && w.inputs[0].datatype == "FP32");
  CHECK(w.inputs[0].shape == (Shape{1, 2}));
  CHECK(w.outputs.size() == 1 && w.outputs[0].name == "OUTPUT0");
  CHECK(w.raw_input_contents.size() == 1 && w.raw_input_contents[0].size() == 8);
  const WireParameter* p = FindParameter(w.parameters, "priority");
  CHECK(p != nullptr && p->kind == WireParameter::Kind::kInt64 && p->int64_value == 5);
  // Cut inside the last field (raw_input_contents): refused.
  WireInferRequest partial;
  CHECK(!DecodeModelInferRequest(U8(req.s), req.s.size() - 1, &partial));
}

TEST(infer_decoder_rejects) {
  WireInferRequest w;
  const std::string bad_utf8 = Pb().Bytes(1, "\xc0\xaf").s;  // overlong '/'
  CHECK(!DecodeModelInferRequest(U8(bad_utf8), bad_utf8.size(), &w));
  const std::string long_varint = std::string("\x08") + std::string(11, '\xff');
  CHECK(!DecodeModelInferRequest(U8(long_varint), long_varint.size(), &w));
  const std::string group = Pb().Tag(1, 3).s;  // start group
  CHECK(!DecodeModelInferRequest(U8(group), group.size(), &w));
  const std::string field0 = Pb().Int(0, 1).s;
  CHECK(!DecodeModelInferRequest(U8(field0), field0.size(), &w));
  const std::string past = Pb().Tag(7, 2).Varint(100).s + "abc";
  CHECK(!DecodeModelInferRequest(U8(past), past.size(), &w));
}

// Found by fuzz_infer_decoder: element_count * element size wrapped around, so an FP64 input of
// shape [2^61] with no bytes was a valid view of 2^61 elements (an over-read for whoever reads
// them: the batcher, the backend).
TEST(tensor_view_size_overflow_is_invalid_arg) {
  const std::string eight(8, '\0');
  CHECK_THROWS_CODE(Tensor::View(DataType::kFp64, Shape{int64_t{1} << 61}, eight.data(), 0, nullptr),
                    StatusCode::kInvalidArg);
  CHECK_THROWS_CODE(
      Tensor::View(DataType::kInt32, Shape{int64_t{1} << 62, 4}, eight.data(), 0, nullptr),
      StatusCode::kInvalidArg);
  CHECK_THROWS_CODE(Tensor::Allocate(DataType::kFp64, Shape{int64_t{1} << 61}),
                    StatusCode::kInvalidArg);
}

TEST(tensor_view_checks) {
  const std::string eight(8, '\0');
  Tensor t = Tensor::View(DataType::kFp32, Shape{1, 2}, eight.data(), 8, nullptr);
  CHECK_EQ(t.element_count(), 2);
  CHECK_THROWS_CODE(Tensor::View(DataType::kFp32, Shape{3}, eight.data(), 8, nullptr),
                    StatusCode::kInvalidArg);
  CHECK_THROWS_CODE(Tensor::View(DataType::kFp32, Shape{-1}, eight.data(), 8, nullptr),
                    StatusCode::kInvalidArg);
  CHECK_THROWS_CODE(
      Tensor::View(DataType::kFp32, Shape{int64_t{1} << 40, int64_t{1} << 40}, eight.data(), 8,
                   nullptr),
      StatusCode::kInvalidArg);
}


// ---------------------------------------------------------------------------------------------
// Rate limiter

namespace {

InstanceRateLimit Needs(std::vector<RateLimitResource> resources, uint32_t priority = 1,
                        int device = 0) {
  InstanceRateLimit l;
  l.resources = std::move(resources);
  l.priority = priority;
  l.device = device;
  return l;
}

std::string ErrorText(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// A thread that waits for an instance's resources; granted() once they are allocated.
class Contender {
 public:
  Contender(RateLimiter& limiter, uint64_t id) : limiter_(limiter), id_(id) {
    thread_ = std::thread([this] {
      result_ = limiter_.Acquire(id_, &waiter_, [this] { return give_up_.load(); });
      done_ = true;
    });
  }
  ~Contender() { Join(); }
  void Join() {
    if (thread_.joinable()) thread_.join();
  }
  bool done() const { return done_.load(); }
  bool result() const { return result_; }
  void GiveUp() {
    give_up_ = true;
    limiter_.Poke(&waiter_);
  }

 private:
  RateLimiter& limiter_;
  uint64_t id_;
  RateLimiter::Waiter waiter_;
  std::atomic<bool> give_up_{false};
  std::atomic<bool> done_{false};
  bool result_ = false;
  std::thread thread_;
};

// Until `n` instances wait (the limiter's own count: no sleeps, no timing).
void WaitForWaiting(const RateLimiter& limiter, size_t n) {
  while (limiter.Waiting() != n) std::this_thread::yield();
}

}  // namespace

TEST(rate_limiter_default_counts_are_the_largest_ask) {
  RateLimiter limiter;
  auto a = limiter.Register({Needs({{"R", false, 2}, {"G", true, 3}})});
  auto b = limiter.Register({Needs({{"R", false, 4}}), Needs({{"R", false, 1}}, 1, 1)});
  auto avail = limiter.Available();
  CHECK_EQ(avail["R@0"], 4u);
  CHECK_EQ(avail["R@1"], 1u);
  CHECK_EQ(avail["G"], 3u);
  limiter.Unregister(b);
  avail = limiter.Available();
  CHECK_EQ(avail["R@0"], 2u);
  CHECK(avail.find("R@1") == avail.end());
}

TEST(rate_limiter_explicit_counts_and_triton_texts) {
  // Fewer than an instance asks for: the load fails with Triton's text, nothing registered.
  RateLimiter limiter({{"R", 1, ExplicitResource::kEveryDevice}});
  CHECK_EQ(ErrorText([&] { limiter.Register({Needs({{"R", false, 2}})}); }),
           std::string("Resource count for \"R\" is limited to 1 which will prevent scheduling "
                       "of one or more model instances, the minimum required count is 2"));
  CHECK(limiter.Available().empty());
  // A resource the command line does not name has none.
  CHECK_EQ(ErrorText([&] { limiter.Register({Needs({{"S", false, 1}})}); }),
           std::string("Resource count for \"S\" is limited to 0 which will prevent scheduling "
                       "of one or more model instances, the minimum required count is 1"));
  limiter.Register({Needs({{"R", false, 1}})});
  CHECK_EQ(limiter.Available()["R@0"], 1u);

  // Device-specific counts: device 1's count does not serve device 0; the every-device one does.
  RateLimiter per_device({{"R", 5, 1}});
  CHECK_THROWS_CODE(per_device.Register({Needs({{"R", false, 2}}, 1, 0)}), StatusCode::kInvalidArg);
  per_device.Register({Needs({{"R", false, 2}}, 1, 1)});
  CHECK_EQ(per_device.Available()["R@1"], 5u);
  // A global resource takes the name's largest count on any device.
  RateLimiter global({{"G", 2, 0}, {"G", 7, 3}});
  global.Register({Needs({{"G", true, 7}})});
  CHECK_EQ(global.Available()["G"], 7u);

  // The same name global in one instance and per device in another.
  RateLimiter mixed;
  mixed.Register({Needs({{"R", true, 1}})});
  CHECK_EQ(ErrorText([&] { mixed.Register({Needs({{"R", false, 1}})}); }),
           std::string("Resource \"R\" is present as both global and device-specific resource "
                       "in the model configuration."));
  CHECK_EQ(mixed.Available().size(), 1u);
}

TEST(rate_limiter_one_resource_one_holder) {
  RateLimiter limiter;
  auto ids = limiter.Register({Needs({{"R", false, 1}}), Needs({{"R", false, 1}})});
  RateLimiter::Waiter first;
  CHECK(limiter.Acquire(ids[0], &first, [] { return false; }));
  Contender second(limiter, ids[1]);
  WaitForWaiting(limiter, 1);
  CHECK(!second.done());  // queued, not granted, while the first holds R
  limiter.Release(ids[0]);
  second.Join();
  CHECK(second.result());
  // Released resources go back: the first may run again once the second is done.
  limiter.Release(ids[1]);
  CHECK(limiter.Acquire(ids[0], &first, [] { return false; }));
  limiter.Release(ids[0]);
}

TEST(rate_limiter_global_resource_spans_devices) {
  RateLimiter limiter;
  auto ids = limiter.Register({Needs({{"G", true, 1}}, 1, 0), Needs({{"G", true, 1}}, 1, 1),
                               Needs({{"D", false, 1}}, 1, 0), Needs({{"D", false, 1}}, 1, 1)});
  RateLimiter::Waiter w0, w2, w3;
  // Per-device resources: one copy on each device, both run at once.
  CHECK(limiter.Acquire(ids[2], &w2, [] { return false; }));
  CHECK(limiter.Acquire(ids[3], &w3, [] { return false; }));
  limiter.Release(ids[2]);
  limiter.Release(ids[3]);
  // A global resource: one copy for the whole server.
  CHECK(limiter.Acquire(ids[0], &w0, [] { return false; }));
  Contender other_device(limiter, ids[1]);
  WaitForWaiting(limiter, 1);
  CHECK(!other_device.done());
  limiter.Release(ids[0]);
  other_device.Join();
  CHECK(other_device.result());
  limiter.Release(ids[1]);
}

TEST(rate_limiter_priority_orders_waiters) {
  RateLimiter limiter;
  auto ids = limiter.Register({Needs({{"R", false, 1}}, 1), Needs({{"R", false, 1}}, 2),
                               Needs({{"R", false, 1}}, 1)});
  const uint64_t p1 = ids[0], p2 = ids[1], holder = ids[2];
  RateLimiter::Waiter w;
  // One execution each: p1 scores 1 (1 x priority 1), p2 scores 2 (1 x priority 2).
  for (uint64_t id : {p1, p2}) {
    CHECK(limiter.Acquire(id, &w, [] { return false; }));
    limiter.Release(id);
  }
  CHECK(limiter.Acquire(holder, &w, [] { return false; }));
  Contender low(limiter, p2);  // arrives first
  WaitForWaiting(limiter, 1);
  Contender high(limiter, p1);
  WaitForWaiting(limiter, 2);
  limiter.Release(holder);
  high.Join();  // priority 1 goes first despite arriving second
  CHECK(!low.done());
  // p1 now scores 2, as p2: the tie goes to the earlier arrival, p2.
  limiter.Release(p1);
  low.Join();
  CHECK(low.result());
  limiter.Release(p2);
}

TEST(rate_limiter_head_of_line_is_not_starved) {
  RateLimiter limiter;
  auto ids = limiter.Register({Needs({{"R", false, 2}}), Needs({{"R", false, 1}}),
                               Needs({{"R", false, 1}})});
  const uint64_t big = ids[0], small = ids[1], holder = ids[2];
  RateLimiter::Waiter w;
  CHECK(limiter.Acquire(small, &w, [] { return false; }));  // small scores 1 after this run
  limiter.Release(small);
  CHECK(limiter.Acquire(holder, &w, [] { return false; }));  // 1 of 2 taken
  Contender big_wait(limiter, big);  // scores 0: first in line, needs both
  WaitForWaiting(limiter, 1);
  Contender small_wait(limiter, small);  // one unit is free, but it is behind big
  WaitForWaiting(limiter, 2);
  CHECK(!small_wait.done());
  limiter.Release(holder);
  big_wait.Join();
  CHECK(!small_wait.done());
  limiter.Release(big);
  small_wait.Join();
  CHECK(small_wait.result());
  limiter.Release(small);
}

TEST(rate_limiter_unrelated_waiters_pass_a_blocked_one) {
  RateLimiter limiter;
  auto ids = limiter.Register({Needs({{"R", false, 1}}), Needs({{"R", false, 1}}),
                               Needs({{"S", false, 1}}), Needs({})});
  const uint64_t holder = ids[0], blocked = ids[1], other = ids[2], free = ids[3];
  RateLimiter::Waiter w;
  for (uint64_t id : {other, free}) {  // both score more than `blocked` from here on
    CHECK(limiter.Acquire(id, &w, [] { return false; }));
    limiter.Release(id);
  }
  CHECK(limiter.Acquire(holder, &w, [] { return false; }));
  Contender blocked_wait(limiter, blocked);
  WaitForWaiting(limiter, 1);
  // Behind it in line, but they need nothing it waits for: they run at once.
  Contender other_wait(limiter, other);
  other_wait.Join();
  CHECK(other_wait.result());
  Contender free_wait(limiter, free);
  free_wait.Join();
  CHECK(free_wait.result());
  CHECK(!blocked_wait.done());
  limiter.Release(other);
  limiter.Release(free);
  limiter.Release(holder);
  blocked_wait.Join();
  limiter.Release(blocked);
}

TEST(rate_limiter_poke_abandons_a_wait) {
  RateLimiter limiter;
  auto ids = limiter.Register({Needs({{"R", false, 1}}), Needs({{"R", false, 1}})});
  RateLimiter::Waiter w;
  CHECK(limiter.Acquire(ids[0], &w, [] { return false; }));
  Contender quitter(limiter, ids[1]);
  WaitForWaiting(limiter, 1);
  quitter.GiveUp();
  quitter.Join();
  CHECK(!quitter.result());
  CHECK_EQ(limiter.Waiting(), 0u);
  limiter.Release(ids[0]);
  // It held nothing: the resource is free for either.
  CHECK(limiter.Acquire(ids[1], &w, [] { return false; }));
  limiter.Release(ids[1]);
}

// ---------------------------------------------------------------------------------------------
// Response cache

// The reference vectors of the SipHash paper (appendix A; key 00..0f, messages 00..n-1) for
// SipHash-2-4: the same code with c=1, d=3 is the table's hash.
TEST(siphash_reference_vectors) {
  const uint64_t k0 = 0x0706050403020100ULL, k1 = 0x0f0e0d0c0b0a0908ULL;
  uint8_t msg[15];
  for (int i = 0; i < 15; ++i) msg[i] = static_cast<uint8_t>(i);
  CHECK_EQ(SipHash(2, 4, k0, k1, msg, 0), 0x726fdb47dd0e0e31ULL);
  CHECK_EQ(SipHash(2, 4, k0, k1, msg, 15), 0xa129ca6149be45e5ULL);
  CHECK(SipHash13(k0, k1, msg, 15) != SipHash13(k0 + 1, k1, msg, 15));
}

namespace {
InferRequest CacheRequest(const std::string& name, const std::string& bytes) {
  InferRequest r;
  auto owner = std::make_shared<std::string>(bytes);
  r.inputs.emplace_back(name, Tensor::View(DataType::kUint8, Shape{static_cast<int64_t>(bytes.size())},
                                           owner->data(), owner->size(), owner));
  return r;
}
NamedTensors CacheOutputs(size_t bytes, uint8_t fill) {
  auto owner = std::make_shared<std::string>(bytes, static_cast<char>(fill));
  NamedTensors out;
  out.emplace_back("OUT", Tensor::View(DataType::kUint8, Shape{static_cast<int64_t>(bytes)},
                                       owner->data(), owner->size(), owner));
  return out;
}
}  // namespace

TEST(response_cache_keys_are_unambiguous) {
  // Moving a byte between a name and its data, or between fields, changes the key.
  auto a = ResponseCache::Key("m", 1, CacheRequest("AB", "C"));
  auto b = ResponseCache::Key("m", 1, CacheRequest("A", "BC"));
  CHECK(a && b && *a != *b);
  CHECK(*ResponseCache::Key("m", 1, CacheRequest("A", "B")) !=
        *ResponseCache::Key("m", 2, CacheRequest("A", "B")));
  CHECK(*ResponseCache::Key("m1", 1, CacheRequest("A", "B")) !=
        *ResponseCache::Key("m", 1, CacheRequest("1A", "B")));
  InferRequest with_params = CacheRequest("A", "B");
  with_params.parameters = "{\"p\":1}";
  CHECK(*ResponseCache::Key("m", 1, with_params) != *ResponseCache::Key("m", 1, CacheRequest("A", "B")));
  InferRequest seq = CacheRequest("A", "B");
  seq.correlation_id = 7;
  CHECK(!ResponseCache::Key("m", 1, seq));
  InferRequest seq_str = CacheRequest("A", "B");
  seq_str.correlation_id_str = "s";
  CHECK(!ResponseCache::Key("m", 1, seq_str));
  // Input order does not matter; requested outputs do.
  InferRequest two = CacheRequest("X", "1");
  two.inputs.push_back(CacheRequest("Y", "2").inputs[0]);
  InferRequest swapped = CacheRequest("Y", "2");
  swapped.inputs.push_back(CacheRequest("X", "1").inputs[0]);
  CHECK(*ResponseCache::Key("m", 1, two) == *ResponseCache::Key("m", 1, swapped));
  swapped.requested_outputs = {"OUT"};
  CHECK(*ResponseCache::Key("m", 1, two) != *ResponseCache::Key("m", 1, swapped));
}

TEST(response_cache_lru_within_budget) {
  ResponseCache cache(3 * 750);  // each entry below: 448 bytes of data + ~270 of overhead
  for (uint8_t i = 0; i < 3; ++i) CHECK(cache.Insert("k" + std::to_string(i), CacheOutputs(400, i)));
  CHECK_EQ(cache.usage().entries, size_t{3});
  NamedTensors out;
  CHECK(cache.Lookup("k0", &out));  // k0 is now the most recent
  CHECK(cache.Insert("k3", CacheOutputs(400, 3)));  // evicts k1
  CHECK(!cache.Lookup("k1", &out));
  CHECK(cache.Lookup("k0", &out));
  CHECK_EQ(out.size(), size_t{1});
  CHECK_EQ(out[0].first, std::string("OUT"));
  CHECK_EQ(out[0].second.byte_size(), size_t{400});
  CHECK(out[0].second.read_only());
  CHECK_EQ(static_cast<int>(out[0].second.data()[399]), 0);
  CHECK_EQ(reinterpret_cast<uintptr_t>(out[0].second.data()) % 64, uintptr_t{0});
  ResponseCache::Usage u = cache.usage();
  CHECK_EQ(u.evictions, uint64_t{1});
  CHECK(u.bytes <= u.byte_budget);
  CHECK(!cache.Insert("k0", CacheOutputs(400, 9)));  // held: the first answer stays
  CHECK(cache.Lookup("k0", &out) && out[0].second.data()[0] == 0);
  // Bigger than the whole budget: refused, nothing evicted.
  CHECK(!cache.Insert("huge", CacheOutputs(5000, 1)));
  CHECK_EQ(cache.usage().entries, size_t{3});
  // A view outlives the entry's eviction.
  NamedTensors kept;
  CHECK(cache.Lookup("k3", &kept));
  for (uint8_t i = 10; i < 16; ++i) cache.Insert("n" + std::to_string(i), CacheOutputs(400, i));
  CHECK(!cache.Lookup("k3", &out));
  CHECK_EQ(static_cast<int>(kept[0].second.data()[0]), 3);
  CHECK_EQ(static_cast<int>(kept[0].second.data()[399]), 3);
}

// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// Ragged batching (scheduling/ragged.h): sizes from requests are checked before anything is
// allocated.

namespace {

RequestPtr RaggedRequest(Shape shape, std::vector<float>* storage) {
  auto r = std::make_unique<InferRequest>();
  const size_t n = static_cast<size_t>(ElementCount(shape));
  storage->assign(n == 0 ? 1 : n, 1.0f);
  r->inputs.emplace_back("IN", Tensor::View(DataType::kFp32, shape, storage->data(), n * 4, nullptr));
  r->batch_size = shape.empty() ? 1 : shape[0];
  return r;
}

}  // namespace

TEST(ragged_gather_flattens_and_checks_sizes) {
  std::vector<float> a(3, 1.0f), b(4, 2.0f);
  Tensor ta = Tensor::View(DataType::kFp32, Shape{1, 3}, a.data(), 12, nullptr);
  Tensor tb = Tensor::View(DataType::kFp32, Shape{1, 4}, b.data(), 16, nullptr);
  Tensor one = GatherRagged({&ta});
  CHECK(one.shape() == Shape{3});
  CHECK_EQ(one.data(), ta.data());  // a view, no copy
  Tensor both = GatherRagged({&ta, &tb});
  CHECK(both.shape() == Shape{7});
  CHECK_EQ(both.byte_size(), size_t{28});
  // Parts of another datatype, or missing, are refused before anything is copied.
  std::vector<int32_t> ints(3);
  Tensor other = Tensor::View(DataType::kInt32, Shape{1, 3}, ints.data(), 12, nullptr);
  CHECK_THROWS_CODE(GatherRagged({&ta, &other}), StatusCode::kInvalidArg);
  CHECK_THROWS_CODE(GatherRagged({&ta, nullptr}), StatusCode::kInvalidArg);
}

TEST(ragged_batch_inputs_and_scatter) {
  std::vector<float> s1, s2;
  std::vector<RequestPtr> owned;
  owned.push_back(RaggedRequest(Shape{1, 3}, &s1));
  owned.push_back(RaggedRequest(Shape{2, 2}, &s2));
  const std::vector<const InferRequest*> requests{owned[0].get(), owned[1].get()};
  BatchInputSpec spec;
  spec.target_names = {"X"};
  spec.source_input = "IN";
  spec.kind = BatchInputSpec::Kind::kAccumulatedElementCountWithZero;
  Tensor offsets = MakeBatchInput(spec, requests, 4);
  CHECK(offsets.shape() == Shape{3});
  const int32_t* o = reinterpret_cast<const int32_t*>(offsets.data());
  CHECK(o[0] == 0 && o[1] == 3 && o[2] == 7);
  spec.kind = BatchInputSpec::Kind::kItemShape;
  spec.dtype = DataType::kFp32;
  Tensor items = MakeBatchInput(spec, requests, 4);
  CHECK(items.shape() == (Shape{3, 1}));
  const float* f = reinterpret_cast<const float*>(items.data());
  CHECK(f[0] == 3 && f[1] == 2 && f[2] == 2);
  // More rows than the model batches: refused (bounds the item-shape tensor).
  CHECK_THROWS_CODE(MakeBatchInput(spec, requests, 1), StatusCode::kInvalidArg);
  spec.source_input = "MISSING";
  CHECK_THROWS_CODE(MakeBatchInput(spec, requests, 4), StatusCode::kInvalidArg);

  BatchOutputSpec out;
  out.target_names = {"OUT"};
  out.source_input = "IN";
  out.shape = {-1, -1};
  Tensor flat = Tensor::Allocate(DataType::kFp32, Shape{7});
  auto parts = ScatterWithInputShape("m", "OUT", out, flat, requests);
  CHECK(parts[0].shape() == (Shape{1, 3}) && parts[1].shape() == (Shape{2, 2}));
  CHECK_EQ(parts[1].data(), flat.data() + 12);
  Tensor short_output = Tensor::Allocate(DataType::kFp32, Shape{6});
  CHECK_THROWS_CODE(ScatterWithInputShape("m", "OUT", out, short_output, requests),
                    StatusCode::kInternal);
  out.shape = {-1, -1, -1};  // more variable dims than the input has
  CHECK_THROWS_CODE(ScatterWithInputShape("m", "OUT", out, flat, requests), StatusCode::kInternal);
}

// ---------------------------------------------------------------------------------------------
// Spinning only with a CPU to spare (util/spin_wait.h)

TEST(spin_cpu_max_parse) {
  CHECK_EQ(ParseCpuMax("max 100000\n"), 0.0);
  CHECK_EQ(ParseCpuMax("100000 100000\n"), 1.0);
  CHECK_EQ(ParseCpuMax("150000 100000"), 1.5);
  CHECK_EQ(ParseCpuMax("50000 100000"), 0.5);
  for (const char* bad : {"", "max", "100000", "x 100000", "100000 0", "-5 100000", "1e400 1",
                          "100000 -1", "12ab 100000"}) {
    CHECK_EQ(ParseCpuMax(bad), 0.0);
  }
}

TEST(spin_cgroup_quota_walks_up_and_takes_the_smallest) {
  char tmpl[] = "/tmp/tritonlite-cgroup-XXXXXX";
  const char* dir = mkdtemp(tmpl);
  CHECK(dir != nullptr);
  const std::string root = dir;
  auto write = [](const std::string& path, const std::string& text) {
    FILE* f = std::fopen(path.c_str(), "w");
    CHECK(f != nullptr);
    std::fputs(text.c_str(), f);
    std::fclose(f);
  };
  write(root + "/self", "0::/pod/ctr\n");
  CHECK_EQ(CgroupQuotaCpus(root, root + "/self"), 0.0);  // no cpu.max anywhere: no quota
  mkdir((root + "/pod").c_str(), 0700);
  mkdir((root + "/pod/ctr").c_str(), 0700);
  write(root + "/cpu.max", "max 100000\n");
  write(root + "/pod/ctr/cpu.max", "max 100000\n");
  CHECK_EQ(CgroupQuotaCpus(root, root + "/self"), 0.0);
  write(root + "/pod/cpu.max", "100000 100000\n");  // the parent's limit binds the child
  CHECK_EQ(CgroupQuotaCpus(root, root + "/self"), 1.0);
  write(root + "/pod/ctr/cpu.max", "50000 100000\n");
  CHECK_EQ(CgroupQuotaCpus(root, root + "/self"), 0.5);
  write(root + "/self", "garbage\n");  // no v2 line: the root's own cpu.max
  CHECK_EQ(CgroupQuotaCpus(root, root + "/self"), 0.0);
  mkdir((root + "/cpu").c_str(), 0700);  // cgroup v1
  write(root + "/cpu/cpu.cfs_quota_us", "200000\n");
  write(root + "/cpu/cpu.cfs_period_us", "100000\n");
  CHECK_EQ(CgroupQuotaCpus(root, root + "/self"), 2.0);
  write(root + "/cpu/cpu.cfs_quota_us", "-1\n");  // v1 unlimited
  CHECK_EQ(CgroupQuotaCpus(root, root + "/self"), 0.0);
  for (const char* f : {"/pod/ctr/cpu.max", "/pod/cpu.max", "/cpu.max", "/self",
                        "/cpu/cpu.cfs_quota_us", "/cpu/cpu.cfs_period_us"}) {
    std::remove((root + f).c_str());
  }
  for (const char* d : {"/pod/ctr", "/pod", "/cpu", ""}) rmdir((root + d).c_str());
}

TEST(spin_only_with_a_cpu_to_spare_unless_overridden) {
  CHECK_EQ(ResolveSpin(nullptr, 1).ns, 0u);
  CHECK_EQ(ResolveSpin(nullptr, 1.5).ns, 0u);
  CHECK_EQ(ResolveSpin(nullptr, 2).ns, kSpinBeforeBlockNs);
  CHECK_EQ(ResolveSpin("auto", 16).ns, kSpinBeforeBlockNs);
  CHECK_EQ(ResolveSpin("", 1).ns, 0u);
  CHECK_EQ(ResolveSpin("0", 16).ns, 0u);
  CHECK_EQ(ResolveSpin("30", 1).ns, 30000u);
  CHECK_EQ(ResolveSpin("1000000", 1).ns, 1000000000u);
  for (const char* bad : {"-1", "1000001", "5us", " 5", "on", "99999999999999999999999"}) {
    const SpinSetting s = ResolveSpin(bad, 1);
    CHECK(s.error.find("TRITONLITE_SPIN_US must be 'auto' or a whole number") == 0);
    CHECK_EQ(s.ns, 0u);  // falls back to the automatic choice
  }
  CHECK(ResolveSpin("on", 4).ns == kSpinBeforeBlockNs);
  // SpinUntil with no budget looks once and does not wait.
  int calls = 0;
  CHECK(!SpinUntil([&calls] { return ++calls > 5; }, 0));
  CHECK_EQ(calls, 1);
  CHECK(SpinUntil([&calls] { return ++calls > 5; }, 1000000000));
}

TEST(cpu_budget_override_and_inline_batches) {
  CHECK_EQ(ResolveCpuBudget(nullptr, 3).cpus, 3.0);
  CHECK_EQ(ResolveCpuBudget("", 3).cpus, 3.0);
  CHECK_EQ(ResolveCpuBudget("auto", 3).cpus, 3.0);
  CHECK_EQ(ResolveCpuBudget("1", 8).cpus, 1.0);
  CHECK_EQ(ResolveCpuBudget("0.5", 8).cpus, 0.5);
  CHECK_EQ(ResolveCpuBudget("2", 1).cpus, 2.0);
  CHECK(ResolveCpuBudget("2", 1).error.empty());
  for (const char* bad : {"0", "-1", "one", "1cpu", " 1", "nan", "inf", "0x10", "1e9", "65537"}) {
    const BudgetSetting b = ResolveCpuBudget(bad, 4);
    CHECK(b.error.find("TRITONLITE_CPU_BUDGET must be 'auto' or a number of CPUs") == 0);
    CHECK_EQ(b.cpus, 4.0);  // falls back to the measured budget
  }
  CHECK(ResolveInlineBatches(nullptr, 1).on);
  CHECK(ResolveInlineBatches("auto", 1.5).on);
  CHECK(!ResolveInlineBatches(nullptr, 2).on);
  CHECK(!ResolveInlineBatches("0", 1).on);
  CHECK(ResolveInlineBatches("1", 8).on);
  const InlineSetting bad = ResolveInlineBatches("yes", 8);
  CHECK(bad.error == "TRITONLITE_INLINE_BATCHES must be 'auto', '0' or '1', got 'yes'");
  CHECK(!bad.on);  // falls back to the automatic choice
  // Which batches: all below two CPUs or with "1", short ones from two CPUs, none with "0".
  CHECK(ResolveInlineBatches(nullptr, 1).mode == InlineBatches::kAll);
  CHECK(ResolveInlineBatches(nullptr, 2).mode == InlineBatches::kShort);
  CHECK(ResolveInlineBatches("auto", 16).mode == InlineBatches::kShort);
  CHECK(ResolveInlineBatches("1", 8).mode == InlineBatches::kAll);
  CHECK(ResolveInlineBatches("0", 8).mode == InlineBatches::kNone);
  CHECK(ResolveInlineBatches("0", 1).mode == InlineBatches::kNone);
  CHECK(bad.mode == InlineBatches::kShort);
  // What a short (per-request) batch is: 500 us unless TRITONLITE_INLINE_BATCH_US says.
  CHECK_EQ(ResolveInlineBatches(nullptr, 2).short_ns, 500'000u);
  CHECK_EQ(ResolveInlineBatches(nullptr, 2, "auto").short_ns, 500'000u);
  CHECK_EQ(ResolveInlineBatches(nullptr, 2, "0").short_ns, 0u);
  CHECK_EQ(ResolveInlineBatches(nullptr, 2, "100000").short_ns, 100'000'000u);
  CHECK(ResolveInlineBatches(nullptr, 2, "10000000").error.empty());
  for (const char* us : {"-1", "1.5", "abc", " 5", "10000001", "123456789", "1e3"}) {
    const InlineSetting b = ResolveInlineBatches(nullptr, 2, us);
    CHECK(b.error == std::string("TRITONLITE_INLINE_BATCH_US must be 'auto' or a whole number "
                                 "of microseconds up to 10000000, got '") + us + "'");
    CHECK_EQ(b.short_ns, 500'000u);  // falls back to the default
    CHECK(b.mode == InlineBatches::kShort);
  }
  // The budget drives the spin as before.
  CHECK_EQ(ResolveSpin(nullptr, ResolveCpuBudget("1", 8).cpus).ns, 0u);
  CHECK_EQ(ResolveSpin(nullptr, ResolveCpuBudget("2", 1).cpus).ns, kSpinBeforeBlockNs);
}

// ---------------------------------------------------------------------------------------------
// Per-request containers and wakeups of the transport (util/fifo.h, util/wakeup_queue.h)

TEST(fifo_order_compaction_and_iteration) {
  Fifo<std::string> q;
  CHECK(q.empty());
  Fifo<std::string> moved(std::move(q));  // empty: nothing to allocate or copy
  CHECK(moved.empty());
  for (int i = 0; i < 100; ++i) q.push_back(std::to_string(i));
  int expect = 0;
  for (int round = 0; round < 60; ++round) {  // pops past the compaction point, pushes between
    CHECK_EQ(q.front(), std::to_string(expect));
    q.pop_front();
    ++expect;
    if (round % 3 == 0) q.push_back(std::to_string(100 + round / 3));
  }
  CHECK_EQ(q.size(), 60u);
  std::vector<std::string> seen(q.begin(), q.end());
  CHECK_EQ(seen.size(), 60u);
  CHECK_EQ(seen.front(), "60");
  CHECK_EQ(seen.back(), "119");
  while (!q.empty()) q.pop_front();
  CHECK_EQ(q.size(), 0u);
  q.push_back("again");
  CHECK_EQ(q.front(), "again");
  q.clear();
  CHECK(q.empty());
}

bool Readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, 0) == 1;
}

TEST(wakeup_queue_defer_signals_until_the_scope_closes) {
  WakeupQueue<int> a, b;
  CHECK(a.Post(1));
  CHECK(Readable(a.fd()));  // no scope: signalled at once
  CHECK_EQ(a.Drain().size(), 1u);
  CHECK(!Readable(a.fd()));
  {
    DeferSignals outer;
    CHECK(a.Post(2));
    CHECK(b.Post(3));
    {
      DeferSignals inner;
      CHECK(a.Post(4));
    }
    CHECK(!Readable(a.fd()) && !Readable(b.fd()));  // held back until the outermost closes
  }
  CHECK(Readable(a.fd()) && Readable(b.fd()));
  CHECK_EQ(a.Drain().size(), 2u);
  CHECK_EQ(b.Drain().size(), 1u);
  std::thread other([&a] { a.Post(5); });  // another thread's posts are not held by our scope
  {
    DeferSignals scope;
    other.join();
    CHECK(Readable(a.fd()));
  }
}

TEST(wakeup_queue_drain_into_keeps_both_vectors_capacity) {
  WakeupQueue<int> q;
  std::vector<int> mine;
  mine.reserve(64);
  const int* storage = mine.data();
  CHECK(q.Post(1) && q.Post(2));
  CHECK(Readable(q.fd()));
  std::vector<int> got;
  q.DrainInto(&mine);  // the queue now posts into the storage `mine` had
  CHECK(!Readable(q.fd()));
  CHECK_EQ(mine.size(), 2u);
  CHECK(mine[0] == 1 && mine[1] == 2);
  got.swap(mine);
  CHECK(q.Post(3));
  q.TakeQueuedInto(&mine);
  CHECK_EQ(mine.size(), 1u);
  CHECK(mine[0] == 3 && mine.data() == storage && mine.capacity() >= 64u);
  CHECK(Readable(q.fd()));  // TakeQueuedInto leaves the signal
  mine.clear();
  q.DrainInto(&mine);
  CHECK(mine.empty() && !Readable(q.fd()));
}

TEST(wakeup_queue_consumer_posting_does_not_signal) {
  WakeupQueue<int> q, other;
  {
    ConsumerPosting self(&q);
    CHECK(q.Post(1));
    CHECK(q.Post(2));
    CHECK(other.Post(3));  // only the named queue goes unsignalled
    CHECK(!Readable(q.fd()));
    CHECK(Readable(other.fd()));
    std::thread poster([&q] { q.Post(4); });  // another thread's post signals as usual
    poster.join();
    CHECK(Readable(q.fd()));
  }
  CHECK_EQ(q.TakeQueued().size(), 3u);  // the signal stays: the next Drain clears it
  CHECK(Readable(q.fd()));
  CHECK_EQ(q.Drain().size(), 0u);
  CHECK(!Readable(q.fd()));
  {
    ConsumerPosting self(&q);
    DeferSignals deferred;  // nothing to defer for the consumer's own posts
    CHECK(q.Post(5));
  }
  CHECK(!Readable(q.fd()));
  CHECK_EQ(q.TakeQueued().size(), 1u);
  CHECK(q.Post(6));  // outside the scope: signalled
  CHECK(Readable(q.fd()));
}

int main(int argc, char** argv) {
  const std::string filter = argc > 1 ? argv[1] : "";
  int failed = 0, run = 0;
  for (const TestCase& t : Registry()) {
    if (!filter.empty() && std::string(t.name).find(filter) == std::string::npos) continue;
    ++run;
    try {
      t.fn();
      std::printf("ok   %s\n", t.name);
    } catch (const std::exception& e) {
      ++failed;
      std::printf("FAIL %s: %s\n", t.name, e.what());
    } catch (...) {
      ++failed;
      std::printf("FAIL %s: unknown exception\n", t.name);
    }
  }
  std::printf("%d tests, %d failed\n", run, failed);
  return failed == 0 && run > 0 ? 0 : 1;
}
