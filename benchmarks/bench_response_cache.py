#!/usr/bin/env python
"""Response cache benefit: the same repeated request with and without the cache, one run.

One tritonlite-server (``--cache-config local,size=64 MiB``) serves each reference model twice:
as is, and as ``<model>_cached`` with ``response_cache { enable: true }`` (same file, same
instances). perf_analyzer (or, without it, bench_grpc's tritonclient generator) sends the same
batch-1 request over and over at each concurrency, first to the plain model, then to the cached
one: throughput, p50, p99 and server CPU per request side by side. Models: ``mlp`` (FP32 512 ->
4x1024 -> 16, compute-bound: ~0.1 ms of onnxruntime per row) and ``add_sub`` (INT32 [16],
overhead-bound).

    .venv/bin/python benchmarks/bench_response_cache.py [--models mlp,add_sub]
        [--concurrency 1,32] [--seconds 4] [--perf-analyzer PATH]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import bench_grpc as bg

CACHE_BYTES = 64 << 20


def add_cached_copies(repo: Path, models: list[str]) -> None:
    for model in models:
        src = repo / model
        dst = repo / f"{model}_cached"
        (dst / "1").mkdir(parents=True, exist_ok=True)
        (dst / "1" / "model.onnx").write_bytes((src / "1" / "model.onnx").read_bytes())
        text = (
            (src / "config.pbtxt")
            .read_text()
            .replace(f'name: "{model}"', f'name: "{model}_cached"')
        )
        (dst / "config.pbtxt").write_text(text + "\nresponse_cache { enable: true }\n")


def success_count(url: str, model: str) -> int:
    import tritonclient.grpc as grpcclient

    stats = grpcclient.InferenceServerClient(url).get_inference_statistics(model, as_json=True)
    return sum(int(m["inference_stats"]["success"].get("count", 0)) for m in stats["model_stats"])


def level(pa: str | None, url: str, model: str, data_model: str, conc: int, seconds: float,
          work: Path, repo: Path, pid: int) -> dict[str, float]:  # fmt: skip
    """One concurrency level; requests answered (hits included) count for CPU per request."""
    n0, cpu0 = success_count(url, model), bg.process_cpu_s(pid)
    if pa:
        r = _pa(pa, url, model, data_model, conc, seconds, work, repo)
    else:
        import asyncio

        r = asyncio.run(bg._aio_level(url, model, conc, seconds))
    served = success_count(url, model) - n0
    if served:
        r["server_us_per_req"] = (bg.process_cpu_s(pid) - cpu0) / served * 1e6
    return r


def _pa(pa: str, url: str, model: str, data_model: str, conc: int, seconds: float, work: Path,
        repo: Path) -> dict[str, float]:  # fmt: skip
    import csv
    import os

    data = bg.model_input_file(data_model, work, repo)
    shapes = (["--shape", "INPUT0:16", "--shape", "INPUT1:16"] if data_model.startswith("add_sub")
              else ["--shape", "INPUT0:512"])  # fmt: skip
    out = work / f"pa-{model}-{conc}.csv"
    cmd = [pa, "-i", "grpc", "-u", url, "-m", model, "-b", "1", *shapes, "--input-data", str(data),
           "--concurrency-range", f"{conc}:{conc}:1", "--measurement-interval",
           str(int(seconds * 1000)), "--stability-percentage", "50", "--max-trials", "10",
           "-f", str(out), "--async", "--max-threads", "1"]  # fmt: skip
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=seconds * 12 + 60, check=False
    )
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"perf_analyzer failed: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    row = next(csv.DictReader(out.open()))
    os.unlink(out)
    return {"throughput": float(row["Inferences/Second"]), "p50_us": float(row["p50 latency"]),
            "p99_us": float(row["p99 latency"])}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--models", default="mlp,add_sub")
    ap.add_argument("--concurrency", default="1,32")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--perf-analyzer", default=None)
    args = ap.parse_args()
    models = args.models.split(",")
    levels = [int(c) for c in args.concurrency.split(",")]
    pa = bg.perf_analyzer_path(args.perf_analyzer)
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp:
        work = Path(tmp)
        repo = bg.make_repository(work / "repo")
        add_cached_copies(repo, models)
        port = bg.free_port()
        cmd = [sys.executable, "-m", "tritonlite.cli", "--model-repository", str(repo),
               "--grpc-address", "127.0.0.1", f"--grpc-port={port}", "--allow-http=false",
               "--allow-metrics=false", "--log-info=false",
               "--cache-config", f"local,size={CACHE_BYTES}"]  # fmt: skip
        proc: Any = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"127.0.0.1:{port}"
        rows = []
        try:
            for model in models:
                bg.wait_ready(url, f"{model}_cached", proc)
                for conc in levels:
                    plain = level(pa, url, model, model, conc, args.seconds, work, repo, proc.pid)
                    cached = level(pa, url, f"{model}_cached", model, conc, args.seconds, work,
                                   repo, proc.pid)  # fmt: skip
                    rows.append((model, conc, plain, cached))
        finally:
            proc.terminate()
            proc.wait(30)
    load = "perf_analyzer --async --max-threads 1" if pa else "tritonclient.grpc.aio loop"
    print(
        f"\nResponse cache: the same batch-1 request repeated ({load}, gRPC, one server, one run)\n"
    )
    print(
        "| model | conc | no cache infer/s | cache infer/s | speedup | p50 µs off / on "
        "| p99 µs off / on | server CPU µs/req off / on |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for model, conc, a, b in rows:
        print(
            f"| {model} | {conc} | {a['throughput']:,.0f} | {b['throughput']:,.0f} | "
            f"{b['throughput'] / a['throughput']:.1f}x | {a['p50_us']:,.0f} / {b['p50_us']:,.0f} | "
            f"{a['p99_us']:,.0f} / {b['p99_us']:,.0f} | "
            f"{a.get('server_us_per_req', 0):,.1f} / {b.get('server_us_per_req', 0):,.1f} |"
        )


if __name__ == "__main__":
    main()
