"""The response cache's settings and what it reports (the cache itself is in the C++ core).

Owns: Triton's ``--cache-config <cache>,<key>=<value>`` (and the older
``--response-cache-byte-size N``) as ``{"local": {"size": "N"}}``, checked with clear errors;
``create_cache`` making the core's ``ResponseCache`` from it; and the ``nv_cache_*`` metric
values (per model from the statistics, server-wide from the cache's own counters).

Only Triton's ``local`` cache exists here (an LRU within ``size`` bytes in the server's memory);
``redis`` and any other cache are refused by name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from . import _core
from .errors import INVALID_ARG, TritonError

#: Settings of the local cache: its byte budget.
LOCAL_KEYS = frozenset({"size"})


def parse_cache_config(
    values: Sequence[str], byte_size: int | None = None
) -> dict[str, dict[str, str]]:
    """``--cache-config`` values (and ``--response-cache-byte-size``) as a cache config mapping.
    Raises ValueError naming what is malformed."""
    out: dict[str, dict[str, str]] = {}
    if byte_size is not None:
        out.setdefault("local", {})["size"] = str(byte_size)
    for text in values:
        cache, comma, setting = text.partition(",")
        key, eq, value = setting.partition("=")
        if not comma or not eq or not cache or not key:
            raise ValueError(f"--cache-config '{text}': expected <cache>,<setting>=<value>")
        out.setdefault(cache, {})[key] = value
    return out


def create_cache(config: Mapping[str, Mapping[str, str]] | None) -> Any:
    """The core cache for a cache config (``None``/empty: no cache). Raises TritonError
    (INVALID_ARG) for a cache other than ``local``, an unknown setting or a bad size."""
    if not config:
        return None
    for name in config:
        if name != "local":
            raise TritonError(
                f"cache '{name}' is not available in tritonlite: only 'local' is "
                "(--cache-config local,size=<bytes>)",
                INVALID_ARG,
            )
    settings = dict(config["local"])
    unknown = sorted(set(settings) - LOCAL_KEYS)
    if unknown:
        raise TritonError(
            f"--cache-config local,{unknown[0]}=...: setting '{unknown[0]}' is not supported "
            "(the local cache takes: size)",
            INVALID_ARG,
        )
    size = str(settings.get("size", "")).strip()
    if not size.isdigit() or int(size) >= 2**63:
        raise TritonError(
            f"--cache-config local,size={size}: size must be a number of bytes", INVALID_ARG
        )
    return _core.ResponseCache(int(size))


# ---- metrics -----------------------------------------------------------------------------------

#: Per model (labels model, version), from the statistics: (name, help, stat, field, unit div).
MODEL_FAMILIES = (
    ("nv_cache_num_hits_per_model", "Number of cache hits per model", "cache_hit", "count", 1),
    ("nv_cache_hit_duration_per_model",
     "Total cache hit duration per model, in microseconds", "cache_hit", "ns", 1000),
    ("nv_cache_num_misses_per_model", "Number of cache misses per model", "cache_miss", "count", 1),
    ("nv_cache_miss_duration_per_model",
     "Total cache miss (insert+lookup) duration per model, in microseconds", "cache_miss", "ns",
     1000),
)  # fmt: skip


def server_gauges(usage: Mapping[str, int]) -> list[tuple[str, str, float]]:
    """Triton's server-wide cache gauges (name, help, value) from ``ResponseCache.usage()``."""
    budget = usage["byte_size"]
    return [
        ("nv_cache_util", "Cache utilization [0.0 - 1.0]",
         usage["bytes"] / budget if budget else 0.0),
        ("nv_cache_num_entries", "Number of responses stored in response cache", usage["entries"]),
        ("nv_cache_num_hits", "Number of cache hits in response cache", usage["hits"]),
        ("nv_cache_num_misses", "Number of cache misses in response cache", usage["misses"]),
        ("nv_cache_num_lookups", "Number of cache lookups in response cache", usage["lookups"]),
        ("nv_cache_num_evictions", "Number of cache evictions in response cache",
         usage["evictions"]),
        ("nv_cache_lookup_duration",
         "Total cache lookup duration (hit and miss), in microseconds", usage["lookup_ns"] // 1000),
        ("nv_cache_insertion_duration", "Total cache insertion duration, in microseconds",
         usage["insertion_ns"] // 1000),
    ]  # fmt: skip
