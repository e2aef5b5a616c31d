#!/usr/bin/env python
"""One core saturated (issue #20): add_sub over gRPC driven by h2load, a load generator cheap
enough to keep a pinned server busy.

bench_pinned.py drives the server with perf_analyzer, which needs ~35-45 µs of CPU per request
on its own core: at ~25-30k requests/s the server (16 µs per request) waits for it most of the
time, forms batches of 3-6 and never shows what one core can serve. nghttp2's ``h2load``
(Debian ``nghttp2-client``, C, ~5-10 µs per request) posts the same ModelInfer request (the
``add_sub`` reference model, batch 1, INT32 [1,16] x 2, raw_input_contents, as perf_analyzer
sends it) over one HTTP/2 connection with ``--max-streams`` requests in flight, pinned to
CLIENT_CPU, while tritonlite-server is pinned to SERVER_CPUS, one build per column ('before' =
``--baseline-python``, 'after' = this checkout, ``--variant``), in one run.

Per column: requests/s (h2load's main window), the server's CPU µs per request (its /proc
CPU time over the requests its statistics counted, user and system), the average batch, p50/p99
latency (h2load's per-request log) and the requests that failed (gRPC status in the trailers is
not h2load's business: the server's own failure count says it).

    .venv/bin/python benchmarks/bench_h2load.py [--baseline-python /work/wt/base/.venv/bin/python]
        [--max-streams 32] [--seconds 5] [--server-cpus 1] [--client-cpu 0]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench_grpc as bg
import bench_pinned as bp
import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2

PATH = "/inference.GRPCInferenceService/ModelInfer"


def request_body(model: str = "add_sub") -> bytes:
    """A gRPC-framed ModelInferRequest as perf_analyzer sends it (raw_input_contents)."""
    req = service_pb2.ModelInferRequest(model_name=model)
    rng = np.random.default_rng(1)
    for name in ("INPUT0", "INPUT1"):
        req.inputs.add(name=name, datatype="INT32", shape=[1, 16])
        req.raw_input_contents.append(rng.integers(-100, 100, (1, 16), dtype=np.int32).tobytes())
    payload = req.SerializeToString()
    return b"\x00" + struct.pack(">I", len(payload)) + payload


def failures(url: str, model: str) -> int:
    stats = grpcclient.InferenceServerClient(url).get_inference_statistics(model, as_json=True)
    fail = stats.get("model_stats", [{}])[0].get("inference_stats", {}).get("fail", {})
    return int(fail.get("count", 0))


def measure_side(python: str, env: dict[str, str], repo: Path, args: argparse.Namespace,
                 h2load: str, work: Path) -> dict[str, float]:  # fmt: skip
    body = work / "add_sub.grpc"
    body.write_bytes(request_body())
    proc, url = bp.start_server(python, repo, args.server_cpus, env)
    try:
        log = work / "h2load.log"
        log.unlink(missing_ok=True)
        cmd = [*bp.taskset(args.client_cpu), h2load, "-c", "1", "-t", "1", "-m", str(args.max_streams),
               "-D", f"{args.seconds:g}", "--warm-up-time", "1", "-d", str(body),
               "-H", "content-type: application/grpc", "-H", "te: trailers",
               "--log-file", str(log), f"http://{url}{PATH}"]  # fmt: skip
        runs0, fail0, cpu0 = bp.counts(url, "add_sub"), failures(url, "add_sub"), bp.user_sys_s(proc.pid)
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.seconds + 60)
        if out.returncode != 0:
            sys.exit(f"h2load failed ({out.returncode}):\n{out.stdout}{out.stderr}")
        cpu1, runs1, fail1 = bp.user_sys_s(proc.pid), bp.counts(url, "add_sub"), failures(url, "add_sub")
    finally:
        bp.stop_server(proc)
    rate = re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", out.stdout)
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out.stdout)
    if rate is None or done is None:
        sys.exit("h2load's output not understood:\n" + out.stdout + out.stderr)
    requests = max(1, runs1[0] - runs0[0])
    latencies = np.array([int(line.split("\t")[2]) for line in log.read_text().splitlines() if line])
    return {"tput": float(rate.group(1)),
            "us": (sum(cpu1) - sum(cpu0)) / requests * 1e6,
            "user_us": (cpu1[0] - cpu0[0]) / requests * 1e6,
            "sys_us": (cpu1[1] - cpu0[1]) / requests * 1e6,
            "batch": requests / max(1, runs1[1] - runs0[1]),
            "p50": float(np.percentile(latencies, 50)), "p99": float(np.percentile(latencies, 99)),
            "failed": float(fail1 - fail0) + float(int(done.group(1)) - int(done.group(2)))}  # fmt: skip


ROWS = [
    ("add_sub c={c} infer/s (h2load's main window)", "tput", "{:.0f}", ">= 83,333"),
    ("server CPU µs/req", "us", "{:.1f}", "<= 12"),
    ("of which user µs/req", "user_us", "{:.1f}", "-"),
    ("of which system µs/req", "sys_us", "{:.1f}", "-"),
    ("average batch", "batch", "{:.1f}", "-"),
    ("p50 µs", "p50", "{:.0f}", "-"),
    ("p99 µs", "p99", "{:.0f}", "<= 2,000"),
    ("failed requests", "failed", "{:.0f}", "0"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-python", default=bp.DEFAULT_BASELINE,
                        help="python of a pristine build of main ('before'); '' to skip")  # fmt: skip
    parser.add_argument("--python", default=sys.executable, help="python of this build ('after')")
    parser.add_argument("--server-cpus", default="1")
    parser.add_argument("--client-cpu", default="0")
    parser.add_argument("--seconds", type=float, default=5.0, help="h2load's main window")
    parser.add_argument("--max-streams", type=int, default=32, help="requests in flight")
    parser.add_argument("--h2load", default=shutil.which("h2load"))
    parser.add_argument("--variant", action="append", default=[], type=bp.parse_variant,
                        help="LABEL:ENV=VALUE[,ENV=VALUE]: also this build with that environment")  # fmt: skip
    args = parser.parse_args()
    if not args.h2load:
        sys.exit("h2load not found (Debian: apt-get install nghttp2-client), or --h2load")
    work = Path(tempfile.mkdtemp(prefix="tritonlite-h2load-"))
    repo = bg.make_repository(work / "repo")
    results: dict[str, dict[str, float]] = {}
    for label, python, env in bp.sides_of(args):
        t0 = time.monotonic()
        results[label] = measure_side(python, env, repo, args, args.h2load, work)
        print(f"{label}: done in {time.monotonic() - t0:.0f} s: "
              + ", ".join(f"{k} {v:.1f}" for k, v in results[label].items()), flush=True)  # fmt: skip
    labels = list(results)
    print(f"\nDate: {time.strftime('%Y-%m-%d %H:%M')}; machine: {os.cpu_count()} CPUs; server on CPU "
          f"{args.server_cpus}, h2load (one connection, {args.max_streams} streams) on CPU "
          f"{args.client_cpu}; {args.seconds:g} s windows.\n")  # fmt: skip
    print("| case | " + " | ".join(labels) + " | goal (issue #20) |")
    print("|---|" + "---|" * len(labels) + "---|")
    for title, key, fmt, goal in ROWS:
        cells = [fmt.format(results[s][key]) for s in labels]
        print(f"| {title.format(c=args.max_streams)} | " + " | ".join(cells) + f" | {goal} |")


if __name__ == "__main__":
    main()
