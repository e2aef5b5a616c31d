"""Stress: 1,000 concurrent requests for 30 s mixing good, oversized and timing-out requests.
Every request gets exactly one response or error; nothing crashes, deadlocks or leaks."""

from __future__ import annotations

import asyncio
import os
import random
import time
from typing import Any

import numpy as np
from google.protobuf import text_format

from tritonlite import Server, TritonError
from tritonlite._proto import model_config_pb2 as mc

SECONDS = float(os.environ.get("TRITONLITE_STRESS_SECONDS", "30"))
CONCURRENCY = 1000

CONFIG = """
name: "stress" max_batch_size: 8
input [{ name: "IN" data_type: TYPE_FP32 dims: [ 4 ] }]
output [{ name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] }]
instance_group [{ count: 2 }]
dynamic_batching {
  max_queue_delay_microseconds: 500
  default_queue_policy { allow_timeout_override: true max_queue_size: 800 }
}
"""


class Doubler:
    def create_instance(self, index: int, kind: str, device_id: int) -> Doubler:
        return self

    def execute(self, inputs: dict[str, np.ndarray], names: list[str]) -> dict[str, Any]:
        x = inputs["IN"]
        if (x == 13).any():
            raise ValueError("unlucky input")
        return {"OUT": x * 2}

    def close(self) -> None:
        pass


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_stress_mixed_traffic_every_request_answered_once() -> None:
    server = Server()
    server.add_model(text_format.Parse(CONFIG, mc.ModelConfig()), Doubler())
    counts = {"ok": 0, "invalid": 0, "timeout": 0, "full": 0, "backend": 0, "wrong": 0}
    issued = 0
    rss: list[float] = []

    async def client(seed: int, deadline: float) -> None:
        nonlocal issued
        rng = random.Random(seed)
        while time.monotonic() < deadline:
            kind = rng.random()
            rows = rng.randint(1, 4)
            value = float(rng.randint(0, 12))
            timeout_us = 0
            if kind < 0.1:
                rows = 9  # over max_batch_size
            elif kind < 0.3:
                timeout_us = rng.choice([1, 50, 200])  # likely to time out in the queue
            elif kind < 0.35:
                value = 13.0  # the backend raises for this batch
            x = np.full((rows, 4), value, dtype=np.float32)
            issued += 1
            try:
                out = await server.infer_async("stress", {"IN": x}, timeout_us=timeout_us)
            except TritonError as e:
                if "batch-size must be <=" in e.message:
                    counts["invalid"] += 1
                elif "timeout" in e.message:
                    counts["timeout"] += 1
                elif "maximum queue size" in e.message:
                    counts["full"] += 1
                elif "unlucky" in e.message:
                    counts["backend"] += 1
                else:
                    raise
                continue
            if out["OUT"].shape != x.shape or not (out["OUT"] == 2 * value).all():
                counts["wrong"] += 1
            else:
                counts["ok"] += 1

    async def main() -> None:
        warm = time.monotonic() + min(3.0, SECONDS / 5)
        await asyncio.gather(*[client(i, warm) for i in range(CONCURRENCY)])
        rss.append(rss_mb())
        deadline = time.monotonic() + SECONDS
        await asyncio.wait_for(
            asyncio.gather(*[client(i + CONCURRENCY, deadline) for i in range(CONCURRENCY)]),
            timeout=SECONDS + 60,  # a deadlock fails here instead of hanging CI
        )
        rss.append(rss_mb())
        completions = server._completions(asyncio.get_running_loop())
        assert completions.pending == {}
        assert completions.unmatched == 0

    asyncio.run(main())
    stats = server.statistics("stress")[0]
    server.close()
    answered = sum(counts.values())
    print(f"\nstress: {issued} requests in {SECONDS:.0f}s: {counts}; rss {rss[0]:.0f}->{rss[1]:.0f} MB")
    assert answered == issued
    assert counts["wrong"] == 0
    assert counts["ok"] > 1000 and counts["invalid"] > 0 and counts["backend"] > 0
    assert counts["timeout"] + counts["full"] > 0
    assert stats["inference_stats"]["success"]["count"] == counts["ok"]
    assert rss[1] - rss[0] < 64, f"memory grew {rss[1] - rss[0]:.0f} MB under steady load"
