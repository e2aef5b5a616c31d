"""Latency histograms: the core's bucket counts agree with the requests sent, the Prometheus
histograms and summary quantiles (``--metrics-config histogram_latencies=true``,
``summary_latencies=true``, ``summary_quantiles=...``) expose them, percentiles come out where
the requests' durations put them, and the statistics APIs stay Triton's."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from typing import Any

import numpy as np
import pytest
from google.protobuf import text_format
from prometheus_client.parser import text_string_to_metric_families
from tritonlite import Server, TritonError, latency
from tritonlite._proto import model_config_pb2 as mc
from tritonlite.metrics import start_metrics

pytestmark = pytest.mark.timeout(120)

SLOW_S = 0.03  # a slow request's compute: 30 ms, above the 25 ms bucket bound
FAST, SLOW = 6, 3


class Sleepy:
    """Sleeps IN[0] seconds in execute."""

    def create_instance(self, index: int, kind: str, device_id: int) -> Sleepy:
        return self

    def execute(self, inputs: dict[str, np.ndarray], names: list[str]) -> dict[str, Any]:
        time.sleep(float(inputs["IN"].reshape(-1)[0]))
        return {"OUT": inputs["IN"]}

    def close(self) -> None:
        pass


CONFIG = """
name: "sleepy" max_batch_size: 0
input [{ name: "IN" data_type: TYPE_FP32 dims: [ 1 ] }]
output [{ name: "OUT" data_type: TYPE_FP32 dims: [ 1 ] }]
"""


@pytest.fixture(scope="module")
def server() -> Any:
    with Server() as s:
        s.add_model(text_format.Parse(CONFIG, mc.ModelConfig()), Sleepy())
        for i in range(FAST + SLOW):
            s.infer("sleepy", {"IN": np.array([SLOW_S if i % 3 == 2 else 0.0], np.float32)})
        yield s


class Loop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def loop() -> Any:
    lp = Loop()
    yield lp
    lp.close()


def scrape(server: Server, loop: Loop, config: list[str]) -> dict[tuple[str, Any], float]:
    frontend = loop.run(start_metrics(server, "127.0.0.1", 0, config=config, cpu_metrics=False))
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{frontend.port}/metrics", timeout=10) as r:
            text = r.read().decode()
    finally:
        loop.run(frontend.stop())
    got = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            got[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return got


def key(name: str, **labels: str) -> tuple[str, Any]:
    return name, tuple(sorted({"model": "sleepy", "version": "1", **labels}.items()))


def test_core_histograms_count_every_request(server: Server) -> None:
    assert "latency_histograms" not in server.statistics("sleepy")[0]  # only when asked
    s = server.statistics("sleepy", histograms=True)[0]
    hists = s["latency_histograms"]
    assert set(hists) == set(latency.KINDS)
    assert len(latency.BOUNDS_US) == 81 and latency.BOUNDS_US[0] == 1.0
    assert latency.BOUNDS_US[-1] == 100_000_000.0
    assert list(latency.BOUNDS_US) == sorted(set(latency.BOUNDS_US))
    for kind, counts in hists.items():
        assert len(counts) == len(latency.BOUNDS_US) + 1
        assert sum(counts) == FAST + SLOW == s["inference_stats"]["success"]["count"], kind
    # The slow requests' compute is >= 30 ms: above the 25 ms bound; the fast ones' far below.
    infer = hists["compute_infer"]
    at_25ms = latency.BOUNDS_US.index(25_000.0)
    assert sum(infer[: at_25ms + 1]) == FAST
    assert sum(infer[at_25ms + 1 :]) == SLOW
    p = latency.percentiles(s)
    assert p["compute_infer"]["p50"] is not None and p["compute_infer"]["p50"] < 25
    assert p["compute_infer"]["p99"] >= SLOW_S * 1000 * 0.75  # within a bucket's width
    assert p["request"]["p99"] >= p["compute_infer"]["p99"] * 0.75


def test_prometheus_histograms_match_requests(server: Server, loop: Loop) -> None:
    got = scrape(server, loop, ["histogram_latencies=true"])
    success = got[key("nv_inference_request_success_total")]
    assert success == FAST + SLOW
    for kind in ("request", "queue", "compute_input", "compute_infer", "compute_output"):
        name = f"nv_inference_{kind}_histogram_us"
        assert got[key(name + "_count")] == success
        assert got[key(name + "_bucket", le="+Inf")] == success
        previous = 0.0
        for bound in latency.EXPORT_BOUNDS_US:  # cumulative: never decreasing
            value = got[key(name + "_bucket", le=str(bound))]
            assert previous <= value <= success
            previous = value
    infer = "nv_inference_compute_infer_histogram_us"
    assert got[key(infer + "_bucket", le="25000")] == FAST
    slow = got[key(infer + "_bucket", le="+Inf")] - got[key(infer + "_bucket", le="25000")]
    assert slow == SLOW
    stats = server.statistics("sleepy")[0]["inference_stats"]
    assert got[key(infer + "_sum")] == stats["compute_infer"]["ns"] // 1000
    assert got[key(infer + "_sum")] >= SLOW * SLOW_S * 1e6
    # Off by default (Triton's default): no histogram families.
    assert not any(n.endswith("_histogram_us_count") for n, _ in scrape(server, loop, []))


def test_summary_quantiles(server: Server, loop: Loop) -> None:
    got = scrape(server, loop, ["summary_latencies=true"])
    name = "nv_inference_compute_infer_summary_us"
    assert got[key(name + "_count")] == FAST + SLOW
    for q in ("0.5", "0.9", "0.95", "0.99", "0.999"):  # Triton's default quantiles
        assert key(name, quantile=q) in got
    assert got[key(name, quantile="0.5")] < 25_000
    assert got[key(name, quantile="0.99")] >= SLOW_S * 1e6 * 0.75
    got = scrape(
        server, loop, ["summary_latencies=true", 'summary_quantiles="0.25:0.01,0.75:0.01"']
    )
    assert key(name, quantile="0.25") in got and key(name, quantile="0.75") in got
    assert key(name, quantile="0.5") not in got
    for bad in ("summary_quantiles=0.5", "summary_quantiles=1.5:0.1", "summary_quantiles=x:y",
                "histogram_latencies=maybe"):  # fmt: skip
        with pytest.raises(TritonError, match="invalid --metrics-config"):
            loop.run(start_metrics(server, "127.0.0.1", 0, config=[bad]))


def test_summary_without_requests_is_nan(loop: Loop) -> None:
    with Server() as s:
        s.add_model(text_format.Parse(CONFIG, mc.ModelConfig()), Sleepy())
        got = scrape(s, loop, ["summary_latencies=true"])
    value = got[key("nv_inference_request_summary_us", quantile="0.5")]
    assert value != value  # NaN


def test_quantile_arithmetic() -> None:
    counts = latency.empty()
    i_1ms = latency.BOUNDS_US.index(1000.0)
    counts[i_1ms] = 100  # 100 requests in (800 us, 1000 us]
    assert latency.quantile(counts, 0.5) == pytest.approx(900.0)
    assert latency.quantile(counts, 1.0) == pytest.approx(1000.0)
    counts[-1] = 1  # above 100 s: reported as the last bound
    assert latency.quantile(counts, 1.0) == latency.BOUNDS_US[-1]
    assert latency.quantile(latency.empty(), 0.5) is None
    assert latency.subtract([3, 2], [1, 5]) == [2, 0]
    buckets = latency.prometheus_buckets(counts)
    assert buckets[-1] == ("+Inf", 101)
    assert dict(buckets)["1000"] == 100 and dict(buckets)["500"] == 0
    assert latency.parse_quantiles("0.5:0.05, 0.9:0.01") == ((0.5, 0.05), (0.9, 0.01))


def test_statistics_apis_stay_tritons(server: Server) -> None:
    """The histograms are not a ModelStatistics field: HTTP and gRPC leave them out."""
    from tritonlite.frontends.http.admin import statistics_json

    body = json.dumps(statistics_json(server.statistics("sleepy", histograms=True)))
    assert "latency_histograms" not in body
