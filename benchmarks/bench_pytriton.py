"""PyTriton 0.7.0 vs tritonlite.pytriton: the same add/sub script, imports swapped (issue #22).

tests/pytriton_scripts/add_sub.py (INT32 [16], @batch, max_batch_size 64) is started once with
``pytriton.`` imports through ../shared/tools/triton/pytriton (NVIDIA's PyTriton and its bundled
Triton 2.51) and once with ``tritonlite.pytriton.`` imports (this venv's python). Load: NVIDIA
perf_analyzer, gRPC, ``--async --max-threads 1``, batch 1, concurrency 1 and 32; one run, printed
side by side with the ratios the issue asks for (>= 10x throughput at 32, <= 0.2x p50 at 1).

    nice -n 10 .venv/bin/python benchmarks/bench_pytriton.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tests" / "pytriton_scripts" / "add_sub.py"
TOOLS = ROOT.parent.parent / "shared" / "tools"
if not TOOLS.exists():
    TOOLS = Path("/work/shared/tools")
PYTRITON = TOOLS / "triton" / "pytriton"
PERF_ANALYZER = Path(os.environ.get("PERF_ANALYZER", TOOLS / "bench" / "perf_analyzer"))
LEVELS = (1, 32)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(kind: str) -> tuple[subprocess.Popen[bytes], int, list[str]]:
    grpc, http, metrics = free_port(), free_port(), free_port()
    env = {**os.environ, "GRPC_PORT": str(grpc), "HTTP_PORT": str(http),
           "METRICS_PORT": str(metrics)}  # fmt: skip
    if kind == "pytriton":
        env["PYTRITON_IMPORT"] = "pytriton"
        cmd = [str(PYTRITON), str(SCRIPT)]
    else:
        cmd = [sys.executable, str(SCRIPT)]
    log = tempfile.NamedTemporaryFile(prefix=f"bench-{kind}-", suffix=".log", delete=False)
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, start_new_session=True)
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc}")
    deadline = time.monotonic() + 180
    while True:
        try:
            if client.is_model_ready("add_sub"):
                break
        except Exception:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{kind} did not start; log: {log.name}")
        time.sleep(0.2)
    return proc, grpc, _token_headers(proc.pid)


def _token_headers(pid: int) -> list[str]:
    """PyTriton restricts the statistics RPC with a token on tritonserver's command line."""
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "tritonserver" not in cmdline:
            continue
        m = re.search(r"triton-access-token=([^\x00\s]+)", cmdline)
        if m and os.getsid(int(proc.name)) == os.getsid(pid):
            return ["-H", f"triton-grpc-protocol-triton-access-token:{m.group(1)}"]
    return []


def stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def perf(port: int, conc: int, seconds: float, headers: list[str], work: Path) -> dict[str, float]:
    data = work / "data.json"
    data.write_text(json.dumps({"data": [{"INPUT0": list(range(16)), "INPUT1": [1] * 16}]}))
    out = work / f"pa-{port}-{conc}.csv"
    cmd = [str(PERF_ANALYZER), "-i", "grpc", "-u", f"127.0.0.1:{port}", "-m", "add_sub",
           "-b", "1", "--input-data", str(data), "--concurrency-range", f"{conc}:{conc}:1",
           "--measurement-interval", str(int(seconds * 1000)), "--stability-percentage", "50",
           "--max-trials", "10", "--async", "--max-threads", "1", "-f", str(out),
           *headers]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds * 12 + 60)
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"perf_analyzer failed: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    row = next(csv.DictReader(out.open()))
    return {"throughput": float(row["Inferences/Second"]), "p50_us": float(row["p50 latency"]),
            "p99_us": float(row["p99 latency"])}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    results: dict[str, dict[int, dict[str, float]]] = {}
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("pytriton", "tritonlite"):
            proc, port, headers = start(kind)
            try:
                results[kind] = {c: perf(port, c, args.seconds, headers, Path(tmp)) for c in LEVELS}
            finally:
                stop(proc)
    print("add/sub INT32[16], @batch, max_batch_size 64; perf_analyzer gRPC --async, batch 1")
    print(f"load average before the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; after: "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))  # fmt: skip
    print(f"{'conc':>4} | {'PyTriton 0.7.0 infer/s':>22} {'p50 µs':>8} {'p99 µs':>8} | "
          f"{'tritonlite infer/s':>18} {'p50 µs':>8} {'p99 µs':>8} | {'x thr':>6} {'x p50':>6}")  # fmt: skip
    for c in LEVELS:
        p, t = results["pytriton"][c], results["tritonlite"][c]
        print(f"{c:>4} | {p['throughput']:>22.0f} {p['p50_us']:>8.0f} {p['p99_us']:>8.0f} | "
              f"{t['throughput']:>18.0f} {t['p50_us']:>8.0f} {t['p99_us']:>8.0f} | "
              f"{t['throughput'] / p['throughput']:>6.2f} {t['p50_us'] / p['p50_us']:>6.2f}")  # fmt: skip
    thr = results["tritonlite"][32]["throughput"] / results["pytriton"][32]["throughput"]
    p50 = results["tritonlite"][1]["p50_us"] / results["pytriton"][1]["p50_us"]
    print(
        f"goal: >= 10x throughput at 32: {thr:.1f}x ({'met' if thr >= 10 else 'NOT met'}); "
        f"<= 0.2x p50 at 1: {p50:.2f}x ({'met' if p50 <= 0.2 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
