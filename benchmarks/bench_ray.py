#!/usr/bin/env python
"""Ray Serve overhead: add_sub (INT32 [16], Triton's binary tensor extension) over HTTP, sent to
``tritonlite-server`` directly and to ``tritonlite.ray`` (one replica, Serve's HTTP proxy, local
one-node Ray) in one run, with the same load generator (``wrk`` when installed, else a
``tritonclient.http.aio`` closed loop; bench_http.py's). Prints throughput, p50/p99 and the
latency Serve adds (p50 and p99, Serve minus direct) per concurrency.

    .venv/bin/python benchmarks/bench_ray.py [--concurrency 1,8,32] [--seconds 5] [--cpus 2]

The generator shares the machine's cores with the servers (and with Ray's own processes):
compare the two columns of one run only.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from bench_grpc import free_port, make_repository  # noqa: E402
from bench_http import measure, wait_http  # noqa: E402


def run_direct(repo: Path, levels: list[int], seconds: float, work: Path) -> dict[int, dict]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tritonlite.cli", "--model-repository", str(repo), "--http-address",
         "127.0.0.1", f"--http-port={port}", "--allow-grpc=false", "--allow-metrics=false",
         "--log-info=false"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    out = {}
    try:
        wait_http(f"127.0.0.1:{port}")
        for conc in levels:
            out[conc] = measure(f"127.0.0.1:{port}", conc, seconds, True, work)
            print(f"direct    c={conc}: {_line(out[conc])}", flush=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    return out


def run_serve(repo: Path, levels: list[int], seconds: float, work: Path, cpus: int) -> dict[int, dict]:
    import ray
    from ray import serve

    import tritonlite.ray as tray

    port = free_port()
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    out = {}
    try:
        serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
        app = tray.build_app({"model_repository": str(repo), "num_replicas": 1, "num_cpus": 1})
        serve.run(app, name="bench", route_prefix="/", blocking=False)
        wait_http(f"127.0.0.1:{port}", timeout=300)
        for conc in levels:
            out[conc] = measure(f"127.0.0.1:{port}", conc, seconds, True, work)
            print(f"ray serve c={conc}: {_line(out[conc])}", flush=True)
    finally:
        serve.shutdown()
        ray.shutdown()
    return out


def _line(r: dict) -> str:
    return f"{r['throughput']:.0f} infer/s p50 {r['p50_us']:.0f} us p99 {r['p99_us']:.0f} us"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2,
                        help="CPUs Ray may schedule on (the replica takes 1)")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    work = Path(tempfile.mkdtemp(prefix="tritonlite-bench-ray-"))
    repo = make_repository(work / "repo")
    direct = run_direct(repo, levels, args.seconds, work)
    through = run_serve(repo, levels, args.seconds, work, args.cpus)
    print(f"\nDate: {time.strftime('%Y-%m-%d')}; {os.cpu_count()} cores; add_sub over HTTP "
          "(binary tensors), batch-1 requests; Ray Serve: 1 replica, local one-node Ray")
    print("| concurrency | direct infer/s | p50 us | p99 us | Ray Serve infer/s | p50 us | p99 us "
          "| throughput ratio | added p50 us | added p99 us |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for conc in levels:
        d, s = direct[conc], through[conc]
        print(f"| {conc} | {d['throughput']:.0f} | {d['p50_us']:.0f} | {d['p99_us']:.0f} "
              f"| {s['throughput']:.0f} | {s['p50_us']:.0f} | {s['p99_us']:.0f} "
              f"| {s['throughput'] / d['throughput']:.2f} | {s['p50_us'] - d['p50_us']:.0f} "
              f"| {s['p99_us'] - d['p99_us']:.0f} |")


if __name__ == "__main__":
    main()
