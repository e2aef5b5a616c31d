// ResponseCache: Triton's "local" response cache. Successful responses of cacheable requests,
// keyed by everything that determines them (model, version, inputs, requested outputs,
// parameters), kept in LRU order within a byte budget. One cache per server, shared by every
// model version whose config enables response_cache.
//
// Keys are compared byte for byte: a hit is never another request's answer. The hash table is
// keyed with a random SipHash key, so clients cannot aim many keys at one bucket.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/request.h"

namespace tritonlite {

// SipHash-c-d with a 128-bit key; the table uses SipHash-1-3 (as Rust's HashMap does).
uint64_t SipHash(int c_rounds, int d_rounds, uint64_t k0, uint64_t k1, const void* data,
                 size_t size);
inline uint64_t SipHash13(uint64_t k0, uint64_t k1, const void* data, size_t size) {
  return SipHash(1, 3, k0, k1, data, size);
}

class ResponseCache {
 public:
  struct Usage {
    size_t byte_budget = 0;
    size_t bytes = 0;  // charged bytes of the entries held now
    size_t entries = 0;
    uint64_t lookups = 0, hits = 0, misses = 0, insertions = 0, evictions = 0;
    uint64_t lookup_ns = 0, insertion_ns = 0;
  };

  explicit ResponseCache(size_t byte_budget);
  ResponseCache(const ResponseCache&) = delete;
  ResponseCache& operator=(const ResponseCache&) = delete;

  // The cache key of `request` to model `model` version `version`, or nullopt when the request
  // must not be cached: it belongs to a sequence, or an input is not in host memory.
  static std::optional<std::string> Key(const std::string& model, int64_t version,
                                        const InferRequest& request);

  // On a hit, `outputs` receives read-only views over the cached response (kept alive by the
  // views even if the entry is evicted) and the entry becomes the most recently used.
  bool Lookup(const std::string& key, NamedTensors* outputs);
  // Stores a copy of `outputs` under `key`, evicting least recently used entries to make room.
  // Returns false (nothing stored) when an output is not in host memory, the entry alone is
  // larger than the budget, or the key is already held.
  bool Insert(const std::string& key, const NamedTensors& outputs);

  Usage usage() const;

 private:
  struct Outputs;  // one response's tensors in one buffer
  struct Entry {
    std::string key;
    std::shared_ptr<const Outputs> outputs;
    size_t charge = 0;
  };
  struct KeyHash {
    uint64_t k0, k1;
    size_t operator()(std::string_view s) const {
      return static_cast<size_t>(SipHash13(k0, k1, s.data(), s.size()));
    }
  };
  using Lru = std::list<Entry>;  // front: most recently used

  const size_t byte_budget_;
  mutable std::mutex mu_;
  Lru lru_;
  // Keys view the entries' own key strings (list nodes never move).
  std::unordered_map<std::string_view, Lru::iterator, KeyHash> index_;
  Usage usage_;
};

}  // namespace tritonlite
