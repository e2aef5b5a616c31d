"""The tuner's search: which configurations to try, and measuring one.

Owns: ``Knobs`` (the settings swept: instance count, max batch size, preferred batch size,
dynamic-batching queue delay, onnxruntime intra-op threads), turning knobs into a
``ModelConfig`` (``apply``), the neighbours of a configuration (``neighbours``: one knob
changed at a time, a coordinate search like Model Analyzer's quick mode), and ``measure``: one
configuration loaded into an in-process ``Server`` (explicit model control, a JSON config
override, as the load API takes it) and driven by the core's closed-loop generator
(``_core.closed_loop``: C++ re-submits each request as the previous one completes, no Python on
the request path) at increasing concurrency until the p99 latency passes the budget at two
levels in a row.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from google.protobuf import json_format

from .. import _core
from ..datatypes import to_numpy
from ..errors import INVALID_ARG, TritonError


@dataclass(frozen=True)
class Knobs:
    """One configuration's settings (None: as the model's own config has it)."""

    instances: int = 1
    max_batch_size: int = 0
    preferred_batch_size: int | None = None
    queue_delay_us: int | None = None  # None: no dynamic batching
    intra_op_threads: int | None = None  # onnxruntime only; None: the backend's default

    def label(self) -> str:
        parts = [f"inst={self.instances}", f"mbs={self.max_batch_size}"]
        if self.queue_delay_us is None:
            parts.append("no-dyn-batch")
        else:
            parts.append(f"delay={self.queue_delay_us}us")
            if self.preferred_batch_size:
                parts.append(f"pref={self.preferred_batch_size}")
        if self.intra_op_threads is not None:
            parts.append(f"intra={self.intra_op_threads}")
        return " ".join(parts)


@dataclass
class Point:
    """One concurrency level of one configuration."""

    concurrency: int
    throughput: float  # inferences/s
    p50_ms: float
    p99_ms: float
    completed: int
    errors: int
    batch_sizes: dict[int, int] = field(default_factory=dict)  # executions by batch size


@dataclass
class Trial:
    """One configuration measured: its points, and its throughput within the p99 budget."""

    knobs: Knobs
    points: list[Point]
    error: str = ""

    def best_point(self, p99_ms: float) -> Point | None:
        ok = [p for p in self.points if p.p99_ms <= p99_ms and p.errors == 0 and p.completed]
        return max(ok, key=lambda p: p.throughput) if ok else None

    def throughput_at(self, p99_ms: float) -> float:
        p = self.best_point(p99_ms)
        return p.throughput if p is not None else 0.0

    def to_json(self, p99_ms: float) -> dict[str, Any]:
        best = self.best_point(p99_ms)
        return {
            "label": self.knobs.label(),
            "knobs": asdict(self.knobs),
            "throughput_at_budget": self.throughput_at(p99_ms),
            "best_concurrency": best.concurrency if best else None,
            "points": [asdict(p) for p in self.points],
            "error": self.error,
        }


def is_onnxruntime(config: Any) -> bool:
    return config.backend == "onnxruntime" or config.platform == "onnxruntime_onnx"


def knobs_of(config: Any) -> Knobs:
    """The knobs a config has now."""
    instances = sum(max(1, g.count) for g in config.instance_group) or 1
    batching = config.HasField("dynamic_batching")
    preferred = list(config.dynamic_batching.preferred_batch_size) if batching else []
    intra = None
    if "intra_op_thread_count" in config.parameters:
        try:
            intra = int(config.parameters["intra_op_thread_count"].string_value)
        except ValueError:
            intra = None
    return Knobs(
        instances=instances,
        max_batch_size=int(config.max_batch_size),
        preferred_batch_size=max(preferred) if preferred else None,
        queue_delay_us=int(config.dynamic_batching.max_queue_delay_microseconds)
        if batching else None,
        intra_op_threads=intra,
    )  # fmt: skip


def apply(config: Any, knobs: Knobs) -> Any:
    """A copy of ``config`` with ``knobs`` set."""
    out = type(config)()
    out.CopyFrom(config)
    if out.instance_group:
        del out.instance_group[1:]
        out.instance_group[0].count = knobs.instances
    else:
        out.instance_group.add(count=knobs.instances)
    out.max_batch_size = knobs.max_batch_size
    if knobs.queue_delay_us is None or knobs.max_batch_size == 0:
        out.ClearField("dynamic_batching")
    else:
        out.dynamic_batching.SetInParent()  # present even with every field at its default
        out.dynamic_batching.max_queue_delay_microseconds = knobs.queue_delay_us
        del out.dynamic_batching.preferred_batch_size[:]
        if knobs.preferred_batch_size:
            out.dynamic_batching.preferred_batch_size.append(knobs.preferred_batch_size)
    if knobs.intra_op_threads is None:
        if "intra_op_thread_count" in out.parameters:
            del out.parameters["intra_op_thread_count"]
    else:
        out.parameters["intra_op_thread_count"].string_value = str(knobs.intra_op_threads)
    return out


@dataclass(frozen=True)
class Space:
    """The values each knob may take."""

    instances: Sequence[int] = (1, 2, 4)
    queue_delay_us: Sequence[int] = (0, 100, 500, 2000)
    max_batch_sizes: Sequence[int] = ()  # () : powers of two up to the model's
    preferred: bool = True
    intra_op_threads: Sequence[int] = (1, 2)


def neighbours(base: Knobs, original: Knobs, space: Space, onnx: bool) -> Iterator[Knobs]:
    """Configurations one knob away from ``base``, most promising knobs first."""
    if original.max_batch_size > 0:
        for d in space.queue_delay_us:
            yield replace(base, queue_delay_us=d)
        if base.queue_delay_us is not None and space.preferred:
            for p in _powers(base.max_batch_size):
                if p >= 4:
                    yield replace(base, preferred_batch_size=p)
            yield replace(base, preferred_batch_size=None)
    for n in space.instances:
        yield replace(base, instances=n)
    if original.max_batch_size > 0:
        for m in space.max_batch_sizes or _powers(original.max_batch_size):
            if 0 < m <= original.max_batch_size and m >= 4:
                pref = base.preferred_batch_size
                pref = pref if pref and pref <= m else None
                yield replace(base, max_batch_size=m, preferred_batch_size=pref)
    if onnx:
        for t in (*space.intra_op_threads, None):
            yield replace(base, intra_op_threads=t)


def _powers(limit: int) -> list[int]:
    out, p = [], 1
    while p < limit:
        out.append(p)
        p *= 2
    return [*out, limit] if limit > 0 else []


def concurrency_levels(low: int, high: int, steps: int) -> list[int]:
    """``steps`` levels from ``low`` to ``high``, spread geometrically (distinct integers)."""
    if low < 1 or high < low:
        raise TritonError(f"invalid concurrency range {low}:{high}", INVALID_ARG)
    if steps <= 1 or low == high:
        return [high] if steps <= 1 else [low]
    ratio = (high / low) ** (1 / (steps - 1))
    levels = sorted({max(low, min(high, round(low * ratio**i))) for i in range(steps)})
    return levels


def sample_inputs(config: Any) -> dict[str, np.ndarray]:
    """One request's inputs for ``config``: batch 1, variable dims 1, random values."""
    rng = np.random.default_rng(0)
    out: dict[str, np.ndarray] = {}
    for inp in config.input:
        name = _pb_type_name(config, inp.data_type)
        if name in ("BYTES", "STRING"):
            raise TritonError(
                f"tritonlite tune: model '{config.name}' input '{inp.name}' is BYTES; only "
                "numeric inputs can be generated",
                INVALID_ARG,
            )
        dtype = to_numpy(name)
        shape = [1 if d < 0 else int(d) for d in inp.dims]
        if config.max_batch_size > 0:
            shape = [1, *shape]
        if dtype.kind == "f":
            out[inp.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind == "b":
            out[inp.name] = rng.integers(0, 2, shape).astype(dtype)
        else:
            out[inp.name] = rng.integers(0, 8, shape).astype(dtype)
    return out


def _pb_type_name(config: Any, value: int) -> str:
    enum = config.DESCRIPTOR.fields_by_name["input"].message_type.fields_by_name["data_type"]
    return str(enum.enum_type.values_by_number[value].name).removeprefix("TYPE_")


def _batch_counts(stats: dict[str, Any]) -> dict[int, int]:
    return {
        int(b["batch_size"]): int(b.get("compute_infer", {}).get("count", 0))
        for b in stats.get("batch_stats", [])
    }


def measure(
    server: Any,
    name: str,
    config: Any,
    knobs: Knobs,
    levels: Sequence[int],
    seconds: float,
    p99_ms: float,
    deadline: float,
) -> Trial:
    """Load ``config`` with ``knobs`` into ``server`` and measure it at each of ``levels``
    (stopping after two in a row whose p99 is over ``p99_ms``, or at ``deadline``). The
    trial's knobs are those of the config as loaded (auto-completed)."""
    candidate = apply(config, knobs)
    try:
        server.load_model(name, config=json_format.MessageToJson(candidate))
        loaded = server.get_model(name)
    except TritonError as e:
        return Trial(knobs, [], f"load failed: {e.message}")
    # What was loaded: auto-complete may fill in a knob left unset (onnxruntime's preferred
    # batch size is the max batch size when none is given).
    knobs = knobs_of(loaded.config)
    inputs = sample_inputs(loaded.config)
    points: list[Point] = []
    _core.closed_loop(loaded.runner, inputs, 1, min(0.2, seconds / 4))  # warm-up
    for c in levels:
        if time.monotonic() + seconds > deadline and points:
            break
        before = _batch_counts(server.statistics(name)[0])
        r = _core.closed_loop(loaded.runner, inputs, c, seconds)
        after = _batch_counts(server.statistics(name)[0])
        lat = np.asarray(r["latencies_ns"], dtype=np.float64) / 1e6
        points.append(
            Point(
                concurrency=c,
                throughput=r["completed"] / max(1e-9, r["elapsed_s"]),  # batch-1 requests
                p50_ms=float(np.percentile(lat, 50)) if lat.size else float("inf"),
                p99_ms=float(np.percentile(lat, 99)) if lat.size else float("inf"),
                completed=int(r["completed"]),
                errors=int(r["errors"]),
                batch_sizes={
                    k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0) > 0
                },  # fmt: skip
            )
        )
        if len(points) >= 2 and min(p.p99_ms for p in points[-2:]) > p99_ms:
            break  # two levels in a row over the budget (one may be a passing hiccup)
    return Trial(knobs, points)
