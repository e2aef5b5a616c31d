"""Python backend overhead: a trivial model (identity on FP32[4]) served in a stub process, in
process, and the same op as an ONNX model, through the in-process Server.

    .venv/bin/python benchmarks/bench_python_backend.py [--seconds 2] [--rounds 3]

For each (max_batch_size 16, dynamic batching without delay): sequential ``Server.infer``
(latency p50/p99 and requests/s at concurrency 1) and ``infer_async`` with 16 requests in
flight (requests/s). Rounds are interleaved and the median
round is reported, which matters on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from models import make_identity_onnx  # noqa: E402 (after the sys.path insert)
from tritonlite import Server  # noqa: E402 (after the sys.path insert)
from tritonlite import config as model_config  # noqa: E402 (after the sys.path insert)
from tritonlite.backends import get_backend_factory  # noqa: E402 (after the sys.path insert)

MODEL_PY = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [
            pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUTPUT0", pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy())]
            )
            for r in requests
        ]
"""
IO = """max_batch_size: 16
dynamic_batching { }
input [{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] }]
output [{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] }]
"""


def build(repo: Path) -> None:
    for mode in ("stub", "in_process"):
        d = repo / f"identity_{mode}"
        (d / "1").mkdir(parents=True)
        (d / "1" / "model.py").write_text(MODEL_PY)
        (d / "config.pbtxt").write_text(
            f'backend: "python"\n{IO}parameters {{ key: "EXECUTION_MODE" value {{ string_value: '
            f'"{mode}" }} }}\n'
        )
    d = repo / "identity_onnx"
    make_identity_onnx(d / "1" / "model.onnx", "FP32", dims=(4,))
    (d / "config.pbtxt").write_text(f'platform: "onnxruntime_onnx"\n{IO}')


def serve(server: Server, repo: Path, name: str) -> None:
    d = repo / name
    config = model_config.load_model_config(d)
    factory = get_backend_factory(config.backend or config.platform, name)
    server.add_model(config, factory(config, d, d / "1", server=server))


def sequential(server: Server, model: str, seconds: float) -> tuple[float, float, float]:
    x = {"INPUT0": np.ones((1, 4), np.float32)}
    for _ in range(200):
        server.infer(model, x)
    lat = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        server.infer(model, x)
        lat.append(time.perf_counter() - t)
    lat.sort()
    return len(lat) / seconds, lat[len(lat) // 2] * 1e6, lat[int(len(lat) * 0.99)] * 1e6


def concurrent(server: Server, model: str, seconds: float, inflight: int = 16) -> float:
    x = {"INPUT0": np.ones((1, 4), np.float32)}

    async def main() -> int:
        done = 0
        end = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < end:
                await server.infer_async(model, x)
                done += 1

        await asyncio.gather(*[worker() for _ in range(inflight)])
        return done

    return asyncio.run(main()) / seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    repo = Path(tempfile.mkdtemp())
    try:
        build(repo)
        server = Server()
        names = ["identity_stub", "identity_in_process", "identity_onnx"]
        for name in names:
            serve(server, repo, name)
        results: dict[str, list[Any]] = {n: [] for n in names}
        for _ in range(args.rounds):
            for name in names:
                rps, p50, p99 = sequential(server, name, args.seconds)
                results[name].append((rps, p50, p99, concurrent(server, name, args.seconds)))
        print(f"{'model':22} {'seq req/s':>10} {'p50 us':>8} {'p99 us':>8} {'c16 req/s':>10}")
        for name in names:
            rows = results[name]
            med = [statistics.median(r[i] for r in rows) for i in range(4)]
            print(f"{name:22} {med[0]:10.0f} {med[1]:8.1f} {med[2]:8.1f} {med[3]:10.0f}")
        server.close()
    finally:
        shutil.rmtree(repo, ignore_errors=True)


if __name__ == "__main__":
    main()
