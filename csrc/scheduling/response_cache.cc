#include "scheduling/response_cache.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <utility>
#include <vector>

#include "util/checked_math.h"

namespace tritonlite {

// ---------------------------------------------------------------------------------------------
// SipHash-c-d (Aumasson & Bernstein): c compression rounds per word, d finalization rounds.

namespace {

inline uint64_t Rotl(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

inline void SipRound(uint64_t& v0, uint64_t& v1, uint64_t& v2, uint64_t& v3) {
  v0 += v1; v1 = Rotl(v1, 13); v1 ^= v0; v0 = Rotl(v0, 32);
  v2 += v3; v3 = Rotl(v3, 16); v3 ^= v2;
  v0 += v3; v3 = Rotl(v3, 21); v3 ^= v0;
  v2 += v1; v1 = Rotl(v1, 17); v1 ^= v2; v2 = Rotl(v2, 32);
}

inline uint64_t LoadLe64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

uint64_t SipHash(int c_rounds, int d_rounds, uint64_t k0, uint64_t k1, const void* data,
                 size_t size) {
  const auto* in = static_cast<const uint8_t*>(data);
  uint64_t v0 = 0x736f6d6570736575ULL ^ k0;
  uint64_t v1 = 0x646f72616e646f6dULL ^ k1;
  uint64_t v2 = 0x6c7967656e657261ULL ^ k0;
  uint64_t v3 = 0x7465646279746573ULL ^ k1;
  const size_t whole = size - size % 8;
  for (size_t i = 0; i < whole; i += 8) {
    const uint64_t m = LoadLe64(in + i);
    v3 ^= m;
    for (int r = 0; r < c_rounds; ++r) SipRound(v0, v1, v2, v3);
    v0 ^= m;
  }
  uint64_t last = static_cast<uint64_t>(size & 0xff) << 56;
  for (size_t i = 0; i < size % 8; ++i) last |= static_cast<uint64_t>(in[whole + i]) << (8 * i);
  v3 ^= last;
  for (int r = 0; r < c_rounds; ++r) SipRound(v0, v1, v2, v3);
  v0 ^= last;
  v2 ^= 0xff;
  for (int r = 0; r < d_rounds; ++r) SipRound(v0, v1, v2, v3);
  return v0 ^ v1 ^ v2 ^ v3;
}

// ---------------------------------------------------------------------------------------------
// Cached outputs: one 64-byte-aligned buffer, each tensor at an aligned offset.

struct ResponseCache::Outputs {
  struct Item {
    std::string name;
    DataType dtype;
    Shape shape;
    size_t offset;
    size_t size;
  };
  std::vector<Item> items;
  uint8_t* data = nullptr;
  size_t capacity = 0;
  ~Outputs() { std::free(data); }
};

namespace {

constexpr size_t kAlign = 64;
// What an entry costs beyond its key and tensor bytes: list and table nodes, the Outputs
// object; per tensor its name, shape and padding.
constexpr size_t kEntryOverhead = 160;
constexpr size_t kTensorOverhead = 96;

void Append(std::string* key, const void* data, size_t size) {
  key->append(static_cast<const char*>(data), size);
}
template <typename T>
void AppendInt(std::string* key, T value) {
  Append(key, &value, sizeof(value));
}
void AppendString(std::string* key, const std::string& s) {
  AppendInt<uint64_t>(key, s.size());
  key->append(s);
}

uint64_t SteadyNs() { return NowNs(); }

// Sizes saturate: an impossible total is simply too large to cache.
size_t Add(size_t a, size_t b) {
  size_t out = 0;
  return CheckedAdd(a, b, &out) ? out : SIZE_MAX;
}
size_t RoundUp(size_t n, size_t align) { return Add(n, align - 1) / align * align; }

}  // namespace

ResponseCache::ResponseCache(size_t byte_budget) : byte_budget_(byte_budget) {
  std::random_device rd;
  const uint64_t k0 = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  const uint64_t k1 = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  index_ = decltype(index_)(16, KeyHash{k0, k1});
  usage_.byte_budget = byte_budget;
}

std::optional<std::string> ResponseCache::Key(const std::string& model, int64_t version,
                                              const InferRequest& request) {
  if (request.correlation_id != 0 || !request.correlation_id_str.empty()) return std::nullopt;
  std::vector<const std::pair<std::string, Tensor>*> inputs;
  inputs.reserve(request.inputs.size());
  size_t bytes = 0;
  for (const auto& kv : request.inputs) {
    if (kv.second.device().kind != DeviceKind::kCPU) return std::nullopt;
    inputs.push_back(&kv);
    bytes = Add(bytes, kv.second.byte_size());
  }
  std::sort(inputs.begin(), inputs.end(),
            [](const auto* a, const auto* b) { return a->first < b->first; });
  std::vector<const std::string*> outputs;
  outputs.reserve(request.requested_outputs.size());
  for (const std::string& name : request.requested_outputs) outputs.push_back(&name);
  std::sort(outputs.begin(), outputs.end(),
            [](const std::string* a, const std::string* b) { return *a < *b; });

  // Every field length-prefixed: two different requests never serialize alike.
  std::string key;
  key.reserve(Add(bytes, 64 + model.size() + request.parameters.size() +
                             64 * (inputs.size() + outputs.size())));
  AppendString(&key, model);
  AppendInt<int64_t>(&key, version);
  AppendString(&key, request.parameters);
  AppendInt<uint64_t>(&key, inputs.size());
  for (const auto* kv : inputs) {
    const Tensor& t = kv->second;
    AppendString(&key, kv->first);
    AppendInt<uint8_t>(&key, static_cast<uint8_t>(t.dtype()));
    AppendInt<uint64_t>(&key, t.shape().size());
    for (int64_t d : t.shape()) AppendInt<int64_t>(&key, d);
    AppendInt<uint64_t>(&key, t.byte_size());
    if (t.byte_size() > 0) Append(&key, t.data(), t.byte_size());
  }
  AppendInt<uint64_t>(&key, outputs.size());
  for (const std::string* name : outputs) AppendString(&key, *name);
  return key;
}

bool ResponseCache::Lookup(const std::string& key, NamedTensors* outputs) {
  const uint64_t start = SteadyNs();
  std::shared_ptr<const Outputs> found;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++usage_.lookups;
    auto it = index_.find(std::string_view(key));
    if (it == index_.end()) {
      ++usage_.misses;
    } else {
      ++usage_.hits;
      lru_.splice(lru_.begin(), lru_, it->second);
      found = it->second->outputs;
    }
  }
  if (found != nullptr) {
    outputs->clear();
    outputs->reserve(found->items.size());
    std::shared_ptr<const void> owner = found;
    for (const Outputs::Item& item : found->items) {
      Tensor t = Tensor::View(item.dtype, item.shape, found->data + item.offset, item.size, owner);
      t.set_read_only();
      outputs->emplace_back(item.name, std::move(t));
    }
  }
  const uint64_t took = SteadyNs() - start;
  std::lock_guard<std::mutex> lock(mu_);
  usage_.lookup_ns += took;
  return found != nullptr;
}

bool ResponseCache::Insert(const std::string& key, const NamedTensors& outputs) {
  const uint64_t start = SteadyNs();
  // Size and build the entry outside the lock.
  size_t charge = Add(kEntryOverhead, key.size());
  size_t capacity = 0;
  for (const auto& kv : outputs) {
    if (!kv.second.defined() || kv.second.device().kind != DeviceKind::kCPU) return false;
    capacity = Add(RoundUp(capacity, kAlign), kv.second.byte_size());
    charge = Add(charge, Add(kTensorOverhead, kv.first.size()));
    charge = Add(charge, kv.second.shape().size() * sizeof(int64_t));
  }
  capacity = RoundUp(std::max<size_t>(capacity, 1), kAlign);
  charge = Add(charge, capacity);
  if (charge > byte_budget_) return false;

  auto entry_outputs = std::make_shared<Outputs>();
  entry_outputs->data = static_cast<uint8_t*>(std::aligned_alloc(kAlign, capacity));
  if (entry_outputs->data == nullptr) return false;
  entry_outputs->capacity = capacity;
  size_t offset = 0;
  entry_outputs->items.reserve(outputs.size());
  for (const auto& kv : outputs) {
    const Tensor& t = kv.second;
    offset = RoundUp(offset, kAlign);
    if (t.byte_size() > 0) std::memcpy(entry_outputs->data + offset, t.data(), t.byte_size());
    entry_outputs->items.push_back(Outputs::Item{kv.first, t.dtype(), t.shape(), offset, t.byte_size()});
    offset += t.byte_size();
  }
  Lru evicted;  // released after unlocking
  bool stored = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (index_.find(std::string_view(key)) == index_.end()) {
      while (usage_.bytes + charge > byte_budget_ && !lru_.empty()) {
        auto last = std::prev(lru_.end());
        index_.erase(std::string_view(last->key));
        usage_.bytes -= last->charge;
        ++usage_.evictions;
        evicted.splice(evicted.end(), lru_, last);
      }
      lru_.push_front(Entry{key, std::move(entry_outputs), charge});
      index_.emplace(std::string_view(lru_.front().key), lru_.begin());
      usage_.bytes += charge;
      ++usage_.insertions;
      stored = true;
    }
    usage_.entries = lru_.size();
    usage_.insertion_ns += SteadyNs() - start;
  }
  return stored;
}

ResponseCache::Usage ResponseCache::usage() const {
  std::lock_guard<std::mutex> lock(mu_);
  return usage_;
}

}  // namespace tritonlite
