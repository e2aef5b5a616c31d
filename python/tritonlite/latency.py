"""Latency distributions from the core's fixed-bucket histograms.

Owns: the arithmetic on the ``latency_histograms`` of ``Server.statistics(histograms=True)``
(bucket counts per model version for ``request``, ``queue``, ``compute_input``, ``compute_infer`` and
``compute_output``; upper bounds in microseconds from ``_core.latency_bounds_us()``, on a
1-1.2-1.5-2-2.5-3-4-5-6-8 grid per decade from 1 us to 100 s, plus one bucket above):

- ``quantile(counts, q)``: a percentile estimated by linear interpolation inside its bucket
  (bounds are at most 25% apart, so the estimate is within that of the true value);
- ``percentiles(stats)``: p50/p90/p99 (ms) of each kind for one model version, what the
  dashboard and ``tritonlite tune`` read;
- ``prometheus_buckets(counts)``: the cumulative ``le`` counts on the coarser 1-2.5-5 grid of
  ``EXPORT_BOUNDS_US`` (10 us .. 10 s) that the ``*_histogram_us`` metric families expose;
- ``parse_quantiles(text)``: Triton's ``summary_quantiles=<q>:<error>,...`` value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from . import _core

#: The core's bucket upper bounds (us); a histogram has one more count, above the last.
BOUNDS_US: tuple[float, ...] = tuple(float(b) for b in _core.latency_bounds_us())

#: What the histograms time, in the core's order.
KINDS = ("request", "queue", "compute_input", "compute_infer", "compute_output")

#: The ``le`` bounds (us) of the exported Prometheus histograms: 1-2.5-5 per decade, 10 us..10 s
#: (Prometheus' default buckets, 5 ms..10 s, extended down to where an in-process model lives).
EXPORT_BOUNDS_US: tuple[int, ...] = tuple(
    d * m // 10 for d in (10, 100, 1_000, 10_000, 100_000, 1_000_000) for m in (10, 25, 50)
) + (10_000_000,)

#: Triton's default summary quantiles (quantile, allowed error).
DEFAULT_QUANTILES: tuple[tuple[float, float], ...] = (
    (0.5, 0.05), (0.9, 0.01), (0.95, 0.001), (0.99, 0.001), (0.999, 0.000001),
)  # fmt: skip

_EXPORT_INDEX = tuple(BOUNDS_US.index(float(b)) for b in EXPORT_BOUNDS_US)


def empty() -> list[int]:
    return [0] * (len(BOUNDS_US) + 1)


def subtract(now: Sequence[int], before: Sequence[int]) -> list[int]:
    """Counts observed between two readings of the same histogram."""
    return [max(0, a - b) for a, b in zip(now, before)]


def quantile(counts: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile (0..1) in microseconds, interpolated inside its bucket; None without
    observations. Observations above the last bound count as the last bound."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = min(max(q, 0.0), 1.0) * total
    seen = 0
    for i, c in enumerate(counts):
        if c and seen + c >= rank:
            if i >= len(BOUNDS_US):
                return float(BOUNDS_US[-1])
            low = 0.0 if i == 0 else float(BOUNDS_US[i - 1])
            high = float(BOUNDS_US[i])
            return low + (high - low) * max(0.0, rank - seen) / c
        seen += c
    return float(BOUNDS_US[-1])


def percentiles(
    stats: Mapping[str, Any], qs: Sequence[float] = (0.5, 0.9, 0.99)
) -> dict[str, dict[str, float | None]]:
    """``{kind: {"p50": ms, ...}}`` for one model version's statistics (None: no requests)."""
    out: dict[str, dict[str, float | None]] = {}
    hists = stats.get("latency_histograms", {})
    for kind in KINDS:
        counts = hists.get(kind, ())
        row: dict[str, float | None] = {}
        for q in qs:
            us = quantile(counts, q) if counts else None
            row[f"p{q * 100:g}"] = None if us is None else us / 1000.0
        out[kind] = row
    return out


def prometheus_buckets(counts: Sequence[int]) -> list[tuple[str, int]]:
    """``[(le, cumulative count), ..., ("+Inf", total)]`` on ``EXPORT_BOUNDS_US``."""
    out: list[tuple[str, int]] = []
    running = 0
    start = 0
    for bound, index in zip(EXPORT_BOUNDS_US, _EXPORT_INDEX):
        running += sum(counts[start : index + 1])
        start = index + 1
        out.append((str(bound), running))
    out.append(("+Inf", running + sum(counts[start:])))
    return out


def parse_quantiles(text: str) -> tuple[tuple[float, float], ...]:
    """Triton's ``summary_quantiles`` value, ``<quantile>:<error>[,...]`` (quotes and spaces
    allowed), as (quantile, error) pairs; ValueError naming what is wrong."""
    pairs: list[tuple[float, float]] = []
    for item in text.strip().strip("\"'").replace(" ", ",").split(","):
        if not item:
            continue
        q_text, sep, e_text = item.partition(":")
        if not sep:
            raise ValueError(f"'{item}' has no ':' (expected <quantile>:<error>)")
        try:
            q, e = float(q_text), float(e_text)
        except ValueError:
            raise ValueError(f"'{item}' is not <quantile>:<error> with two numbers") from None
        if not 0.0 <= q <= 1.0 or not 0.0 <= e <= 1.0:
            raise ValueError(f"'{item}': quantile and error must be within [0, 1]")
        pairs.append((q, e))
    if not pairs:
        raise ValueError("no quantiles given (expected <quantile>:<error>[,...])")
    return tuple(pairs)
