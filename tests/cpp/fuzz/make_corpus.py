"""Writes the fuzz targets' seed corpora (tests/cpp/fuzz/corpus/<target>/) from real traffic.

A tritonlite server is started on an empty model repository and tritonclient talks to it
through a recording proxy, so the seeds are what a real gRPC client sends: the connection
preface, SETTINGS, Huffman-coded HEADERS, DATA with ModelInfer messages (plain and gzip), a
stream. Each capture is then cut into the input layout of every target (see the comment at the
top of each fuzz_*.cc). The models the requests name (echo_fp32, echo_bytes) are the ones
fuzz_grpc_connection serves on its fast path. Run: .venv/bin/python tests/cpp/fuzz/make_corpus.py
"""

from __future__ import annotations

import hashlib
import json
import queue
import socket
import struct
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
sys.path.insert(0, str(HERE.parents[1]))  # tests/ (serving.py)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class RecordingProxy:
    """Forwards 127.0.0.1:<port> to the server; keeps what each client connection sent."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.port = self.listener.getsockname()[1]
        self.captures: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            client, _ = self.listener.accept()
            server = socket.create_connection(("127.0.0.1", self.target_port))
            sent = bytearray()
            threading.Thread(target=self._pipe, args=(server, client, None), daemon=True).start()
            threading.Thread(target=self._pipe, args=(client, server, sent), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, record: bytearray | None) -> None:
        try:
            while data := src.recv(65536):
                if record is not None:
                    record += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            if record is not None:
                self.captures.put(bytes(record))


def frames(capture: bytes) -> list[tuple[int, int, int, bytes]]:
    """(type, flags, stream id, payload) of every whole frame after the preface."""
    assert capture.startswith(PREFACE)
    out, pos = [], len(PREFACE)
    while len(capture) - pos >= 9:
        length = int.from_bytes(capture[pos : pos + 3], "big")
        ftype, flags = capture[pos + 3], capture[pos + 4]
        stream = int.from_bytes(capture[pos + 5 : pos + 9], "big") & 0x7FFFFFFF
        if len(capture) - pos - 9 < length:
            break
        out.append((ftype, flags, stream, capture[pos + 9 : pos + 9 + length]))
        pos += 9 + length
    return out


def write(target: str, name: str, data: bytes) -> None:
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{name}-{hashlib.sha1(data).hexdigest()[:8]}").write_bytes(data)


def gzip_messages(capture: bytes) -> bytes:
    """The capture with each uncompressed DATA message gzip-compressed (flag set), as a client
    that compresses sends it (grpcio leaves small messages uncompressed)."""
    out = bytearray(capture[: len(PREFACE)])
    for t, f, s, p in frames(capture):
        if t == 0 and p[:1] == b"\x00" and len(p) >= 5:
            z = zlib.compressobj(wbits=31)
            packed = z.compress(p[5:]) + z.flush()
            p = b"\x01" + struct.pack(">I", len(packed)) + packed
        out += len(p).to_bytes(3, "big") + bytes([t, f]) + struct.pack(">I", s) + p
    return bytes(out)


def cut(name: str, capture: bytes) -> None:
    """Writes one capture in the input layout of each target."""
    if name.endswith("gzip"):
        capture = gzip_messages(capture)
    write("grpc_connection", name, b"\x00\x00" + capture)
    write("http2_connection", name, b"\x09\x00\x00\x00" + capture)
    fs = frames(capture)
    records = b"".join(
        bytes([t, f])
        + (bytes([s]) if s < 0xFF else b"\xff" + struct.pack(">I", s))
        + struct.pack(">H", len(p))
        + p
        for t, f, s, p in fs
        if len(p) < 0x10000
    )
    write("http2_frame", name, b"\x09\x00\x00\x00" + records)
    blocks = [p for t, _, _, p in fs if t == 1]  # HEADERS (no padding/priority from clients)
    if blocks:
        write("hpack", name, b"\x40" + b"".join(struct.pack(">H", len(b)) + b for b in blocks))
    bodies: dict[int, bytes] = {}
    for t, _, s, p in fs:
        if t == 0:
            bodies[s] = bodies.get(s, b"") + p
    for s, body in bodies.items():
        gzip = body[:1] == b"\x01"
        # config byte: max 4 MiB (22), identity (0) or gzip (1 * 24)
        write("grpc_message", name, bytes([22 + (24 if gzip else 0)]) + b"\x00\x00" + body)
        pos = 0
        while not gzip and len(body) - pos >= 5:
            length = int.from_bytes(body[pos + 1 : pos + 5], "big")
            message = body[pos + 5 : pos + 5 + length]
            if len(message) == length and length > 0:
                write("infer_decoder", name, message)
            pos += 5 + length


def capture_all(proxy: RecordingProxy) -> None:
    import tritonclient.grpc as grpcclient

    def run(name: str, action) -> None:  # type: ignore[no-untyped-def]
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{proxy.port}")
        try:
            action(client)
        except Exception as e:  # noqa: BLE001 -- the models do not exist: the bytes sent are what matter
            print(f"{name}: {type(e).__name__}")
        client.close()
        cut(name, proxy.captures.get(timeout=30))

    def fp32(client, **kw):  # type: ignore[no-untyped-def]
        x = grpcclient.InferInput("INPUT0", [1, 4], "FP32")
        x.set_data_from_numpy(np.arange(4, dtype=np.float32).reshape(1, 4))
        out = grpcclient.InferRequestedOutput("OUTPUT0")
        client.infer("echo_fp32", [x], outputs=[out], request_id="r1", **kw)

    def strings(client):  # type: ignore[no-untyped-def]
        x = grpcclient.InferInput("INPUT0", [3], "BYTES")
        x.set_data_from_numpy(np.array([b"hello", b"", "w\u00f6rld".encode()], dtype=np.object_))
        client.infer(
            "echo_bytes",
            [x],
            priority=1,
            timeout=1000000,
            sequence_id=7,
            sequence_start=True,
            client_timeout=5,
        )

    def stream(client):  # type: ignore[no-untyped-def]
        results: queue.Queue[object] = queue.Queue()
        client.start_stream(callback=lambda result, error: results.put(result or error))
        x = grpcclient.InferInput("INPUT0", [2], "BYTES")
        x.set_data_from_numpy(np.array([b"a", b"bc"], dtype=np.object_))
        client.async_stream_infer("echo_bytes", [x])
        results.get(timeout=10)
        client.stop_stream()

    run("infer_fp32", fp32)
    run("infer_fp32_gzip", lambda c: fp32(c, compression_algorithm="gzip"))
    run("infer_bytes_params", strings)
    run("stream_infer", stream)
    run("model_ready", lambda c: c.is_model_ready("echo_fp32"))


def python_seeds(bytes_elements: bytes) -> None:
    """Seeds of the atheris targets: the bundled models' config.pbtxt files, and HTTP requests
    in atheris_http_codec.py's layout (header length, model/encoding byte, body)."""
    for path in sorted((HERE.parents[2] / "model_repository").glob("*/config.pbtxt")):
        write("config", path.parent.name, path.read_bytes())

    def http(
        name: str,
        model: int,
        header: dict | None,
        binary: bytes = b"",
        raw: bool = False,
        gzip: bool = False,
    ) -> None:  # type: ignore[type-arg]
        text = json.dumps(header).encode() if header is not None else b""
        body = text + binary
        length = 0 if raw else (0xFFFF if not binary else len(text))
        if gzip:
            z = zlib.compressobj(wbits=31)
            body = z.compress(body) + z.flush()
        write("http_codec", name, struct.pack(">HB", length, model + (3 if gzip else 0)) + body)

    fp32 = {"name": "INPUT0", "datatype": "FP32", "shape": [1, 3], "data": [1, 2.5, -3]}
    http("json_fp32", 0, {"id": "r1", "inputs": [fp32], "outputs": [{"name": "OUTPUT0"}]})
    http("json_fp32_gzip", 0, {"inputs": [fp32]}, gzip=True)
    http(
        "json_bytes",
        1,
        {"inputs": [{"name": "INPUT0", "datatype": "BYTES", "shape": [2], "data": ["ab", "c"]}]},
    )
    http(
        "binary_fp32",
        0,
        {
            "inputs": [
                {
                    "name": "INPUT0",
                    "datatype": "FP32",
                    "shape": [1, 2],
                    "parameters": {"binary_data_size": 8},
                }
            ],
            "parameters": {"binary_data_output": True},
        },
        struct.pack("<2f", 1.0, 2.0),
    )
    http(
        "binary_bytes",
        1,
        {
            "inputs": [
                {
                    "name": "INPUT0",
                    "datatype": "BYTES",
                    "shape": [3],
                    "parameters": {"binary_data_size": len(bytes_elements)},
                }
            ],
            "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": True}}],
        },
        bytes_elements,
    )
    http(
        "shm_in_out",
        0,
        {
            "inputs": [
                {
                    "name": "INPUT0",
                    "datatype": "FP32",
                    "shape": [1, 4],
                    "parameters": {
                        "shared_memory_region": "r0",
                        "shared_memory_offset": 16,
                        "shared_memory_byte_size": 16,
                    },
                }
            ],
            "outputs": [
                {
                    "name": "INPUT0",
                    "parameters": {
                        "shared_memory_region": "r0",
                        "shared_memory_offset": 100,
                        "shared_memory_byte_size": 16,
                    },
                }
            ],
        },
    )
    http("raw_int32", 2, None, struct.pack("<4i", 1, 2, 3, 4), raw=True)


def main() -> None:
    """All seeds; with --no-capture only the hand-written ones (no server needed)."""
    if "--no-capture" not in sys.argv:
        from serving import ServerProcess

        with tempfile.TemporaryDirectory() as repo, ServerProcess(repo) as server:
            proxy = RecordingProxy(server.grpc_port)
            time.sleep(0.1)
            capture_all(proxy)
    # Hand-written seeds for the targets that take no captured bytes.
    elements = b"".join(struct.pack("<I", len(s)) + s for s in (b"hello", b"", b"w\xc3\xb6rld"))
    write("bytes_codec", "three", b"\x03" + elements)
    write("bytes_codec", "any_count", b"\xff" + elements)
    write("bytes_codec", "empty", b"\x00")
    python_seeds(elements)
    print(f"corpora written under {CORPUS}")


if __name__ == "__main__":
    main()
