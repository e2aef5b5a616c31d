#!/usr/bin/env python
"""Time to ready: from starting `tritonlite-server` to its first `/v2/health/ready` 200, on the
bundled model repository (ONNX models, an ensemble, three python_backend models in stub
processes). Runs two servers alternately, N times each, and prints them side by side.

  python benchmarks/bench_startup.py --before /work/wt/wheel-base/.venv/bin/tritonlite-server

`--before` is another build's `tritonlite-server` (e.g. a checkout of an older commit with its
own .venv); `--after` defaults to this checkout's. Each run polls /v2/health/ready every 10 ms.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def time_to_ready(server: str, repo: str, timeout: float = 60.0) -> float:
    http, grpc, metrics = _port(), _port(), _port()
    url = f"http://127.0.0.1:{http}/v2/health/ready"
    cmd = [server, "--model-repository", repo, "--http-port", str(http),
           "--grpc-port", str(grpc), "--metrics-port", str(metrics)]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - start < timeout:
            if proc.poll() is not None:
                raise RuntimeError(f"{server} exited with {proc.returncode}")
            try:
                with urllib.request.urlopen(url, timeout=1) as r:
                    if r.status == 200:
                        return time.perf_counter() - start
            except OSError:
                pass
            time.sleep(0.01)
        raise RuntimeError(f"{server} not ready after {timeout} s")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the baseline's tritonlite-server")
    parser.add_argument("--after", default=str(ROOT / ".venv/bin/tritonlite-server"))
    parser.add_argument("--repo", default=str(ROOT / "model_repository"))
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    servers = {"before": args.before, "after": args.after}
    for server in servers.values():  # warm the page cache (first start after a build is slower)
        time_to_ready(server, args.repo)
    times: dict[str, list[float]] = {name: [] for name in servers}
    for _ in range(args.runs):
        for name, server in servers.items():  # alternate: both see the same machine load
            times[name].append(time_to_ready(server, args.repo))
    print(f"time to /v2/health/ready, {args.repo}, {args.runs} runs each (seconds)")
    print(f"{'':8} {'median':>7} {'min':>7} {'max':>7}  runs")
    for name, ts in times.items():
        runs = " ".join(f"{t:.3f}" for t in ts)
        print(f"{name:8} {statistics.median(ts):7.3f} {min(ts):7.3f} {max(ts):7.3f}  {runs}")


if __name__ == "__main__":
    main()
