"""The Prometheus endpoint: Triton's metric names, labels and help texts, exact per-model
counters after known traffic, system gauges, options, and custom metric families."""

from __future__ import annotations

import asyncio
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from google.protobuf import text_format
from prometheus_client.parser import text_string_to_metric_families
from tritonlite import Server, TritonError, metrics
from tritonlite._proto import model_config_pb2 as mc
from tritonlite.metrics import COUNTER, GAUGE, HISTOGRAM, MetricsFrontend, start_metrics

pytestmark = pytest.mark.timeout(60)

IO = """
input [{ name: "IN" data_type: TYPE_FP32 dims: [ 2 ] }]
output [{ name: "OUT" data_type: TYPE_FP32 dims: [ 2 ] }]
"""


class Fn:
    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def create_instance(self, index: int, kind: str, device_id: int) -> Fn:
        return self

    def execute(self, inputs: dict[str, np.ndarray], names: list[str]) -> dict[str, Any]:
        return self.fn(inputs)

    def close(self) -> None:
        pass


def _boom(inputs: dict[str, np.ndarray]) -> dict[str, Any]:
    raise RuntimeError("boom")


class Loop:
    """An event loop in a background thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = Server()
    cfg = text_format.Parse(f'name: "m" max_batch_size: 8 {IO}', mc.ModelConfig())
    s.add_model(cfg, Fn(lambda i: {"OUT": i["IN"] * 2}), version=1)
    s.add_model(cfg, Fn(lambda i: {"OUT": i["IN"] * 3}), version=2)
    s.add_model(
        text_format.Parse(f'name: "boom" max_batch_size: 8 {IO}', mc.ModelConfig()), Fn(_boom)
    )
    yield s
    s.close()


@pytest.fixture(scope="module")
def loop() -> Iterator[Loop]:
    lp = Loop()
    yield lp
    lp.close()


@pytest.fixture(scope="module")
def endpoint(server: Server, loop: Loop) -> Iterator[MetricsFrontend]:
    frontend = loop.run(start_metrics(server, "127.0.0.1", 0, interval_ms=50))
    yield frontend
    loop.run(frontend.stop())


@pytest.fixture(scope="module")
def traffic(server: Server) -> dict[str, int]:
    """Known traffic: v1 gets 5 batch-1 and 2 batch-3 requests, v2 one, boom fails twice."""
    for _ in range(5):
        server.infer("m", {"IN": np.ones((1, 2), np.float32)}, version=1)
    for _ in range(2):
        server.infer("m", {"IN": np.ones((3, 2), np.float32)}, version=1)
    server.infer("m", {"IN": np.ones((1, 2), np.float32)}, version=2)
    for _ in range(2):
        with pytest.raises(TritonError, match="boom"):
            server.infer("boom", {"IN": np.ones((1, 2), np.float32)})
    # A request rejected by validation is not an inference failure (as in Triton).
    with pytest.raises(TritonError):
        server.infer("m", {"IN": np.ones((1, 3), np.float32)})
    return {"v1_requests": 7, "v1_inferences": 11, "v2_requests": 1, "failures": 2}


def scrape(frontend: MetricsFrontend, path: str = "/metrics") -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{frontend.port}{path}", timeout=10) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read().decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample, keyed by (name, sorted labels), read with prometheus_client's parser."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def mv(model: str, version: str, **extra: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"model": model, "version": version, **extra}.items()))


def test_per_model_counters_are_exact(
    server: Server, endpoint: MetricsFrontend, traffic: dict[str, int]
) -> None:
    status, content_type, text = scrape(endpoint)
    assert status == 200 and content_type.startswith("text/plain")
    got = samples(text)
    # prometheus_client's parser names counter samples <name>_total.
    assert got[("nv_inference_request_success_total", mv("m", "1"))] == 7
    assert got[("nv_inference_request_success_total", mv("m", "2"))] == 1
    assert got[("nv_inference_count_total", mv("m", "1"))] == 11
    assert got[("nv_inference_exec_count_total", mv("m", "1"))] == 7
    assert got[("nv_inference_request_success_total", mv("boom", "1"))] == 0
    # A backend that raises: Triton's reason BACKEND.
    assert got[("nv_inference_request_failure_total", mv("boom", "1", reason="BACKEND"))] == 2
    for reason in ("REJECTED", "CANCELED", "OTHER"):
        assert got[("nv_inference_request_failure_total", mv("boom", "1", reason=reason))] == 0
    assert got[("nv_inference_request_failure_total", mv("m", "1", reason="OTHER"))] == 0
    assert got[("nv_inference_pending_request_count", mv("m", "1"))] == 0
    # Durations: the statistics' nanoseconds, in whole microseconds.
    stats = {(s["name"], s["version"]): s["inference_stats"] for s in server.statistics()}
    for metric, key in [
        ("nv_inference_request_duration_us_total", "success"),
        ("nv_inference_queue_duration_us_total", "queue"),
        ("nv_inference_compute_input_duration_us_total", "compute_input"),
        ("nv_inference_compute_infer_duration_us_total", "compute_infer"),
        ("nv_inference_compute_output_duration_us_total", "compute_output"),
    ]:
        for model, version in (("m", "1"), ("m", "2"), ("boom", "1")):
            assert got[(metric, mv(model, version))] == stats[(model, version)][key]["ns"] // 1000
    assert got[("nv_inference_request_duration_us_total", mv("m", "1"))] > 0


def test_exposition_uses_triton_names_and_help(
    endpoint: MetricsFrontend, traffic: dict[str, int]
) -> None:
    text = scrape(endpoint)[2]
    for line in [
        "# HELP nv_inference_request_success Number of successful inference requests, all batch sizes",
        "# TYPE nv_inference_request_success counter",
        'nv_inference_request_success{model="m",version="1"} 7',
        'nv_inference_request_failure{model="boom",reason="BACKEND",version="1"} 2',
        "# HELP nv_inference_count Number of inferences performed (does not include cached requests)",
        'nv_inference_count{model="m",version="1"} 11',
        "# TYPE nv_inference_pending_request_count gauge",
        "# HELP nv_cpu_utilization CPU utilization rate [0.0 - 1.0]",
        "# TYPE nv_cpu_memory_total_bytes gauge",
        "# HELP nv_cpu_memory_used_bytes CPU used memory (RAM), in bytes",
    ]:
        assert line in text.splitlines(), line


def test_system_gauges(endpoint: MetricsFrontend) -> None:
    got = samples(scrape(endpoint)[2])
    assert 0.0 <= got[("nv_cpu_utilization", ())] <= 1.0
    total, used = got[("nv_cpu_memory_total_bytes", ())], got[("nv_cpu_memory_used_bytes", ())]
    assert 0 < used < total
    if metrics.load_nvml() is None:  # no NVML here: GPU families are absent, not zero
        assert not any(name.startswith("nv_gpu_") for name, _ in got)


def test_other_paths_and_methods(endpoint: MetricsFrontend) -> None:
    assert scrape(endpoint, "/other")[0] == 404
    req = urllib.request.Request(
        f"http://127.0.0.1:{endpoint.port}/metrics", data=b"x", method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 405


def test_metrics_config_options(server: Server, loop: Loop, traffic: dict[str, int]) -> None:
    frontend = loop.run(
        start_metrics(
            server,
            "127.0.0.1",
            0,
            config=["summary_latencies=true", "counter_latencies=false"],
            cpu_metrics=False,
        )
    )
    try:
        text = scrape(frontend)[2]
    finally:
        loop.run(frontend.stop())
    got = samples(text)
    stats = {(s["name"], s["version"]): s["inference_stats"] for s in server.statistics()}
    assert got[("nv_inference_request_summary_us_count", mv("m", "1"))] == 7
    assert (
        got[("nv_inference_request_summary_us_sum", mv("m", "1"))]
        == stats[("m", "1")]["success"]["ns"] // 1000
    )
    assert got[("nv_inference_queue_summary_us_count", mv("m", "2"))] == 1
    assert "# TYPE nv_inference_compute_infer_summary_us summary" in text
    assert "nv_inference_request_duration_us" not in text
    assert "nv_cpu_utilization" not in text
    assert got[("nv_inference_request_success_total", mv("m", "1"))] == 7
    for bad in (["summary_latencies"], ["unknown=true"], ["summary_latencies=maybe"]):
        with pytest.raises(TritonError, match="invalid --metrics-config"):
            loop.run(start_metrics(server, "127.0.0.1", 0, config=bad))
    with pytest.raises(TritonError, match="interval must be > 0"):
        loop.run(start_metrics(server, "127.0.0.1", 0, interval_ms=0))


def test_unloaded_models_leave_the_metrics(loop: Loop) -> None:
    with Server() as s:
        s.add_model(
            text_format.Parse(f'name: "tmp" max_batch_size: 8 {IO}', mc.ModelConfig()),
            Fn(lambda i: {"OUT": i["IN"]}),
        )
        frontend = loop.run(start_metrics(s, "127.0.0.1", 0))
        try:
            assert 'model="tmp"' in scrape(frontend)[2]
            s.remove_model("tmp")
            assert 'model="tmp"' not in scrape(frontend)[2]
        finally:
            loop.run(frontend.stop())


# ---- custom metric families ----------------------------------------------------------------------


@pytest.fixture
def custom() -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        metrics.unregister_custom_family(name)


def test_custom_families_are_exported(endpoint: MetricsFrontend, custom: list[str]) -> None:
    custom += ["test_requests", "test_load", "test_latency_ms"]
    counter = metrics.register_custom_family("test_requests", "Requests seen", COUNTER)
    c = counter.metric({"model": "m", "version": "1"})
    c.increment(2)
    c.increment(0.5)
    assert counter.metric({"version": "1", "model": "m"}) is c  # same labels, same metric
    assert c.value == 2.5
    gauge = metrics.register_custom_family("test_load", "Load", GAUGE).metric({})
    gauge.set(7)
    gauge.increment(-2)
    hist = metrics.register_custom_family("test_latency_ms", "Latency", HISTOGRAM).metric(
        {"model": "m"}, buckets=[1, 10, 100]
    )
    for v in (0.5, 5, 50, 500, 1):
        hist.observe(v)
    assert metrics.register_custom_family("test_requests", "Requests seen", COUNTER) is counter
    text = scrape(endpoint)[2]
    lines = text.splitlines()
    assert "# TYPE test_requests counter" in lines
    assert 'test_requests{model="m",version="1"} 2.5' in lines
    assert "test_load 5" in lines
    for line in [
        'test_latency_ms_bucket{model="m",le="1"} 2',
        'test_latency_ms_bucket{model="m",le="10"} 3',
        'test_latency_ms_bucket{model="m",le="100"} 4',
        'test_latency_ms_bucket{model="m",le="+Inf"} 5',
        'test_latency_ms_sum{model="m"} 556.5',
        'test_latency_ms_count{model="m"} 5',
    ]:
        assert line in lines, line
    assert samples(text)[("test_latency_ms_count", (("model", "m"),))] == 5
    counter.remove_metric({"model": "m", "version": "1"})
    metrics.unregister_custom_family("test_load")
    text = scrape(endpoint)[2]
    assert "test_requests{" not in text and "test_load" not in text


def test_custom_family_misuse(custom: list[str]) -> None:
    custom += ["test_c", "test_g", "test_h"]
    c = metrics.register_custom_family("test_c", "c", COUNTER).metric({})
    g = metrics.register_custom_family("test_g", "g", GAUGE).metric({})
    h_family = metrics.register_custom_family("test_h", "h", HISTOGRAM)
    h = h_family.metric({}, buckets=[1])
    for call, message in [
        (lambda: c.increment(-1), "can only be incremented by a non-negative value"),
        (lambda: c.set(1), "'set' is not supported for COUNTER metric family 'test_c'"),
        (lambda: g.observe(1), "'observe' is not supported for GAUGE"),
        (lambda: h.increment(1), "'increment' is not supported for HISTOGRAM"),
        (lambda: h.value, "'value' is not supported for HISTOGRAM"),
        (lambda: h_family.metric({}), "needs buckets"),
        (lambda: h_family.metric({"a": "1"}, buckets=[2, 1]), "must be increasing"),
        (lambda: h_family.metric({}, buckets=[2]), "already exists with buckets"),
        (
            lambda: metrics.register_custom_family("test_c", "other", COUNTER),
            "already exists as a COUNTER",
        ),
        (lambda: metrics.register_custom_family("test_c", "c", GAUGE), "already exists"),
        (
            lambda: metrics.register_custom_family("bad name", "x", GAUGE),
            "invalid metric family name",
        ),
        (lambda: metrics.register_custom_family("nv_mine", "x", GAUGE), "reserved for Triton"),
        (
            lambda: metrics.register_custom_family("x", "x", "SUMMARY"),
            "unknown metric kind 'SUMMARY'",
        ),
        (lambda: c.family.metric({"bad-label": "1"}), "invalid metric label name 'bad-label'"),
        (lambda: c.family.metric({}, buckets=[1]), "buckets are only for histograms"),
    ]:
        with pytest.raises(TritonError, match=message) as e:
            call()
        assert e.value.status == "INVALID_ARG"


def test_custom_metrics_are_thread_safe(custom: list[str]) -> None:
    custom.append("test_threads")
    metric = metrics.register_custom_family("test_threads", "t", COUNTER).metric({"k": "v"})

    def work() -> None:
        for _ in range(5000):
            metric.increment(1)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert metric.value == 20000


def test_gpu_gauges_from_nvml_samples() -> None:
    """GPU families (exercised without a GPU through a stand-in for the NVML wrapper)."""

    class FakeNvml:
        energy = 1000.0

        def sample(self) -> list[dict[str, Any]]:
            self.energy += 500.0
            return [
                {
                    "uuid": "GPU-1234",
                    "utilization": 0.25,
                    "memory_total": 80 * 2**30,
                    "memory_used": 2**30,
                    "power_usage": 120.5,
                    "power_limit": 700.0,
                    "energy": self.energy,
                },
                {"uuid": "GPU-5678", "utilization": 0.0},  # a device whose other queries failed
            ]

    sampler = metrics.SystemSampler(FakeNvml(), cpu=False)  # type: ignore[arg-type]
    sampler.sample()
    sampler.sample()
    text = metrics._render(sampler.families()).decode()
    got = samples(text)
    gpu = (("gpu_uuid", "GPU-1234"),)
    assert got[("nv_gpu_utilization", gpu)] == 0.25
    assert got[("nv_gpu_utilization", (("gpu_uuid", "GPU-5678"),))] == 0.0
    assert got[("nv_gpu_memory_total_bytes", gpu)] == 80 * 2**30
    assert got[("nv_gpu_memory_used_bytes", gpu)] == 2**30
    assert got[("nv_gpu_power_usage", gpu)] == 120.5
    assert got[("nv_gpu_power_limit", gpu)] == 700.0
    assert got[("nv_energy_consumption", gpu)] == 500.0  # joules since the first sample
    assert ("nv_gpu_memory_used_bytes", (("gpu_uuid", "GPU-5678"),)) not in got
    assert "nv_cpu_utilization" not in text
