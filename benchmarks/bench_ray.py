#!/usr/bin/env python
"""Ray Serve overhead: add_sub (INT32 [16], Triton's binary tensor extension) over HTTP, sent to
``tritonlite-server`` directly and to ``tritonlite.ray`` (one replica, Serve's HTTP proxy, local
one-node Ray) in one run, with the same load generator (``wrk`` when installed, else a
``tritonclient.http.aio`` closed loop; bench_http.py's). Prints throughput, p50/p99 and the
latency Serve adds (p50 and p99, Serve minus direct) per concurrency; CPU time per request of the
server side (tritonlite-server, or every Ray process), which the shared machine's load distorts
less than wall time; and Serve's own cost: the same Serve instance with a deployment that
answers a canned add_sub reply (no tritonlite).

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


def tree_cpu_seconds(root: int, include_root: bool) -> float:
    """User + system CPU seconds of ``root``'s live descendants (and of ``root`` itself when
    asked), from /proc; the load generator (this process, or wrk) is left out."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name_end = text.rindex(")")
        comm = text[text.index("(") + 1:name_end]
        fields = text[name_end + 2:].split()
        parents[int(entry)] = int(fields[1])
        if comm != "wrk":
            cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    total = cpu.get(root, 0.0) if include_root else 0.0
    for pid in cpu:
        p = parents.get(pid)
        while p is not None and p > 1:
            if p == root:
                total += cpu[pid]
                break
            p = parents.get(p)
    return total


def _measure_cpu(url: str, conc: int, seconds: float, work: Path, root: int,
                 include_root: bool) -> dict:  # fmt: skip
    before = tree_cpu_seconds(root, include_root)
    r = measure(url, conc, seconds, True, work)
    used = tree_cpu_seconds(root, include_root) - before
    # measure() runs a 1 s warm-up plus `seconds` at the measured rate.
    r["cpu_us"] = used / (r["throughput"] * (seconds + 1.0)) * 1e6
    return r


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
            out[conc] = _measure_cpu(f"127.0.0.1:{port}", conc, seconds, work, proc.pid, True)
            print(f"direct    c={conc}: {_line(out[conc])}", flush=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    return out


def canned_reply(repo: Path, work: Path) -> tuple[bytes, dict[str, str]]:
    """One real add_sub reply (body and headers) of tritonlite-server, for the canned handler."""
    import urllib.request

    from bench_http import request_body

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tritonlite.cli", "--model-repository", str(repo), "--http-address",
         "127.0.0.1", f"--http-port={port}", "--allow-grpc=false", "--allow-metrics=false"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_http(f"127.0.0.1:{port}")
        body, headers = request_body(True)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v2/models/add_sub/infer",
                                         data=body, headers=headers)  # fmt: skip
        with urllib.request.urlopen(request, timeout=30) as r:
            keep = ("content-type", "inference-header-content-length")
            return r.read(), {k: v for k, v in r.headers.items() if k.lower() in keep}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def run_serve(repo: Path, levels: list[int], seconds: float, work: Path,
              cpus: int) -> tuple[dict[int, dict], dict[int, dict]]:  # fmt: skip
    """tritonlite.ray, then Serve's own cost: a deployment that answers every request with a
    canned add_sub reply (no model, no tritonlite), on the same Ray instance."""
    import ray
    from ray import serve
    from starlette.responses import Response

    import tritonlite.ray as tray

    body, headers = canned_reply(repo, work)

    @serve.deployment(max_ongoing_requests=tray.DEFAULT_MAX_ONGOING_REQUESTS)
    class Canned:
        async def __call__(self, request: object) -> Response:
            await request.body()  # type: ignore[attr-defined]
            return Response(body, headers=headers)

    port = free_port()
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    out: dict[int, dict] = {}
    canned: dict[int, dict] = {}
    try:
        serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
        app = tray.build_app({"model_repository": str(repo), "num_replicas": 1, "num_cpus": 1})
        serve.run(app, name="bench", route_prefix="/", blocking=False)
        wait_http(f"127.0.0.1:{port}", timeout=300)
        for conc in levels:
            out[conc] = _measure_cpu(f"127.0.0.1:{port}", conc, seconds, work, os.getpid(), False)
            print(f"ray serve c={conc}: {_line(out[conc])}", flush=True)
        serve.delete("bench")
        serve.run(Canned.bind(), name="canned", route_prefix="/", blocking=False)
        wait_http(f"127.0.0.1:{port}", timeout=300)
        for conc in levels:
            canned[conc] = _measure_cpu(f"127.0.0.1:{port}", conc, seconds, work, os.getpid(),
                                        False)  # fmt: skip
            print(f"serve, canned reply c={conc}: {_line(canned[conc])}", flush=True)
    finally:
        serve.shutdown()
        ray.shutdown()
    return out, canned


def _line(r: dict) -> str:
    return (f"{r['throughput']:.0f} infer/s p50 {r['p50_us']:.0f} us p99 {r['p99_us']:.0f} us, "
            f"server CPU {r['cpu_us']:.0f} us/request")


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
    through, canned = run_serve(repo, levels, args.seconds, work, args.cpus)
    print(f"\nDate: {time.strftime('%Y-%m-%d')}; {os.cpu_count()} cores; add_sub over HTTP "
          "(binary tensors), batch-1 requests; Ray Serve: 1 replica, local one-node Ray")
    print("Server CPU: CPU time per request of tritonlite-server, or of every Ray process "
          "(proxy, replica, controller, raylet, GCS); the load generator excluded.")
    print("| concurrency | direct infer/s | p50 us | p99 us | CPU us/req | Ray Serve infer/s "
          "| p50 us | p99 us | CPU us/req | throughput ratio | added p50 us | added p99 us |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for conc in levels:
        d, s = direct[conc], through[conc]
        print(f"| {conc} | {d['throughput']:.0f} | {d['p50_us']:.0f} | {d['p99_us']:.0f} "
              f"| {d['cpu_us']:.0f} | {s['throughput']:.0f} | {s['p50_us']:.0f} "
              f"| {s['p99_us']:.0f} | {s['cpu_us']:.0f} | {s['throughput'] / d['throughput']:.2f} "
              f"| {s['p50_us'] - d['p50_us']:.0f} | {s['p99_us'] - d['p99_us']:.0f} |")
    print("\nServe's own cost: the same Serve instance, a deployment answering a canned add_sub "
          "reply (no model, no tritonlite)")
    print("| concurrency | canned infer/s | p50 us | p99 us | CPU us/req |\n|---|---|---|---|---|")
    for conc in levels:
        c = canned[conc]
        print(f"| {conc} | {c['throughput']:.0f} | {c['p50_us']:.0f} | {c['p99_us']:.0f} "
              f"| {c['cpu_us']:.0f} |")


if __name__ == "__main__":
    main()
