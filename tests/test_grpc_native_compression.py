"""Response compression of the native gRPC transport (Triton's
--grpc-infer-response-compression-level): ModelInfer and ModelStreamInfer responses, whether the
C++ fast path or Python built them, are compressed with the algorithm gRPC core picks for the
level among those the client's grpc-accept-encoding names (of [gzip, deflate]: low the first,
medium the middle, high the last), and sent uncompressed when it names neither. Raw HTTP/2
sockets check the headers and message flags; tritonclient and grpcio
check that real clients read the answers."""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from serving import ServerProcess
from test_grpc_native import (
    HEADERS,
    Harness,
    RawH2,
    add_sub_inputs,
    data_frame,
    frame,
    grpc_message,
    header_block,
    raw_request,
    sample,
    stub,
)
from test_grpc_native_keepalive import add_sub_repo
from tritonlite import TritonError, _core
from tritonlite._proto import grpc_service_pb2 as pb
from tritonlite.frontends import grpc_native
from tritonlite.frontends.grpc import RESPONSE_COMPRESSION, GrpcOptions

grpcclient = pytest.importorskip("tritonclient.grpc")
codec = _core.grpc_codec

if not codec.can_compress("gzip"):
    pytest.skip("this build has no zlib: response compression is refused", allow_module_level=True)

ALL = "identity,deflate,gzip"
INFER = "/inference.GRPCInferenceService/ModelInfer"
STREAM_INFER = "/inference.GRPCInferenceService/ModelStreamInfer"


def harness_with(tmp: Path, level: str) -> Harness:
    return Harness(tmp, options=GrpcOptions(infer_response_compression_level=level))


@pytest.fixture(scope="module")
def gzip_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    h = harness_with(tmp_path_factory.mktemp("low"), "low")  # gzip for tritonclient
    yield h
    h.close()


@pytest.fixture(scope="module")
def deflate_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    h = harness_with(tmp_path_factory.mktemp("high"), "high")  # deflate for tritonclient
    yield h
    h.close()


def split_messages(body: bytes) -> list[tuple[int, bytes]]:
    """The length-prefixed messages of a response body as (compressed flag, bytes)."""
    out = []
    while body:
        flag, length = body[0], struct.unpack(">I", body[1:5])[0]
        out.append((flag, body[5 : 5 + length]))
        body = body[5 + length :]
    return out


def inflate(encoding: bytes | None, flag: int, data: bytes) -> bytes:
    if not flag:
        return data
    assert encoding in (b"gzip", b"deflate"), encoding
    return zlib.decompress(data, 31 if encoding == b"gzip" else 15)


def call(
    port: int,
    path: str,
    requests: Sequence[bytes],
    accept: str | None = ALL,
) -> tuple[dict[bytes, bytes], list[tuple[int, bytes]]]:
    """One call over a raw socket: response headers + trailers, and its messages."""
    extra = [("grpc-accept-encoding", accept)] if accept is not None else []
    with RawH2(port) as conn:
        conn.handshake()
        body = b"".join(grpc_message(r) for r in requests)
        conn.sock.sendall(
            frame(HEADERS, 0x4, 1, header_block(path, extra)) + data_frame(1, body, True)
        )
        headers, body, _ = conn.response(1)
    return headers, split_messages(body)


def zeros_request(model: str = "add_sub", **fields: Any) -> pb.ModelInferRequest:
    z = np.zeros((1, 16), np.int32)
    return raw_request(model, z, z, **fields)


def typed_request() -> tuple[pb.ModelInferRequest, np.ndarray, np.ndarray]:
    """A request with typed contents: the fast path leaves it to Python."""
    a, b = sample(4)
    req = pb.ModelInferRequest(model_name="add_sub", id="typed")
    for name, arr in (("INPUT0", a), ("INPUT1", b)):
        t = req.inputs.add(name=name, datatype="INT32", shape=[1, 16])
        t.contents.int_contents.extend(arr.ravel().tolist())
    return req, a, b


def outputs(resp: pb.ModelInferResponse) -> list[np.ndarray]:
    return [np.frombuffer(r, np.int32) for r in resp.raw_output_contents]


# ---------------------------------------------------------------------------------------------
# What goes on the wire


def test_fast_path_responses_are_gzip(gzip_server: Harness) -> None:
    before = gzip_server.handlers.forwarded("ModelInfer")
    headers, messages = call(gzip_server.port, INFER, [zeros_request(id="z").SerializeToString()])
    assert headers[b"grpc-status"] == b"0"
    assert headers[b"grpc-encoding"] == b"gzip"
    [(flag, data)] = messages
    assert flag == 1  # compressed
    resp = pb.ModelInferResponse.FromString(inflate(b"gzip", flag, data))
    assert resp.id == "z" and [o.tolist() for o in outputs(resp)] == [[0] * 16, [0] * 16]
    assert gzip_server.handlers.forwarded("ModelInfer") == before  # built in C++


def test_forwarded_infer_responses_are_compressed(gzip_server: Harness) -> None:
    before = gzip_server.handlers.forwarded("ModelInfer")
    req, a, b = typed_request()
    headers, messages = call(gzip_server.port, INFER, [req.SerializeToString()])
    assert gzip_server.handlers.forwarded("ModelInfer") == before + 1  # built in Python
    assert headers[b"grpc-encoding"] == b"gzip" and headers[b"grpc-status"] == b"0"
    [(flag, data)] = messages
    assert flag == 1
    resp = pb.ModelInferResponse.FromString(inflate(b"gzip", flag, data))
    np.testing.assert_array_equal(outputs(resp)[0], (a + b).ravel())


def test_stream_responses_are_compressed(gzip_server: Harness) -> None:
    requests = [zeros_request(id=str(i)).SerializeToString() for i in range(5)]
    headers, messages = call(gzip_server.port, STREAM_INFER, requests)
    assert headers[b"grpc-encoding"] == b"gzip" and headers[b"grpc-status"] == b"0"
    assert len(messages) == 5 and all(flag == 1 for flag, _ in messages)
    ids = [
        pb.ModelStreamInferResponse.FromString(inflate(b"gzip", f, d)).infer_response.id
        for f, d in messages
    ]
    assert ids == [str(i) for i in range(5)]


def test_high_level_is_deflate(deflate_server: Harness) -> None:
    request = zeros_request().SerializeToString()
    headers, [(flag, data)] = call(deflate_server.port, INFER, [request])
    assert headers[b"grpc-encoding"] == b"deflate" and flag == 1
    resp = pb.ModelInferResponse.FromString(zlib.decompress(data))  # the zlib format
    assert resp.model_name == "add_sub"
    req, a, b = typed_request()
    headers, [(flag, data)] = call(deflate_server.port, INFER, [req.SerializeToString()])
    assert headers[b"grpc-encoding"] == b"deflate" and flag == 1


@pytest.mark.parametrize("accept", [None, "identity", " identity , snappy "])
def test_identity_when_the_client_accepts_neither(
    gzip_server: Harness, accept: str | None
) -> None:
    for path, req in ((INFER, zeros_request()), (INFER, typed_request()[0]),
                      (STREAM_INFER, zeros_request())):  # fmt: skip
        headers, messages = call(gzip_server.port, path, [req.SerializeToString()], accept)
        assert headers[b"grpc-status"] == b"0"
        assert b"grpc-encoding" not in headers
        assert [flag for flag, _ in messages] == [0]
        if path == STREAM_INFER:
            resp = pb.ModelStreamInferResponse.FromString(messages[0][1]).infer_response
        else:
            resp = pb.ModelInferResponse.FromString(messages[0][1])
        assert resp.model_name == "add_sub"


@pytest.mark.parametrize(
    ("fixture", "accept", "expected"),
    [
        ("gzip_server", "identity,deflate", b"deflate"),  # low: the first the client accepts
        ("gzip_server", "gzip", b"gzip"),
        ("deflate_server", "identity,gzip", b"gzip"),  # high: the last the client accepts
        ("deflate_server", "deflate,gzip", b"deflate"),  # the server's ranking, not the client's
    ],
)
def test_the_algorithm_follows_what_the_client_accepts(
    request: pytest.FixtureRequest, fixture: str, accept: str, expected: bytes
) -> None:
    server = request.getfixturevalue(fixture)
    request_bytes = zeros_request().SerializeToString()
    headers, [(flag, data)] = call(server.port, INFER, [request_bytes], accept)
    assert headers[b"grpc-encoding"] == expected and flag == 1
    assert pb.ModelInferResponse.FromString(inflate(expected, flag, data)).model_name == "add_sub"


def test_medium_level_is_deflate_for_tritonclient(tmp_path: Path) -> None:
    h = harness_with(tmp_path, "medium")
    try:
        headers, [(flag, _)] = call(h.port, INFER, [zeros_request().SerializeToString()])
        assert headers[b"grpc-encoding"] == b"deflate" and flag == 1
    finally:
        h.close()


def test_accept_list_with_spaces(gzip_server: Harness) -> None:
    headers, [(flag, _)] = call(
        gzip_server.port, INFER, [zeros_request().SerializeToString()], "identity, gzip"
    )
    assert headers[b"grpc-encoding"] == b"gzip" and flag == 1


def test_other_methods_are_not_compressed(gzip_server: Harness) -> None:
    payload = b"\0" * 10000  # very compressible
    headers, messages = call(gzip_server.port, "/test.Fake/Echo", [payload])
    assert b"grpc-encoding" not in headers and messages == [(0, payload)]
    ready = pb.ModelReadyRequest(name="add_sub").SerializeToString()
    path = "/inference.GRPCInferenceService/ModelReady"
    headers, messages = call(gzip_server.port, path, [ready])
    assert b"grpc-encoding" not in headers and [f for f, _ in messages] == [0]


def test_messages_that_would_not_shrink_go_uncompressed() -> None:
    noise = os.urandom(300)
    assert codec.frame_compressed("gzip", noise) is None  # sent with the flag clear
    assert codec.frame_compressed("deflate", b"") is None
    framed = codec.frame_compressed("gzip", b"\0" * 300)
    assert framed[0] == 1 and struct.unpack(">I", framed[1:5])[0] == len(framed) - 5
    assert zlib.decompress(framed[5:], 31) == b"\0" * 300
    assert zlib.decompress(codec.frame_compressed("deflate", b"ab" * 100)[5:]) == b"ab" * 100
    assert codec.frame_compressed("identity", b"\0" * 300) is None


# ---------------------------------------------------------------------------------------------
# Real clients


def test_tritonclient_reads_compressed_responses(gzip_server: Harness) -> None:
    client = grpcclient.InferenceServerClient(gzip_server.url)
    try:
        for seed in range(5):
            a, b = sample(seed, rows=3)
            result = client.infer("add_sub", add_sub_inputs(a, b))
            np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
            np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
        results: list[Any] = []
        client.start_stream(callback=lambda result, error: results.append(error or result))
        for i in range(10):
            a, b = sample(i)
            client.async_stream_infer("add_sub", add_sub_inputs(a, b), request_id=str(i))
        client.stop_stream()
        assert [r.get_response().id for r in results] == [str(i) for i in range(10)]
        np.testing.assert_array_equal(results[3].as_numpy("INPUT1"), sample(3)[1])
    finally:
        client.close()


def test_grpcio_stub_reads_compressed_responses(deflate_server: Harness) -> None:
    channel, s = stub(deflate_server)
    with channel:
        a, b = sample(8, rows=2)
        resp = s.ModelInfer(raw_request("add_sub", a, b))
        np.testing.assert_array_equal(outputs(resp)[1].reshape(2, 16), a - b)
        req, a, b = typed_request()
        np.testing.assert_array_equal(outputs(s.ModelInfer(req))[0], (a + b).ravel())


# ---------------------------------------------------------------------------------------------
# Configuration


def test_levels_are_checked() -> None:
    levels = ("none", "low", "medium", "high")
    assert [grpc_native.response_compression(level) for level in levels] == list(levels)
    # grpcio's server takes one algorithm: the one gRPC core picks for tritonclient's accept list
    algorithms = [RESPONSE_COMPRESSION[level] for level in levels]
    assert algorithms == ["identity", "gzip", "deflate", "deflate"]
    with pytest.raises(TritonError, match="--grpc-infer-response-compression-level"):
        grpc_native.response_compression("max")
    with pytest.raises(TritonError, match="response_compression"):
        _core.GrpcServer("127.0.0.1", 0, response_compression="br")


def test_compression_without_zlib_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    no_zlib = SimpleNamespace(can_compress=lambda encoding: encoding == "identity")
    monkeypatch.setattr(grpc_native, "_codec", no_zlib)
    assert grpc_native.response_compression("none") == "none"
    with pytest.raises(TritonError) as e:
        grpc_native.response_compression("high")
    assert "--grpc-infer-response-compression-level=high" in e.value.message
    assert "zlib" in e.value.message and e.value.status == "INVALID_ARG"


def test_server_compression_flag(tmp_path: Path) -> None:
    args = ("--grpc-infer-response-compression-level=low",)
    with ServerProcess(add_sub_repo(tmp_path), args=args) as srv:
        headers, [(flag, data)] = call(srv.grpc_port, INFER, [zeros_request().SerializeToString()])
        assert headers[b"grpc-encoding"] == b"gzip" and flag == 1
        resp = pb.ModelInferResponse.FromString(inflate(b"gzip", flag, data))
        assert [o.tolist() for o in outputs(resp)] == [[0] * 16, [0] * 16]
        # The real handlers: ModelStreamInfer through Python, compressed too.
        headers, messages = call(srv.grpc_port, STREAM_INFER, [zeros_request().SerializeToString()])
        assert headers[b"grpc-encoding"] == b"gzip" and [f for f, _ in messages] == [1]
        stream_resp = pb.ModelStreamInferResponse.FromString(inflate(b"gzip", *messages[0]))
        assert stream_resp.error_message == ""
        assert stream_resp.infer_response.model_name == "add_sub"
        client = grpcclient.InferenceServerClient(srv.grpc_url)
        a, b = sample(3)
        assert client.infer("add_sub", add_sub_inputs(a, b)).as_numpy("OUTPUT0").tolist() == (
            a + b
        ).tolist()
        client.close()


def test_grpcio_transport_compresses_inference_responses_only(tmp_path: Path) -> None:
    """The grpcio transport (used for TLS; plain here so raw frames can be read)."""
    from tritonlite.frontends.grpc import start_grpc

    h = harness_with(tmp_path, "low")
    options = GrpcOptions(infer_response_compression_level="low")
    try:
        frontend = h.loop.run(start_grpc(h.server, "127.0.0.1", 0, options=options))
        port = frontend.port
        try:
            headers, [(flag, data)] = call(port, INFER, [zeros_request().SerializeToString()])
            assert headers[b"grpc-encoding"] == b"gzip" and flag == 1
            resp = pb.ModelInferResponse.FromString(inflate(b"gzip", flag, data))
            assert resp.model_name == "add_sub"
            headers, messages = call(port, STREAM_INFER, [zeros_request().SerializeToString()])
            assert headers[b"grpc-encoding"] == b"gzip" and [f for f, _ in messages] == [1]
            # Other methods: messages not compressed, even a compressible one.
            config = pb.ModelConfigRequest(name="add_sub").SerializeToString()
            path = "/inference.GRPCInferenceService/ModelConfig"
            headers, [(flag, data)] = call(port, path, [config])
            assert flag == 0 and len(zlib.compress(data)) < len(data)
            assert pb.ModelConfigResponse.FromString(data).config.name == "add_sub"
        finally:
            h.loop.run(frontend.stop(1.0))
    finally:
        h.close()
