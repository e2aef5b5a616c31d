"""In-process benchmark of the scheduling core (issue: C++ scheduling core).

(a) a no-op model: requests/s and microseconds of overhead per request at 1 and 256 concurrent
    requests, next to the cost of calling the backend directly (the baseline);
(b) the reference `mlp` ONNX model (512 -> 4x1024 -> 16, fp32) served with dynamic batching at
    64 concurrent requests vs raw onnxruntime `session.run` at the batch size the batcher formed.

Load comes from three in-process clients: `infer` (sync, one thread), asyncio coroutines
awaiting `infer_async`, and the core's native closed loop (`_core.closed_loop`: C++ re-submits
each request as it completes, so no Python runs per request on the client side). All share the
machine's cores with the server: the Python clients' own per-request work is CPU the server
cannot use, which is why the native client shows what the server itself costs.

Run: .venv/bin/python benchmarks/bench_core.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf import text_format

from tritonlite import Server, _core
from tritonlite._proto import model_config_pb2 as mc


class NoOp:
    def create_instance(self, index: int, kind: str, device_id: int) -> NoOp:
        return self

    def execute(self, inputs: dict[str, np.ndarray], names: list[str]) -> dict[str, Any]:
        return {"OUT": inputs["IN"]}

    def close(self) -> None:
        pass


NOOP = """
name: "noop" max_batch_size: {mbs}
input [{{ name: "IN" data_type: TYPE_FP32 dims: [ 16 ] }}]
output [{{ name: "OUT" data_type: TYPE_FP32 dims: [ 16 ] }}]
{batching}
"""


def timed_loop(fn: Any, seconds: float) -> tuple[int, float]:
    n, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds:
        for _ in range(100):
            fn()
        n += 100
    return n, elapsed


async def async_load(server: Server, model: str, make_inputs: Any, concurrency: int, seconds: float) -> tuple[int, float]:
    done = 0
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal done
        inputs = make_inputs()
        while time.perf_counter() < deadline:
            await server.infer_async(model, inputs)
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*[client() for _ in range(concurrency)])
    return done, time.perf_counter() - t0


def bench_noop(seconds: float) -> None:
    x = np.ones((1, 16), np.float32)
    backend = NoOp()
    n, el = timed_loop(lambda: backend.execute({"IN": x}, ["OUT"]), seconds)
    base_us = el / n * 1e6
    print("(a) no-op model, in-process (batch-1 requests)")
    print(f"    baseline: backend.execute called directly      {base_us:8.2f} us/call")
    rows = []
    for label, mbs, batching in [
        ("no batching", 8, ""),
        ("dynamic batching", 64, "dynamic_batching { }"),
    ]:
        server = Server()
        server.add_model(text_format.Parse(NOOP.format(mbs=mbs, batching=batching), mc.ModelConfig()), NoOp())
        n, el = timed_loop(lambda: server.infer("noop", {"IN": x}), seconds)
        sync_us = el / n * 1e6
        n1, el1 = asyncio.run(async_load(server, "noop", lambda: {"IN": x}, 1, seconds))
        n256, el256 = asyncio.run(async_load(server, "noop", lambda: {"IN": x}, 256, seconds))
        native = _core.closed_loop(server.get_model("noop").runner, {"IN": x}, 256, seconds)
        native_us = native["elapsed_s"] / max(1, native["completed"]) * 1e6
        stats = server.statistics("noop")[0]
        avg_batch = stats["inference_count"] / max(1, stats["execution_count"])
        server.close()
        rows.append((label, sync_us, el1 / n1 * 1e6, n256 / el256, el256 / n256 * 1e6, native_us, avg_batch))
    print(f"    {'':18} {'sync c=1':>14} {'async c=1':>14} {'async c=256':>22} {'native c=256':>14} {'avg batch':>10}")
    for label, s1, a1, thr, a256, nat, ab in rows:
        print(
            f"    {label:18} {s1:8.2f} us/req {a1:8.2f} us/req {thr:9.0f} req/s {a256:6.2f} us/req"
            f" {nat:8.2f} us/req {ab:10.1f}"
        )
        print(
            f"    {'  overhead':18} {s1 - base_us:8.2f} us     {a1 - base_us:8.2f} us     "
            f"{'':10}      {a256 - base_us / ab:6.2f} us   {nat - base_us / ab:8.2f} us"
        )
    print("    target: overhead <= 20 us per request")


MLP = """
name: "mlp" backend: "onnxruntime" max_batch_size: 64
input [{ name: "INPUT" data_type: TYPE_FP32 dims: [ 512 ] }]
output [{ name: "OUTPUT" data_type: TYPE_FP32 dims: [ 16 ] }]
dynamic_batching { max_queue_delay_microseconds: 2000 }
"""


def bench_mlp(seconds: float, concurrency: int = 64) -> None:
    import onnxruntime as ort

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from models import make_mlp_onnx  # the test suite's model builders

    from tritonlite.backends import onnxruntime as ort_backend

    with tempfile.TemporaryDirectory() as tmp:
        version_dir = Path(tmp) / "mlp" / "1"
        version_dir.mkdir(parents=True)
        make_mlp_onnx(version_dir / "model.onnx", input_name="INPUT", output_name="OUTPUT")
        config = text_format.Parse(MLP, mc.ModelConfig())
        server = Server()
        server.add_model(config, ort_backend.create_backend(config, version_dir.parent, version_dir))
        rng = np.random.default_rng(0)
        asyncio.run(async_load(server, "mlp", lambda: {"INPUT": rng.standard_normal((1, 512), np.float32)}, concurrency, 1.0))
        n, el = asyncio.run(
            async_load(server, "mlp", lambda: {"INPUT": rng.standard_normal((1, 512), np.float32)}, concurrency, seconds)
        )
        served_py = n / el
        before = server.statistics("mlp")[0]
        native = _core.closed_loop(server.get_model("mlp").runner,
                                   {"INPUT": rng.standard_normal((1, 512), np.float32)}, concurrency, seconds)
        after = server.statistics("mlp")[0]
        server.close()
        # Batch 1: the same model configured for latency (no queue delay), one request at a time.
        latency_config = text_format.Parse(MLP.replace("max_queue_delay_microseconds: 2000", ""),
                                           mc.ModelConfig())  # fmt: skip
        server = Server()
        server.add_model(latency_config, ort_backend.create_backend(latency_config, version_dir.parent, version_dir))
        one = _core.closed_loop(server.get_model("mlp").runner,
                                {"INPUT": rng.standard_normal((1, 512), np.float32)}, 1, seconds / 2)
        served_one = one["completed"] / one["elapsed_s"]
        server.close()
        served = native["completed"] / native["elapsed_s"]
        batches = after["execution_count"] - before["execution_count"]
        avg_batch = (after["inference_count"] - before["inference_count"]) / max(1, batches)
        formed = max(1, int(round(avg_batch)))

        sess_opts = ort.SessionOptions()
        sess = ort.InferenceSession(str(version_dir / "model.onnx"), sess_opts, providers=["CPUExecutionProvider"])
        xb = rng.standard_normal((formed, 512), np.float32)
        x64 = rng.standard_normal((64, 512), np.float32)
        x1 = rng.standard_normal((1, 512), np.float32)
        n1, el1 = timed_loop(lambda: sess.run(["OUTPUT"], {"INPUT": x1}), seconds / 2)
        raw_one = n1 / el1
        nb, elb = timed_loop(lambda: sess.run(["OUTPUT"], {"INPUT": xb}), seconds / 2)
        n64, el64 = timed_loop(lambda: sess.run(["OUTPUT"], {"INPUT": x64}), seconds / 2)
        raw_formed = nb * formed / elb
        raw64 = n64 * 64 / el64
    print(f"(b) mlp ONNX model, in-process, dynamic batching, {concurrency} concurrent requests")
    print(f"    served, native client:         {served:9.0f} rows/s (average batch formed {avg_batch:.1f})")
    print(f"    served, asyncio client:        {served_py:9.0f} rows/s (the client's Python shares the cores)")
    print(f"    raw onnxruntime at batch {formed:3d}:  {raw_formed:9.0f} rows/s -> served is {served / raw_formed:.0%}")
    if formed != 64:
        print(f"    raw onnxruntime at batch  64:  {raw64:9.0f} rows/s -> served is {served / raw64:.0%}")
    print("    target: served >= 90% of raw onnxruntime at the formed batch size")
    print(f"    batch 1 (one request at a time, no queue delay): served {served_one:7.0f} rows/s, "
          f"raw {raw_one:7.0f} rows/s -> {served_one / raw_one:.0%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--only", choices=["noop", "mlp"], default=None)
    args = parser.parse_args()
    print(f"tritonlite core benchmark ({time.strftime('%Y-%m-%d')}, {__import__('os').cpu_count()} cores)")
    if args.only in (None, "noop"):
        bench_noop(args.seconds)
    if args.only in (None, "mlp"):
        bench_mlp(args.seconds)


if __name__ == "__main__":
    main()
