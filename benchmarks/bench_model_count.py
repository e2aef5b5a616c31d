#!/usr/bin/env python
"""Scale with the number of models: time to ready, RSS and threads for N tiny ONNX models.

Generates N identity ONNX models (FP32 [-1, 4] -> [-1, 4], no config.pbtxt: the server's
auto-complete fills in the default config) in a temporary repository, starts
`tritonlite-server` on it and measures:

- ready s:  from the process start until `/v2/health/ready` answers 200 AND
            `/v2/repository/index` lists all N models READY (polled every 10 ms);
- CPU s:    user + system CPU time of the server until then (steadier than wall time on a
            shared machine);
- RSS MB:   VmRSS of the server process (and its children) once ready;
- threads:  the Threads of the server process (and its children) once ready.

Each N runs on both interpreters, alternately, so both see the same machine load:

  python benchmarks/bench_model_count.py --baseline-python /work/wt/base/.venv/bin/python

`--python` defaults to this checkout's .venv; each server is `tritonlite.cli.main` (what
`tritonlite-server` runs) under that interpreter. `--server-args` passes extra flags to both servers (e.g. to compare
`--backend-config=onnxruntime,enable-global-threadpool=0`); `--after-args` only to this tree's.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# -- a tiny ONNX identity model, protobuf written by hand (no `onnx` package needed) --------------
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(num: int, payload: bytes | int | str) -> bytes:
    if isinstance(payload, int):
        return _varint(num << 3) + _varint(payload)
    if isinstance(payload, str):
        payload = payload.encode()
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def _value_info(name: str) -> bytes:
    dims = _field(1, _field(2, "batch")) + _field(1, _field(1, 4))  # [batch, 4]
    tensor_type = _field(1, 1) + _field(2, dims)  # elem_type FLOAT, shape
    return _field(1, name) + _field(2, _field(1, tensor_type))


def identity_onnx() -> bytes:
    node = _field(1, "INPUT0") + _field(2, "OUTPUT0") + _field(3, "id") + _field(4, "Identity")
    graph = (_field(1, node) + _field(2, "identity") + _field(11, _value_info("INPUT0"))
             + _field(12, _value_info("OUTPUT0")))  # fmt: skip
    opset = _field(1, "") + _field(2, 17)
    return _field(1, 8) + _field(7, graph) + _field(8, opset)  # ir_version 8, graph, opset 17


def make_repository(root: Path, n: int) -> Path:
    repo = root / f"repo_{n}"
    model = identity_onnx()
    for i in range(n):
        version = repo / f"identity_{i:04d}" / "1"
        version.mkdir(parents=True)
        (version / "model.onnx").write_bytes(model)
    return repo


# -- measuring one server -------------------------------------------------------------------------
def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tree(pid: int) -> list[int]:
    pids = [pid]
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            children = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
            for child in children:
                pids.extend(_tree(int(child)))
    except OSError:
        pass
    return pids


def _status(pid: int) -> tuple[int, int]:
    """(RSS kB, threads) of the process and its children."""
    rss = threads = 0
    for p in _tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1])
                elif line.startswith("Threads:"):
                    threads += int(line.split()[1])
        except OSError:
            pass
    return rss, threads


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of the process and its children (what noise cannot move much:
    on a shared machine the wall-clock time to ready also counts other processes' turns)."""
    total = 0.0
    for p in _tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(v) for v in fields[11:13]) / os.sysconf("SC_CLK_TCK")
        except OSError:
            pass
    return total


def _get(url: str, data: bytes | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, data=data, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""
    except OSError:
        return 0, b""


def measure(python: str, repo: Path, n: int, extra: list[str], timeout: float) -> dict[str, float]:
    http, grpc, metrics = _port(), _port(), _port()
    base = f"http://127.0.0.1:{http}"
    cmd = [python, "-c", "from tritonlite.cli import main; main()", "--model-repository", str(repo), "--http-port", str(http),
           "--grpc-port", str(grpc), "--metrics-port", str(metrics), *extra]  # fmt: skip
    start = time.perf_counter()
    log = tempfile.TemporaryFile()  # not a pipe: a full pipe would stall a chatty server
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        while True:
            elapsed = time.perf_counter() - start
            if elapsed > timeout:
                raise RuntimeError(f"{python}: {n} models not ready after {timeout} s")
            if proc.poll() is not None:
                log.seek(0)
                err = log.read().decode(errors="replace")[-2000:]
                raise RuntimeError(f"{python} exited with {proc.returncode}:\n{err}")
            status, _ = _get(base + "/v2/health/ready")
            if status == 200:
                status, body = _get(base + "/v2/repository/index", b"{}")
                if status == 200:
                    index = json.loads(body)
                    ready = sum(1 for m in index if m.get("state") == "READY")
                    if ready >= n:
                        elapsed = time.perf_counter() - start
                        cpu = _cpu_s(proc.pid)
                        time.sleep(0.2)  # let lazily started threads appear before counting
                        rss, threads = _status(proc.pid)
                        return {"ready": elapsed, "cpu": cpu, "rss": rss / 1024, "threads": threads}
            time.sleep(0.01)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-python", required=True, help="the 'before' build's python")
    parser.add_argument("--python", default=str(ROOT / ".venv/bin/python"), help="'after'")
    parser.add_argument("--counts", default="10,100,1000", help="comma-separated model counts")
    parser.add_argument("--runs", type=int, default=1, help="runs per count and build (median)")
    parser.add_argument("--server-args", default="", help="extra flags for both servers")
    parser.add_argument("--after-args", default="", help="extra flags for this tree's server")
    parser.add_argument("--timeout", type=float, default=180.0)
    args = parser.parse_args()
    builds = {
        "before": (args.baseline_python, shlex.split(args.server_args)),
        "after": (args.python, shlex.split(args.server_args) + shlex.split(args.after_args)),
    }  # fmt: skip
    counts = [int(c) for c in args.counts.split(",")]
    rows: list[tuple[int, dict[str, dict[str, float]]]] = []
    with tempfile.TemporaryDirectory(prefix="bench_model_count_") as tmp:
        for n in counts:
            repo = make_repository(Path(tmp), n)
            results: dict[str, list[dict[str, float]]] = {name: [] for name in builds}
            for _ in range(args.runs):
                for name, (python, extra) in builds.items():
                    results[name].append(measure(python, repo, n, extra, args.timeout))
            med = {
                name: {k: statistics.median(r[k] for r in rs) for k in ("ready", "cpu", "rss", "threads")}
                for name, rs in results.items()
            }
            rows.append((n, med))
            print(f"N={n}: " + "  ".join(
                f"{name} {m['ready']:.2f} s ({m['cpu']:.2f} s CPU) {m['rss']:.0f} MB "
                f"{m['threads']:.0f} threads" for name, m in med.items()), flush=True)  # fmt: skip
    print()
    print(f"tiny ONNX identity models, default configs; median of {args.runs} run(s); "
          f"{os.cpu_count()} cores")  # fmt: skip
    print("| models | ready s before | after | server CPU s before | after | RSS MB before "
          "| after | threads before | after |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for n, m in rows:
        b, a = m["before"], m["after"]
        print(f"| {n} | {b['ready']:.2f} | {a['ready']:.2f} | {b['cpu']:.2f} | {a['cpu']:.2f} "
              f"| {b['rss']:.0f} | {a['rss']:.0f} | {b['threads']:.0f} | {a['threads']:.0f} |")


if __name__ == "__main__":
    main()
