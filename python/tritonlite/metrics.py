"""Prometheus metrics with Triton's names, labels and help texts, and the endpoint serving them.

Owns: the ``/metrics`` text exposition (Prometheus text format 0.0.4) and its HTTP listener,
started with ``await start_metrics(server, host, port)`` on the caller's event loop.

Families (per model version, labels ``model`` and ``version``), computed from
``server.statistics()`` at every scrape, so they are exact:

- counters ``nv_inference_request_success``, ``nv_inference_request_failure`` (with Triton's
  ``reason`` label: BACKEND, CANCELED, REJECTED, OTHER), ``nv_inference_count``,
  ``nv_inference_exec_count``, ``nv_inference_request_duration_us``,
  ``nv_inference_queue_duration_us``, ``nv_inference_compute_input_duration_us``,
  ``nv_inference_compute_infer_duration_us``, ``nv_inference_compute_output_duration_us``;
- gauge ``nv_inference_pending_request_count``;
- a model's config ``metric_tags`` become labels ``_<key>="<value>"`` on its families, as in
  Triton;
- with a response cache (``--cache-config``): ``nv_cache_num_hits_per_model``,
  ``nv_cache_hit_duration_per_model``, ``nv_cache_num_misses_per_model``,
  ``nv_cache_miss_duration_per_model`` for the versions that use it, and the server-wide gauges
  of ``response_cache.server_gauges``;
- with ``summary_latencies=True`` (Triton's ``--metrics-config summary_latencies=true``) the
  summaries ``nv_inference_{request,queue,compute_input,compute_infer,compute_output}_summary_us``
  with their ``_count`` and ``_sum`` (since load, as Triton's) and a ``quantile`` sample per
  ``summary_quantiles`` (Triton's default 0.5, 0.9, 0.95, 0.99, 0.999; NaN without requests),
  estimated from the core's latency histograms over a sliding window: the requests since the
  newest scrape at least 60 s old (Triton's summaries also age out after about 60 s; before
  that, since load). Triton omits the request summary of a model with the response cache;
  we do too;
- with ``histogram_latencies=True`` (``--metrics-config histogram_latencies=true``) the
  histograms ``nv_inference_{request,queue,compute_input,compute_infer,compute_output}``
  ``_histogram_us``
  (``_bucket`` with ``le`` 10, 25, 50, 100, ... 5000000, 10000000 us and ``+Inf``, ``_count``,
  ``_sum``). Triton's only latency histogram is ``nv_inference_first_response_histogram_ms``
  (decoupled models, time to first response); it has none of request/queue/compute
  durations, so these names are ours, made like Triton's summary names. The first-response
  histogram is not exported (the core does not time first responses apart).

Server-wide gauges, sampled every ``interval_ms``: ``nv_cpu_utilization`` (0..1, from
/proc/stat), ``nv_cpu_memory_total_bytes`` and ``nv_cpu_memory_used_bytes`` (/proc/meminfo:
MemTotal, MemTotal - MemAvailable); and, only where NVML (libnvidia-ml.so.1) loads and sees a
GPU, ``nv_gpu_utilization``, ``nv_gpu_memory_total_bytes``, ``nv_gpu_memory_used_bytes``,
``nv_gpu_power_usage``, ``nv_gpu_power_limit`` and ``nv_energy_consumption`` (label
``gpu_uuid``). Without NVML the GPU families are simply absent.

Custom metrics (the python backend's ``pb_utils.MetricFamily``) live in a process-wide registry
and are exported by every metrics endpoint after Triton's families::

    family = register_custom_family("my_requests", "Requests seen", COUNTER)
    metric = family.metric({"model": "m", "version": "1"})      # same labels -> same metric
    metric.increment(1)                                        # COUNTER: +v (v >= 0); GAUGE: +v
    gauge = register_custom_family("my_load", "Load", GAUGE).metric({})
    gauge.set(0.5)                                             # GAUGE only
    hist = register_custom_family("my_ms", "Latency", HISTOGRAM).metric({}, buckets=[1, 10])
    hist.observe(3.0)                                          # HISTOGRAM only
    metric.value                                               # COUNTER/GAUGE current value
    family.remove_metric({"model": "m", "version": "1"})
    unregister_custom_family("my_requests")

Registering a name again returns the existing family when kind and description match and is an
INVALID_ARG error otherwise. Names follow Prometheus' rules; misuse (a negative counter increment,
``set`` on a counter, ``observe`` on a gauge, histograms without increasing buckets) raises
``TritonError`` (INVALID_ARG). Everything is thread-safe.
"""

from __future__ import annotations

import asyncio
import ctypes
import itertools
import math
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.web_request import BaseRequest

from . import latency
from .errors import INVALID_ARG, TritonError
from .response_cache import MODEL_FAMILIES as MODEL_CACHE_FAMILIES
from .response_cache import server_gauges as cache_server_gauges

COUNTER = "COUNTER"
GAUGE = "GAUGE"
HISTOGRAM = "HISTOGRAM"
KINDS = (COUNTER, GAUGE, HISTOGRAM)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

#: (name, help, statistics path) of the per-model counters, in Triton's order.
_MODEL_COUNTERS = (
    ("nv_inference_request_success",
     "Number of successful inference requests, all batch sizes", ("success", "count")),
    ("nv_inference_request_failure",
     "Number of failed inference requests, all batch sizes", ("fail", "count")),
    ("nv_inference_count",
     "Number of inferences performed (does not include cached requests)", ("inference_count",)),
    ("nv_inference_exec_count",
     "Number of model executions performed (does not include cached requests)",
     ("execution_count",)),
    ("nv_inference_request_duration_us",
     "Cumulative inference request duration in microseconds (includes cached requests)",
     ("success", "ns")),
    ("nv_inference_queue_duration_us",
     "Cumulative inference queuing duration in microseconds (includes cached requests)",
     ("queue", "ns")),
    ("nv_inference_compute_input_duration_us",
     "Cumulative compute input duration in microseconds (does not include cached requests)",
     ("compute_input", "ns")),
    ("nv_inference_compute_infer_duration_us",
     "Cumulative compute inference duration in microseconds (does not include cached requests)",
     ("compute_infer", "ns")),
    ("nv_inference_compute_output_duration_us",
     ("Cumulative inference compute output duration in microseconds (does not include cached "
      "requests)"), ("compute_output", "ns")),
)  # fmt: skip

_SUMMARIES = (
    ("nv_inference_request_summary_us",
     "Summary of inference request duration in microseconds (includes cached requests)",
     "success"),
    ("nv_inference_queue_summary_us",
     "Summary of inference queuing duration in microseconds (includes cached requests)", "queue"),
    ("nv_inference_compute_input_summary_us",
     "Summary of compute input duration in microseconds (does not include cached requests)",
     "compute_input"),
    ("nv_inference_compute_infer_summary_us",
     "Summary of compute inference duration in microseconds (does not include cached requests)",
     "compute_infer"),
    ("nv_inference_compute_output_summary_us",
     "Summary of compute output duration in microseconds (does not include cached requests)",
     "compute_output"),
)  # fmt: skip

_HISTOGRAMS = (
    ("nv_inference_request_histogram_us",
     "Histogram of inference request duration in microseconds (includes cached requests)",
     "request", "success"),
    ("nv_inference_queue_histogram_us",
     "Histogram of inference queuing duration in microseconds (includes cached requests)",
     "queue", "queue"),
    ("nv_inference_compute_input_histogram_us",
     "Histogram of compute input duration in microseconds (does not include cached requests)",
     "compute_input", "compute_input"),
    ("nv_inference_compute_infer_histogram_us",
     "Histogram of compute inference duration in microseconds (does not include cached "
     "requests)", "compute_infer", "compute_infer"),
    ("nv_inference_compute_output_histogram_us",
     "Histogram of compute output duration in microseconds (does not include cached requests)",
     "compute_output", "compute_output"),
)  # fmt: skip

#: The latency kind of each summary (its histogram in ``latency_histograms``).
_SUMMARY_KIND = {"success": "request", "queue": "queue", "compute_input": "compute_input",
                 "compute_infer": "compute_infer", "compute_output": "compute_output"}

#: How far back a summary's quantiles look (Triton's summaries: about 60 s).
SUMMARY_WINDOW_S = 60.0

FAILURE_REASONS = ("REJECTED", "CANCELED", "BACKEND", "OTHER")


# ---- text exposition ---------------------------------------------------------------------------


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if isinstance(value, int) or (
        isinstance(value, float) and value.is_integer() and abs(value) < 2**63
    ):
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


@dataclass
class _Family:
    name: str
    help: str
    kind: str  # counter | gauge | histogram | summary
    samples: list[tuple[str, Mapping[str, str], float]] = field(default_factory=list)

    def add(self, labels: Mapping[str, str], value: float, suffix: str = "") -> None:
        self.samples.append((self.name + suffix, labels, value))


def _render(families: Iterable[_Family]) -> bytes:
    lines: list[str] = []
    for f in families:
        lines.append(f"# HELP {f.name} {f.help}")
        lines.append(f"# TYPE {f.name} {f.kind}")
        for name, labels, value in f.samples:
            if labels:
                text = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
                lines.append(f"{name}{{{text}}} {_number(value)}")
            else:
                lines.append(f"{name} {_number(value)}")
    return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""


# ---- custom metrics (pb_utils.MetricFamily) ----------------------------------------------------


def _check_labels(labels: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key in sorted(labels):
        if not isinstance(key, str) or not _LABEL_RE.fullmatch(key) or key.startswith("__"):
            raise TritonError(f"invalid metric label name '{key}'", INVALID_ARG)
        out[key] = str(labels[key])
    return out


class CustomMetric:
    """One labelled metric of a custom family (see the module docstring)."""

    def __init__(
        self, family: CustomMetricFamily, labels: dict[str, str], buckets: list[float]
    ) -> None:
        self.family = family
        self.labels = labels
        self.buckets = buckets
        self._lock = threading.Lock()
        self._value = 0.0
        self._counts = [0] * (len(buckets) + 1)  # last: +Inf
        self._sum = 0.0

    def _refuse(self, operation: str) -> TritonError:
        return TritonError(
            f"'{operation}' is not supported for {self.family.kind} metric family "
            f"'{self.family.name}'",
            INVALID_ARG,
        )

    def increment(self, value: float) -> None:
        if self.family.kind == HISTOGRAM:
            raise self._refuse("increment")
        if self.family.kind == COUNTER and value < 0:
            raise TritonError(
                f"counter '{self.family.name}' can only be incremented by a non-negative value, "
                f"got {value}",
                INVALID_ARG,
            )
        with self._lock:
            self._value += value

    def set(self, value: float) -> None:
        if self.family.kind != GAUGE:
            raise self._refuse("set")
        with self._lock:
            self._value = float(value)

    def observe(self, value: float) -> None:
        if self.family.kind != HISTOGRAM:
            raise self._refuse("observe")
        with self._lock:
            self._sum += value
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    self._counts[i] += 1
                    break
            else:
                self._counts[-1] += 1

    @property
    def value(self) -> float:
        if self.family.kind == HISTOGRAM:
            raise self._refuse("value")
        with self._lock:
            return self._value

    def _samples(self, family: _Family) -> None:
        with self._lock:
            if self.family.kind != HISTOGRAM:
                family.add(self.labels, self._value)
                return
            cumulative = 0
            for bound, count in zip([*self.buckets, math.inf], self._counts):
                cumulative += count
                family.add({**self.labels, "le": _number(bound)}, cumulative, "_bucket")
            family.add(self.labels, self._sum, "_sum")
            family.add(self.labels, cumulative, "_count")


class CustomMetricFamily:
    """A custom metric family: a name, a description, a kind and its labelled metrics."""

    def __init__(self, name: str, description: str, kind: str) -> None:
        self.name = name
        self.description = description
        self.kind = kind
        self._metrics: dict[tuple[tuple[str, str], ...], CustomMetric] = {}
        self._lock = threading.Lock()

    def metric(
        self, labels: Mapping[str, str] | None = None, buckets: Sequence[float] | None = None
    ) -> CustomMetric:
        """The metric with these labels (created on first use). Histograms need ``buckets``
        (increasing upper bounds); other kinds must not have them."""
        checked = _check_labels(labels or {})
        bounds: list[float] = []
        if self.kind == HISTOGRAM:
            if buckets is None:
                raise TritonError(
                    f"histogram metric family '{self.name}' needs buckets for each metric",
                    INVALID_ARG,
                )
            bounds = [float(b) for b in buckets]
            if any(b >= c for b, c in itertools.pairwise(bounds)) or any(
                math.isnan(b) for b in bounds
            ):
                raise TritonError(
                    f"buckets of histogram '{self.name}' must be increasing, got {list(buckets)}",
                    INVALID_ARG,
                )
            if bounds and math.isinf(bounds[-1]):
                bounds.pop()
        elif buckets is not None:
            raise TritonError(
                f"buckets are only for histograms; '{self.name}' is a {self.kind}", INVALID_ARG
            )
        key = tuple(checked.items())
        with self._lock:
            existing = self._metrics.get(key)
            if existing is not None:
                if self.kind == HISTOGRAM and existing.buckets != bounds:
                    raise TritonError(
                        f"metric of histogram '{self.name}' with labels {checked} already "
                        f"exists with buckets {existing.buckets}",
                        INVALID_ARG,
                    )
                return existing
            created = self._metrics[key] = CustomMetric(self, checked, bounds)
            return created

    def remove_metric(self, labels: Mapping[str, str] | None = None) -> None:
        key = tuple(_check_labels(labels or {}).items())
        with self._lock:
            self._metrics.pop(key, None)

    def _family(self) -> _Family:
        family = _Family(self.name, self.description, self.kind.lower())
        with self._lock:
            metrics = list(self._metrics.values())
        for m in metrics:
            m._samples(family)
        return family


_CUSTOM: dict[str, CustomMetricFamily] = {}
_CUSTOM_LOCK = threading.Lock()


def register_custom_family(name: str, description: str, kind: str) -> CustomMetricFamily:
    """A process-wide custom metric family (``kind``: COUNTER, GAUGE or HISTOGRAM)."""
    if kind not in KINDS:
        raise TritonError(
            f"unknown metric kind '{kind}' for metric family '{name}': expected one of "
            + ", ".join(KINDS),
            INVALID_ARG,
        )
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise TritonError(f"invalid metric family name '{name}'", INVALID_ARG)
    if name.startswith("nv_"):
        raise TritonError(
            f"metric family name '{name}' uses the prefix 'nv_' reserved for Triton's metrics",
            INVALID_ARG,
        )
    with _CUSTOM_LOCK:
        existing = _CUSTOM.get(name)
        if existing is not None:
            if existing.kind != kind or existing.description != description:
                raise TritonError(
                    f"metric family '{name}' already exists as a {existing.kind} described as "
                    f"'{existing.description}'",
                    INVALID_ARG,
                )
            return existing
        family = _CUSTOM[name] = CustomMetricFamily(name, description, kind)
        return family


def unregister_custom_family(name: str) -> None:
    """Stop exporting a custom family (unknown names are ignored)."""
    with _CUSTOM_LOCK:
        _CUSTOM.pop(name, None)


def _custom_families() -> list[_Family]:
    with _CUSTOM_LOCK:
        families = list(_CUSTOM.values())
    return [f._family() for f in families]


# ---- system gauges -------------------------------------------------------------------------------


def _cpu_times() -> tuple[int, int] | None:
    """(idle, total) jiffies of all CPUs since boot."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    values = [int(v) for v in fields[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return idle, sum(values[:8])  # guest times are already part of user/nice


def _memory() -> tuple[int, int] | None:
    """(total, used) bytes of RAM."""
    info: dict[str, int] = {}
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                key, _, rest = line.partition(":")
                info[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    if "MemTotal" not in info or "MemAvailable" not in info:
        return None
    return info["MemTotal"], info["MemTotal"] - info["MemAvailable"]


class _NvmlUtilization(ctypes.Structure):
    _fields_ = [("gpu", ctypes.c_uint), ("memory", ctypes.c_uint)]


class _NvmlMemory(ctypes.Structure):
    _fields_ = [
        ("total", ctypes.c_ulonglong),
        ("free", ctypes.c_ulonglong),
        ("used", ctypes.c_ulonglong),
    ]


class Nvml:
    """The few NVML calls the GPU gauges need, through ctypes (no Python package required)."""

    def __init__(self) -> None:
        self.lib = ctypes.CDLL("libnvidia-ml.so.1")
        if self.lib.nvmlInit_v2() != 0:
            raise OSError("nvmlInit failed")
        count = ctypes.c_uint(0)
        if self.lib.nvmlDeviceGetCount_v2(ctypes.byref(count)) != 0:
            raise OSError("nvmlDeviceGetCount failed")
        self.devices: list[tuple[str, ctypes.c_void_p]] = []
        for i in range(count.value):
            handle = ctypes.c_void_p()
            if self.lib.nvmlDeviceGetHandleByIndex_v2(i, ctypes.byref(handle)) != 0:
                continue
            uuid = ctypes.create_string_buffer(96)
            self.lib.nvmlDeviceGetUUID(handle, uuid, 96)
            self.devices.append((uuid.value.decode(), handle))

    def sample(self) -> list[dict[str, Any]]:
        out = []
        for uuid, handle in self.devices:
            util, mem = _NvmlUtilization(), _NvmlMemory()
            power, limit, energy = ctypes.c_uint(), ctypes.c_uint(), ctypes.c_ulonglong()
            row: dict[str, Any] = {"uuid": uuid}
            if self.lib.nvmlDeviceGetUtilizationRates(handle, ctypes.byref(util)) == 0:
                row["utilization"] = util.gpu / 100.0
            if self.lib.nvmlDeviceGetMemoryInfo(handle, ctypes.byref(mem)) == 0:
                row["memory_total"], row["memory_used"] = mem.total, mem.used
            if self.lib.nvmlDeviceGetPowerUsage(handle, ctypes.byref(power)) == 0:
                row["power_usage"] = power.value / 1000.0
            if self.lib.nvmlDeviceGetEnforcedPowerLimit(handle, ctypes.byref(limit)) == 0:
                row["power_limit"] = limit.value / 1000.0
            if self.lib.nvmlDeviceGetTotalEnergyConsumption(handle, ctypes.byref(energy)) == 0:
                row["energy"] = energy.value / 1000.0
            out.append(row)
        return out


def load_nvml() -> Nvml | None:
    """NVML when the driver library loads and sees at least one GPU, else None."""
    try:
        nvml = Nvml()
    except (OSError, AttributeError):
        return None
    return nvml if nvml.devices else None


_GPU_FAMILIES = (
    ("nv_gpu_utilization", "GPU utilization rate [0.0 - 1.0)", "utilization"),
    ("nv_gpu_memory_total_bytes", "GPU total memory, in bytes", "memory_total"),
    ("nv_gpu_memory_used_bytes", "GPU used memory, in bytes", "memory_used"),
    ("nv_gpu_power_usage", "GPU power usage in watts", "power_usage"),
    ("nv_gpu_power_limit", "GPU power management limit in watts", "power_limit"),
    ("nv_energy_consumption", "GPU energy consumption in joules since the Triton Server started",
     "energy"),
)  # fmt: skip


class SystemSampler:
    """CPU utilization over the last interval, RAM, and GPU gauges (when NVML is present)."""

    def __init__(self, nvml: Nvml | None = None, cpu: bool = True) -> None:
        self.nvml = nvml
        self.cpu = cpu
        self.cpu_utilization = 0.0
        self.memory = _memory()
        self.gpus: list[dict[str, Any]] = []
        self._last = _cpu_times()
        self._energy_start: dict[str, float] = {}

    def sample(self) -> None:
        now = _cpu_times()
        if now is not None and self._last is not None:
            idle, total = now[0] - self._last[0], now[1] - self._last[1]
            if total > 0:
                self.cpu_utilization = max(0.0, min(1.0, 1.0 - idle / total))
        self._last = now
        self.memory = _memory()
        if self.nvml is not None:
            gpus = self.nvml.sample()
            for row in gpus:  # Triton reports energy since the server started
                if "energy" in row:
                    start = self._energy_start.setdefault(row["uuid"], row["energy"])
                    row["energy"] -= start
            self.gpus = gpus

    def families(self) -> list[_Family]:
        out = []
        if self.cpu:
            cpu = _Family("nv_cpu_utilization", "CPU utilization rate [0.0 - 1.0]", "gauge")
            cpu.add({}, self.cpu_utilization)
            out.append(cpu)
        if self.cpu and self.memory is not None:
            total = _Family(
                "nv_cpu_memory_total_bytes", "CPU total memory (RAM), in bytes", "gauge"
            )
            total.add({}, self.memory[0])
            used = _Family("nv_cpu_memory_used_bytes", "CPU used memory (RAM), in bytes", "gauge")
            used.add({}, self.memory[1])
            out += [total, used]
        for name, help_text, key in _GPU_FAMILIES:
            family = _Family(name, help_text, "gauge")
            for row in self.gpus:
                if key in row:
                    family.add({"gpu_uuid": row["uuid"]}, row[key])
            if family.samples:
                out.append(family)
        return out


# ---- the server's families -----------------------------------------------------------------------


def _get(stats: Mapping[str, Any], path: tuple[str, ...]) -> int:
    node: Any = stats if len(path) == 1 else stats.get("inference_stats", {})
    for key in path:
        node = node.get(key, 0) if isinstance(node, Mapping) else 0
    return int(node)


def _model_labels(
    s: Mapping[str, Any], tags: Mapping[tuple[str, str], Mapping[str, str]] | None, **more: str
) -> dict[str, str]:
    """A model version's labels in name order, as Triton's exporter writes them: its config's
    ``metric_tags`` as ``_<key>``, then ``model`` (and ``reason``), ``version``."""
    labels = {"model": s["name"], "version": str(s["version"]), **more}
    for key, value in (tags or {}).get((s["name"], str(s["version"])), {}).items():
        labels[f"_{key}"] = value
    return dict(sorted(labels.items()))


def model_families(
    statistics: Sequence[Mapping[str, Any]],
    summary_latencies: bool = False,
    counter_latencies: bool = True,
    tags: Mapping[tuple[str, str], Mapping[str, str]] | None = None,
    *,
    histogram_latencies: bool = False,
    quantiles: Sequence[tuple[float, float]] = latency.DEFAULT_QUANTILES,
    window: Mapping[tuple[str, str], Mapping[str, Sequence[int]]] | None = None,
    cached: frozenset[tuple[str, str]] = frozenset(),
) -> list[_Family]:
    """Triton's per-model families from ``Server.statistics()`` output; ``tags``: each model
    version's ``metric_tags``, keyed by (name, version). ``window``: the latency histograms
    at the start of the summaries' window, by (name, version) (absent: since load);
    ``cached``: the versions that use the response cache (no request summary, as Triton)."""
    rows = sorted(statistics, key=lambda s: (s["name"], int(s["version"])))
    families: list[_Family] = []
    for name, help_text, path in _MODEL_COUNTERS:
        if path[-1] == "ns" and not counter_latencies:
            continue
        family = _Family(name, help_text, "counter")
        for s in rows:
            labels = _model_labels(s, tags)
            value = _get(s, path)
            if path[-1] == "ns":
                value //= 1000
            if name == "nv_inference_request_failure":
                reasons = s.get("fail_reasons", {})
                for reason in FAILURE_REASONS:
                    count = reasons.get(reason, value if (reason == "OTHER" and not reasons) else 0)
                    family.add(_model_labels(s, tags, reason=reason), count)
            else:
                family.add(labels, value)
        families.append(family)
    pending = _Family(
        "nv_inference_pending_request_count",
        "Instantaneous number of pending requests awaiting execution per-model.",
        "gauge",
    )
    for s in rows:
        pending.add(_model_labels(s, tags), int(s.get("pending_request_count", 0)))
    families.append(pending)
    if summary_latencies:
        for name, help_text, key in _SUMMARIES:
            family = _Family(name, help_text, "summary")
            kind = _SUMMARY_KIND[key]
            for s in rows:
                mv = (s["name"], str(s["version"]))
                if key == "success" and mv in cached:
                    continue
                labels = _model_labels(s, tags)
                counts = s.get("latency_histograms", {}).get(kind)
                if counts is not None:
                    start = (window or {}).get(mv, {}).get(kind)
                    recent = latency.subtract(counts, start) if start else list(counts)
                    for q, _error in quantiles:
                        us = latency.quantile(recent, q)
                        family.add({**labels, "quantile": _number(q)},
                                   math.nan if us is None else round(us))  # fmt: skip
                d = s.get("inference_stats", {}).get(key, {})
                family.add(labels, int(d.get("count", 0)), "_count")
                family.add(labels, int(d.get("ns", 0)) // 1000, "_sum")
            families.append(family)
    if histogram_latencies:
        for name, help_text, kind, key in _HISTOGRAMS:
            family = _Family(name, help_text, "histogram")
            for s in rows:
                counts = s.get("latency_histograms", {}).get(kind)
                if counts is None:
                    continue
                labels = _model_labels(s, tags)
                for le, cumulative in latency.prometheus_buckets(counts):
                    family.add({**labels, "le": le}, cumulative, "_bucket")
                d = s.get("inference_stats", {}).get(key, {})
                family.add(labels, sum(counts), "_count")
                family.add(labels, int(d.get("ns", 0)) // 1000, "_sum")
            families.append(family)
    return families


def _metric_tags(
    server: Any, statistics: Sequence[Mapping[str, Any]]
) -> dict[tuple[str, str], dict[str, str]]:
    """The config ``metric_tags`` of each model version in ``statistics`` that has some."""
    tags: dict[tuple[str, str], dict[str, str]] = {}
    for s in statistics:
        try:
            config = server.get_model(s["name"], int(s["version"])).config
        except TritonError:  # unloaded since the statistics were read
            continue
        if config.metric_tags:
            tags[(s["name"], str(s["version"]))] = dict(config.metric_tags)
    return tags


def cache_families(server: Any, statistics: Sequence[Mapping[str, Any]]) -> list[_Family]:
    """Triton's ``nv_cache_*`` families: per model version that uses the response cache, and
    the cache's server-wide gauges; none when the server has no cache."""
    cache = getattr(server, "response_cache", None)
    if cache is None:
        return []
    rows = []
    for s in sorted(statistics, key=lambda s: (s["name"], int(s["version"]))):
        try:
            loaded = server.get_model(s["name"], int(s["version"]))
        except TritonError:  # unloaded since the statistics were read
            continue
        if loaded.runner.caches_responses:
            rows.append(s)
    families: list[_Family] = []
    for name, help_text, stat, key, div in MODEL_CACHE_FAMILIES:
        family = _Family(name, help_text, "counter")
        for s in rows:
            value = int(s.get("inference_stats", {}).get(stat, {}).get(key, 0)) // div
            family.add({"model": s["name"], "version": str(s["version"])}, value)
        families.append(family)
    for name, help_text, value in cache_server_gauges(cache.usage()):
        family = _Family(name, help_text, "gauge")
        family.add({}, value)
        families.append(family)
    return families


def _cached_versions(server: Any, statistics: Sequence[Mapping[str, Any]]) -> frozenset[Any]:
    """(name, version) of the versions that use the response cache."""
    if getattr(server, "response_cache", None) is None:
        return frozenset()
    out = set()
    for s in statistics:
        try:
            if server.get_model(s["name"], int(s["version"])).runner.caches_responses:
                out.add((s["name"], str(s["version"])))
        except TritonError:  # unloaded since the statistics were read
            continue
    return frozenset(out)


class MetricsFrontend:
    """A running metrics endpoint; ``render()`` is what a scrape returns."""

    def __init__(
        self,
        server: Any,
        *,
        summary_latencies: bool,
        counter_latencies: bool,
        sampler: SystemSampler,
        interval_ms: int,
        histogram_latencies: bool = False,
        quantiles: Sequence[tuple[float, float]] = latency.DEFAULT_QUANTILES,
    ) -> None:
        self.server = server
        self.summary_latencies = summary_latencies
        self.counter_latencies = counter_latencies
        self.histogram_latencies = histogram_latencies
        self.quantiles = tuple(quantiles)
        # The summaries' window: (monotonic time, {(name, version): latency_histograms}) of
        # past scrapes (at most one a second), oldest first; only the newest one at least
        # SUMMARY_WINDOW_S old and those after it are kept.
        self._scrapes: list[tuple[float, dict[tuple[str, str], Any]]] = []
        self.sampler = sampler
        self.interval_ms = interval_ms
        self.port = 0
        self._handler: web.Server | None = None
        self._listener: asyncio.base_events.Server | None = None
        self._task: asyncio.Task[None] | None = None

    def _window(
        self, statistics: Sequence[Mapping[str, Any]]
    ) -> dict[tuple[str, str], Any] | None:
        """The histograms at the start of the summaries' window; records this scrape's."""
        if not self.summary_latencies:
            return None
        now = time.monotonic()
        if not self._scrapes or now - self._scrapes[-1][0] >= 1.0:  # at most one a second
            histograms = {
                (s["name"], str(s["version"])): s.get("latency_histograms", {}) for s in statistics
            }
            self._scrapes.append((now, histograms))
        old = [i for i, (t, _) in enumerate(self._scrapes) if now - t >= SUMMARY_WINDOW_S]
        if not old:
            return None  # the first minute: since load
        del self._scrapes[: old[-1]]
        return self._scrapes[0][1]

    def render(self) -> bytes:
        statistics = self.server.statistics(
            histograms=self.summary_latencies or self.histogram_latencies
        )
        families = model_families(
            statistics,
            self.summary_latencies,
            self.counter_latencies,
            _metric_tags(self.server, statistics),
            histogram_latencies=self.histogram_latencies,
            quantiles=self.quantiles,
            window=self._window(statistics),
            cached=_cached_versions(self.server, statistics) if self.summary_latencies
            else frozenset(),
        )
        families += cache_families(self.server, statistics)
        families += self.sampler.families()
        families += _custom_families()
        return _render(families)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.interval_ms / 1000.0)
            self.sampler.sample()

    async def _handle(self, request: BaseRequest) -> web.StreamResponse:
        if request.path != "/metrics":
            return web.Response(status=404, text="Not Found")
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405, text="Method Not Allowed")
        return web.Response(body=self.render(), headers={"Content-Type": CONTENT_TYPE})

    async def _start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._handler = web.Server(self._handle, access_log=None)
        self._listener = await loop.create_server(self._handler, host, port, reuse_address=True)
        self.port = self._listener.sockets[0].getsockname()[1]
        self.sampler.sample()
        self._task = loop.create_task(self._poll())

    async def stop(self, grace_s: float = 1.0) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._listener is not None and self._handler is not None:
            self._listener.close()
            self._handler.pre_shutdown()
            await self._handler.shutdown(grace_s)
            await self._listener.wait_closed()


async def start_metrics(
    server: Any,
    host: str = "0.0.0.0",
    port: int = 8002,
    *,
    interval_ms: int = 2000,
    summary_latencies: bool = False,
    cpu_metrics: bool = True,
    gpu_metrics: bool = True,
    config: Sequence[str] = (),
) -> MetricsFrontend:
    """Serve ``GET /metrics`` for ``server`` on the running event loop (port 0: any free port,
    see ``frontend.port``). System gauges refresh every ``interval_ms`` (Triton's
    ``--metrics-interval-ms``); per-model families are exact at each scrape. ``config`` takes
    Triton's ``--metrics-config`` values: ``summary_latencies=true|false``,
    ``summary_quantiles=<q>:<error>[,...]``, ``histogram_latencies=true|false`` and
    ``counter_latencies=true|false`` (the ``*_duration_us`` counters, on by default)."""
    if interval_ms <= 0:
        raise TritonError(f"metrics interval must be > 0 ms, got {interval_ms}", INVALID_ARG)
    options = {"summary_latencies": summary_latencies, "counter_latencies": True,
               "histogram_latencies": False}  # fmt: skip
    quantiles = latency.DEFAULT_QUANTILES
    for item in config:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if sep and key == "summary_quantiles":
            try:
                quantiles = latency.parse_quantiles(value)
            except ValueError as e:
                raise TritonError(f"invalid --metrics-config '{item}': {e}", INVALID_ARG) from None
            continue
        value = value.lower()
        if not sep or key not in options or value not in ("true", "false", "1", "0"):
            raise TritonError(
                f"invalid --metrics-config '{item}': expected summary_latencies=<bool>, "
                "histogram_latencies=<bool>, counter_latencies=<bool> or "
                "summary_quantiles=<quantile>:<error>[,...]",
                INVALID_ARG,
            )
        options[key] = value in ("true", "1")
    sampler = SystemSampler(load_nvml() if gpu_metrics else None, cpu=cpu_metrics)
    frontend = MetricsFrontend(
        server,
        summary_latencies=options["summary_latencies"],
        counter_latencies=options["counter_latencies"],
        histogram_latencies=options["histogram_latencies"],
        quantiles=quantiles,
        sampler=sampler,
        interval_ms=interval_ms,
    )
    await frontend._start(host, port)
    return frontend
