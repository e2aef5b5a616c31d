#!/usr/bin/env python
"""Instructions per request of the server under callgrind: a cost measure that noise cannot move.

Each path runs in a process under ``valgrind --tool=callgrind --instr-atstart=no`` (pinned to
``--cpus``, one CPU by default: the budget the server sees is that of a one-core container).
After a warm-up, the process turns instrumentation on and zeroes the counters, serves exactly the
measured requests, and dumps; the instructions of all its threads divided by the requests served
is the figure. The callgrind client requests come from a tiny C helper compiled here (needs
gcc and valgrind's headers), so the same measure runs on any build, e.g. a pristine main:

- ``grpc``: ``tritonlite.cli`` serving the reference ``add_sub`` model; this script's
  ``tritonclient.grpc.aio`` closed loop sends the requests (the client is not measured).
- ``inproc``: ``tritonlite.Server`` in-process with the core's closed-loop generator
  (``_core.closed_loop``, C++ re-submits each completed request: no Python per request).
- ``inproc-async``: ``Server.infer_async`` from asyncio coroutines (the Python in-process API).

    .venv/bin/python benchmarks/bench_callgrind.py [--baseline-python /work/wt/base/.venv/bin/python]
        [--paths grpc,inproc,inproc-async] [--concurrency 32] [--requests 2000] [--cpus 1]
        [--keep DIR]   # keep the callgrind.out files: callgrind_annotate DIR/<side>-<path>.out

Instruction counts are stable to well under 1% between runs; what spins (waiting threads) is
counted too, which is the point on a one-core budget.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bench_grpc as bg

DEFAULT_BASELINE = "/work/wt/base/.venv/bin/python"

HELPER_C = r"""
#include <valgrind/callgrind.h>
void cg_begin(void) { CALLGRIND_START_INSTRUMENTATION; CALLGRIND_ZERO_STATS; }
void cg_dump(const char* label) { CALLGRIND_DUMP_STATS_AT(label); CALLGRIND_STOP_INSTRUMENTATION; }
"""

# Runs inside the measured process (any tritonlite build): a control socket for the grpc path
# (begin/dump on request), or the in-process loads.
DRIVER = r'''
import asyncio, ctypes, socket, sys, threading, time
import numpy as np

helper, mode, control = sys.argv[1], sys.argv[2], sys.argv[3]
lib = ctypes.CDLL(helper)
lib.cg_dump.argtypes = [ctypes.c_char_p]

if mode == "grpc":
    def serve_control():
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(control)
        listener.listen(1)
        conn, _ = listener.accept()
        f = conn.makefile("rw")
        for line in f:
            if line.strip() == "begin":
                lib.cg_begin()
            else:
                lib.cg_dump(b"measured")
            f.write("ok\n")
            f.flush()
    threading.Thread(target=serve_control, daemon=True).start()
    from tritonlite import cli
    sys.exit(cli.main(sys.argv[4:]))

from tritonlite import Server, _core
repo, concurrency, requests = sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
server = Server(repo, model_control_mode="explicit", load_models=["add_sub"])
rng = np.random.default_rng(0)
inputs = {n: rng.integers(-100, 100, (1, 16)).astype(np.int32) for n in ("INPUT0", "INPUT1")}
runner = server.get_model("add_sub").runner

def executions():
    return server.statistics("add_sub")[0]["execution_count"]

if mode == "inproc":
    _core.closed_loop(runner, inputs, concurrency, 0.5)
    # closed_loop runs for a time: a measured window long enough for `requests` on valgrind
    probe = _core.closed_loop(runner, inputs, concurrency, 1.0)
    seconds = max(1.0, requests / max(1.0, probe["completed"] / probe["elapsed_s"]))
    e0 = executions()
    lib.cg_begin()
    result = _core.closed_loop(runner, inputs, concurrency, seconds)
    lib.cg_dump(b"measured")
    print("served", result["completed"], executions() - e0, flush=True)
else:
    async def load(n):
        left = n
        async def worker():
            nonlocal left
            while left > 0:
                left -= 1
                await server.infer_async("add_sub", inputs)
        await asyncio.gather(*[worker() for _ in range(concurrency)])
    async def main():
        await load(max(concurrency, requests // 10))
        e0 = executions()
        lib.cg_begin()
        await load(requests)
        lib.cg_dump(b"measured")
        return executions() - e0
    batches = asyncio.run(main())
    print("served", requests, batches, flush=True)
server.close()
'''


def build_helper(work: Path) -> Path:
    src, lib = work / "cg_helper.c", work / "cg_helper.so"
    src.write_text(HELPER_C)
    subprocess.run(["gcc", "-O1", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    return lib


def valgrind_cmd(cpus: str, out_file: Path) -> list[str]:
    return ["taskset", "-c", cpus, "valgrind", "--tool=callgrind", "--instr-atstart=no",
            "--fair-sched=yes", f"--callgrind-out-file={out_file}", "-q"]  # fmt: skip


def total_instructions(out_file: Path) -> int:
    """Ir of the dump named 'measured' (callgrind writes one file per dump: NAME.N)."""
    for candidate in sorted(out_file.parent.glob(out_file.name + "*")):
        text = candidate.read_text(errors="replace")
        if "measured" not in text.split("\nfn=", 1)[0]:
            continue
        m = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
        if m:
            return int(m.group(1))
    raise RuntimeError(f"no 'measured' dump next to {out_file}")


def run_grpc(python: str, helper: Path, repo: Path, args: argparse.Namespace, out_file: Path,
             work: Path) -> tuple[int, int, int]:  # fmt: skip
    control = work / f"ctl-{os.getpid()}-{time.monotonic_ns()}.sock"
    driver = work / "driver.py"
    port = bg.free_port()
    cmd = [*valgrind_cmd(args.cpus, out_file), python, str(driver), str(helper), "grpc", str(control),
           "--model-repository", str(repo), "--model-control-mode=explicit", "--load-model=add_sub",
           "--grpc-address", "127.0.0.1", f"--grpc-port={port}", "--allow-http=false",
           "--allow-metrics=false", "--log-info=false"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd="/", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"127.0.0.1:{port}"
    try:
        bg.wait_ready(url, "add_sub", proc, timeout=600)
        ctl = socket.socket(socket.AF_UNIX)
        ctl.connect(str(control))
        f = ctl.makefile("rw")

        def command(word: str) -> None:
            f.write(word + "\n")
            f.flush()
            f.readline()

        asyncio.run(grpc_load(url, args.concurrency, max(args.concurrency, args.requests // 10)))
        e0 = execution_count(url)
        command("begin")
        asyncio.run(grpc_load(url, args.concurrency, args.requests))
        command("dump")
        batches = execution_count(url) - e0  # (after the dump: its own RPC is not counted)
        ctl.close()
    finally:
        proc.terminate()
        try:
            _, err = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    return total_instructions(out_file), args.requests, batches


def execution_count(url: str) -> int:
    import tritonclient.grpc as grpcclient

    stats = grpcclient.InferenceServerClient(url).get_inference_statistics("add_sub", as_json=True)
    return sum(int(m.get("execution_count", 0)) for m in stats.get("model_stats", []))


async def grpc_load(url: str, concurrency: int, requests: int) -> None:
    import numpy as np
    import tritonclient.grpc.aio as grpcclient

    client = grpcclient.InferenceServerClient(url)
    rng = np.random.default_rng(0)
    inputs = []
    for name in ("INPUT0", "INPUT1"):
        t = grpcclient.InferInput(name, [1, 16], "INT32")
        t.set_data_from_numpy(rng.integers(-100, 100, (1, 16)).astype(np.int32))
        inputs.append(t)
    left = requests

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await client.infer("add_sub", inputs)

    await asyncio.gather(*[worker() for _ in range(concurrency)])
    await client.close()


def run_inproc(python: str, mode: str, helper: Path, repo: Path, args: argparse.Namespace,
               out_file: Path, work: Path) -> tuple[int, int, int]:  # fmt: skip
    cmd = [*valgrind_cmd(args.cpus, out_file), python, str(work / "driver.py"), str(helper), mode, "-",
           str(repo), str(args.concurrency), str(args.requests)]  # fmt: skip
    proc = subprocess.run(cmd, cwd="/", capture_output=True, text=True, timeout=1800)
    served = [line.split()[1:] for line in proc.stdout.splitlines() if line.startswith("served ")]
    if proc.returncode != 0 or not served:
        raise RuntimeError(f"{mode} failed ({proc.returncode}): {proc.stderr[-3000:]}")
    return total_instructions(out_file), int(served[0][0]), int(served[0][1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-python", default=DEFAULT_BASELINE,
                        help="python of a pristine build of main ('before'); '' to skip")  # fmt: skip
    parser.add_argument("--python", default=sys.executable, help="python of this build ('after')")
    parser.add_argument("--paths", default="grpc,inproc,inproc-async")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--cpus", default="1", help="taskset CPU list of the measured process")
    parser.add_argument("--variant", action="append", default=[],
                        help="LABEL:ENV=VALUE[,ENV=VALUE]: also this build with that environment")  # fmt: skip
    parser.add_argument("--keep", type=Path, default=None, help="keep the callgrind.out files here")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind not found")
    work = Path(tempfile.mkdtemp(prefix="tritonlite-callgrind-"))
    keep = args.keep or work
    keep.mkdir(parents=True, exist_ok=True)
    helper = build_helper(work)
    (work / "driver.py").write_text(DRIVER)
    repo = bg.make_repository(work / "repo")
    sides: list[tuple[str, str, dict[str, str]]] = []
    if args.baseline_python:
        sides.append(("before", args.baseline_python, {}))
    sides.append(("after", args.python, {}))
    for text in args.variant:
        label, _, assignments = text.partition(":")
        sides.append((label, args.python, dict(a.split("=", 1) for a in assignments.split(",") if a)))
    paths = args.paths.split(",")
    results: dict[str, dict[str, tuple[int, int, int]]] = {}
    saved_env = dict(os.environ)
    for label, python, env in sides:
        for path in paths:
            out_file = keep / f"{label.replace(' ', '_')}-{path}.out"
            for stale in keep.glob(out_file.name + "*"):
                stale.unlink()
            os.environ.clear()
            os.environ.update({**saved_env, **env})
            t0 = time.monotonic()
            try:
                if path == "grpc":
                    r = run_grpc(python, helper, repo, args, out_file, work)
                else:
                    r = run_inproc(python, path, helper, repo, args, out_file, work)
            finally:
                os.environ.clear()
                os.environ.update(saved_env)
            results.setdefault(label, {})[path] = r
            print(f"{label:8} {path:13} {r[0] / r[1]:10.0f} instructions/request ({r[0]} over {r[1]} "
                  f"requests in {r[2]} batches, {time.monotonic() - t0:.0f} s)", flush=True)  # fmt: skip
    labels = list(results)
    lines = [f"Date: {time.strftime('%Y-%m-%d %H:%M')}; callgrind, process pinned to CPU(s) {args.cpus}, "
             f"add_sub batch-1 requests at concurrency {args.concurrency}, ~{args.requests} measured.", "",
             "| path | " + " | ".join(f"{s} instr/req (avg batch)" for s in labels) + " |",
             "|---|" + "---|" * len(labels)]  # fmt: skip
    for path in paths:
        cells: list[Any] = []
        for s in labels:
            total, served, batches = results[s][path]
            cells.append(f"{total / served:,.0f} ({served / max(1, batches):.1f})")
        lines.append(f"| {path} | " + " | ".join(cells) + " |")
    print("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
