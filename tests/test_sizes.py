"""Hostile sizes (issue #14, item 3): shapes whose element count or byte size overflows 64 bits,
BYTES shapes announcing more elements than their data can hold, shared-memory windows past the
end. Every path answers with a clear INVALID_ARG error before allocating anything for the shape;
the server and the python model's stub process stay alive (a following good request succeeds,
and the stub's PID is unchanged).

One server process (native gRPC transport + HTTP) serves ``pid_echo`` (answers with its stub's
PID) and ``bls_liar`` (a BLS caller that lies about its input's shape)."""

from __future__ import annotations

import json
import os
import shutil
import struct
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import requests
from serving import ServerProcess
from tritonlite._proto import grpc_service_pb2 as pb
from tritonlite._proto import grpc_service_pb2_grpc as pb_grpc

grpcclient = pytest.importorskip("tritonclient.grpc")
httpclient = pytest.importorskip("tritonclient.http")
InferenceServerException = pytest.importorskip("tritonclient.utils").InferenceServerException

MODELS = Path(__file__).parent / "python_models"
TIMEOUT_S = 60  # generous: a hang ends the test, a loaded machine does not

# The size-mismatch error Triton gives (the overflow case gets the same words, exact numbers).
MISMATCH = (
    "[request id: <id_unknown>] input byte size mismatch for input 'F' for model 'pid_echo'. "
    "Expected {expected}, got {got}"
)
MISMATCH_M = MISMATCH.replace("'F'", "'M'")
# Triton 2.51's words for a BYTES input whose data holds another number of elements.
BYTES_COUNT = (
    "[request id: <id_unknown>] expected {expected} string elements for inference input 'S' "
    "for model 'pid_echo', got {got}"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("sizes")
    for name in ("pid_echo", "bls_liar"):
        shutil.copytree(MODELS / name, repo / name)
    with ServerProcess(repo) as srv:
        yield srv


@pytest.fixture(scope="module")
def stub_pid(server: ServerProcess) -> int:
    return good_request(server)


def good_request(server: ServerProcess) -> int:
    """A well-formed request to pid_echo; returns the PID of the stub that answered."""
    client = grpcclient.InferenceServerClient(server.grpc_url)
    f = grpcclient.InferInput("F", [3], "FP32")
    f.set_data_from_numpy(np.array([1, 2, 3], dtype=np.float32))
    result = client.infer("pid_echo", [f], client_timeout=TIMEOUT_S)
    assert result.as_numpy("COUNT").tolist() == [3]
    client.close()
    return int(result.as_numpy("PID")[0])


def assert_alive(server: ServerProcess, stub_pid: int) -> None:
    assert server.proc is not None and server.proc.poll() is None
    assert good_request(server) == stub_pid  # same stub: it was not killed and restarted


def raw_request(
    name: str, datatype: str, shape: list[int], raw: bytes | None
) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="pid_echo")
    request.inputs.add(name=name, datatype=datatype, shape=shape)
    request.outputs.add(name="PID")
    if raw is not None:
        request.raw_input_contents.append(raw)
    return request


def unary(server: ServerProcess, request: pb.ModelInferRequest) -> grpc.RpcError:
    with grpc.insecure_channel(server.grpc_url) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(request, timeout=TIMEOUT_S)
    return info.value


def streamed(server: ServerProcess, requests_: list[pb.ModelInferRequest]) -> list[Any]:
    """The stream's responses, one per request (the stream must answer every one)."""
    with grpc.insecure_channel(server.grpc_url) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        call = stub.ModelStreamInfer(iter(requests_), timeout=TIMEOUT_S)
        return [r for r, _ in zip(call, requests_, strict=False)]


# ---- gRPC: raw contents (the native C++ fast path) -----------------------------------------------


def test_grpc_fp32_shape_overflowing_to_zero_bytes(server: ServerProcess, stub_pid: int) -> None:
    """[2**62] FP32 is 2**64 bytes, which wraps to 0 in 64 bits: it must not pass as 0 bytes."""
    error = unary(server, raw_request("F", "FP32", [2**62], b""))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == MISMATCH.format(expected=2**64, got=0)
    # tritonclient says the same (an input of that shape with 0 bytes of raw data).
    client = grpcclient.InferenceServerClient(server.grpc_url)
    f = grpcclient.InferInput("F", [2**62], "FP32")
    f._raw_content = b""  # no data: the shape alone is the attack
    with pytest.raises(InferenceServerException) as info:
        client.infer("pid_echo", [f], client_timeout=TIMEOUT_S)
    assert info.value.message() == MISMATCH.format(expected=2**64, got=0)
    client.close()
    assert_alive(server, stub_pid)


def test_grpc_bytes_shape_beyond_its_data(server: ServerProcess, stub_pid: int) -> None:
    """A BYTES shape of 2**40 elements over one element of data: refused before anything is
    reserved for 2**40 elements (no std::bad_alloc, no INTERNAL)."""
    one = struct.pack("<I", 2) + b"hi"
    error = unary(server, raw_request("S", "BYTES", [2**40], one))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == BYTES_COUNT.format(expected=2**40, got=1)  # Triton 2.51's words
    assert_alive(server, stub_pid)


def test_grpc_bytes_hostile_element_count(server: ServerProcess, stub_pid: int) -> None:
    """Counts near and past the limits, over a few bytes: each refused with the count it needed
    (past 2**60 elements the core cannot even count them; the frontend still words it)."""
    for count, data, got in ((2**59, struct.pack("<I", 0), 1), (2**62, b"", 0)):
        error = unary(server, raw_request("S", "BYTES", [count], data))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.details() == BYTES_COUNT.format(expected=count, got=got)
    # Triton checks the shape first.
    error = unary(server, raw_request("S", "BYTES", [2**30, 2**29], b""))
    assert error.details().startswith(
        "[request id: <id_unknown>] unexpected shape for input 'S' for model 'pid_echo'."
    )
    assert_alive(server, stub_pid)


def test_grpc_empty_shape_numpy_cannot_build(server: ServerProcess, stub_pid: int) -> None:
    """[0, 2**62] FP32 has no elements and 0 bytes match it, but no array can have that shape
    (numpy refuses 2**64 bytes of zero-free dims): refused before it reaches the stub."""
    error = unary(server, raw_request("M", "FP32", [0, 2**62], b""))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == (
        "input 'M' for model 'pid_echo': shape [0,4611686018427387904] is too large"
    )
    assert_alive(server, stub_pid)


@pytest.mark.parametrize("rank", [300, 50_000])
def test_shapes_of_absurd_rank_are_refused(server: ServerProcess, stub_pid: int, rank: int) -> None:
    """300 dimensions of 2**62 make a number too long to print (Python refuses over 4300
    digits); 50,000 took seconds to multiply on the event loop. More than 64 is refused first."""
    shape = [2**62] * rank
    for name, raw in (("F", b""), ("M", None)):  # the native fast path and the Python path
        error = unary(server, raw_request(name, "FP32", shape, raw))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
        assert "dimensions" in error.details(), error.details()
    r = http_infer(server, {"inputs": [{"name": "F", "datatype": "FP32", "shape": shape, "data": []}]})
    assert r.status_code == 400, r.text
    assert "dimensions" in r.json()["error"], r.text
    assert_alive(server, stub_pid)


# ---- gRPC: typed contents, unary and stream (Python) -------------------------------------------


def typed_request(shape: list[int], name: str = "M") -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="pid_echo")
    request.inputs.add(name=name, datatype="FP32", shape=shape)
    request.outputs.add(name="PID")
    return request


def test_grpc_typed_contents_shape_overflow_unary(server: ServerProcess, stub_pid: int) -> None:
    """[2**32, 2**32] has 2**64 elements (0 in int64): a size error, not a numpy ValueError."""
    error = unary(server, typed_request([2**32, 2**32]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == MISMATCH_M.format(expected=2**66, got=0)
    assert_alive(server, stub_pid)


def test_grpc_typed_contents_shape_overflow_stream(server: ServerProcess, stub_pid: int) -> None:
    """Every stream request is answered in the stream, the bad one with an error."""
    good = typed_request([2], "F")
    good.inputs[0].contents.fp32_contents.extend([1.0, 2.0])
    good.id = "good"
    bad = typed_request([2**32, 2**32])
    bad.id = "bad"
    responses = streamed(server, [bad, good, raw_request("F", "FP32", [2**62], b"")])
    assert len(responses) == 3
    by_id = {r.infer_response.id: r for r in responses}
    assert by_id["bad"].error_message == MISMATCH_M.format(expected=2**66, got=0).replace(
        "<id_unknown>", "bad"
    )
    assert by_id["good"].error_message == ""
    assert by_id[""].error_message == MISMATCH.format(expected=2**64, got=0)
    assert_alive(server, stub_pid)


def test_grpc_stream_answers_a_request_that_raises(server: ServerProcess, stub_pid: int) -> None:
    """A negative dimension in typed contents: an in-stream error naming the input."""
    bad = typed_request([-1, 2])  # M is [-1, -1]: the shape itself passes the model's dims
    bad.id = "neg"
    responses = streamed(server, [bad])
    assert len(responses) == 1
    assert responses[0].infer_response.id == "neg"
    assert "negative dimension in shape [-1,2]" in responses[0].error_message
    assert_alive(server, stub_pid)


# ---- HTTP: JSON data and the binary tensor extension -------------------------------------------


def http_infer(server: ServerProcess, header: dict[str, Any], binary: bytes = b"") -> Any:
    body = json.dumps(header).encode()
    headers = {"Inference-Header-Content-Length": str(len(body))} if binary else {}
    return requests.post(
        f"http://{server.http_url}/v2/models/pid_echo/infer",
        data=body + binary,
        headers=headers,
        timeout=TIMEOUT_S,
    )


def test_http_json_fp32_shape_overflow(server: ServerProcess, stub_pid: int) -> None:
    r = http_infer(
        server, {"inputs": [{"name": "F", "datatype": "FP32", "shape": [2**62], "data": []}]}
    )
    assert r.status_code == 400
    assert f"expected {2**62} elements, got 0" in r.json()["error"]
    assert_alive(server, stub_pid)


def test_http_json_empty_shape_numpy_cannot_build(server: ServerProcess, stub_pid: int) -> None:
    tensor = {"name": "M", "datatype": "FP32", "shape": [0, 2**62], "data": []}
    r = http_infer(server, {"inputs": [tensor]})
    assert r.status_code == 400, r.text
    assert r.json()["error"] == (
        "Unable to parse 'data' of input 'M': shape [0,4611686018427387904] is too large"
    )
    assert_alive(server, stub_pid)


def test_http_binary_fp32_shape_overflow(server: ServerProcess, stub_pid: int) -> None:
    tensor = {
        "name": "F",
        "datatype": "FP32",
        "shape": [2**62],
        "parameters": {"binary_data_size": 0},
    }
    r = http_infer(server, {"inputs": [tensor]})
    assert r.status_code == 400
    assert r.json()["error"] == MISMATCH.format(expected=2**64, got=0)
    assert_alive(server, stub_pid)


def test_http_binary_bytes_shape_beyond_its_data(server: ServerProcess, stub_pid: int) -> None:
    """BYTES [2**40] over one element: a 400 naming the input, not std::bad_alloc and a 500."""
    one = struct.pack("<I", 2) + b"hi"
    tensor = {
        "name": "S",
        "datatype": "BYTES",
        "shape": [2**40],
        "parameters": {"binary_data_size": len(one)},
    }
    r = http_infer(server, {"inputs": [tensor]}, one)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == BYTES_COUNT.format(expected=2**40, got=1)
    # tritonclient's HTTP client says the same.
    client = httpclient.InferenceServerClient(server.http_url)
    s = httpclient.InferInput("S", [2**40], "BYTES")
    s._raw_data = one  # the data of one element under a shape of 2**40
    s._parameters["binary_data_size"] = len(one)
    with pytest.raises(InferenceServerException) as info:
        client.infer("pid_echo", [s])
    assert info.value.message() == BYTES_COUNT.format(expected=2**40, got=1)
    client.close()
    assert_alive(server, stub_pid)


# ---- system shared memory -------------------------------------------------------------------


@pytest.fixture
def region(server: ServerProcess) -> Iterator[str]:
    key = f"/tritonlite-sizes-{uuid.uuid4().hex[:8]}"
    path = f"/dev/shm/{key[1:]}"
    with open(path, "wb") as f:
        f.write(b"\0" * 64)
    client = grpcclient.InferenceServerClient(server.grpc_url)
    client.register_system_shared_memory("sizes", key, 64)
    yield "sizes"
    client.unregister_system_shared_memory("sizes")
    client.close()
    os.unlink(path)


def shm_request(shape: list[int], offset: int, size: int) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="pid_echo")
    tensor = request.inputs.add(name="F", datatype="FP32", shape=shape)
    tensor.parameters["shared_memory_region"].string_param = "sizes"
    tensor.parameters["shared_memory_offset"].int64_param = offset
    tensor.parameters["shared_memory_byte_size"].int64_param = size
    request.outputs.add(name="PID")
    return request


@pytest.mark.parametrize(
    "shape, offset, size, text",
    [
        # offset + byte_size is past 2**63 (negative in int64): still past the end of the window.
        ([2], 8, 2**63 - 1, "Invalid offset + byte size for shared memory region: 'sizes'"),
        ([2], 2**63 - 1, 8, "Invalid offset for shared memory region: 'sizes'"),
        # A window of 0 bytes is refused before the shape is looked at (Triton 2.51: an empty
        # window is an invalid window; recorded in the parity case http_shm_byte_size).
        ([2**62], 0, 0, "Invalid offset + byte size for shared memory region: 'sizes'"),
        # An 8-byte window under a shape of 2**62 FP32 (2**64 bytes, 0 when wrapped).
        ([2**62], 0, 8, MISMATCH.format(expected=2**64, got=8)),
    ],
)
def test_shared_memory_window_overflow(
    server: ServerProcess, stub_pid: int, region: str, shape: list[int], offset: int, size: int,
    text: str,
) -> None:  # fmt: skip
    error = unary(server, shm_request(shape, offset, size))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert text in error.details()
    assert_alive(server, stub_pid)


def test_shared_memory_window_overflow_http(
    server: ServerProcess, stub_pid: int, region: str
) -> None:
    for size, text in (
        (0, "Invalid offset + byte size for shared memory region: 'sizes'"),
        (8, MISMATCH.format(expected=2**64, got=8)),
    ):
        params = {"shared_memory_region": region, "shared_memory_byte_size": size}
        r = http_infer(
            server,
            {"inputs": [{"name": "F", "datatype": "FP32", "shape": [2**62], "parameters": params}]},
        )
        assert r.status_code == 400
        assert r.json()["error"] == text
    assert_alive(server, stub_pid)


# ---- BLS ------------------------------------------------------------------------------------------


def test_bls_request_with_a_lying_shape(server: ServerProcess, stub_pid: int) -> None:
    """A model's BLS request whose input claims [2**62] FP32 over no data: the BLS call gets an
    error response; neither the caller's stub nor the callee's is killed."""
    client = grpcclient.InferenceServerClient(server.grpc_url)
    n = grpcclient.InferInput("N", [1], "INT64")
    n.set_data_from_numpy(np.array([2**62], dtype=np.int64))
    result = client.infer("bls_liar", [n], client_timeout=TIMEOUT_S)
    message = result.as_numpy("ERROR")[0].decode()
    assert "0 bytes cannot hold FP32 tensor 'F' of shape [4611686018427387904]" in message
    assert "pid_echo" in message
    # The caller still works (its stub answered again), and the callee's stub is the same.
    n.set_data_from_numpy(np.array([3], dtype=np.int64))
    again = client.infer("bls_liar", [n], client_timeout=TIMEOUT_S)
    assert "0 bytes cannot hold FP32 tensor 'F' of shape [3]" in again.as_numpy("ERROR")[0].decode()
    client.close()
    assert_alive(server, stub_pid)


def test_stub_fails_a_batch_it_cannot_read(tmp_path: Path) -> None:
    """The stub side: a descriptor whose bytes cannot be its shape raises before allocating
    (the stub fails that batch and keeps serving), and frees the block it was given."""
    from tritonlite.backends.python import shm
    from tritonlite.backends.python.ipc import ProtocolError

    with pytest.raises(
        ProtocolError, match=r"0 bytes cannot hold FP32 tensor 'F' of shape \[4611686018427387904\]"
    ):
        shm.read_tensors(None, [("F", "FP32", (2**62,), 0, 0)], None, [])
    with pytest.raises(ProtocolError, match="cannot hold BYTES tensor 'S'"):
        shm.read_tensors(None, [("S", "BYTES", (2**40,), 0, 6)], None, [])
    # No elements, but no array can have the shape; the segment's fd is closed all the same.
    r, w = os.pipe()
    os.close(w)
    with pytest.raises(ProtocolError, match=r"cannot hold FP32 tensor 'M' of shape \[0, "):
        shm.read_tensors(None, [("M", "FP32", (0, 2**62), 0, 0)], ("s", 0, 0), [r])
    with pytest.raises(OSError):
        os.fstat(r)


# ---- the grpcio transport (used for TLS): the same handlers behind grpc.aio ---------------------


def test_grpcio_transport_refuses_overflowing_shapes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_grpc_native import Harness
    from tritonlite.frontends.grpc import GrpcHandlers, start_grpc

    h = Harness(tmp_path)  # in-process server; "echo" is FP32 [-1] and counts executions
    try:
        frontend = h.loop.run(start_grpc(h.server, "127.0.0.1", 0))
        try:
            with grpc.insecure_channel(f"127.0.0.1:{frontend.port}") as channel:
                stub = pb_grpc.GRPCInferenceServiceStub(channel)
                raw = pb.ModelInferRequest(model_name="echo", id="raw")
                raw.inputs.add(name="IN", datatype="FP32", shape=[2**62])
                raw.raw_input_contents.append(b"")
                typed = pb.ModelInferRequest(model_name="echo", id="typed")
                typed.inputs.add(name="IN", datatype="FP32", shape=[2**32, 2**32])
                good = pb.ModelInferRequest(model_name="echo", id="good")
                good.inputs.add(name="IN", datatype="FP32", shape=[1])
                good.raw_input_contents.append(np.float32(5).tobytes())
                mismatch = (
                    "[request id: raw] input byte size mismatch for input 'IN' for model 'echo'. "
                    f"Expected {2**64}, got 0"
                )
                shape_error = (
                    "[request id: typed] unexpected shape for input 'IN' for model 'echo'. "
                    "Expected [-1], got [4294967296,4294967296]"
                )
                with pytest.raises(grpc.RpcError) as info:
                    stub.ModelInfer(raw, timeout=TIMEOUT_S)
                assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert info.value.details() == mismatch
                with pytest.raises(grpc.RpcError) as info:
                    stub.ModelInfer(typed, timeout=TIMEOUT_S)
                assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert info.value.details() == shape_error
                executed = h.echo.executed
                call = stub.ModelStreamInfer(iter([typed, raw, good]), timeout=TIMEOUT_S)
                responses = {r.infer_response.id: r for r, _ in zip(call, range(3), strict=False)}
                assert responses["typed"].error_message == shape_error
                assert responses["raw"].error_message == mismatch
                assert responses["good"].error_message == ""
                assert h.echo.executed == executed + 1  # only the good one reached the model

                # Whatever a request raises is answered: INTERNAL (unary), in-stream (stream).
                def boom(*args: Any) -> Any:
                    raise ValueError("boom")

                monkeypatch.setattr(GrpcHandlers, "_typed_contents", staticmethod(boom))
                with pytest.raises(grpc.RpcError) as info:
                    stub.ModelInfer(typed, timeout=TIMEOUT_S)
                assert info.value.code() == grpc.StatusCode.INTERNAL
                assert info.value.details() == "ValueError: boom"
                call = stub.ModelStreamInfer(iter([typed, good]), timeout=TIMEOUT_S)
                responses = {r.infer_response.id: r for r, _ in zip(call, range(2), strict=False)}
                assert responses["typed"].error_message == "ValueError: boom"
                assert responses["good"].error_message == ""
        finally:
            h.loop.run(frontend.stop(1.0))
    finally:
        h.close()


# ---- the core's helpers (csrc/util/checked_math.h), directly -------------------------------------------


def test_core_sizes_never_wrap() -> None:
    from tritonlite import TritonError, _core

    Tensor = _core.Tensor
    # 4 x 2**62 is 0 in 64 bits: the old check compared 0 with 0 bytes and passed.
    with pytest.raises(TritonError, match="shape \\[4611686018427387904\\] is too large"):
        Tensor.from_buffer("FP32", [2**62], b"")
    with pytest.raises(TritonError, match="expected 8 bytes, got 0"):
        Tensor.from_buffer("FP32", [2], b"")
    # BYTES: refused from the count the data can hold, before reserving 2**40 x 16 bytes (on
    # the old code this was std::bad_alloc: MemoryError).
    one = struct.pack("<I", 2) + b"hi"
    with pytest.raises(TritonError, match="expected 1099511627776 BYTES elements .*, got 1"):
        Tensor.from_buffer("BYTES", [2**40], one)
    with pytest.raises(TritonError, match="expected 1099511627776 BYTES elements .*, got 1"):
        _core.deserialize_bytes(one, [2**40])
    assert Tensor.from_buffer("BYTES", [1], one).numpy().tolist() == [b"hi"]
    assert list(Tensor.from_buffer("FP32", [0, 2**59], b"").shape) == [0, 2**59]
    with pytest.raises(TritonError, match="negative dimension"):
        Tensor.from_buffer("FP32", [-1, -4], b"\0" * 16)


def test_stub_fails_a_batch_it_cannot_read_and_keeps_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end in a stub process: an EXEC whose descriptor says [2**62] FP32 over 0 bytes
    (the server never sends one now; a bug or a corrupted message could) fails that request
    with a clear error, and the same stub answers the next one."""
    import functools

    from tritonlite import Server, TritonError
    from tritonlite import config as model_config
    from tritonlite.backends.python import create_backend, process, python_auto_complete

    shutil.copytree(MODELS / "pid_echo", tmp_path / "pid_echo")
    model_dir = tmp_path / "pid_echo"
    config = model_config.load_model_config(
        model_dir, python_auto_complete=functools.partial(python_auto_complete, model_dir=model_dir)
    )
    server = Server()
    try:
        server.add_model(
            config, create_backend(config, model_dir, model_dir / "1", server=server), 1
        )
        f = np.array([1, 2], dtype=np.float32)
        pid = int(server.infer("pid_echo", {"F": f})["PID"][0])
        write = process.write_tensors

        def lying_write(arena: Any, tensors: Any) -> Any:
            metas, location, fds = write(arena, tensors)
            return [(n, dt, (2**62,), off, 0) for n, dt, _, off, _ in metas], location, fds

        monkeypatch.setattr(process, "write_tensors", lying_write)
        with pytest.raises(TritonError, match="cannot hold FP32 tensor 'F' of shape"):
            server.infer("pid_echo", {"F": f})
        monkeypatch.setattr(process, "write_tensors", write)
        out = server.infer("pid_echo", {"F": f})
        assert int(out["PID"][0]) == pid and out["COUNT"].tolist() == [2]
    finally:
        server.close()
