#!/usr/bin/env python
"""Syscalls, context switches and CPU per request of a server pinned to one core (issue #20).

Counts what noise moves little: ``perf stat -p SERVER`` (kernel tracepoints, context switches,
page faults, all the server's threads) over a perf_analyzer run, divided by the requests the
server's statistics counted; and the server's user / system split of its CPU time, in all and
per thread group (the gRPC I/O threads, the instances' threads, the rest; /proc, clock ticks).
The server runs under ``taskset -c SERVER_CPUS`` and perf_analyzer (gRPC, batch 1, ``--async
--max-threads 1``) under ``taskset -c CLIENT_CPU``, as in bench_pinned.py; one column per build
('before' = ``--baseline-python``, 'after' = this checkout) and per ``--variant``, in one run.

    .venv/bin/python benchmarks/bench_syscalls.py [--baseline-python /work/wt/base/.venv/bin/python]
        [--model add_sub] [--concurrency 32] [--seconds 4] [--variant 'LABEL:ENV=VALUE']

Needs ``perf`` with access to the syscalls tracepoints (kernel.perf_event_paranoid <= 2 for the
user's own processes, or root).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench_grpc as bg
import bench_pinned as bp

SYSCALLS = ["epoll_wait", "recvfrom", "sendto", "read", "write", "futex", "sched_yield"]
EVENTS = ["raw_syscalls:sys_enter", "context-switches", "page-faults", "task-clock"] + [
    f"syscalls:sys_enter_{s}" for s in SYSCALLS
]


THREAD_GROUPS = [("I/O threads", "grpc-io"), ("instance threads", "inst:")]


def thread_cpu_s(pid: int) -> dict[str, tuple[float, float]]:
    """(user, system) CPU seconds per thread group (by thread name: the gRPC I/O threads, the
    model instances' threads, the rest), from /proc/PID/task/*/stat (clock ticks)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {label: (0.0, 0.0) for label, _ in THREAD_GROUPS}
    out["other threads"] = (0.0, 0.0)
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            text = (task / "stat").read_text()
        except OSError:
            continue  # the thread ended meanwhile
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        label = next((g for g, prefix in THREAD_GROUPS if name.startswith(prefix)), "other threads")
        user, system = out[label]
        out[label] = (user + int(fields[11]) / tick, system + int(fields[12]) / tick)
    return out


def warm_up(url: str, model: str) -> None:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    inputs = []
    for name, arr in bg.sample_inputs(model).items():
        t = grpcclient.InferInput(name, list(arr.shape), "INT32" if arr.dtype.kind == "i" else "FP32")
        t.set_data_from_numpy(arr)
        inputs.append(t)
    for _ in range(20):
        client.infer(model, inputs)


def measure(python: str, env: dict[str, str], repo: Path, args: argparse.Namespace, pa: str,
            work: Path) -> dict[str, float]:  # fmt: skip
    pinned_pa = work / "pa-pinned.sh"
    pinned_pa.write_text(f'#!/bin/sh\nexec taskset -c {args.client_cpu} "{pa}" "$@"\n')
    pinned_pa.chmod(0o755)
    proc, url = bp.start_server(python, repo, args.server_cpus, env)
    try:
        # warm up (the model's worker and reaper threads start with its first request)
        warm_up(url, args.model)
        n0 = bg.inference_count(url, args.model)
        e0 = bp.counts(url, args.model)[1]
        cpu0 = bp.user_sys_s(proc.pid)
        threads0 = thread_cpu_s(proc.pid)
        stat = subprocess.Popen(["perf", "stat", "-x", " ", "-e", ",".join(EVENTS), "-p", str(proc.pid)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
        time.sleep(0.3)
        r = bg.run_perf_analyzer(str(pinned_pa), url, args.model, args.concurrency, args.seconds, work,
                                 repo, "async")  # fmt: skip
        stat.send_signal(signal.SIGINT)
        _, err = stat.communicate(timeout=30)
        cpu1 = bp.user_sys_s(proc.pid)
        threads1 = thread_cpu_s(proc.pid)
        served = bg.inference_count(url, args.model) - n0
        executions = bp.counts(url, args.model)[1] - e0
    finally:
        bp.stop_server(proc)
    counts: dict[str, float] = {}
    for line in err.splitlines():  # -x ' ': value unit event ...
        parts = line.split()
        if len(parts) >= 3 and parts[0].replace(".", "").isdigit():
            name = parts[2] if parts[1] in ("msec", "") else parts[1]
            if name in EVENTS:
                counts[name] = float(parts[0])
    # the statistics RPCs after perf_analyzer are a handful: negligible against `served`
    out = {k: v / max(1, served) for k, v in counts.items()}
    out["task-clock"] = counts.get("task-clock", 0.0) * 1000 / max(1, served)  # ms -> µs
    out["user"] = (cpu1[0] - cpu0[0]) * 1e6 / max(1, served)
    out["system"] = (cpu1[1] - cpu0[1]) * 1e6 / max(1, served)
    for label, (user, system) in threads1.items():
        user0, system0 = threads0.get(label, (0.0, 0.0))
        out[f"{label} user"] = (user - user0) * 1e6 / max(1, served)
        out[f"{label} system"] = (system - system0) * 1e6 / max(1, served)
    out["throughput"] = r["throughput"]
    out["batch"] = served / max(1, executions)
    return out


ROWS = [
    ("infer/s (perf_analyzer)", "throughput", "{:.0f}"),
    ("average batch", "batch", "{:.1f}"),
    ("server CPU µs/req (perf task-clock)", "task-clock", "{:.1f}"),
    ("  of which user µs/req (/proc)", "user", "{:.1f}"),
    ("  of which system µs/req (/proc)", "system", "{:.1f}"),
    *[(f"  {label} user / system µs/req", label, "pair")
      for label in [g for g, _ in THREAD_GROUPS] + ["other threads"]],
    ("context switches/req", "context-switches", "{:.2f}"),
    ("page faults/req", "page-faults", "{:.3f}"),
    ("syscalls/req", "raw_syscalls:sys_enter", "{:.2f}"),
    *[(f"  {s}/req", f"syscalls:sys_enter_{s}", "{:.2f}") for s in SYSCALLS],
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-python", default=bp.DEFAULT_BASELINE, help="'' to skip")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--model", default="add_sub")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--server-cpus", default="1")
    parser.add_argument("--client-cpu", default="0")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--perf-analyzer", default=None)
    parser.add_argument("--variant", action="append", default=[], type=bp.parse_variant)
    args = parser.parse_args()
    if shutil.which("perf") is None:
        sys.exit("perf not found")
    pa = bg.perf_analyzer_path(args.perf_analyzer)
    if pa is None:
        sys.exit("perf_analyzer not found (../shared/tools/bench/setup.sh, or --perf-analyzer)")
    work = Path(tempfile.mkdtemp(prefix="tritonlite-syscalls-"))
    repo = bg.make_repository(work / "repo")
    results = {label: measure(python, env, repo, args, pa, work)
               for label, python, env in bp.sides_of(args)}  # fmt: skip
    labels = list(results)
    print(f"\nDate: {time.strftime('%Y-%m-%d %H:%M')}; {args.model} c={args.concurrency}, server on CPU "
          f"{args.server_cpus}, perf_analyzer on CPU {args.client_cpu}; perf stat over the server's "
          "threads, per request served.\n")  # fmt: skip
    print("| per request | " + " | ".join(labels) + " |")
    print("|---|" + "---|" * len(labels))
    for title, key, fmt in ROWS:
        if fmt == "pair":  # a thread group's user / system
            cells = [f"{results[s].get(key + ' user', float('nan')):.1f} / "
                     f"{results[s].get(key + ' system', float('nan')):.1f}" for s in labels]  # fmt: skip
        else:
            cells = [fmt.format(results[s].get(key, float("nan"))) for s in labels]
        print(f"| {title} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
