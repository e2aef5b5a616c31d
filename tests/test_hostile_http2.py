"""Hostile HTTP/2 clients against ``tritonlite-server``'s native gRPC port.

Each case attacks one server process with raw HTTP/2 (frames written by hand: the attacks need
frames a well-behaved library would refuse to send) while a well-behaved tritonclient gRPC
client keeps calling on its own connection. Each asserts that the server stays responsive (the
probe's calls all succeed, none takes longer than a liveness bound), that its memory stays
within the stated budget (VmRSS growth of the server process), and that the bad peer gets a
clear answer: GOAWAY with the right error code, RST_STREAM, or a gRPC status.

With ``HOSTILE_REPORT=path`` set, each case appends a row (probe max latency, RSS growth) to a
markdown table there.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from models import make_identity_onnx
from serving import SANITIZED, ServerProcess, write_config
from tritonlite import _core
from tritonlite._proto import grpc_service_pb2 as pb

grpcclient = pytest.importorskip("tritonclient.grpc")

# The budgets the server runs with here (README, "The server command").
MAX_CONNECTIONS = 48
CONNECTION_MEMORY = 8 << 20
PREFACE_TIMEOUT_MS = 500
# What one case may add to the server's resident memory, and the liveness bound of a probe call
# (the bugs these cases guard against stall the server for many seconds, or for ever).
RSS_BUDGET = 64 << 20
PROBE_LIVENESS_S = 5.0

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    range(10)
)
NO_ERROR, PROTOCOL_ERROR, ENHANCE_YOUR_CALM = 0, 1, 11
INFER = "/inference.GRPCInferenceService/ModelInfer"
LIVE = "/inference.GRPCInferenceService/ServerLive"


# ---------------------------------------------------------------------------------------------
# Raw HTTP/2


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([kind, flags])
        + struct.pack(">I", stream)
        + payload
    )


def literal(name: str, value: str | bytes, index: bool = False) -> bytes:
    """A literal header field (new name; `index`: with incremental indexing), no Huffman."""
    v = value.encode() if isinstance(value, str) else value
    return (
        bytes([0x40 if index else 0x00])
        + hpack_int(len(name), 7)
        + name.encode()
        + hpack_int(len(v), 7)
        + v
    )


def hpack_int(value: int, prefix: int) -> bytes:
    top = (1 << prefix) - 1
    if value < top:
        return bytes([value])
    out, value = [top], value - top
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    return bytes(out + [value])


def request_block(path: str, extra: bytes = b"") -> bytes:
    fields = [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "t"),
              ("content-type", "application/grpc"), ("te", "trailers")]  # fmt: skip
    return b"".join(literal(k, v) for k, v in fields) + extra


def grpc_message(body: bytes, compressed: bool = False) -> bytes:
    return bytes([1 if compressed else 0]) + struct.pack(">I", len(body)) + body


def data_frames(stream: int, payload: bytes, end_stream: bool) -> bytes:
    chunks = [payload[i : i + 16384] for i in range(0, len(payload), 16384)] or [b""]
    return b"".join(
        frame(DATA, 0x1 if end_stream and i == len(chunks) - 1 else 0, stream, c)
        for i, c in enumerate(chunks)
    )


def call(stream: int, path: str, message: bytes) -> bytes:
    return frame(HEADERS, 0x4, stream, request_block(path)) + data_frames(stream, message, True)


def infer_message(values: np.ndarray) -> bytes:
    request = pb.ModelInferRequest(model_name="ident")
    request.inputs.add(name="INPUT0", datatype="FP32", shape=[1, *values.shape])
    request.raw_input_contents.append(values.astype(np.float32).tobytes())
    return grpc_message(request.SerializeToString())


class RawH2:
    """One hostile connection: write anything, read frames back."""

    def __init__(self, port: int, preface: bool = True, **settings: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""
        self.closed = False
        self.hpack = _core.grpc_codec.HpackDecoder()
        self.pending: dict[int, dict[bytes, bytes]] = {}  # headers of streams still open
        self.answers: dict[int, dict[bytes, bytes]] = {}  # of streams that ended
        if preface:
            ids = {"initial_window_size": 4}
            entries = b"".join(struct.pack(">HI", ids[k], v) for k, v in settings.items())
            self.send(PREFACE + frame(SETTINGS, 0, 0, entries))

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> bool:
        """False once the server has closed the connection (it may stop reading a flood)."""
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def next_frame(self, timeout: float = 10) -> tuple[int, int, int, bytes] | None:
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buffer) >= 9:
                length = int.from_bytes(self.buffer[:3], "big")
                if len(self.buffer) >= 9 + length:
                    kind, flags = self.buffer[3], self.buffer[4]
                    stream = int.from_bytes(self.buffer[5:9], "big") & 0x7FFFFFFF
                    payload = self.buffer[9 : 9 + length]
                    self.buffer = self.buffer[9 + length :]
                    return kind, flags, stream, payload
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(1 << 20)
            except TimeoutError:
                return None
            except OSError:
                chunk = b""
            if not chunk:
                self.closed = True
                return None
            self.buffer += chunk

    def available(self) -> list[tuple[int, int, int, bytes]]:
        """The frames that have arrived, without waiting (sets `closed` at the end)."""
        self.sock.setblocking(False)
        try:
            while True:
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    self.closed = True
                    break
                self.buffer += chunk
        except BlockingIOError:
            pass
        except OSError:
            self.closed = True
        frames = []
        while (f := self.next_frame(0)) is not None:
            frames.append(f)
        return frames

    def goaway(self, timeout: float = 10) -> tuple[int, bytes] | None:
        """(error code, debug data) of the GOAWAY that ends the connection, or None."""
        deadline = time.monotonic() + timeout
        while (f := self.next_frame(max(0.0, deadline - time.monotonic()))) is not None:
            if f[0] == GOAWAY:
                return int.from_bytes(f[3][4:8], "big"), f[3][8:]
        return None

    def response(self, stream: int, timeout: float = 10) -> dict[bytes, bytes]:
        """The headers and trailers of one stream (RST_STREAM: {b'rst': code}); the answers of
        other streams that arrive meanwhile are kept for later."""
        deadline = time.monotonic() + timeout
        while stream not in self.answers:
            f = self.next_frame(max(0.0, deadline - time.monotonic()))
            if f is None:
                raise AssertionError(f"no answer on stream {stream}: {self.pending.get(stream)}")
            self._take(f)
        return self.answers.pop(stream)

    def any_answers(self, count: int, timeout: float = 10) -> dict[int, dict[bytes, bytes]]:
        """The first `count` streams to be answered, whichever they are (fewer at the timeout)."""
        deadline = time.monotonic() + timeout
        while len(self.answers) < count:
            f = self.next_frame(max(0.0, deadline - time.monotonic()))
            if f is None:
                break
            self._take(f)
        return dict(self.answers)

    def _take(self, f: tuple[int, int, int, bytes]) -> None:
        kind, flags, sid, payload = f
        headers = self.pending.setdefault(sid, {})
        if kind == HEADERS:
            headers.update(dict(self.hpack.decode(payload, 1 << 20)))
        if kind == RST_STREAM:
            headers[b"rst"] = str(int.from_bytes(payload, "big")).encode()
        if kind == RST_STREAM or (kind in (HEADERS, DATA) and flags & 0x1):
            self.answers[sid] = self.pending.pop(sid)


# ---------------------------------------------------------------------------------------------
# The server, the probe and the report


def proc_status(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("hostile")
    write_config(
        repo / "ident",
        'name: "ident" platform: "onnxruntime_onnx" max_batch_size: 8 '
        'input [{ name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] }] '
        'output [{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] }]',
    )
    make_identity_onnx(repo / "ident" / "1" / "model.onnx", dims=(-1,))
    args = (
        f"--grpc-max-connections={MAX_CONNECTIONS}",
        f"--grpc-http2-preface-timeout={PREFACE_TIMEOUT_MS}",
        f"--grpc-max-connection-memory={CONNECTION_MEMORY}",
        # The ping policy lets every PING through: only the flood limit is left to stop them.
        "--grpc-keepalive-permit-without-calls=true",
        "--grpc-http2-min-recv-ping-interval-without-data=0",
        "--allow-http=false", "--allow-metrics=false",
    )  # fmt: skip
    with ServerProcess(repo, args=supported(args)) as s:
        yield s


def supported(args: tuple[str, ...]) -> tuple[str, ...]:
    """The flags this build of the server knows (so the suite also runs against a build
    without the budgets, to show what they change)."""
    from tritonlite.cli import build_parser

    known = build_parser()._option_string_actions
    return tuple(a for a in args if a.split("=", 1)[0] in known)


# The well-behaved client runs in its own process, so that the attacker's Python (holding this
# process's GIL) cannot slow it down: what it measures is the server.
PROBE_SCRIPT = r"""
import json, sys, threading, time
import numpy as np
import tritonclient.grpc as grpcclient

client = grpcclient.InferenceServerClient(sys.argv[1])
window = {"latencies": [], "errors": []}
lock = threading.Lock()
running = threading.Event()

def call():
    inp = grpcclient.InferInput("INPUT0", [1, 16], "FP32")
    inp.set_data_from_numpy(np.arange(16, dtype=np.float32)[None])
    start = time.monotonic()
    try:
        result = client.infer("ident", [inp], client_timeout=30)
        assert result.as_numpy("OUTPUT0")[0, 3] == 3.0
        latency = time.monotonic() - start
        with lock:
            window["latencies"].append(latency)
    except Exception as e:
        with lock:
            window["errors"].append(f"{type(e).__name__}: {e}")

def loop():
    while True:
        running.wait()
        call()
        time.sleep(0.02)

call()
threading.Thread(target=loop, daemon=True).start()
print("ready", flush=True)
for line in sys.stdin:
    if line.strip() == "start":
        with lock:
            window = {"latencies": [], "errors": []}
        running.set()
    elif line.strip() == "stop":
        running.clear()
        call()  # still serving after the attack
        with lock:
            print(json.dumps(window), flush=True)
"""


class Probe:
    """A well-behaved tritonclient calling ModelInfer in a loop on its own connection, in its
    own process; start() and stop() bracket one attack."""

    def __init__(self, url: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", PROBE_SCRIPT, url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"
        self.latencies: list[float] = []
        self.errors: list[str] = []

    def _command(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def start(self) -> None:
        self._command("start")

    def stop(self) -> None:
        self._command("stop")
        assert self.proc.stdout is not None
        window = json.loads(self.proc.stdout.readline())
        self.latencies, self.errors = window["latencies"], window["errors"]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(30)


@pytest.fixture(scope="module")
def probe(srv: ServerProcess) -> Iterator[Probe]:
    p = Probe(srv.grpc_url)
    yield p
    p.close()


REPORT_ROWS: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def report() -> Iterator[None]:
    yield
    path = os.environ.get("HOSTILE_REPORT")
    if not path or not REPORT_ROWS:
        return
    new = not Path(path).exists() or Path(path).stat().st_size == 0
    with open(path, "a") as f:
        if new:
            f.write("| case | bad peer got | probe calls | probe max latency (ms) | "
                    "server RSS growth (MiB) | server VmHWM (MiB) |\n"
                    "|---|---|---|---|---|---|\n")  # fmt: skip
        f.writelines(REPORT_ROWS)


@contextmanager
def attack(
    srv: ServerProcess, probe: Probe, case: str, liveness: float = PROBE_LIVENESS_S
) -> Iterator[dict[str, Any]]:
    """Runs the body (the attack) under the probe; checks responsiveness and memory after it.
    The body puts what the bad peer got into outcome['got']."""
    assert srv.proc is not None
    pid = srv.proc.pid
    outcome: dict[str, Any] = {"got": "?"}
    rss_before = proc_status(pid, "VmRSS")
    probe.start()
    try:
        yield outcome
    finally:
        probe.stop()
    growth = proc_status(pid, "VmRSS") - rss_before
    hwm = proc_status(pid, "VmHWM")
    worst = max(probe.latencies)
    REPORT_ROWS.append(
        f"| {case} | {outcome['got']} | {len(probe.latencies)} | {worst * 1000:.0f} | "
        f"{growth / (1 << 20):.1f} | {hwm / (1 << 20):.0f} |\n"
    )
    assert not probe.errors, probe.errors
    assert worst < liveness, f"the well-behaved client waited {worst:.1f} s"
    assert SANITIZED or growth < RSS_BUDGET, f"server RSS grew by {growth >> 20} MiB"


def repeat(out: dict[str, Any], once: Any, seconds: float = 0.5, most: int = 500) -> None:
    """Runs the attack `once` (which returns what the bad peer got) again and again, for at
    least `seconds` (at most `most` times), so the probe calls while it goes on."""
    start, runs = time.monotonic(), 0
    while runs < most:
        out["got"] = once()
        runs += 1
        if time.monotonic() - start >= seconds:
            break
    out["got"] += f" (x{runs})"


def expect_calm(conn: RawH2, what: bytes) -> str:
    got = conn.goaway()
    assert got is not None, "no GOAWAY"
    assert got[0] == ENHANCE_YOUR_CALM and what in got[1], got
    return f"GOAWAY ENHANCE_YOUR_CALM '{got[1].decode()}'"


# ---------------------------------------------------------------------------------------------
# Floods


def test_rapid_reset(srv: ServerProcess, probe: Probe) -> None:
    """HEADERS + DATA, then RST_STREAM, thousands of times (CVE-2023-44487)."""
    half = infer_message(np.zeros(64, np.float32))[:-10]  # a message still arriving
    bursts = [
        b"".join(
            frame(HEADERS, 0x4, s, request_block(INFER))
            + frame(DATA, 0, s, half)
            + frame(RST_STREAM, 0, s, struct.pack(">I", 8))
            for s in range(1 + 200 * batch, 1 + 200 * (batch + 1), 2)
        )
        for batch in range(30)
    ]

    def once() -> str:
        conn = RawH2(srv.grpc_port)
        for burst in bursts:
            if not conn.send(burst):
                break
        try:
            return expect_calm(conn, b"too many stream resets")
        finally:
            conn.close()

    with attack(srv, probe, "rapid reset (3000 x HEADERS+DATA+RST_STREAM)") as out:
        repeat(out, once)


def test_provoked_resets_count_as_resets(srv: ServerProcess, probe: Probe) -> None:
    """HEADERS the server must refuse with RST_STREAM (no :path), thousands of times: resets
    the peer provokes take from the same budget as its own ("MadeYouReset")."""
    bad = b"".join(literal(k, v) for k, v in [(":method", "POST"), (":scheme", "http")])
    bursts = [
        b"".join(frame(HEADERS, 0x5, s, bad) for s in range(1 + 200 * b, 1 + 200 * (b + 1), 2))
        for b in range(30)
    ]

    def once() -> str:
        conn = RawH2(srv.grpc_port)
        for burst in bursts:
            if not conn.send(burst):
                break
        try:
            return expect_calm(conn, b"too many stream resets")
        finally:
            conn.close()

    with attack(srv, probe, "provoked resets (3000 x HEADERS without :path)") as out:
        repeat(out, once)


def test_inflated_requests_count_against_the_memory_budget(
    srv: ServerProcess, probe: Probe
) -> None:
    """Unary calls whose one deflate message inflates to 3 MiB and that never end: what they
    inflated to is held by the connection and counts against its 8 MiB budget."""
    message = grpc_message(zlib.compress(b"\0" * (3 << 20), 9), compressed=True)
    block = request_block(INFER, literal("grpc-encoding", "deflate"))

    def once() -> str:
        conn = RawH2(srv.grpc_port)
        streams = range(1, 11, 2)
        conn.send(b"".join(frame(HEADERS, 0x4, s, block) + data_frames(s, message, False)
                           for s in streams))  # fmt: skip
        answers = conn.any_answers(1, timeout=30)  # the calls within the budget never end
        conn.close()
        assert answers, "no call was failed"
        failed = next(iter(answers.values()))
        assert failed.get(b"grpc-status") == b"8", failed
        assert b"memory budget" in failed[b"grpc-message"], failed
        return f"grpc-status 8 '{failed[b'grpc-message'].decode()[:60]}...'"

    with attack(srv, probe, "never-ending calls inflating to 3 MiB each (budget 8 MiB)") as out:
        repeat(out, once)


@pytest.mark.parametrize(
    "case, flood, what",
    [
        ("SETTINGS flood", frame(SETTINGS, 0, 0), b"SETTINGS"),
        ("PING flood", frame(PING, 0, 0, b"8 bytes!"), b"PING"),
        ("WINDOW_UPDATE flood", frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1)), b"WINDOW_UPDATE"),
        ("empty DATA flood", frame(DATA, 0, 1), b"empty DATA"),
        ("PRIORITY flood", frame(PRIORITY, 0, 3, b"\0\0\0\0\x10"), b"PRIORITY"),
    ],
)
def test_control_frame_floods(
    srv: ServerProcess, probe: Probe, case: str, flood: bytes, what: bytes
) -> None:
    def once() -> str:
        conn = RawH2(srv.grpc_port)
        conn.send(frame(HEADERS, 0x4, 1, request_block(INFER)))  # a stream for the DATA
        for _ in range(10):
            if not conn.send(flood * 2000):
                break
        try:
            return expect_calm(conn, what)
        finally:
            conn.close()

    with attack(srv, probe, f"{case} (20000 frames)") as out:
        repeat(out, once)


def test_initial_window_size_churn(srv: ServerProcess, probe: Probe) -> None:
    """SETTINGS frames full of INITIAL_WINDOW_SIZE changes while many streams are open: each
    change walked every stream (per entry, without limit)."""
    entries = b"".join(struct.pack(">HI", 4, 1000 + i % 2) for i in range(1000))

    def once() -> str:
        conn = RawH2(srv.grpc_port)
        conn.send(b"".join(frame(HEADERS, 0x4, s, request_block(INFER)) for s in range(1, 601, 2)))
        for _ in range(20):
            if not conn.send(frame(SETTINGS, 0, 0, entries) * 100):
                break
        try:
            return expect_calm(conn, b"SETTINGS")
        finally:
            conn.close()

    with attack(srv, probe, "INITIAL_WINDOW_SIZE churn (300 streams, 2000 x 1000 entries)") as out:
        repeat(out, once)


def test_continuation_flood(srv: ServerProcess, probe: Probe) -> None:
    """A header block that never ends: empty CONTINUATION frames without END_HEADERS."""

    def once() -> str:
        conn = RawH2(srv.grpc_port)
        conn.send(frame(HEADERS, 0, 1, request_block(INFER)))
        for _ in range(10):
            if not conn.send(frame(CONTINUATION, 0, 1) * 2000):
                break
        try:
            return expect_calm(conn, b"CONTINUATION")
        finally:
            conn.close()

    with attack(srv, probe, "CONTINUATION flood (20000 empty frames)") as out:
        repeat(out, once)
    # A block that is too large in bytes is refused as well.
    conn = RawH2(srv.grpc_port)
    conn.send(frame(HEADERS, 0, 1, request_block(INFER)))
    conn.send(b"".join(frame(CONTINUATION, 0, 1, b"\0" * 16000) for _ in range(6)))
    assert expect_calm(conn, b"header block too large")
    conn.close()


def test_header_list_overflow_fails_one_stream(srv: ServerProcess, probe: Probe) -> None:
    """A 4 KiB header put in the HPACK table and referenced 20 times: 80 KiB of headers from a
    small block, over the advertised 64 KiB list size. That stream fails alone; the next
    request, which refers to the table entry, still decodes (the HPACK state is in step)."""

    def once() -> str:
        conn = RawH2(srv.grpc_port)
        big = literal("x-big", "a" * 4000, index=True) + b"\xbe" * 20  # 0xbe: dynamic index 62
        conn.send(frame(HEADERS, 0x5, 1, request_block(LIVE, big)))
        first = conn.response(1)
        assert first.get(b"grpc-status") == b"8", first  # RESOURCE_EXHAUSTED
        assert b"exceeds limit" in first[b"grpc-message"]
        conn.send(
            frame(HEADERS, 0x4, 3, request_block(LIVE, b"\xbe"))
            + data_frames(3, grpc_message(b""), True)
        )
        second = conn.response(3)
        assert second.get(b"grpc-status") == b"0", second
        conn.close()
        return "grpc-status 8 on its stream; the connection goes on"

    with attack(srv, probe, "header list over SETTINGS_MAX_HEADER_LIST_SIZE") as out:
        repeat(out, once)


# ---------------------------------------------------------------------------------------------
# Peers that hold resources


def test_client_that_never_opens_its_window(srv: ServerProcess, probe: Probe) -> None:
    """Stream windows of 0: responses can only pile up in the server. Past the connection
    memory budget the connection ends. 256 KiB a response, 32 of them fill the 8 MiB budget;
    up to 256 calls are sent because on a busy machine requests queue behind a slow model
    and the input budget fails some calls first (RESOURCE_EXHAUSTED), which frees their
    bytes, while every answered call's response stays held."""
    message = infer_message(np.ones(64 << 10, np.float32))

    def once() -> str:
        conn = RawH2(srv.grpc_port, initial_window_size=0)
        for s in range(1, 513, 2):
            if not conn.send(call(s, INFER, message)):
                break
        try:
            return expect_calm(conn, b"memory budget")
        finally:
            conn.close()

    with attack(srv, probe, "never opens its flow-control window (256 KiB responses)") as out:
        repeat(out, once)


def test_partial_requests_over_the_memory_budget(srv: ServerProcess, probe: Probe) -> None:
    """Streams that each start a large message and never finish it: the bytes they hold count
    against the connection's budget, and the stream that goes over it fails."""
    chunk = b"\0" + struct.pack(">I", 4 << 20) + b"x" * (2 << 20)  # half of a 4 MiB message

    def once() -> str:
        conn = RawH2(srv.grpc_port)
        for s in range(1, 13, 2):
            conn.send(frame(HEADERS, 0x4, s, request_block(INFER)) + data_frames(s, chunk, False))
        got = conn.response(9)  # the fifth stream takes it past 8 MiB
        assert got.get(b"grpc-status") == b"8" and b"memory budget" in got[b"grpc-message"], got
        conn.close()
        return f"grpc-status 8 '{got[b'grpc-message'].decode()[:60]}...'"

    with attack(srv, probe, "partial requests holding 2 MiB each (budget 8 MiB)") as out:
        repeat(out, once)


def test_connection_cap_with_many_idle_connections(srv: ServerProcess, probe: Probe) -> None:
    """200 idle connections against a cap of 48: those beyond it are told and closed at once,
    the open ones (the probe's included) keep working."""
    with attack(srv, probe, f"200 idle connections (cap {MAX_CONNECTIONS})") as out:
        conns = [RawH2(srv.grpc_port) for _ in range(200)]
        time.sleep(1)  # the refused ones have their GOAWAY and are closed by now
        refused = 0
        for c in conns:
            frames = c.available()
            goaways = [f for f in frames if f[0] == GOAWAY]
            if goaways:
                got = int.from_bytes(goaways[0][3][4:8], "big"), goaways[0][3][8:]
                assert got == (ENHANCE_YOUR_CALM, b"too many connections"), got
                assert c.closed
                refused += 1
        assert 200 - MAX_CONNECTIONS <= refused < 200
        out["got"] = f"{refused} refused with GOAWAY ENHANCE_YOUR_CALM 'too many connections'"
        for c in conns:
            c.close()
    # Room again once they are gone.
    deadline = time.monotonic() + 10
    while True:
        conn = RawH2(srv.grpc_port)
        conn.send(call(1, LIVE, grpc_message(b"")))
        try:
            if conn.response(1, timeout=2).get(b"grpc-status") == b"0":
                break
        except AssertionError:
            assert time.monotonic() < deadline, "no connection accepted after the flood"
        finally:
            conn.close()


def test_connection_without_preface(srv: ServerProcess, probe: Probe) -> None:
    """Silent connections, and one that stops halfway through the preface, are closed."""
    with attack(srv, probe, f"no preface ({PREFACE_TIMEOUT_MS} ms timeout)") as out:
        silent = [RawH2(srv.grpc_port, preface=False) for _ in range(5)]
        partial = RawH2(srv.grpc_port, preface=False)
        partial.send(PREFACE[:10])
        deadline = time.monotonic() + 5
        for c in [*silent, partial]:
            # The server's SETTINGS, then the close.
            while c.next_frame(max(0.0, deadline - time.monotonic())) is not None:
                pass
            assert c.closed, "still open"
            c.close()
        out["got"] = "closed"


def test_idle_connection_goes_away() -> None:
    core = _core.GrpcServer("127.0.0.1", 0, max_connection_idle_ms=200)
    core.start()
    try:
        conn = RawH2(core.port)
        got = conn.goaway(10)
        assert got == (NO_ERROR, b"max_idle")
        conn.close()
    finally:
        core.stop()


def test_out_of_file_descriptors_does_not_spin(srv: ServerProcess, probe: Probe) -> None:
    """accept() failing with EMFILE must not become a busy loop on the I/O thread."""
    assert srv.proc is not None
    pid = srv.proc.pid
    with attack(srv, probe, "out of file descriptors (EMFILE)") as out:
        limits = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        used = len(os.listdir(f"/proc/{pid}/fd"))
        conns: list[RawH2] = []
        try:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (used + 2, limits[1]))
            conns = [RawH2(srv.grpc_port) for _ in range(12)]
            time.sleep(0.3)
            before = cpu_seconds(pid)
            time.sleep(1.5)
            spent = cpu_seconds(pid) - before
            # The connections over the limit were closed, not left waiting.
            closed = 0
            for c in conns:
                c.available()
                closed += c.closed
        finally:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, limits)
            for c in conns:
                c.close()
        out["got"] = f"{closed} of 12 closed at once; {spent:.2f} s server CPU in 1.5 s"
        assert spent < 0.5, f"the server spent {spent:.2f} s of CPU in 1.5 s: accept loop spins"
        assert closed >= 8


def test_decompression_bombs_do_not_stall_the_io_thread(srv: ServerProcess, probe: Probe) -> None:
    """24 deflate messages of 65 KB that each inflate to 65 MiB, past the connection's memory
    budget (which bounds what a message may inflate to): inflating them took over a second of
    the single I/O thread, so every other connection waited."""
    bomb = grpc_message(zlib.compress(b"\0" * (65 << 20), 9), compressed=True)
    block = request_block(INFER, literal("grpc-encoding", "deflate"))
    with attack(srv, probe, "24 deflate bombs (65 KB -> over 64 MiB each)", liveness=1.0) as out:
        conn = RawH2(srv.grpc_port)
        streams = range(1, 49, 2)
        conn.send(
            b"".join(frame(HEADERS, 0x4, s, block) + data_frames(s, bomb, True) for s in streams)
        )
        for s in streams:
            got = conn.response(s, timeout=60)
            assert got.get(b"grpc-status") == b"8", got
            assert b"larger than max" in got[b"grpc-message"], got
        out["got"] = f"grpc-status 8 '{got[b'grpc-message'].decode()}' on each stream"
        conn.close()


# ---------------------------------------------------------------------------------------------
# Malformed gRPC


@pytest.mark.parametrize(
    "case, message, status, text",
    [
        ("length prefix over the max", b"\0" + struct.pack(">I", 1 << 31) + b"x", b"8", b"larger than max"),
        ("compressed flag without grpc-encoding", grpc_message(b"xx", compressed=True), b"13", b"without grpc-encoding"),
        ("truncated message", b"\0" + struct.pack(">I", 100) + b"x" * 10, b"13", b"middle of a message"),
        ("malformed protobuf", grpc_message(b"\xff\xff\xff\xff\x0f"), None, b""),
        ("ModelInfer of a wrong shape", infer_message(np.zeros((2, 3), np.float32)), None, b"ident"),
    ],
)  # fmt: skip
def test_malformed_grpc(
    srv: ServerProcess, probe: Probe, case: str, message: bytes, status: bytes | None, text: bytes
) -> None:
    with attack(srv, probe, f"malformed gRPC: {case}") as out:
        conn = RawH2(srv.grpc_port)
        conn.send(call(1, INFER, message))
        got = conn.response(1)
        code = got.get(b"grpc-status")
        assert code is not None and code != b"0", got
        if status is not None:
            assert code == status, got
        assert text in got.get(b"grpc-message", b""), got
        # The connection still serves.
        conn.send(call(3, LIVE, grpc_message(b"")))
        assert conn.response(3).get(b"grpc-status") == b"0"
        out["got"] = f"grpc-status {code.decode()}"
        conn.close()


@pytest.mark.parametrize(
    "field, flag",
    [
        ("max_connections", "--grpc-max-connections"),
        ("max_connection_memory", "--grpc-max-connection-memory"),
        ("http2_max_resets_per_second", "--grpc-http2-max-resets-per-second"),
    ],
)
def test_budget_flags_are_checked(field: str, flag: str) -> None:
    from tritonlite import TritonError
    from tritonlite.frontends.grpc import GrpcOptions
    from tritonlite.frontends.grpc_native import transport_options

    with pytest.raises(TritonError, match=flag):
        transport_options(GrpcOptions(**{field: -1}))
