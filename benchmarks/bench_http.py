#!/usr/bin/env python
"""HTTP benchmark: tritonlite-server (Triton's binary tensor extension) side by side with Seldon
MLServer's REST API (JSON, what it supports), on the `add_sub` model (INT32 [16]).

The load generator is `wrk` (Debian's package; a C closed loop, cheap per request) with the
request bodies made here, else a closed loop of ``tritonclient.http.aio`` clients
(perf_analyzer's HTTP mode needs a /config endpoint that MLServer lacks). Both servers get the
same generator, which shares the machine's cores with them: compare servers only within one run.
MLServer runs only when the shared bench tools are set up (../shared/tools/bench/setup.sh).

    .venv/bin/python benchmarks/bench_http.py [--concurrency 1,32] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_grpc import (  # noqa: E402 - the shared helpers of the gRPC benchmark
    BENCH_HOME,
    SHARED_BENCH,
    free_port,
    make_repository,
    sample_inputs,
    stop_mlserver,
)


async def level(url: str, conc: int, seconds: float, binary: bool) -> dict[str, float]:
    import tritonclient.http.aio as httpclient

    client = httpclient.InferenceServerClient(url, conn_limit=conc)
    inputs = []
    for name, arr in sample_inputs("add_sub").items():
        t = httpclient.InferInput(name, list(arr.shape), "INT32")
        t.set_data_from_numpy(arr, binary_data=binary)
        inputs.append(t)
    outputs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in ("OUTPUT0", "OUTPUT1")]
    latencies: list[float] = []
    stop = time.perf_counter() + seconds + 1.0
    headers = {"Accept-Encoding": "identity"}
    if not binary:  # MLServer's FastAPI parses JSON bodies only with this header
        headers["Content-Type"] = "application/json"

    async def worker() -> None:
        warm_until = time.perf_counter() + 1.0
        while (now := time.perf_counter()) < stop:
            # MLServer gzips whenever the client allows it, and tritonclient's aio client does not
            # decompress: ask for plain bodies (tritonlite compresses only when asked as well).
            await client.infer("add_sub", inputs, outputs=outputs, headers=headers)
            if now > warm_until:
                latencies.append(time.perf_counter() - now)

    t0 = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(conc)])
    elapsed = time.perf_counter() - t0 - 1.0
    await client.close()
    lat = np.array(latencies) * 1e6
    return {"throughput": len(lat) / elapsed, "p50_us": float(np.percentile(lat, 50)),
            "p99_us": float(np.percentile(lat, 99))}  # fmt: skip


def request_body(binary: bool) -> tuple[bytes, dict[str, str]]:
    """One add_sub inference request: Triton's binary tensor extension, or plain JSON."""
    import json

    data = sample_inputs("add_sub")
    if not binary:
        doc = {"inputs": [{"name": n, "shape": list(a.shape), "datatype": "INT32", "data": a.ravel().tolist()}
                          for n, a in data.items()]}  # fmt: skip
        return json.dumps(doc).encode(), {"Content-Type": "application/json"}
    header = json.dumps({
        "inputs": [{"name": n, "shape": list(a.shape), "datatype": "INT32",
                    "parameters": {"binary_data_size": a.nbytes}} for n, a in data.items()],
        "outputs": [{"name": n, "parameters": {"binary_data": True}} for n in ("OUTPUT0", "OUTPUT1")],
    }).encode()  # fmt: skip
    body = header + b"".join(a.tobytes() for a in data.values())
    return body, {"Content-Type": "application/octet-stream",
                  "Inference-Header-Content-Length": str(len(header))}  # fmt: skip


def wrk_level(url: str, conc: int, seconds: float, binary: bool, work: Path) -> dict[str, float]:
    body, headers = request_body(binary)
    lua_body = "".join(f"\\{b:03d}" for b in body)
    script = work / f"wrk-{'bin' if binary else 'json'}.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f'wrk.body = "{lua_body}"\n'
        + "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items())
    )
    proc = subprocess.run(
        ["wrk", "-t1", f"-c{conc}", f"-d{int(max(1, seconds))}s", "--latency", "-s", str(script),
         f"http://{url}/v2/models/add_sub/infer"],
        capture_output=True, text=True, timeout=seconds + 60,
    )  # fmt: skip
    out = proc.stdout

    def latency(pct: str) -> float:
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == pct:
                value = parts[1]
                for unit, scale in (("us", 1.0), ("ms", 1e3), ("s", 1e6)):
                    if value.endswith(unit):
                        return float(value[: -len(unit)]) * scale
        return float("nan")

    if "Non-2xx" in out or "Requests/sec" not in out:
        raise RuntimeError(f"wrk failed against {url}: {out}{proc.stderr}")
    rps = float(next(ln.split()[1] for ln in out.splitlines() if ln.startswith("Requests/sec")))
    return {"throughput": rps, "p50_us": latency("50%"), "p99_us": latency("99%")}


def measure(url: str, conc: int, seconds: float, binary: bool, work: Path) -> dict[str, float]:
    import shutil

    if shutil.which("wrk"):
        return wrk_level(url, conc, seconds, binary, work)
    return asyncio.run(level(url, conc, seconds, binary))


def wait_http(url: str, timeout: float = 120) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{url}/v2/models/add_sub/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except Exception:
            time.sleep(0.2)
    raise RuntimeError(f"{url} not ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", default="1,32")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    work = Path(tempfile.mkdtemp(prefix="tritonlite-bench-http-"))
    repo = make_repository(work / "repo")
    results: dict[str, dict[int, dict[str, float]]] = {}

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tritonlite.cli", "--model-repository", str(repo), "--http-address",
         "127.0.0.1", f"--http-port={port}", "--allow-grpc=false", "--allow-metrics=false",
         "--log-info=false"],  # fmt: skip
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_http(f"127.0.0.1:{port}")
        for conc in levels:
            r = measure(f"127.0.0.1:{port}", conc, args.seconds, True, work)
            results.setdefault("tritonlite (binary)", {})[conc] = r
            print(f"tritonlite c={conc}: {r['throughput']:.0f} infer/s p50 {r['p50_us']:.0f} us p99 {r['p99_us']:.0f} us", flush=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)

    python = BENCH_HOME / "venv" / "bin" / "python"
    if (SHARED_BENCH / "run_mlserver.sh").exists() and python.exists():
        out = work / "bm"
        subprocess.run([str(python), str(SHARED_BENCH / "make_models.py"), str(out)], check=True, capture_output=True)
        http, grpc_port = free_port(), free_port()
        subprocess.run([str(SHARED_BENCH / "run_mlserver.sh"), f"{out}-mlserver", str(http), str(grpc_port)],
                       check=True, capture_output=True, timeout=180)  # fmt: skip
        try:
            for conc in levels:
                r = measure(f"127.0.0.1:{http}", conc, args.seconds, False, work)
                results.setdefault("mlserver (JSON)", {})[conc] = r
                print(f"mlserver c={conc}: {r['throughput']:.0f} infer/s p50 {r['p50_us']:.0f} us p99 {r['p99_us']:.0f} us", flush=True)
        finally:
            stop_mlserver()
    else:
        print("(mlserver: shared bench tools not set up, skipped)")

    print(f"\nDate: {time.strftime('%Y-%m-%d')}; {os.cpu_count()} cores; add_sub over HTTP, batch-1 requests")
    print("| server | concurrency | infer/s | p50 us | p99 us |\n|---|---|---|---|---|")
    for name, by_conc in results.items():
        for conc, r in by_conc.items():
            print(f"| {name} | {conc} | {r['throughput']:.0f} | {r['p50_us']:.0f} | {r['p99_us']:.0f} |")


if __name__ == "__main__":
    main()
