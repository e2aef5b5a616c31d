#!/usr/bin/env python
"""gRPC benchmark: tritonlite-server side by side with Seldon MLServer and raw onnxruntime.

Models (made by code, no downloads): the reference models of ../shared/tools/bench/make_models.py
when it is there (else identical ones built here): `add_sub` (INT32 [16] add/sub,
overhead-bound) and `mlp` (FP32 512 -> 4x1024 -> 16, five Gemm layers, compute-bound), both
max_batch_size 64 with dynamic batching; MLServer serves the same files. tritonlite also serves
`mlp_1t`: the same model with ``intra_op_thread_count: 1``.
Load: NVIDIA perf_analyzer when it is available (``--perf-analyzer PATH``, $PERF_ANALYZER, or the
shared bench tools), by default in its cheapest mode on this machine (``--async --max-threads 1``,
``--pa-mode sync`` for one thread per request in flight), else this script's own closed-loop
``tritonclient.grpc.aio`` generator. Batch-1 requests at each concurrency; throughput, p50 and
p99 per level, and for tritonlite the CPU time per request of the load generator and of the
server (the two share the cores: together they bound the throughput).
MLServer runs only when the shared bench tools are set up (../shared/tools/bench/setup.sh).

`--suite python` instead serves one python_backend model.py (INT32 [16] add/sub,
max_batch_size 64, dynamic batching) by tritonlite in its default stub-process mode
(`add_sub_py`) and in-process (`add_sub_py_inproc`), and the same file by the real Triton when
../shared/tools/triton is set up; with `--baseline-python PY` also by another build (the
"before" column, stub mode), and the stub mode's ratios to Triton (goal of issue #20: >= 3x
its throughput at c=32, <= 0.6x its p50 at c=1); `--no-spin-variant` adds this build's stub
mode with ``TRITONLITE_SPIN_US=0`` (no spinning anywhere: what the spin of the stub round trip,
backends/python/spin.py, and the core's spin-waits are worth on this machine, in the same run):

    .venv/bin/python benchmarks/bench_grpc.py --suite python --concurrency 1,32 \
        --baseline-python /work/wt/base/.venv/bin/python [--no-spin-variant]

    .venv/bin/python benchmarks/bench_grpc.py [--models add_sub,mlp] [--concurrency 1,8,32,64]
        [--seconds 5] [--no-mlserver] [--pa-mode async|sync] [--out benchmarks/results.md]

Everything runs on this machine and shares its cores with the load generator, so compare the
servers only within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# ../shared/tools from a checkout at /work/main, ../../shared/tools from a worktree at /work/wt/<name>.
SHARED_TOOLS = next((p / "shared" / "tools" for p in (ROOT.parent, ROOT.parent.parent)
                     if (p / "shared" / "tools").is_dir()), ROOT.parent / "shared" / "tools")  # fmt: skip
SHARED_BENCH = Path(os.environ.get("TRITONLITE_BENCH_TOOLS", SHARED_TOOLS / "bench"))
BENCH_HOME = Path(os.environ.get("BENCH_HOME", Path.home() / ".cache" / "tritonlite-bench"))
sys.path.insert(0, str(ROOT / "tests"))

CONFIGS = {
    "add_sub": """name: "add_sub" platform: "onnxruntime_onnx" max_batch_size: 64
input [{ name: "INPUT0" data_type: TYPE_INT32 dims: [ 16 ] }, { name: "INPUT1" data_type: TYPE_INT32 dims: [ 16 ] }]
output [{ name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 16 ] }, { name: "OUTPUT1" data_type: TYPE_INT32 dims: [ 16 ] }]
dynamic_batching { }
instance_group [{ count: 1 kind: KIND_CPU }]
""",
    "mlp": """name: "mlp" platform: "onnxruntime_onnx" max_batch_size: 64
input [{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 512 ] }]
output [{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 16 ] }]
dynamic_batching { max_queue_delay_microseconds: 500 }
instance_group [{ count: 1 kind: KIND_CPU }]
""",
}


PYTHON_MODEL = '''import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            a = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            b = pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy()
            responses.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUTPUT0", a + b), pb_utils.Tensor("OUTPUT1", a - b)]))
        return responses
'''

PYTHON_CONFIG = """name: "{name}" backend: "python" max_batch_size: 64
input [{{ name: "INPUT0" data_type: TYPE_INT32 dims: [ 16 ] }}, {{ name: "INPUT1" data_type: TYPE_INT32 dims: [ 16 ] }}]
output [{{ name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 16 ] }}, {{ name: "OUTPUT1" data_type: TYPE_INT32 dims: [ 16 ] }}]
dynamic_batching {{ }}
instance_group [{{ count: 1 kind: KIND_CPU }}]
{extra}"""

TRITON = Path(os.environ.get("TRITONLITE_TRITON_TOOLS", SHARED_TOOLS / "triton"))


def make_python_repository(root: Path, inproc: bool = True) -> Path:
    variants = [("add_sub_py", "")]
    if inproc:
        variants.append(("add_sub_py_inproc",
                         'parameters { key: "EXECUTION_MODE" value { string_value: "in_process" } }'))  # fmt: skip
    for name, extra in variants:
        (root / name / "1").mkdir(parents=True, exist_ok=True)
        (root / name / "config.pbtxt").write_text(PYTHON_CONFIG.format(name=name, extra=extra))
        (root / name / "1" / "model.py").write_text(PYTHON_MODEL)
    return root


def start_triton(repo: Path) -> tuple[subprocess.Popen[Any], str] | None:
    server = TRITON / "tritonserver"
    home = Path(os.environ.get("TRITON_HOME", Path.home() / ".cache" / "tritonlite-triton"))
    if not server.exists() or not (home / ".installed").exists():
        return None
    grpc_port = free_port()
    proc = subprocess.Popen(
        [str(server), "--model-repository", str(repo), f"--grpc-port={grpc_port}",
         f"--http-port={free_port()}", f"--metrics-port={free_port()}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"127.0.0.1:{grpc_port}"
    wait_ready(url, "add_sub_py", proc)
    return proc, url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


ONE_THREAD = 'parameters { key: "intra_op_thread_count" value { string_value: "1" } }\n'


def make_repository(root: Path) -> Path:
    """The reference models (shared make_models.py, also writing ROOT-mlserver and ROOT-inputs)
    or, without the shared tools, the same graphs and configs built here; plus `mlp_1t`."""
    reference = SHARED_BENCH / "make_models.py"
    if reference.exists():
        subprocess.run([sys.executable, str(reference), str(root)], check=True, capture_output=True)
    else:
        from models import make_add_sub_onnx, make_mlp_onnx

        for name, text in CONFIGS.items():
            (root / name / "1").mkdir(parents=True, exist_ok=True)
            (root / name / "config.pbtxt").write_text(text)
        make_add_sub_onnx(root / "add_sub" / "1" / "model.onnx", dtype="INT32")
        # four 1024-wide hidden layers and the output layer: five Gemms, as the reference
        make_mlp_onnx(root / "mlp" / "1" / "model.onnx", layers=5, input_name="INPUT0",
                      output_name="OUTPUT0")  # fmt: skip
    one = root / "mlp_1t"
    (one / "1").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(root / "mlp" / "1" / "model.onnx", one / "1" / "model.onnx")
    config = (root / "mlp" / "config.pbtxt").read_text().replace('name: "mlp"', 'name: "mlp_1t"')
    (one / "config.pbtxt").write_text(config + ONE_THREAD)
    return root


def sample_inputs(model: str, rows: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    if model.startswith("add_sub"):
        return {n: rng.integers(-100, 100, (rows, 16)).astype(np.int32) for n in ("INPUT0", "INPUT1")}
    return {"INPUT0": rng.standard_normal((rows, 512)).astype(np.float32)}


def model_input_file(model: str, data_dir: Path, repo: Path | None) -> Path:
    """perf_analyzer input data: the reference rows (finite values) when make_models wrote them."""
    if repo is not None:
        reference = repo.parent / f"{repo.name}-inputs" / f"{model.removesuffix('_1t')}.json"
        if reference.exists():
            return reference
    data = data_dir / f"{model}.json"
    data.write_text(json.dumps({"data": [{k: v.ravel().tolist() for k, v in sample_inputs(model).items()}]}))
    return data


# ---- load generators ---------------------------------------------------------------------------


def perf_analyzer_path(explicit: str | None) -> str | None:
    for candidate in (explicit, os.environ.get("PERF_ANALYZER"), str(SHARED_BENCH / "perf_analyzer")):
        if candidate and Path(candidate).exists():
            return candidate
    return shutil.which("perf_analyzer")


def run_perf_analyzer(pa: str, url: str, model: str, conc: int, seconds: float,
                      data_dir: Path, repo: Path | None, mode: str) -> dict[str, float]:  # fmt: skip
    data = model_input_file(model, data_dir, repo)
    shapes = (["--shape", "INPUT0:16", "--shape", "INPUT1:16"] if model.startswith("add_sub")
              else ["--shape", "INPUT0:512"])  # fmt: skip
    out = data_dir / f"pa-{model}-{conc}.csv"
    cmd = [pa, "-i", "grpc", "-u", url, "-m", model, "-b", "1", *shapes, "--input-data", str(data),
           "--concurrency-range", f"{conc}:{conc}:1", "--measurement-interval", str(int(seconds * 1000)),
           "--stability-percentage", "50", "--max-trials", "10", "-f", str(out)]  # fmt: skip
    if mode == "async":
        cmd += ["--async", "--max-threads", "1"]
    before = os.times()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds * 12 + 60)
    after = os.times()
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"perf_analyzer failed: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    row = next(csv.DictReader(out.open()))
    return {
        "throughput": float(row["Inferences/Second"]),
        "p50_us": float(row["p50 latency"]),
        "p99_us": float(row["p99 latency"]),
        "client_cpu_s": (after.children_user + after.children_system)
        - (before.children_user + before.children_system),
    }


async def _aio_level(url: str, model: str, conc: int, seconds: float) -> dict[str, float]:
    import tritonclient.grpc.aio as grpcclient

    client = grpcclient.InferenceServerClient(url)
    inputs = []
    for name, arr in sample_inputs(model).items():
        t = grpcclient.InferInput(name, list(arr.shape), "INT32" if arr.dtype == np.int32 else "FP32")
        t.set_data_from_numpy(arr)
        inputs.append(t)
    latencies: list[float] = []
    stop = time.perf_counter() + seconds + 1.0

    async def worker() -> None:
        warm_until = time.perf_counter() + 1.0
        while (now := time.perf_counter()) < stop:
            await client.infer(model, inputs)
            if now > warm_until:
                latencies.append(time.perf_counter() - now)

    t0 = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(conc)])
    elapsed = time.perf_counter() - t0 - 1.0
    await client.close()
    lat = np.array(latencies) * 1e6
    return {"throughput": len(lat) / elapsed, "p50_us": float(np.percentile(lat, 50)),
            "p99_us": float(np.percentile(lat, 99))}  # fmt: skip


def measure(pa: str | None, url: str, model: str, conc: int, seconds: float, work: Path,
            repo: Path | None = None, mode: str = "async", server_pid: int | None = None) -> dict[str, float]:  # fmt: skip
    """One concurrency level; with `server_pid`, also the CPU seconds per request of the load
    generator and of the server (its statistics count the requests)."""
    count0 = inference_count(url, model) if server_pid else 0
    cpu0 = process_cpu_s(server_pid) if server_pid else 0.0
    stall0, t0 = cpu_stall_us(), time.monotonic()
    if pa:
        r = run_perf_analyzer(pa, url, model, conc, seconds, work, repo, mode)
    else:
        r = asyncio.run(_aio_level(url, model, conc, seconds))
    stall1, t1 = cpu_stall_us(), time.monotonic()
    if stall0 is not None and stall1 is not None and t1 > t0:
        r["pressure"] = (stall1 - stall0) / ((t1 - t0) * 1e4)  # percent of the level's time
    if server_pid:
        served = inference_count(url, model) - count0
        if served > 0:
            r["server_us_per_req"] = (process_cpu_s(server_pid) - cpu0) / served * 1e6
            if "client_cpu_s" in r:
                r["client_us_per_req"] = r["client_cpu_s"] / served * 1e6
    return r


def inference_count(url: str, model: str) -> int:
    import tritonclient.grpc as grpcclient

    stats = grpcclient.InferenceServerClient(url).get_inference_statistics(model, as_json=True)
    return sum(int(m.get("inference_count", 0)) for m in stats.get("model_stats", []))


def cpu_stall_us() -> float | None:
    """Linux's cumulative "some" CPU stall time (/proc/pressure/cpu "total=", us), None when
    unknown."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    fields = dict(f.split("=", 1) for f in line.split()[1:] if "=" in f)
    try:
        return float(fields["total"])
    except (KeyError, ValueError):
        return None


def cpu_pressure(r: dict[str, float]) -> str:
    """The CPU pressure of a level's window, for its log line: the share of the time in which a
    runnable task waited for a CPU (the python stub round trip's waits do not spin while it is
    over 50% over their last 100 ms, nor while other processes leave fewer than 1.5 CPUs idle:
    backends/python/spin.py)."""
    return f"  cpu pressure {r['pressure']:.0f}%" if "pressure" in r else ""


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, its waited-for children, and its running child
    processes (a python model's stubs), from Linux /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    total = ticks / os.sysconf("SC_CLK_TCK")
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            for child in Path(f"/proc/{pid}/task/{task}/children").read_text().split():
                total += process_cpu_s(int(child))
    except OSError:
        pass
    return total


# ---- servers -----------------------------------------------------------------------------------


def wait_ready(url: str, model: str, proc: subprocess.Popen[Any], timeout: float = 90) -> None:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if client.is_model_ready(model):
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout}s")


def start_tritonlite(repo: Path, ready_model: str = "add_sub", python: str = sys.executable,
                     extra: tuple[str, ...] = (), env: dict[str, str] | None = None,
                     ) -> tuple[subprocess.Popen[Any], str]:  # fmt: skip
    port = free_port()
    cmd = [python, "-m", "tritonlite.cli", "--model-repository", str(repo), "--grpc-address",
           "127.0.0.1", f"--grpc-port={port}", "--allow-http=false", "--allow-metrics=false",
           "--log-info=false", *extra]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, **(env or {})))  # fmt: skip
    url = f"127.0.0.1:{port}"
    wait_ready(url, ready_model, proc)
    return proc, url


def start_mlserver(repo: Path) -> tuple[Any, str] | None:
    """MLServer on the same model files (make_models.py wrote REPO-mlserver)."""
    python = BENCH_HOME / "venv" / "bin" / "python"
    tree = repo.parent / f"{repo.name}-mlserver"
    if not (SHARED_BENCH / "run_mlserver.sh").exists() or not python.exists() or not tree.exists():
        return None
    http, grpc_port = free_port(), free_port()
    subprocess.run([str(SHARED_BENCH / "run_mlserver.sh"), str(tree), str(http), str(grpc_port)],
                   check=True, capture_output=True, timeout=180)  # fmt: skip
    return "mlserver", f"127.0.0.1:{grpc_port}"


def stop_mlserver() -> None:
    subprocess.run([str(SHARED_BENCH / "run_mlserver.sh"), "stop"], capture_output=True)


def raw_onnxruntime(repo: Path, seconds: float) -> dict[str, dict[str, float]]:
    """Rows/s of in-process session.run at batch 1 and 64 with onnxruntime's default threads,
    and at batch 64 with one intra-op thread (what `mlp_1t` runs)."""
    import onnxruntime as ort

    out: dict[str, dict[str, float]] = {}
    for model in CONFIGS:
        path = str(repo / model / "1" / "model.onnx")
        one = ort.SessionOptions()
        one.intra_op_num_threads = 1
        sessions = {"": ort.InferenceSession(path, providers=["CPUExecutionProvider"]),
                    "1t": ort.InferenceSession(path, one, providers=["CPUExecutionProvider"])}  # fmt: skip
        out[model] = {}
        for label, batch in (("", 1), ("", 64), ("1t", 64)):
            feeds = sample_inputs(model, rows=batch)
            sess = sessions[label]
            sess.run(None, feeds)
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                sess.run(None, feeds)
                n += 1
            out[model][f"batch {batch}" + (" (1 thread)" if label else "")] = n * batch / (time.perf_counter() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="add_sub,mlp")
    parser.add_argument("--concurrency", default="1,8,32,64")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--perf-analyzer", default=None)
    parser.add_argument("--no-mlserver", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here (markdown)")
    parser.add_argument("--suite", choices=("onnx", "python"), default="onnx")
    parser.add_argument("--baseline-python", default=None,
                        help="--suite python: also serve the model with another build's python "
                        "(e.g. /work/wt/base/.venv/bin/python), the 'before' column")  # fmt: skip
    parser.add_argument("--no-spin-variant", action="store_true",
                        help="--suite python: also serve the stub mode with TRITONLITE_SPIN_US=0")  # fmt: skip
    parser.add_argument("--pa-mode", choices=("async", "sync"), default="async",
                        help="perf_analyzer: --async --max-threads 1 (default), or one thread per request in flight")  # fmt: skip
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    pa = perf_analyzer_path(args.perf_analyzer)
    work = Path(tempfile.mkdtemp(prefix="tritonlite-bench-"))
    results: dict[str, dict[str, dict[int, dict[str, float]]]] = {}
    servers: list[tuple[str, Any]]
    repo: Path | None
    if args.suite == "python":
        models = ["add_sub_py", "add_sub_py_inproc"]
        repo = make_python_repository(work / "repo")
        triton_repo = make_python_repository(work / "triton-repo", inproc=False)
        servers = [("tritonlite", lambda: start_tritonlite(repo, "add_sub_py")),
                   ("triton", lambda: start_triton(triton_repo))]  # fmt: skip
        if args.baseline_python:
            base = args.baseline_python
            servers.insert(0, ("before", lambda: start_tritonlite(repo, "add_sub_py", python=base)))
        if args.no_spin_variant:
            servers.insert(-1, ("no-spin", lambda: start_tritonlite(
                repo, "add_sub_py", env={"TRITONLITE_SPIN_US": "0"})))  # fmt: skip
    else:
        models = args.models.split(",")
        if "mlp" in models and "mlp_1t" not in models:
            models.insert(models.index("mlp") + 1, "mlp_1t")
        repo = make_repository(work / "repo")
        # mlp_1t is a model parameter (intra_op_thread_count: 1), which needs per-session
        # thread pools (the server's default is one shared pool, where it is ignored).
        servers = [("tritonlite", lambda: start_tritonlite(
            repo, extra=("--backend-config=onnxruntime,enable-global-threadpool=0",)))]  # fmt: skip
        if not args.no_mlserver:
            servers.append(("mlserver", lambda: start_mlserver(repo)))
    for name, start in servers:
        started = start()
        if started is None:
            print(f"({name}: not available, skipped)")
            continue
        proc, url = started
        try:
            for model in models:
                if name in ("triton", "before", "no-spin") and model.endswith("_inproc"):
                    continue  # Triton has no in-process python mode; "before": the stub mode
                if name == "mlserver" and model.endswith("_1t"):
                    continue  # a tritonlite config variant
                for conc in levels:
                    # CPU per request of tritonlite (with its python models' stub processes;
                    # MLServer's workers and Triton's stubs are not counted).
                    pid = proc.pid if name in ("tritonlite", "before", "no-spin") else None
                    r = measure(pa, url, model, conc, args.seconds, work, repo if args.suite == "onnx" else None,
                                args.pa_mode, pid)  # fmt: skip
                    results.setdefault(name, {}).setdefault(model, {})[conc] = r
                    cpu = (f"  cpu/req: client {r['client_us_per_req']:.0f} us, server {r['server_us_per_req']:.0f} us"
                           if "client_us_per_req" in r else "")  # fmt: skip
                    print(f"{name:10} {model:8} c={conc:<3} {r['throughput']:9.0f} infer/s  "
                          f"p50 {r['p50_us']:8.0f} us  p99 {r['p99_us']:8.0f} us{cpu}{cpu_pressure(r)}",
                          flush=True)  # fmt: skip
        finally:
            if name == "mlserver":
                stop_mlserver()
            else:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
    raw = raw_onnxruntime(repo, min(args.seconds, 3.0)) if repo is not None and args.suite == "onnx" else {}

    load = (f"perf_analyzer ({'--async --max-threads 1' if args.pa_mode == 'async' else 'sync'})" if pa
            else "tritonclient.grpc.aio closed loop")  # fmt: skip
    cpu_cols = any("client_us_per_req" in r for m in results.get("tritonlite", {}).values() for r in m.values())
    before_cpu = any("server_us_per_req" in r for m in results.get("before", {}).values() for r in m.values())
    lines = [f"Date: {time.strftime('%Y-%m-%d')}; machine: {os.cpu_count()} cores; load: {load}, "
             "batch-1 requests.", "",
             "| model | concurrency | " + " | ".join(f"{s} infer/s | {s} p50 us | {s} p99 us" for s in results)
             + (" | client CPU us/req | server CPU us/req" if cpu_cols else "")
             + (" | before: server CPU us/req" if before_cpu else "") + " |",
             "|---|---|" + "---|---|---|" * len(results) + ("---|---|" if cpu_cols else "")
             + ("---|" if before_cpu else "")]  # fmt: skip
    for model in models:
        for conc in levels:
            cells = []
            for s in results:
                r = results[s].get(model, {}).get(conc)
                cells += [f"{r['throughput']:.0f}", f"{r['p50_us']:.0f}", f"{r['p99_us']:.0f}"] if r else ["-"] * 3
            if cpu_cols:
                r = results.get("tritonlite", {}).get(model, {}).get(conc) or {}
                cells += [f"{r[k]:.0f}" if k in r else "-" for k in ("client_us_per_req", "server_us_per_req")]
            if before_cpu:
                r = results.get("before", {}).get(model, {}).get(conc) or {}
                cells += [f"{r['server_us_per_req']:.0f}" if "server_us_per_req" in r else "-"]
            lines.append(f"| {model} | {conc} | " + " | ".join(cells) + " |")
    if raw:
        lines += ["", "Raw onnxruntime, in-process session.run (rows/s): " + "; ".join(
            f"{m}: " + ", ".join(f"{k} {v:.0f}" for k, v in raw[m].items()) for m in raw)]  # fmt: skip
        mlp64 = raw.get("mlp", {}).get("batch 64")
        ours = results.get("tritonlite", {})
        for model in ("mlp", "mlp_1t"):
            best = max((r["throughput"] for r in ours.get(model, {}).values()), default=0)
            if mlp64 and best:
                lines.append(f"{model} over gRPC, best level: {best:.0f} rows/s = {best / mlp64:.0%} of raw "
                             f"onnxruntime at batch 64 (default threads).")  # fmt: skip
    if args.suite == "python" and "triton" in results:
        lines.append("")
        triton = results["triton"].get("add_sub_py", {})
        for name in ("before", "no-spin", "tritonlite"):
            ours = results.get(name, {}).get("add_sub_py", {})
            ratios = []
            for conc in levels:
                if conc in ours and conc in triton:
                    ratios.append(f"c={conc}: {ours[conc]['throughput'] / triton[conc]['throughput']:.2f}x "
                                  f"throughput, {ours[conc]['p50_us'] / triton[conc]['p50_us']:.2f}x p50")  # fmt: skip
            if ratios:
                label = {"tritonlite": "tritonlite (after)", "before": "tritonlite before",
                         "no-spin": "tritonlite (after) with TRITONLITE_SPIN_US=0"}[name]  # fmt: skip
                lines.append(f"{label} stub mode vs Triton 2.51: " + "; ".join(ratios))
    table = "\n".join(lines)
    print("\n" + table)
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
