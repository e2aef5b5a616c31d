#!/usr/bin/env python
"""An ensemble's own cost: a two-step ensemble of the bundled ``simple`` ONNX model (add/sub on
16 ints, both steps), in-process (``Server.infer_async``), 32 requests in flight; requests per
second and the server's CPU per request (the process's, and that of its background event loop
thread, which runs every ensemble request), before and after in one run.

    .venv/bin/python benchmarks/bench_ensemble.py [--requests 20000] [--rounds 3]
        [--baseline-python /path/to/other/.venv/bin/python]

With ``--baseline-python`` the same measurement runs under that interpreter (another build of
tritonlite, e.g. main before a change) first, round by round, and the table shows both.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ENSEMBLE = """name: "ens"
platform: "ensemble"
max_batch_size: 64
input [{ name: "A" data_type: TYPE_INT32 dims: [ 16 ] }, { name: "B" data_type: TYPE_INT32 dims: [ 16 ] }]
output [{ name: "C" data_type: TYPE_INT32 dims: [ 16 ] }, { name: "D" data_type: TYPE_INT32 dims: [ 16 ] }]
ensemble_scheduling { step [
  { model_name: "simple" model_version: -1
    input_map { key: "INPUT0" value: "A" } input_map { key: "INPUT1" value: "B" }
    output_map { key: "OUTPUT0" value: "s" } output_map { key: "OUTPUT1" value: "d" } },
  { model_name: "simple" model_version: -1
    input_map { key: "INPUT0" value: "s" } input_map { key: "INPUT1" value: "d" }
    output_map { key: "OUTPUT0" value: "C" } output_map { key: "OUTPUT1" value: "D" } }
] }
"""


def make_repo(dest: Path) -> None:
    shutil.copytree(ROOT / "model_repository" / "simple", dest / "simple")
    config = dest / "simple" / "config.pbtxt"
    config.write_text(config.read_text().replace("max_batch_size: 8", "max_batch_size: 64"))
    (dest / "ens" / "1").mkdir(parents=True)
    (dest / "ens" / "config.pbtxt").write_text(ENSEMBLE)


def thread_cpu() -> dict[str, float]:
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        out[tid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def measure(repo: str, requests: int) -> dict[str, float]:
    """One measurement in this process: {req_s, cpu_us, loop_us}."""
    import numpy as np
    import tritonlite

    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    with tritonlite.Server(model_repository=repo) as server:

        async def run() -> dict[str, float]:
            async def worker(n: int) -> None:
                for _ in range(n):
                    await server.infer_async("ens", {"A": a, "B": a})

            await asyncio.gather(*(worker(50) for _ in range(32)))  # warm-up
            r0, t0, w0 = resource.getrusage(resource.RUSAGE_SELF), thread_cpu(), time.perf_counter()
            await asyncio.gather(*(worker(requests // 32) for _ in range(32)))
            r1, t1, w1 = resource.getrusage(resource.RUSAGE_SELF), thread_cpu(), time.perf_counter()
            n = requests // 32 * 32
            cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
            main = str(os.getpid())  # the busiest other thread: the background loop
            loop = max(t1[k] - t0.get(k, 0.0) for k in t1 if k != main)
            return {"req_s": n / (w1 - w0), "cpu_us": cpu / n * 1e6, "loop_us": loop / n * 1e6}

        return asyncio.run(run())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=20000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--baseline-python", default="")
    p.add_argument("--one", default="", help=argparse.SUPPRESS)  # child: measure once, print JSON
    args = p.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.requests)))
        return 0
    pythons = ([("before", args.baseline_python)] if args.baseline_python else []) + [
        ("after", sys.executable)]  # fmt: skip
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _ in pythons}
    with tempfile.TemporaryDirectory() as d:
        make_repo(Path(d))
        for r in range(args.rounds):
            for name, python in pythons:
                out = subprocess.run([python, __file__, "--one", d, "--requests",
                                      str(args.requests)], check=True, capture_output=True,
                                     text=True, cwd=tempfile.gettempdir()).stdout  # fmt: skip
                results[name].append(json.loads(out.strip().splitlines()[-1]))
                print(f"round {r + 1} {name}: {results[name][-1]}", flush=True)
    print("\nMedians over the rounds (two-step ensemble of `simple`, in-process, 32 in flight):")
    print("\n| build | requests/s | process CPU µs/request | background loop CPU µs/request |")
    print("|---|---|---|---|")
    for name, rows in results.items():
        med = {k: sorted(x[k] for x in rows)[len(rows) // 2] for k in rows[0]}
        print(f"| {name} | {med['req_s']:,.0f} | {med['cpu_us']:.1f} | {med['loop_us']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
