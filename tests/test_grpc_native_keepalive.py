"""Connection management of the native gRPC transport with Triton's flags, as gRPC core's server
does it: keepalive PINGs and closing connections that leave them unanswered
(--grpc-keepalive-*), policing of the client's PINGs (--grpc-http2-*), and the maximum
connection age with its grace period (--grpc-max-connection-age*). Raw HTTP/2 sockets watch the frames; tritonclient checks that a
real client keeps working. The last tests run tritonlite-server with the flags."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from serving import ServerProcess
from test_grpc_native import (
    GOAWAY,
    HEADERS,
    PING,
    WINDOW_UPDATE,
    Harness,
    RawH2,
    add_sub_inputs,
    data_frame,
    frame,
    grpc_message,
    header_block,
    headers_frame,
    sample,
    wait_for,
)
from tritonlite import TritonError, _core
from tritonlite.frontends.grpc import GrpcOptions

grpcclient = pytest.importorskip("tritonclient.grpc")

ENHANCE_YOUR_CALM = 0xB
MAX_STREAM_ID = (1 << 31) - 1

Frame = tuple[int, int, int, bytes]


def is_ping(f: Frame) -> bool:
    return f[0] == PING and not f[1] & 1


def is_ping_ack(f: Frame) -> bool:
    return f[0] == PING and bool(f[1] & 1)


def goaway(f: Frame) -> tuple[int, int, bytes]:
    """(last stream id, error code, debug data) of a GOAWAY frame."""
    last, code = struct.unpack(">II", f[3][:8])
    return last & MAX_STREAM_ID, code, f[3][8:]


class Watcher:
    """Reads a RawH2 connection with timestamps: frames as they arrive, whether (and when) the
    server closed it. ACKs the server's PINGs when told to."""

    def __init__(self, conn: RawH2, ack_pings: bool = False) -> None:
        self.conn = conn
        self.ack_pings = ack_pings
        self.t0 = time.monotonic()
        self.frames: list[tuple[float, Frame]] = []
        self.closed_at: float | None = None

    def read(self, until: Any = None, timeout: float = 5.0) -> Frame | None:
        """Reads until a frame satisfies `until` (returned), the connection closes or `timeout`
        seconds pass (None)."""
        deadline = time.monotonic() + timeout
        conn = self.conn
        while self.closed_at is None:
            while len(conn.buffer) >= 9:
                length = int.from_bytes(conn.buffer[:3], "big")
                if len(conn.buffer) < 9 + length:
                    break
                f = (conn.buffer[3], conn.buffer[4],
                     int.from_bytes(conn.buffer[5:9], "big") & MAX_STREAM_ID,
                     conn.buffer[9 : 9 + length])  # fmt: skip
                conn.buffer = conn.buffer[9 + length :]
                self.frames.append((time.monotonic() - self.t0, f))
                if self.ack_pings and is_ping(f):
                    conn.sock.sendall(frame(PING, 1, 0, f[3]))
                if until is not None and until(f):
                    return f
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            conn.sock.settimeout(min(left, 0.5))
            try:
                chunk = conn.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                self.closed_at = time.monotonic() - self.t0
            conn.buffer += chunk
        return None

    def times(self, predicate: Any) -> list[float]:
        return [t for t, f in self.frames if predicate(f)]

    def of(self, predicate: Any) -> list[Frame]:
        return [f for _, f in self.frames if predicate(f)]


def slow_call(stream: int, seconds: float) -> bytes:
    """A forwarded call that stays open for `seconds` (the test handlers' test.Fake/Slow)."""
    return headers_frame(stream, "/test.Fake/Slow") + data_frame(
        stream, grpc_message(str(seconds).encode()), end_stream=True
    )


def echo_call(stream: int, payload: bytes = b"hi") -> bytes:
    return headers_frame(stream, "/test.Fake/Echo") + data_frame(
        stream, grpc_message(payload), end_stream=True
    )


def ends_stream(stream: int) -> Any:
    return lambda f: f[2] == stream and f[0] == HEADERS and f[1] & 1


def make_harness(tmp: Path, **options: Any) -> Harness:
    return Harness(tmp, options=GrpcOptions(**options))


@pytest.fixture(scope="module")
def keepalive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """Pings 200 ms after the last activity while a call is open; 300 ms to answer. The ping
    policy is the default one (no pings without calls, 5 min, 2 strikes, 2 pings without data)."""
    h = make_harness(tmp_path_factory.mktemp("ka"), keepalive_time_ms=200, keepalive_timeout_ms=300)
    yield h
    h.close()


# ---------------------------------------------------------------------------------------------
# Keepalive


def test_unanswered_keepalive_ping_closes_the_connection(keepalive: Harness) -> None:
    with RawH2(keepalive.port) as conn:
        conn.handshake()
        conn.sock.sendall(slow_call(1, 30))
        w = Watcher(conn)
        assert w.read(is_ping, timeout=3) is not None, "no keepalive PING while a call is open"
        (pinged,) = w.times(is_ping)
        assert 0.15 < pinged < 1.5
        w.read(timeout=5)  # never answered: closed keepalive_timeout later
        assert w.closed_at is not None, "the connection outlived its unanswered PING"
        assert 0.25 < w.closed_at - pinged < 1.5
    # Like any connection loss, the open call is cancelled.
    wait_for(lambda: "test.Fake/Slow" in keepalive.handlers.cancelled)


def test_answered_pings_keep_the_connection(keepalive: Harness) -> None:
    with RawH2(keepalive.port) as conn:
        conn.handshake()
        conn.sock.sendall(slow_call(1, 1.2))
        w = Watcher(conn, ack_pings=True)
        assert w.read(ends_stream(1), timeout=10) is not None and w.closed_at is None
        # A PING keepalive_time after each answer, however long no data flows (like gRPC core's
        # servers, --grpc-http2-max-pings-without-data does not stop them).
        pings = w.times(is_ping)
        assert len(pings) >= 4 and np.diff(pings).min() > 0.15
        conn.sock.sendall(echo_call(3))
        assert w.read(ends_stream(3), timeout=5) is not None and w.closed_at is None


def test_any_bytes_answer_a_keepalive_ping(keepalive: Harness) -> None:
    with RawH2(keepalive.port) as conn:
        conn.handshake()
        conn.sock.sendall(slow_call(1, 1.2))
        w = Watcher(conn)  # no ACKs, but each PING is followed by other bytes
        done = None
        deadline = time.monotonic() + 10
        while done is None and w.closed_at is None and time.monotonic() < deadline:
            f = w.read(lambda f: is_ping(f) or ends_stream(1)(f), timeout=5)
            if f is not None and is_ping(f):
                time.sleep(0.05)
                conn.sock.sendall(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1)))
            else:
                done = f
        assert done is not None and w.closed_at is None
        assert len(w.of(is_ping)) >= 2  # and none of them was ACKed


def test_no_keepalive_pings_without_calls(keepalive: Harness) -> None:
    with RawH2(keepalive.port) as conn:
        conn.handshake()
        w = Watcher(conn)
        assert w.read(is_ping, timeout=1.0) is None  # five keepalive periods
        assert w.closed_at is None
        conn.sock.sendall(echo_call(1))
        assert w.read(ends_stream(1), timeout=5) is not None


def test_keepalive_pings_without_calls_when_permitted(tmp_path: Path) -> None:
    h = make_harness(tmp_path, keepalive_time_ms=150, keepalive_permit_without_calls=True)
    try:
        with RawH2(h.port) as conn:
            conn.handshake()
            w = Watcher(conn, ack_pings=True)
            w.read(timeout=1.2)
            assert len(w.of(is_ping)) >= 3 and w.closed_at is None
            gaps = np.diff(w.times(is_ping))
            assert gaps.min() > 0.1  # keepalive_time after each answer
    finally:
        h.close()


def test_infinite_keepalive_timeout_pings_once_and_waits(tmp_path: Path) -> None:
    """--grpc-keepalive-timeout=2147483647 is gRPC's "infinite": one PING, then the server waits
    for its answer however long it takes (no more PINGs, no close) and goes on serving."""
    h = make_harness(tmp_path, keepalive_time_ms=150, keepalive_timeout_ms=(1 << 31) - 1)
    try:
        with RawH2(h.port) as conn:
            conn.handshake()
            conn.sock.sendall(slow_call(1, 1.0))
            w = Watcher(conn)  # never answers, sends nothing more
            assert w.read(ends_stream(1), timeout=5) is not None and w.closed_at is None
            assert len(w.of(is_ping)) == 1
        with RawH2(h.port) as other:  # the I/O thread is not stuck
            other.handshake()
            other.sock.sendall(echo_call(1))
            assert Watcher(other).read(ends_stream(1), timeout=5) is not None
    finally:
        h.close()


# ---------------------------------------------------------------------------------------------
# The client's pings


def test_ping_flood_without_calls_gets_too_many_pings(keepalive: Harness) -> None:
    with RawH2(keepalive.port) as conn:
        conn.handshake()
        w = Watcher(conn)
        for i in range(3):  # the first is free, then two strikes are tolerated
            conn.sock.sendall(frame(PING, 0, 0, struct.pack(">Q", i)))
            assert w.read(is_ping_ack, timeout=5) is not None
        conn.sock.sendall(frame(PING, 0, 0, struct.pack(">Q", 3)))
        f = w.read(lambda f: f[0] == GOAWAY, timeout=5)
        assert f is not None
        assert goaway(f) == (0, ENHANCE_YOUR_CALM, b"too_many_pings")
        assert len(w.of(is_ping_ack)) == 3
        w.read(timeout=5)
        assert w.closed_at is not None


def test_pings_between_responses_are_no_strikes(keepalive: Harness) -> None:
    with RawH2(keepalive.port) as conn:
        conn.handshake()
        w = Watcher(conn)
        for k in range(6):  # the server sends data between the pings: strikes are forgiven
            conn.sock.sendall(echo_call(2 * k + 1))
            assert w.read(ends_stream(2 * k + 1), timeout=5) is not None
            conn.sock.sendall(frame(PING, 0, 0, struct.pack(">Q", k)))
            assert w.read(is_ping_ack, timeout=5) is not None
        assert not w.of(lambda f: f[0] == GOAWAY) and w.closed_at is None


def test_min_recv_ping_interval_and_max_strikes(tmp_path: Path) -> None:
    h = make_harness(
        tmp_path,
        keepalive_permit_without_calls=True,
        http2_min_recv_ping_interval_without_data_ms=100,
        http2_max_ping_strikes=1,
    )
    try:
        with RawH2(h.port) as conn:
            conn.handshake()
            w = Watcher(conn)
            for i in range(4):  # spaced beyond the minimum interval: fine without calls
                conn.sock.sendall(frame(PING, 0, 0, struct.pack(">Q", i)))
                assert w.read(is_ping_ack, timeout=5) is not None
                time.sleep(0.15)
            conn.sock.sendall(frame(PING, 0, 0, b"a" * 8) + frame(PING, 0, 0, b"b" * 8))
            assert w.read(lambda f: is_ping_ack(f) and f[3] == b"b" * 8, timeout=5) is not None
            assert not w.of(lambda f: f[0] == GOAWAY)  # one strike: tolerated
            conn.sock.sendall(frame(PING, 0, 0, b"c" * 8))
            f = w.read(lambda f: f[0] == GOAWAY, timeout=5)
            assert f is not None and goaway(f)[1:] == (ENHANCE_YOUR_CALM, b"too_many_pings")
    finally:
        h.close()


# ---------------------------------------------------------------------------------------------
# Maximum connection age


@pytest.fixture(scope="module")
def aging(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    h = make_harness(tmp_path_factory.mktemp("age"), max_connection_age_ms=300,
                     max_connection_age_grace_ms=800)  # fmt: skip
    yield h
    h.close()


def test_max_age_goaway_then_close(aging: Harness) -> None:
    with RawH2(aging.port) as conn:
        conn.handshake()
        w = Watcher(conn, ack_pings=True)
        first = w.read(lambda f: f[0] == GOAWAY, timeout=5)
        assert first is not None and goaway(first) == (MAX_STREAM_ID, 0, b"max_age")
        (went_away,) = w.times(lambda f: f[0] == GOAWAY)
        assert 0.25 < went_away < 1.5  # 300 ms +-10%
        # Its PING answered, the final GOAWAY names the last stream: none. Nothing is open, so
        # the connection closes right away.
        final = w.read(lambda f: f[0] == GOAWAY, timeout=5)
        assert final is not None and goaway(final) == (0, 0, b"max_age")
        w.read(timeout=5)
        assert w.closed_at is not None and w.closed_at - went_away < 0.5


def test_max_age_grace_lets_calls_finish_then_cancels(aging: Harness) -> None:
    cancelled = aging.handlers.cancelled.count("test.Fake/Slow")
    with RawH2(aging.port) as conn:
        conn.handshake()
        conn.sock.sendall(slow_call(1, 0.45) + slow_call(3, 30))
        w = Watcher(conn)  # the GOAWAY's PING is not answered: streams stay accepted meanwhile
        assert w.read(lambda f: f[0] == GOAWAY, timeout=5) is not None
        (went_away,) = w.times(lambda f: f[0] == GOAWAY)
        conn.sock.sendall(echo_call(5, b"after the first goaway"))
        assert w.read(ends_stream(5), timeout=5) is not None
        assert w.read(ends_stream(1), timeout=5) is not None  # finished within the grace
        headers = dict(conn.hpack.decode(w.of(ends_stream(1))[0][3]))
        assert headers[b"grpc-status"] == b"0"
        w.read(timeout=5)  # the grace is over: closed, with stream 3 still open
        assert w.closed_at is not None
        assert 0.7 < w.closed_at - went_away < 2.0
        assert not w.of(ends_stream(3))
    wait_for(lambda: aging.handlers.cancelled.count("test.Fake/Slow") > cancelled)


def test_a_goaway_never_raises_the_last_stream_id_it_announced(aging: Harness) -> None:
    """RFC 9113 6.8: a later GOAWAY's last-stream-id must not exceed an earlier one's, also when
    streams the server ignored after its GOAWAY came in meanwhile."""
    with RawH2(aging.port) as conn:
        conn.handshake()
        conn.sock.sendall(slow_call(1, 30))
        w = Watcher(conn, ack_pings=True)
        assert w.read(lambda f: f[0] == GOAWAY and goaway(f)[0] == 1, timeout=5) is not None
        conn.sock.sendall(echo_call(3))  # after the final GOAWAY: ignored
        conn.sock.sendall(frame(PING, 0, 1, b"\0" * 8))  # a PING on a stream: PROTOCOL_ERROR
        error = w.read(lambda f: f[0] == GOAWAY and goaway(f)[1] != 0, timeout=5)
        assert error is not None and goaway(error)[:2] == (1, 1)
        assert not w.of(ends_stream(3))


def test_connections_accepted_while_the_heap_is_compacted_keep_their_timers(
    tmp_path: Path,
) -> None:
    """The I/O thread's deadline heap is compacted every 4096 entries; a connection accepted
    just then still gets its maximum-age GOAWAY."""
    h = make_harness(tmp_path, max_connection_age_ms=1000)
    try:
        with RawH2(h.port) as filler:
            filler.handshake()
            # Calls refused at once (unknown grpc-encoding) that each leave their deadline in the
            # heap: with the filler's own timer, 4089 entries.
            block = header_block("/test.Fake/Echo", [("grpc-timeout", "1H"),
                                                     ("grpc-encoding", "bogus")])  # fmt: skip
            calls = 4088
            filler.sock.sendall(b"".join(frame(HEADERS, 0x5, 2 * i + 1, block)
                                         for i in range(calls)))  # fmt: skip
            assert filler.frames_until(ends_stream(2 * calls - 1), timeout=10)[-1][2] == (
                2 * calls - 1
            )
            conns = []
            try:
                for _ in range(16):  # the 7th makes the heap compact while it is accepted
                    c = RawH2(h.port)
                    c.handshake()
                    conns.append(c)
                    c.next_frame()  # accepted (its SETTINGS) before the next one connects
                missing = []
                for i, c in enumerate(conns):
                    if Watcher(c).read(lambda f: f[0] == GOAWAY, timeout=3) is None:
                        missing.append(i)
                assert not missing, f"connections {missing} never reached their maximum age"
            finally:
                for c in conns:
                    c.sock.close()
    finally:
        h.close()


def test_tritonclient_keeps_working_across_max_age(aging: Harness) -> None:
    client = grpcclient.InferenceServerClient(aging.url)
    try:
        deadline = time.monotonic() + 2.0  # several ages
        n = 0
        while time.monotonic() < deadline:
            a, b = sample(n)
            result = client.infer("add_sub", add_sub_inputs(a, b))
            np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
            n += 1
            time.sleep(0.02)
        assert n > 10
    finally:
        client.close()


def test_invalid_options_are_refused() -> None:
    with pytest.raises(TritonError, match="keepalive_time_ms"):
        _core.GrpcServer("127.0.0.1", 0, keepalive_time_ms=-1)
    with pytest.raises(TritonError, match="http2_max_ping_strikes"):
        _core.GrpcServer("127.0.0.1", 0, http2_max_ping_strikes=-1)
    with pytest.raises(TritonError, match="max_connection_age_grace_ms"):
        _core.GrpcServer("127.0.0.1", 0, max_connection_age_grace_ms=-5)


# ---------------------------------------------------------------------------------------------
# tritonlite-server with Triton's flags


def add_sub_repo(root: Path) -> Path:
    from models import make_add_sub_onnx
    from serving import write_config

    write_config(
        root / "add_sub",
        'name: "add_sub" platform: "onnxruntime_onnx" max_batch_size: 8 '
        'input [{ name: "INPUT0" data_type: TYPE_INT32 dims: [ 16 ] }, '
        '{ name: "INPUT1" data_type: TYPE_INT32 dims: [ 16 ] }] '
        'output [{ name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 16 ] }, '
        '{ name: "OUTPUT1" data_type: TYPE_INT32 dims: [ 16 ] }]',
    )
    make_add_sub_onnx(root / "add_sub" / "1" / "model.onnx", dtype="INT32")
    return root


def test_server_keepalive_and_ping_flags(tmp_path: Path) -> None:
    args = ("--grpc-keepalive-time=150", "--grpc-keepalive-timeout=300",
            "--grpc-keepalive-permit-without-calls=true", "--grpc-http2-max-pings-without-data=0",
            "--grpc-http2-max-ping-strikes=0")  # fmt: skip
    with ServerProcess(add_sub_repo(tmp_path), args=args) as srv:
        with RawH2(srv.grpc_port) as conn:
            conn.handshake()
            w = Watcher(conn, ack_pings=True)
            w.read(timeout=1.0)  # idle, answering: pinged again and again, kept open
            assert len(w.of(is_ping)) >= 3 and w.closed_at is None
            for i in range(10):  # no strike limit
                conn.sock.sendall(frame(PING, 0, 0, struct.pack(">Q", i)))
            w.read(lambda f: is_ping_ack(f) and f[3] == struct.pack(">Q", 9), timeout=5)
            assert not w.of(lambda f: f[0] == GOAWAY) and w.closed_at is None
        with RawH2(srv.grpc_port) as conn:  # unanswered: closed
            conn.handshake()
            w = Watcher(conn)
            w.read(timeout=5)
            assert w.of(is_ping) and w.closed_at is not None
        client = grpcclient.InferenceServerClient(srv.grpc_url)
        a, b = sample(1)
        assert client.infer("add_sub", add_sub_inputs(a, b)).as_numpy("OUTPUT1").tolist() == (
            a - b
        ).tolist()
        client.close()


def test_server_max_connection_age_flags(tmp_path: Path) -> None:
    args = ("--grpc-max-connection-age=300", "--grpc-max-connection-age-grace=300")
    with ServerProcess(add_sub_repo(tmp_path), args=args) as srv:
        with RawH2(srv.grpc_port) as conn:
            conn.handshake()
            w = Watcher(conn)
            f = w.read(lambda f: f[0] == GOAWAY, timeout=5)
            assert f is not None and goaway(f)[1] == 0  # NO_ERROR
            w.read(timeout=5)
            assert w.closed_at is not None
        client = grpcclient.InferenceServerClient(srv.grpc_url)
        for i in range(8):  # each pause outlives the connection: the client reconnects
            a, b = sample(i)
            result = client.infer("add_sub", add_sub_inputs(a, b))
            np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
            time.sleep(0.15)
        client.close()


def test_bad_flag_values_stop_startup(tmp_path: Path) -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "tritonlite.cli", "--model-repository", str(tmp_path),
         "--grpc-port=0", "--http-port=0", "--allow-metrics=false",
         "--grpc-keepalive-timeout=-1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "--grpc-keepalive-timeout must be >= 0" in proc.stderr


def test_socket_helper_sanity() -> None:
    """The raw client really sees a closed socket as closed (and not as a timeout)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    try:
        conn = RawH2(listener.getsockname()[1])
        peer, _ = listener.accept()
        w = Watcher(conn)
        assert w.read(timeout=0.3) is None and w.closed_at is None
        peer.close()
        w.read(timeout=5)
        assert w.closed_at is not None
        conn.sock.close()
    finally:
        listener.close()
