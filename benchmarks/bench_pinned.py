#!/usr/bin/env python
"""Server CPU per request where cores are scarce (issue #20): the server pinned to one CPU.

tritonlite-server runs under ``taskset -c SERVER_CPUS`` and NVIDIA perf_analyzer (gRPC, batch 1,
``--async --max-threads 1``, its cheapest mode) under ``taskset -c CLIENT_CPU``, so the load
generator does not take the server's core. Cases, each for a pristine build of main ('before',
``--baseline-python``) and for this checkout ('after'), in one run:

- ``add_sub`` c=32: infer/s, server CPU µs per request (the server's /proc CPU time delta over
  the requests its statistics counted; also split into user and system time), p99;
- ``add_sub`` c=1: p50;
- ``mlp`` c=64 with ``intra_op_thread_count: 1`` (bench_grpc.py's ``mlp_1t``): rows/s, against
  raw onnxruntime pinned to the same CPU (one intra-op thread, batch 64, a separate process, the
  rows perf_analyzer sends) measured right before it; the same comparison in CPU time per row
  (raw onnxruntime's process time per row over the server's /proc time per row: other load on
  a shared machine moves it less than rows/s), the server's average batch (its statistics) and
  raw onnxruntime's CPU time per row at that batch.

It prints one table with the two builds side by side and the issue's goals. Models and the
perf_analyzer driver are bench_grpc.py's (reference models of ../shared/tools/bench when there).

    .venv/bin/python benchmarks/bench_pinned.py [--baseline-python /work/wt/base/.venv/bin/python]
        [--server-cpus 1] [--client-cpu 0] [--seconds 5]
        [--variant 'spin on:TRITONLITE_SPIN_US=50'] [--out FILE]

``--server-cpus 0,1`` measures a two-core server (then sharing with perf_analyzer).
``--variant LABEL:ENV=VALUE[,ENV=VALUE]`` adds a column: this checkout with that environment.
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
from typing import Any

import bench_grpc as bg

DEFAULT_BASELINE = "/work/wt/base/.venv/bin/python"

# The server's session as onnxruntime's own: one intra-op thread (the server's shared pool is sized
# to its one CPU), sequential, ORT_ENABLE_ALL; the rows perf_analyzer sends (its --input-data,
# when make_models wrote it), tiled to the batch. Prints rows/s (wall clock) and CPU µs per row
# (this process's CPU time, which other load on the CPU moves less).
RAW_ORT = """
import json, sys, time
import numpy as np
import onnxruntime as ort
path, seconds, rows, data = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
opts = ort.SessionOptions()
opts.intra_op_num_threads = 1
opts.inter_op_num_threads = 1
sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
if data:
    sent = [row["INPUT0"]["content"] for row in json.load(open(data))["data"]]
    x = np.array([sent[i % len(sent)] for i in range(rows)], dtype=np.float32)
else:
    x = np.random.default_rng(0).standard_normal((rows, 512)).astype(np.float32)
name = sess.get_inputs()[0].name
for _ in range(3):
    sess.run(None, {name: x})
n, t0, c0 = 0, time.perf_counter(), time.process_time()
while time.perf_counter() - t0 < seconds:
    sess.run(None, {name: x})
    n += 1
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
print(n * rows / wall, cpu / (n * rows) * 1e6)
"""


def taskset(cpus: str) -> list[str]:
    return ["taskset", "-c", cpus]


def start_server(python: str, repo: Path, cpus: str, env: dict[str, str]) -> tuple[subprocess.Popen[Any], str]:
    port = bg.free_port()
    cmd = [*taskset(cpus), python, "-m", "tritonlite.cli", "--model-repository", str(repo),
           "--grpc-address", "127.0.0.1", f"--grpc-port={port}", "--allow-http=false",
           "--allow-metrics=false", "--log-info=false"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, **env}, cwd="/")  # fmt: skip
    url = f"127.0.0.1:{port}"
    bg.wait_ready(url, "add_sub", proc)
    bg.wait_ready(url, "mlp_1t", proc)
    return proc, url


def stop_server(proc: subprocess.Popen[Any]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def counts(url: str, model: str) -> tuple[int, int]:
    """(inference_count, execution_count) from the server's statistics."""
    import tritonclient.grpc as grpcclient

    stats = grpcclient.InferenceServerClient(url).get_inference_statistics(model, as_json=True)
    m = stats.get("model_stats", [{}])[0]
    return int(m.get("inference_count", 0)), int(m.get("execution_count", 0))


def user_sys_s(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of the server process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def raw_onnxruntime(python: str, repo: Path, cpus: str, seconds: float, rows: int = 64) -> tuple[float, float]:
    """(rows/s, CPU µs per row) of session.run at `rows` in a separate process pinned to `cpus`."""
    data = repo.parent / f"{repo.name}-inputs" / "mlp.json"
    out = subprocess.run([*taskset(cpus), python, "-c", RAW_ORT, str(repo / "mlp" / "1" / "model.onnx"),
                          str(seconds), str(rows), str(data) if data.exists() else ""],
                         check=True, capture_output=True, text=True, timeout=seconds * 4 + 60)  # fmt: skip
    rate, cpu = out.stdout.strip().splitlines()[-1].split()
    return float(rate), float(cpu)


def measure_side(python: str, env: dict[str, str], repo: Path, args: argparse.Namespace, pa: str,
                 work: Path) -> dict[str, float]:  # fmt: skip
    # perf_analyzer is a shell script exec'ing the binary: pin it through taskset.
    pinned_pa = work / "pa-pinned.sh"
    pinned_pa.write_text(f'#!/bin/sh\nexec taskset -c {args.client_cpu} "{pa}" "$@"\n')
    pinned_pa.chmod(0o755)
    proc, url = start_server(python, repo, args.server_cpus, env)
    out: dict[str, float] = {}
    try:
        runs0 = counts(url, "add_sub")
        cpu0 = user_sys_s(proc.pid)
        r = bg.measure(str(pinned_pa), url, "add_sub", 32, args.seconds, work, repo, "async", proc.pid)
        cpu1 = user_sys_s(proc.pid)
        runs1 = counts(url, "add_sub")
        served = max(1, runs1[0] - runs0[0])
        out.update(add32_tput=r["throughput"], add32_us=r.get("server_us_per_req", float("nan")),
                   add32_user_us=(cpu1[0] - cpu0[0]) / served * 1e6,
                   add32_sys_us=(cpu1[1] - cpu0[1]) / served * 1e6,
                   add32_p99=r["p99_us"],
                   add32_batch=(runs1[0] - runs0[0]) / max(1, runs1[1] - runs0[1]))  # fmt: skip
        r = bg.measure(str(pinned_pa), url, "add_sub", 1, args.seconds, work, repo, "async", proc.pid)
        out.update(add1_p50=r["p50_us"], add1_us=r.get("server_us_per_req", float("nan")))
        # the raw limit on the same CPU, right before the server's turn (the server idles meanwhile)
        raw_cpus = args.server_cpus.split(",")[0]
        out["raw_ort"], out["raw_ort_us"] = raw_onnxruntime(python, repo, raw_cpus, min(args.seconds, 5.0))
        mlp0 = counts(url, "mlp_1t")
        cpu0 = user_sys_s(proc.pid)
        r = bg.measure(str(pinned_pa), url, "mlp_1t", 64, args.seconds, work, repo, "async", proc.pid)
        cpu1 = user_sys_s(proc.pid)
        mlp1 = counts(url, "mlp_1t")
        rows = max(1, mlp1[0] - mlp0[0])
        out.update(mlp_user_us=(cpu1[0] - cpu0[0]) / rows * 1e6,
                   mlp_sys_us=(cpu1[1] - cpu0[1]) / rows * 1e6)  # fmt: skip
        out.update(mlp_rows=r["throughput"], mlp_us=r.get("server_us_per_req", float("nan")),
                   mlp_p99=r["p99_us"],
                   mlp_batch=(mlp1[0] - mlp0[0]) / max(1, mlp1[1] - mlp0[1]))  # fmt: skip
        out["mlp_ratio"] = out["mlp_rows"] / out["raw_ort"]
        # The same comparison in CPU time per row (the server's /proc time over the rows its
        # statistics counted; raw onnxruntime's own), which other load on the CPU moves less
        # than rows/s; and raw onnxruntime at the batch size the server formed.
        out["mlp_cpu_ratio"] = out["raw_ort_us"] / out["mlp_us"]
        _, out["raw_ort_batch_us"] = raw_onnxruntime(python, repo, raw_cpus, min(args.seconds, 5.0),
                                                     max(1, round(out["mlp_batch"])))  # fmt: skip
    finally:
        stop_server(proc)
    return out


ROWS = [
    ("add_sub c=32 infer/s", "add32_tput", "{:.0f}", ">= 83,333"),
    ("add_sub c=32 server CPU µs/req", "add32_us", "{:.1f}", "<= 12"),
    ("add_sub c=32 of which user µs/req", "add32_user_us", "{:.1f}", "-"),
    ("add_sub c=32 of which system µs/req", "add32_sys_us", "{:.1f}", "-"),
    ("add_sub c=32 p99 µs", "add32_p99", "{:.0f}", "<= 2,000"),
    ("add_sub c=32 average batch", "add32_batch", "{:.1f}", "-"),
    ("add_sub c=1 p50 µs", "add1_p50", "{:.0f}", "-"),
    ("add_sub c=1 server CPU µs/req", "add1_us", "{:.1f}", "-"),
    ("mlp_1t c=64 rows/s", "mlp_rows", "{:.0f}", "-"),
    ("raw onnxruntime 1 thread, batch 64, rows/s", "raw_ort", "{:.0f}", "-"),
    ("mlp_1t c=64 / raw onnxruntime", "mlp_ratio", "{:.2f}", ">= 0.85"),
    ("mlp_1t c=64 server CPU µs/req", "mlp_us", "{:.1f}", "-"),
    ("mlp_1t c=64 of which user µs/row", "mlp_user_us", "{:.1f}", "-"),
    ("mlp_1t c=64 of which system µs/row", "mlp_sys_us", "{:.1f}", "-"),
    ("raw onnxruntime batch 64, CPU µs/row", "raw_ort_us", "{:.1f}", "-"),
    ("mlp_1t c=64 / raw onnxruntime, CPU µs per row", "mlp_cpu_ratio", "{:.2f}", "-"),
    ("mlp_1t c=64 average batch", "mlp_batch", "{:.1f}", "-"),
    ("raw onnxruntime at that batch, CPU µs/row", "raw_ort_batch_us", "{:.1f}", "-"),
    ("mlp_1t c=64 p99 µs", "mlp_p99", "{:.0f}", "-"),
]


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    label, _, assignments = text.partition(":")
    env = dict(a.split("=", 1) for a in assignments.split(",") if a)
    return label, env


def sides_of(args: argparse.Namespace) -> list[tuple[str, str, dict[str, str]]]:
    """(label, python, environment) of each column: 'before' (``--baseline-python``, when
    given), 'after' (``--python``) and each ``--variant`` of 'after'."""
    sides: list[tuple[str, str, dict[str, str]]] = []
    if args.baseline_python:
        sides.append(("before", args.baseline_python, {}))
    sides.append(("after", args.python, {}))
    return sides + [(label, args.python, env) for label, env in args.variant]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-python", default=DEFAULT_BASELINE,
                        help="python of a pristine build of main ('before'); '' to skip")  # fmt: skip
    parser.add_argument("--python", default=sys.executable, help="python of this build ('after')")
    parser.add_argument("--server-cpus", default="1")
    parser.add_argument("--client-cpu", default="0")
    parser.add_argument("--seconds", type=float, default=5.0, help="perf_analyzer measurement window")
    parser.add_argument("--perf-analyzer", default=None)
    parser.add_argument("--variant", action="append", default=[], type=parse_variant,
                        help="LABEL:ENV=VALUE[,ENV=VALUE]: also this build with that environment")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None, help="also write the table here (markdown)")
    args = parser.parse_args()
    pa = bg.perf_analyzer_path(args.perf_analyzer)
    if pa is None:
        sys.exit("perf_analyzer not found (../shared/tools/bench/setup.sh, or --perf-analyzer)")
    work = Path(tempfile.mkdtemp(prefix="tritonlite-pinned-"))
    repo = bg.make_repository(work / "repo")
    results: dict[str, dict[str, float]] = {}
    for label, python, env in sides_of(args):
        t0 = time.monotonic()
        results[label] = measure_side(python, env, repo, args, pa, work)
        print(f"{label}: done in {time.monotonic() - t0:.0f} s: "
              + ", ".join(f"{k} {v:.1f}" for k, v in results[label].items()), flush=True)  # fmt: skip
    labels = list(results)
    lines = [f"Date: {time.strftime('%Y-%m-%d %H:%M')}; machine: {os.cpu_count()} CPUs; server on CPU "
             f"{args.server_cpus}, perf_analyzer (gRPC, --async --max-threads 1, batch 1) on CPU "
             f"{args.client_cpu}; {args.seconds:g} s windows.", "",
             "| case | " + " | ".join(labels) + " | goal (issue #20) |",
             "|---|" + "---|" * len(labels) + "---|"]  # fmt: skip
    for title, key, fmt, goal in ROWS:
        cells = [fmt.format(results[s][key]) if key in results[s] else "-" for s in labels]
        lines.append(f"| {title} | " + " | ".join(cells) + f" | {goal} |")
    table = "\n".join(lines)
    print("\n" + table)
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
