#!/usr/bin/env python
"""A/B of the python backend's stub mode at low concurrency, interleaved (issue #20).

Serves bench_grpc.py's python_backend model.py (INT32 [16] add/sub, dynamic batching, one
instance, default stub-process mode) by several server variants and, with ``--triton``, by the
real Triton 2.51, and measures each with perf_analyzer over gRPC (``--async --max-threads 1``,
batch 1) at each ``--concurrency``. The variants are interleaved: ``--rounds`` times, every
server is started, measured at every level and stopped, in turn, so that a change in the
machine's load touches all of them alike; the table shows each one's median over the rounds
(p50/p99 latency, throughput, server + stub CPU per request), the CPU pressure of its
windows ("some" stall share from ``/proc/pressure/cpu``'s ``total=``, over the window itself)
and the CPUs that other processes kept busy meanwhile ("others": ``/proc/stat``'s busy time
less the server with its stubs and perf_analyzer; the ``--hog`` loop counts: ~1.0), which says
how quiet the machine was.

    TRITONLITE_BENCH_TOOLS=/work/shared/tools/bench nice .venv/bin/python benchmarks/bench_stub_c1.py \\
        --baseline-python /work/wt/base/.venv/bin/python --triton \\
        --variant 'no spin:TRITONLITE_SPIN_US=0' --rounds 3 --concurrency 1,32 --seconds 4

Variants: ``--variant 'LABEL:ENV=VALUE[,ENV=VALUE...]'`` (this build with those variables);
``after`` (this build, defaults) always runs; ``--baseline-python PY`` adds ``before``.
``--hog`` runs a bounded busy loop on one CPU during every measurement (a contended machine).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_grpc as bg  # noqa: E402

TICKS = float(os.sysconf("SC_CLK_TCK"))


def busy_ticks() -> int | None:
    """The machine's cumulative busy CPU ticks (/proc/stat: all but idle and iowait)."""
    try:
        with open("/proc/stat", "rb") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    return sum(ticks) - ticks[3] - ticks[4] if len(ticks) == 8 else None


HOG = "import time\nend = time.monotonic() + {s}\nwhile time.monotonic() < end:\n    pass\n"


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    label, _, assignments = text.partition(":")
    env = {}
    for item in filter(None, assignments.split(",")):
        key, _, value = item.partition("=")
        env[key.strip()] = value.strip()
    return label.strip(), env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", default="1")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline-python", default=None)
    parser.add_argument("--triton", action="store_true", help="also the real Triton 2.51 (same model.py)")
    parser.add_argument("--variant", action="append", default=[])
    parser.add_argument("--inproc", action="store_true",
                        help="also this build's in-process mode (EXECUTION_MODE in_process), the floor")  # fmt: skip
    parser.add_argument("--hog", action="store_true", help="a busy loop on one CPU while measuring")
    parser.add_argument("--perf-analyzer", default=None)
    args = parser.parse_args()
    pa = bg.perf_analyzer_path(args.perf_analyzer)
    if pa is None:
        sys.exit("perf_analyzer not found (set TRITONLITE_BENCH_TOOLS or --perf-analyzer)")
    levels = [int(c) for c in args.concurrency.split(",")]
    work = Path(tempfile.mkdtemp(prefix="tritonlite-stubc1-"))
    repo = bg.make_python_repository(work / "repo", inproc=True)
    servers: list[tuple[str, Any]] = []
    if args.baseline_python:
        base = args.baseline_python
        servers.append(("before", lambda: bg.start_tritonlite(repo, "add_sub_py", python=base)))
    servers.append(("after", lambda: bg.start_tritonlite(repo, "add_sub_py")))
    for text in args.variant:
        label, env = parse_variant(text)
        servers.append((label, lambda env=env: bg.start_tritonlite(repo, "add_sub_py", env=env)))
    if args.inproc:
        servers.append(("in-process", lambda: bg.start_tritonlite(repo, "add_sub_py_inproc")))
    if args.triton:
        triton_repo = bg.make_python_repository(work / "triton-repo", inproc=False)
        servers.append(("triton", lambda: bg.start_triton(triton_repo)))
    results: dict[str, dict[int, list[dict[str, float]]]] = {}
    for rnd in range(args.rounds):
        for name, start in servers:
            started = start()
            if started is None:
                print(f"({name}: not available, skipped)")
                continue
            proc, url = started
            try:
                for conc in levels:
                    pid = proc.pid if name != "triton" else None
                    hog = None
                    if args.hog:
                        hog = subprocess.Popen([sys.executable, "-c", HOG.format(s=args.seconds * 12 + 60)])
                    try:
                        model = "add_sub_py_inproc" if name == "in-process" else "add_sub_py"
                        busy0, own0, t0 = busy_ticks(), bg.process_cpu_s(proc.pid), time.monotonic()
                        r = bg.measure(pa, url, model, conc, args.seconds, work, None, "async", pid)
                        busy1, own1, t1 = busy_ticks(), bg.process_cpu_s(proc.pid), time.monotonic()
                        if busy0 is not None and busy1 is not None and t1 > t0:
                            # the machine's busy CPUs less server + stubs and perf_analyzer
                            mine = own1 - own0 + r.get("client_cpu_s", 0.0)
                            r["others"] = max(0.0, (busy1 - busy0) / TICKS - mine) / (t1 - t0)
                    except RuntimeError as e:  # perf_analyzer found no stable window: skip it
                        print(f"round {rnd + 1} {name:14} c={conc:<3} skipped: {str(e)[-200:]!r}", flush=True)
                        continue
                    finally:
                        if hog is not None:
                            hog.kill()
                            hog.wait()
                    results.setdefault(name, {}).setdefault(conc, []).append(r)
                    server = f"  server {r['server_us_per_req']:.0f} us/req" if "server_us_per_req" in r else ""
                    print(f"round {rnd + 1} {name:14} c={conc:<3} {r['throughput']:8.0f} infer/s  "
                          f"p50 {r['p50_us']:6.0f} us  p99 {r['p99_us']:7.0f} us{server}  "
                          f"pressure {r.get('pressure', float('nan')):.0f}%  "
                          f"others {r.get('others', float('nan')):.2f} CPUs", flush=True)  # fmt: skip
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)

    def med(rows: list[dict[str, float]], key: str, spec: str = ".0f") -> str:
        values = [r[key] for r in rows if key in r]
        return f"{statistics.median(values):{spec}}" if values else "-"

    print(f"\nDate: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} CPUs; "
          f"perf_analyzer --async --max-threads 1, batch 1; medians of {args.rounds} interleaved rounds"
          f"{'; a busy-loop hog on one CPU' if args.hog else ''}.\n")  # fmt: skip
    print("| server | c | p50 us | p99 us | infer/s | server+stub CPU us/req | pressure % | others' CPUs |")
    print("|---|---|---|---|---|---|---|---|")
    for name in results:
        for conc in levels:
            rows = results[name].get(conc, [])
            print(f"| {name} | {conc} | {med(rows, 'p50_us')} | {med(rows, 'p99_us')} | "
                  f"{med(rows, 'throughput')} | {med(rows, 'server_us_per_req')} | {med(rows, 'pressure')} | "
                  f"{med(rows, 'others', '.2f')} |")  # fmt: skip
    triton = results.get("triton", {})
    for name in results:
        if name == "triton":
            continue
        ratios = []
        for conc in levels:
            ours, theirs = results[name].get(conc), triton.get(conc)
            if ours and theirs:
                p50 = statistics.median(r["p50_us"] for r in ours) / statistics.median(r["p50_us"] for r in theirs)
                tput = statistics.median(r["throughput"] for r in ours) / statistics.median(
                    r["throughput"] for r in theirs)  # fmt: skip
                ratios.append(f"c={conc}: {p50:.2f}x p50, {tput:.2f}x throughput")
        if ratios:
            print(f"{name} vs Triton 2.51: " + "; ".join(ratios))


if __name__ == "__main__":
    main()
