"""HTTP request bodies: Triton's ``--http-max-input-size`` (checked before and while reading and
after decompression, with Triton's status and texts), big bodies off the event loop with bounded
memory; and the small defects around them: 500s that leak internals, swallowed poll errors, the
CLI's swallowed ImportError."""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import shutil
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import numpy as np
import pytest
from models import make_identity_onnx
from serving import ServerProcess, write_config
from tritonlite import Server, cli
from tritonlite.frontends.http import start_http

LIMIT = 64 * 1024 * 1024  # Triton's default --http-max-input-size
MiB = 1024 * 1024

IDENTITY = """
name: "identity" platform: "onnxruntime_onnx" max_batch_size: 1
input [{ name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] }]
output [{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] }]
"""


def too_large(size: int | None, limit: int = LIMIT) -> str:
    what = "request size" if size is None else f"request size of {size} bytes"
    return (
        f"{what} exceeds the maximum allowed input size of {limit} bytes. "
        "Use --http-max-input-size to increase the limit."
    )


def vm_hwm_bytes(pid: int) -> int:
    """The peak resident set size of a process (VmHWM in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("limits")
    write_config(repo / "identity", IDENTITY)
    make_identity_onnx(repo / "identity" / "1" / "model.onnx", "FP32", dims=[-1])
    with ServerProcess(repo) as server:
        wait_http(server)
        yield server


def wait_http(server: ServerProcess) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if get(server, "/v2/health/live")[0] == 200:
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.05)


def get(server: ServerProcess, path: str, timeout: float = 30) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def post(
    server: ServerProcess, path: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=60)
    try:
        conn.request("POST", path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def error_of(body: bytes) -> str:
    return str(json.loads(body)["error"])


class LiveWatch:
    """Polls /v2/health/live in a thread and records the slowest answer."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.slowest = 0.0
        self.answers = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            start = time.monotonic()
            status, _ = get(self.server, "/v2/health/live", timeout=60)
            assert status == 200
            self.slowest = max(self.slowest, time.monotonic() - start)
            self.answers += 1
            time.sleep(0.02)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(120)


# ---- --http-max-input-size --------------------------------------------------------------------


def test_content_length_over_the_limit_is_refused_before_the_body_arrives(
    srv: ServerProcess,
) -> None:
    size = 100_000_000
    with socket.create_connection(("127.0.0.1", srv.http_port), timeout=15) as s:
        s.sendall(
            b"POST /v2/models/identity/infer HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % size
        )
        # Nothing of the body is sent: the answer must not wait for it.
        response = s.makefile("rb")
        status_line = response.readline()
        assert status_line.startswith(b"HTTP/1.1 400"), status_line
        length = 0
        while (line := response.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        assert error_of(response.read(length)) == too_large(size)
    assert get(srv, "/v2/health/live")[0] == 200


def test_a_streamed_body_is_refused_once_it_passes_the_limit(srv: ServerProcess) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", srv.http_port, timeout=60)
    try:
        conn.putrequest("POST", "/v2/models/identity/infer")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.putheader("Content-Type", "application/json")
        conn.endheaders()
        chunk = b" " * MiB
        try:
            for _ in range(LIMIT // MiB + 2):
                conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            conn.send(b"0\r\n\r\n")
        except OSError:
            pass  # the server may close once it has answered
        r = conn.getresponse()
        assert (r.status, error_of(r.read())) == (400, too_large(None))
    finally:
        conn.close()
    assert get(srv, "/v2/health/live")[0] == 200


# ---- Transfer-Encoding: chunked (Triton decodes it; tests/parity/fixtures/http_chunked_body.json)


def raw_exchange(server: ServerProcess, head: str, body: bytes) -> tuple[int, bytes, dict[str, str]]:
    """Send a hand-made request and read one answer (status, body, headers); (0, b"", {})
    when the server closed the connection without one."""
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=60) as s:
        s.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        r = http.client.HTTPResponse(s)
        try:
            r.begin()
        except http.client.RemoteDisconnected:
            return 0, b"", {}
        return r.status, r.read(), {k.lower(): v for k, v in r.getheaders()}


IDENTITY_JSON = json.dumps(
    {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}
).encode()
CHUNKED_HEAD = (
    "POST /v2/models/identity/infer HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n"
    "Content-Type: application/json\n"
)


def chunks(data: bytes, size: int = 7, end: bytes = b"0\r\n\r\n", fmt: str = "{:x}") -> bytes:
    pieces = [data[i : i + size] for i in range(0, len(data), size)]
    return b"".join(fmt.format(len(p)).encode() + b"\r\n" + p + b"\r\n" for p in pieces) + end


@pytest.mark.parametrize(
    "body",
    [
        chunks(IDENTITY_JSON),
        chunks(IDENTITY_JSON, fmt="{:X}"),  # upper-case hex
        chunks(IDENTITY_JSON, fmt="000{:x}"),  # leading zeros
        chunks(IDENTITY_JSON, fmt="{:x};name=value"),  # chunk extensions (Triton drops these)
        chunks(IDENTITY_JSON, end=b"0\r\nX-Trailer: 1\r\n\r\n"),  # trailers
        chunks(IDENTITY_JSON, size=1),  # one byte a chunk
    ],
)
def test_a_chunked_body_is_decoded(srv: ServerProcess, body: bytes) -> None:
    status, answer, _ = raw_exchange(srv, CHUNKED_HEAD, body)
    assert status == 200, answer
    assert json.loads(answer)["outputs"][0]["data"] == [1.0, 2.0]


def test_a_chunked_body_with_a_content_length_too(srv: ServerProcess) -> None:
    """What requests.post(data=<chunk-encoded bytes>, headers={"Transfer-Encoding": "chunked"})
    sends: the chunked framing wins (RFC 9112 6.3) and the connection closes after the answer,
    so what follows the body is never read as another request."""
    body = chunks(IDENTITY_JSON)
    head = CHUNKED_HEAD + f"Content-Length: {len(body) + 5}\n"
    status, answer, headers = raw_exchange(srv, head, body)
    assert status == 200, answer
    assert json.loads(answer)["outputs"][0]["data"] == [1.0, 2.0]
    assert headers.get("connection") == "close"
    # Bounded like any chunked body: over the limit is refused as it arrives.
    big = chunks(b" " * (LIMIT + 2 * MiB), size=MiB)
    status, answer, _ = raw_exchange(srv, CHUNKED_HEAD + "Content-Length: 10\n", big)
    assert (status, error_of(answer)) == (400, too_large(None))
    assert get(srv, "/v2/health/live")[0] == 200


@pytest.mark.parametrize(
    "body",
    [
        b"zz\r\nabc\r\n0\r\n\r\n",  # not hex
        b"1" + b"0" * 20 + b"\r\nabc\r\n0\r\n\r\n",  # 2**80: past 64 bits (Triton reads 0)
        b"ffffffffffffffff\r\nabc\r\n0\r\n\r\n",  # 2**64 - 1 declared, 3 bytes sent
        b"-5\r\nabc\r\n0\r\n\r\n",  # negative
    ],
)
def test_hostile_chunk_sizes_are_refused(srv: ServerProcess, body: bytes) -> None:
    with socket.create_connection(("127.0.0.1", srv.http_port), timeout=60) as s:
        s.sendall(CHUNKED_HEAD.replace("\n", "\r\n").encode() + b"\r\n" + body)
        s.shutdown(socket.SHUT_WR)  # no more bytes: a declared size is never reached
        answer = s.makefile("rb").read()
    # A 400 or a closed connection; never a served request.
    assert answer == b"" or answer.split(b" ", 2)[1] == b"400", answer[:200]
    assert get(srv, "/v2/health/live")[0] == 200


def test_a_chunked_body_without_its_last_chunk_is_not_served(srv: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", srv.http_port), timeout=60) as s:
        s.sendall(
            CHUNKED_HEAD.replace("\n", "\r\n").encode() + b"\r\n" + chunks(IDENTITY_JSON, end=b"")
        )
        s.shutdown(socket.SHUT_WR)
        answer = s.makefile("rb").read()
    assert answer == b"" or answer.split(b" ", 2)[1] == b"400", answer[:200]
    assert get(srv, "/v2/health/live")[0] == 200


def test_a_gzip_bomb_is_refused_without_inflating_it(srv: ServerProcess) -> None:
    assert srv.proc is not None
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(16 * MiB)
    bomb = b"".join(packer.compress(zeros) for _ in range(16)) + packer.flush()  # 256 MiB
    assert len(bomb) < 8 * MiB
    before = vm_hwm_bytes(srv.proc.pid)
    status, body = post(srv, "/v2/models/identity/infer", bomb, {"Content-Encoding": "gzip"})
    assert (status, error_of(body)) == (
        400,
        (
            f"Decompressed data size exceeds the maximum allowed value of {LIMIT} bytes. "
            "Use --http-max-input-size to increase the limit."
        ),
    )
    growth = vm_hwm_bytes(srv.proc.pid) - before
    assert growth < 3 * LIMIT, f"peak RSS grew by {growth / MiB:.0f} MiB"
    assert get(srv, "/v2/health/live")[0] == 200


def test_http_max_input_size_flag(tmp_path: Path) -> None:
    with ServerProcess(tmp_path, args=("--http-max-input-size=1024",)) as small:
        wait_http(small)
        status, body = post(small, "/v2/repository/index", b"{}" + b" " * 2000)
        assert (status, error_of(body)) == (400, too_large(2002, 1024))
        assert post(small, "/v2/repository/index", b"{}")[0] == 200


# ---- big bodies and the event loop -------------------------------------------------------------


def test_a_57_mib_json_body_neither_stalls_the_loop_nor_balloons_memory(
    srv: ServerProcess,
) -> None:
    assert srv.proc is not None
    count = 57 * MiB // 4  # "1.5," per element: a 57 MiB body
    body = b'{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[1,%d],"data":[' % count
    body += b",".join([b"1.5"] * count) + b"]}],"
    body += b'"outputs":[{"name":"OUTPUT0","parameters":{"binary_data":true}}]}'
    assert 56 * MiB < len(body) < LIMIT
    before = vm_hwm_bytes(srv.proc.pid)
    with LiveWatch(srv) as watch:
        time.sleep(0.2)
        status, reply = post(srv, "/v2/models/identity/infer", body)
        time.sleep(0.2)
    assert status == 200, reply[:300]
    assert reply.endswith(b"\x00\x00\xc0\x3f" * 4)  # 1.5 as FP32, the last elements
    growth = vm_hwm_bytes(srv.proc.pid) - before
    print(f"slowest live {watch.slowest:.3f}s of {watch.answers}; peak RSS +{growth / MiB:.0f} MiB")
    assert watch.answers > 2
    assert watch.slowest < 1.0, f"/v2/health/live waited {watch.slowest:.2f}s"
    assert growth < 6 * len(body), f"peak RSS grew by {growth / MiB:.0f} MiB"


# ---- 500s, poll errors, the CLI ---------------------------------------------------------------


def test_a_500_carries_no_internal_text(caplog: pytest.LogCaptureFixture) -> None:
    server = Server()

    def broken() -> dict[str, Any]:
        raise RuntimeError("secret detail in /srv/tritonlite/secret_module.py")

    server.metadata = broken  # type: ignore[method-assign]

    async def scenario() -> tuple[int, bytes]:
        frontend = await start_http(server, "127.0.0.1", 0)
        try:
            loop = asyncio.get_running_loop()

            def call() -> tuple[int, bytes]:
                conn = http.client.HTTPConnection("127.0.0.1", frontend.port, timeout=30)
                try:
                    conn.request("GET", "/v2")
                    r = conn.getresponse()
                    return r.status, r.read()
                finally:
                    conn.close()

            return await loop.run_in_executor(None, call)
        finally:
            await frontend.stop()

    try:
        with caplog.at_level(logging.ERROR, logger="tritonlite"):
            status, body = asyncio.run(scenario())
    finally:
        server.close()
    message = error_of(body)
    assert status == 500
    assert "secret" not in message and "RuntimeError" not in message and "/srv" not in message
    assert message.startswith("internal server error (error id ")
    error_id = message.split("error id ")[1].split(";")[0]
    logged = [r for r in caplog.records if error_id in r.getMessage()]
    assert logged and "secret detail" in str(logged[0].exc_info[1])  # type: ignore[index]


def test_poll_errors_are_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    with (
        caplog.at_level(logging.ERROR, logger="tritonlite"),
        Server(repo, model_control_mode="poll", repository_poll_secs=0.05) as server,
    ):
        assert server.is_ready()
        shutil.rmtree(repo)  # every poll now fails
        time.sleep(1.0)
        repo.mkdir()
    failures = [
        r for r in caplog.records if "polling the model repository failed" in r.getMessage()
    ]
    assert len(failures) == 1, [r.getMessage() for r in failures]
    assert str(repo) in failures[0].getMessage()


def test_cli_import_error_is_reported_and_the_server_runs_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs: list[int] = []
    real_serve = cli._serve

    async def serve(args: Any) -> int:
        runs.append(1)
        raise ImportError("No module named 'tritonlite_missing_piece'")
        return await real_serve(args)  # pragma: no cover

    monkeypatch.setattr(cli, "_serve", serve)
    with pytest.raises(ImportError, match="tritonlite_missing_piece"):
        cli.main(["--model-repository", str(tmp_path)])
    assert runs == [1]


def _usual(doc: bytes, datatype: str, shape: list[int]) -> Any:
    from tritonlite.frontends import http_codec as codec

    parsed = codec.loads(doc)
    return parsed, codec.tensor_from_json("X", datatype, shape, parsed["inputs"][0]["data"])


def _pieces(doc: bytes, datatype: str, shape: list[int]) -> Any:
    from tritonlite.frontends import http_bigjson

    parsed = http_bigjson.loads(doc)
    data = parsed["inputs"][0]["data"]
    assert http_bigjson.has_spans(data)
    return parsed, http_bigjson.tensor_from_spans("X", datatype, shape, data)


@pytest.mark.parametrize(
    "datatype, items, nested",
    [
        ("FP32", ["1.5", "-2e3", "7"], False),
        ("INT64", ["1", "-9223372036854775808", "9223372036854775807"], True),
        ("UINT64", ["18446744073709551615", "0"], False),
        ("BOOL", ["true", "false"], False),
    ],
)
def test_big_json_in_pieces_decodes_as_the_usual_path(
    datatype: str, items: list[str], nested: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tritonlite.frontends import http_bigjson

    monkeypatch.setattr(http_bigjson, "PIECE_BYTES", 4096)  # many pieces
    count = 40_000
    values = ",".join(items[i % len(items)] for i in range(count)).encode()
    data = b"[[" + values + b"],[" + values + b"]]" if nested else b"[" + values + b"]"
    doc = (
        b'{"id":"a \\"[1,2]\\" \\\\","inputs":[{"name":"X","datatype":"%s","shape":[%d],'
        b'"data":%s}],"parameters":{"p":[%s]}}' % (datatype.encode(), count * (1 + nested), data,
                                                  values)
    )  # fmt: skip
    shape = [count * (1 + nested)]
    usual_doc, usual = _usual(doc, datatype, shape)
    doc_in_pieces, in_pieces = _pieces(doc, datatype, shape)
    np.testing.assert_array_equal(in_pieces, usual)
    assert in_pieces.dtype == usual.dtype
    assert doc_in_pieces["id"] == usual_doc["id"]
    assert doc_in_pieces["parameters"] == usual_doc["parameters"]  # spans elsewhere: parsed


@pytest.mark.parametrize(
    "datatype, text",
    [
        ("INT32", "1.5"),  # not an integer
        ("INT8", "300"),  # out of range
        ("UINT64", "184467440737095516150"),  # 21 digits: beyond 64 bits
        ("FP32", ""),  # one element too few for the shape
    ],
)
def test_big_json_in_pieces_keeps_the_usual_errors(datatype: str, text: str) -> None:
    from tritonlite.errors import TritonError
    from tritonlite.frontends import http_bigjson

    count = 40_000
    values = b",".join([b"1"] * count) + b"," + text.encode()
    doc = b'{"inputs":[{"name":"X","datatype":"%s","shape":[%d],"data":[%s]}]}' % (
        datatype.encode(), count + 1, values.rstrip(b","),
    )  # fmt: skip
    with pytest.raises(TritonError) as usual:
        _usual(doc, datatype, [count + 1])
    with pytest.raises((TritonError, http_bigjson.Fallback)) as in_pieces:
        _pieces(doc, datatype, [count + 1])
    if isinstance(in_pieces.value, TritonError):
        assert in_pieces.value.message == usual.value.message


@pytest.mark.parametrize(
    "data, expected",
    [
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n1\r\na",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n1\r\na",
        ),
        (  # names in any case, several Content-Lengths, a coding list ending in chunked
            (
                b"POST / HTTP/1.1\r\ncontent-length: 1\r\nTRANSFER-ENCODING: gzip, chunked\r\n"
                b"Content-Length: 2\r\n\r\n"
            ),
            b"POST / HTTP/1.1\r\nTRANSFER-ENCODING: gzip, chunked\r\nConnection: close\r\n\r\n",
        ),
        (b"POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\n", None),  # not chunked
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", None),  # no Content-Length
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n", None),  # cut
        (b"POST / HTTP/1.1\r\n" + b"X: y\r\n" * 20000 + b"\r\n", None),  # a head too long
    ],
)
def test_a_chunked_head_without_its_content_length(data: bytes, expected: bytes | None) -> None:
    from tritonlite.frontends.http import _without_content_length

    assert _without_content_length(data) == expected
