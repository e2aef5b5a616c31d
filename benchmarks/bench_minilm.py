#!/usr/bin/env python
"""MiniLM embeddings per second: over gRPC (tritonclient) and over ``/v1/embeddings`` (the
OpenAI frontend) at concurrency 1 and 32, against the same pipeline run in-process without a
server (the tokenizer + onnxruntime on the same model.onnx, batched), in one run, printed side
by side.

The texts: ``--texts`` distinct deterministic sentences of 6 to 40 words. Every request carries
one text, as a client embedding one document at a time does; the server's dynamic batcher
groups them. Closed loops: each of the ``c`` workers sends its next text when its previous
answer arrived.

The in-process pipeline takes the texts ``--batch`` at a time (default 32, the concurrency the
server is compared at) in corpus order and feeds the same model.onnx as the server does (the
ragged encoder: the batch's tokens unpadded, each row's length), in its two best shapes on this
machine: one session with onnxruntime's default threads (one per core, splitting each batch),
and one single-thread session per CPU, each fed its own batches from its own thread. The ratios
are against the faster of the two, round by round.

The server: the recipe's encoder has two instances. It is started twice, at the same time
(an idle server costs nothing): with ``--backend-config=onnxruntime,intra_op_thread_count=1``
(the shared onnxruntime pool gives each instance's batch one core: the configuration the
recipe documents, and the gRPC and /v1 rows) and with default flags (the shared pool's threads
split every batch of both instances; gRPC c=32 only). ``--server-args`` replaces the first's
flags.

The machine may be shared and its load may change during the run, so the modes are
interleaved: ``--rounds`` rounds of every mode, ``--seconds`` each (after a 1 s warm-up), and
the table shows medians.

    .venv/bin/python benchmarks/bench_minilm.py [--seconds 5] [--rounds 3] [--texts 512] [--batch 32]

The server and the load generator share this machine's cores, so compare rows only within one
run. Goal (issue #21): gRPC at concurrency 32 >= 0.9 of the in-process texts per second.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "model_repository"))
import generate_minilm  # noqa: E402

WORDS = (
    "the model server batches requests from many clients so that the encoder sees full "
    "batches while each client waits only a little longer than its own text takes a quick "
    "brown fox jumps over lazy dogs sentence embeddings map text to vectors that capture "
    "meaning similar sentences end up close together in the space"
).split()


def corpus(n: int) -> list[str]:
    rng = random.Random(0)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 40))) + "."
            for _ in range(n)]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- in-process ------------------------------------------------------------------------------


class Pipeline:
    """minilm_embed without a server: tokenizer -> onnxruntime (mean pooling + L2 in the
    graph)."""

    def __init__(self, repo: Path, threads: int = 0) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(
            str(repo / "minilm_tokenizer" / "1" / "tokenizer.json"))  # fmt: skip
        self.tokenizer.enable_truncation(256)
        self.tokenizer.no_padding()
        # threads 0: onnxruntime's default session options (an intra-op thread per core).
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = options.inter_op_num_threads = threads
        self.session = ort.InferenceSession(str(repo / "minilm_encoder" / "1" / "model.onnx"),
                                            options, providers=["CPUExecutionProvider"])  # fmt: skip

    def __call__(self, texts: list[str]) -> np.ndarray:
        # As the server feeds the ragged encoder: the texts' tokens one after another (no
        # padding), each row's length in item_shape.
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.fromiter((t for e in encodings for t in e.ids), np.int64)
        item_shape = np.array([[len(e.ids)] for e in encodings], np.int32)
        # The graph ends with the mean pooling and the L2 normalisation.
        (embeddings,) = self.session.run(None, {"input_ids": ids, "attention_mask":
                                                np.ones_like(ids), "item_shape": item_shape})
        return embeddings  # type: ignore[no-any-return]


def bench_in_process(pipelines: list[Pipeline], texts: list[str], batch: int,
                     seconds: float) -> float:  # fmt: skip
    """Texts per second of the pipeline on batches of ``batch`` texts in corpus order: one
    thread per pipeline, each taking its own batches (onnxruntime and the tokenizer release
    the GIL)."""
    batches = [texts[i : i + batch] for i in range(0, len(texts), batch)]
    batches = [b for b in batches if len(b) == batch] or batches
    done = [0] * len(pipelines)
    window = [0.0, 0.0]  # measuring from, until

    def worker(k: int) -> None:
        i = k
        while True:
            now = time.perf_counter()
            if now >= window[1]:
                return
            b = batches[i % len(batches)]
            pipelines[k](b)
            if now >= window[0]:  # a batch started inside the window counts
                done[k] += len(b)
            i += len(pipelines)

    start = time.perf_counter() + 1.0  # warm-up
    window[:] = [start, start + seconds]
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(len(pipelines))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.perf_counter() - start)


# ---- over the network ------------------------------------------------------------------------


async def closed_loop(
    call: Callable[[str], Awaitable[None]], texts: list[str], concurrency: int, seconds: float
) -> tuple[float, float]:
    """(texts/s, p50 latency in ms) of ``concurrency`` workers calling back to back."""
    latencies: list[float] = []
    counter = [0]
    measuring = [False]
    stop_at = [0.0]

    async def worker(k: int) -> None:
        i = k
        while True:
            now = time.perf_counter()
            if stop_at[0] and now >= stop_at[0]:
                return
            await call(texts[i % len(texts)])
            if measuring[0]:
                latencies.append(time.perf_counter() - now)
                counter[0] += 1
            i += concurrency

    tasks = [asyncio.create_task(worker(k)) for k in range(concurrency)]
    await asyncio.sleep(1.0)  # warm-up
    measuring[0] = True
    start = time.perf_counter()
    stop_at[0] = start + seconds
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    return counter[0] / elapsed, float(np.percentile(latencies, 50) * 1000) if latencies else 0.0


async def bench_grpc(url: str, texts: list[str], concurrency: int, seconds: float) -> tuple[
    float, float
]:
    import tritonclient.grpc.aio as grpcclient

    client = grpcclient.InferenceServerClient(url)

    async def call(text: str) -> None:
        x = grpcclient.InferInput("text_input", [1, 1], "BYTES")
        x.set_data_from_numpy(np.array([[text.encode()]], dtype=np.object_))
        result = await client.infer("minilm_embed", [x])
        assert result.as_numpy("embedding").shape == (1, 384)

    try:
        return await closed_loop(call, texts, concurrency, seconds)
    finally:
        await client.close()


async def bench_openai(port: int, texts: list[str], concurrency: int, seconds: float) -> tuple[
    float, float
]:
    import aiohttp

    url = f"http://127.0.0.1:{port}/v1/embeddings"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:

        async def call(text: str) -> None:
            body = {"model": "minilm_embed", "input": text, "encoding_format": "base64"}
            async with s.post(url, json=body) as r:
                doc = await r.json()
                assert r.status == 200, doc
                assert len(base64.b64decode(doc["data"][0]["embedding"])) == 384 * 4

        return await closed_loop(call, texts, concurrency, seconds)


def start_server(repo: Path, extra: list[str] | None = None) -> tuple[
    subprocess.Popen[bytes], int, int, Path
]:
    grpc_port, http_port, openai_port, metrics_port = (free_port() for _ in range(4))
    log = Path(tempfile.mkstemp(prefix="bench-minilm-", suffix=".log")[1])
    cmd = [sys.executable, "-m", "tritonlite.cli", "--model-repository", str(repo),
           f"--grpc-port={grpc_port}", "--grpc-address=127.0.0.1", f"--http-port={http_port}",
           "--http-address=127.0.0.1", f"--metrics-port={metrics_port}",
           f"--openai-port={openai_port}", *(extra or [])]  # fmt: skip
    with log.open("wb") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=f)
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", openai_port), timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"server not up:\n{log.read_text()}") from None
            time.sleep(0.2)
    return proc, grpc_port, openai_port, log


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--texts", type=int, default=512)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--concurrency", default="1,32")
    p.add_argument("--server-args", default="--backend-config=onnxruntime,intra_op_thread_count=1",
                   help="flags of the server measured by the gRPC and /v1 rows")  # fmt: skip
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    repo = generate_minilm.generate(generate_minilm.DEFAULT_OUT)
    texts = corpus(args.texts)
    levels = [int(c) for c in args.concurrency.split(",")]
    print(f"MiniLM-L6 embeddings, {len(texts)} texts of 6-40 words; {args.rounds} rounds of "
          f"{args.seconds:g} s per mode, the modes interleaved", flush=True)  # fmt: skip

    cpus = len(os.sched_getaffinity(0))
    one_session = [Pipeline(repo)]
    per_cpu = [Pipeline(repo, threads=1) for _ in range(cpus)]
    rates: dict[tuple[str, str], list[float]] = {}
    p50s: dict[tuple[str, str], list[float]] = {}
    ratios: dict[tuple[str, str], list[float]] = {}
    in_process_rows = [
        ("in-process, one session (onnxruntime's default threads)", f"batch {args.batch}"),
        (f"in-process, {cpus} single-thread sessions in {cpus} threads", f"batch {args.batch} each"),
    ]  # fmt: skip
    tuned = args.server_args.split()
    print(f"server: tritonlite-server {' '.join(tuned)} (gRPC and /v1 rows); the default "
          "flags for the last row", flush=True)  # fmt: skip
    servers = [start_server(repo, tuned), start_server(repo)]
    (_, grpc_port, openai_port, _), (_, default_grpc_port, _, _) = servers
    try:
        for r in range(args.rounds):
            got: dict[tuple[str, str], tuple[float, float | None]] = {}
            for row, pipelines in zip(in_process_rows, (one_session, per_cpu)):
                got[row] = (bench_in_process(pipelines, texts, args.batch, args.seconds), None)
            for c in levels:
                got[("gRPC (tritonclient.grpc.aio)", f"c={c}")] = asyncio.run(
                    bench_grpc(f"127.0.0.1:{grpc_port}", texts, c, args.seconds))  # fmt: skip
            for c in levels:
                got[("/v1/embeddings (aiohttp, base64)", f"c={c}")] = asyncio.run(
                    bench_openai(openai_port, texts, c, args.seconds))  # fmt: skip
            got[("gRPC, server with default flags", f"c={max(levels)}")] = asyncio.run(
                bench_grpc(f"127.0.0.1:{default_grpc_port}", texts, max(levels),
                           args.seconds))  # fmt: skip
            base = max(got[row][0] for row in in_process_rows)  # the better in-process rate
            for key, (rate, p50) in got.items():
                rates.setdefault(key, []).append(rate)
                ratios.setdefault(key, []).append(rate / base)
                if p50 is not None:
                    p50s.setdefault(key, []).append(p50)
            print(f"round {r + 1}: " + ", ".join(f"{k[0][:24]} {k[1]} {v[0]:.0f}"
                                                 for k, v in got.items()), flush=True)  # fmt: skip
    finally:
        for proc, _, _, log in servers:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.unlink(missing_ok=True)

    print("\nMedians over the rounds; 'vs in-process' is the median of each round's ratio to "
          "that round's better in-process rate.")  # fmt: skip
    print("\n| path | load | texts/s | vs in-process | p50 ms |\n|---|---|---|---|---|")
    for key, values in rates.items():
        p50 = f"{float(np.median(p50s[key])):.1f}" if key in p50s else "-"
        print(f"| {key[0]} | {key[1]} | {float(np.median(values)):.0f} | "
              f"{float(np.median(ratios[key])):.2f} | {p50} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
