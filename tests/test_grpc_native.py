"""The native gRPC transport (csrc/transport/, frontends/grpc_native.py) end to end:
tritonclient (sync, async_infer, aio, streaming), grpcio's generated stubs, the ModelInfer fast
path and what it forwards to Python, errors and their gRPC codes, large messages, many
connections, cancellation, deadlines, abrupt disconnects, compression, graceful shutdown,
models coming and going, the HTTP/2 layer through raw sockets (flow control, frame sizes,
protocol errors) and random bytes."""

from __future__ import annotations

import asyncio
import ctypes
import random
import socket
import struct
import threading
import time
import zlib
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from google.protobuf import text_format
from models import make_add_sub_onnx
from tritonlite import Server, TritonError, _core
from tritonlite._proto import grpc_service_pb2 as pb
from tritonlite._proto import grpc_service_pb2_grpc as pb_grpc
from tritonlite._proto import health_pb2, health_pb2_grpc
from tritonlite._proto import model_config_pb2 as mc
from tritonlite.backends import onnxruntime as ort
from tritonlite.frontends.grpc import GrpcHandlers
from tritonlite.frontends.grpc_native import NativeGrpcFrontend, start_native_grpc

grpcclient = pytest.importorskip("tritonclient.grpc")
InferenceServerException = pytest.importorskip("tritonclient.utils").InferenceServerException

codec = _core.grpc_codec
MiB = 1 << 20

# ---------------------------------------------------------------------------------------------
# Models and handlers


def parse_config(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())


ADD_SUB = """name: "add_sub" platform: "onnxruntime_onnx" max_batch_size: 8
input [{name: "INPUT0" data_type: TYPE_INT32 dims: [16]},
       {name: "INPUT1" data_type: TYPE_INT32 dims: [16]}]
output [{name: "OUTPUT0" data_type: TYPE_INT32 dims: [16]},
        {name: "OUTPUT1" data_type: TYPE_INT32 dims: [16]}]
dynamic_batching {}"""

ECHO = """name: "echo" max_batch_size: 0
input [{name: "IN" data_type: TYPE_FP32 dims: [-1]}]
output [{name: "OUT" data_type: TYPE_FP32 dims: [-1]}]"""

WORDS = """name: "words" max_batch_size: 0
input [{name: "IN" data_type: TYPE_STRING dims: [-1]}]
output [{name: "OUT" data_type: TYPE_STRING dims: [-1]}]"""


class EchoBackend:
    """OUT = IN; waits for `gate` first (to hold requests in flight); counts executions."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.executed = 0

    def create_instance(self, index: int, kind: str, device_id: int) -> EchoBackend.Instance:
        return EchoBackend.Instance(self)

    def close(self) -> None:
        pass

    class Instance:
        def __init__(self, owner: EchoBackend) -> None:
            self.owner = owner

        def execute(self, inputs: dict[str, np.ndarray], names: list[str]) -> dict[str, Any]:
            self.owner.gate.wait(30)
            self.owner.executed += 1
            return {"OUT": inputs["IN"]}

        def close(self) -> None:
            pass


class RecordingHandlers(GrpcHandlers):
    """The real handlers, plus test methods ('test.Fake/...') and an echoing stream, recording
    what reached Python."""

    def __init__(self, server: Server) -> None:
        super().__init__(server)
        self.calls: list[tuple[str, list[tuple[str, Any]]]] = []
        self.cancelled: list[str] = []
        self.slow_started = asyncio.Event()

    async def unary(
        self, method: str, request: bytes, metadata: Sequence[tuple[str, Any]]
    ) -> bytes:
        self.calls.append((method, list(metadata)))
        if method == "test.Fake/Echo":
            return request
        if method == "test.Fake/Fail":
            if request == b"unicode":
                raise TritonError("bad input \u00e9\n100% [x]", "INVALID_ARG")
            raise TritonError("the model exploded", "INVALID_ARG")
        if method == "test.Fake/Bug":
            raise RuntimeError("a bug")
        if method == "test.Fake/Slow":
            self.slow_started.set()
            try:
                await asyncio.sleep(float(request.decode() or "10"))
            except asyncio.CancelledError:
                self.cancelled.append(method)
                raise
            return b"slept"
        return await super().unary(method, request, metadata)

    async def stream(
        self, method: str, requests: AsyncIterator[bytes], metadata: Sequence[tuple[str, Any]]
    ) -> AsyncIterator[bytes]:
        self.calls.append((method, list(metadata)))
        if method == "test.Fake/Count":  # server streaming: N empty messages
            async for raw in requests:
                for i in range(int(raw.decode())):
                    yield str(i).encode()
            return
        async for raw in requests:  # ModelStreamInfer: echo the inputs as outputs
            req = pb.ModelInferRequest.FromString(raw)
            if req.id == "fail":
                raise TritonError("stream failed on request 'fail'", "INVALID_ARG")
            resp = pb.ModelInferResponse(model_name=req.model_name, id=req.id)
            for t in req.inputs:
                resp.outputs.add(name=t.name, datatype=t.datatype, shape=t.shape)
            resp.raw_output_contents.extend(req.raw_input_contents)
            yield pb.ModelStreamInferResponse(infer_response=resp).SerializeToString()

    def forwarded(self, method: str) -> int:
        return sum(1 for m, _ in self.calls if m == method)


class LoopThread:
    """An event loop in a thread, for the server side (clients block the test thread)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class Harness:
    def __init__(self, tmp: Path, **options: Any) -> None:
        self.loop = LoopThread()
        self.server = Server()
        version_dir = tmp / "add_sub" / "1"
        make_add_sub_onnx(version_dir / "model.onnx", "INT32")
        config = parse_config(ADD_SUB)
        self.server.add_model(config, ort.create_backend(config, version_dir.parent, version_dir))
        self.echo = EchoBackend()
        self.server.add_model(parse_config(ECHO), self.echo)
        self.server.add_model(parse_config(WORDS), EchoBackend())
        self.handlers = RecordingHandlers(self.server)

        async def start() -> NativeGrpcFrontend:
            return await start_native_grpc(
                self.server, "127.0.0.1", 0, handlers=self.handlers,
                streaming_methods=("ModelStreamInfer", "test.Fake/Count"), **options,
            )  # fmt: skip

        self.frontend: NativeGrpcFrontend = self.loop.run(start())
        self.port = self.frontend.port
        self.url = f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self.loop.run(self.frontend.stop(1.0))
        self.server.close()
        self.loop.close()


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    h = Harness(tmp_path_factory.mktemp("grpc_native"), max_message_bytes=32 * MiB)
    yield h
    h.close()


@pytest.fixture
def client(harness: Harness) -> Iterator[Any]:
    c = grpcclient.InferenceServerClient(harness.url)
    yield c
    c.close()


def add_sub_inputs(a: np.ndarray, b: np.ndarray) -> list[Any]:
    inputs = [grpcclient.InferInput("INPUT0", list(a.shape), "INT32"),
              grpcclient.InferInput("INPUT1", list(b.shape), "INT32")]  # fmt: skip
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    return inputs


def sample(seed: int = 0, rows: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.integers(-100, 100, (rows, 16), dtype=np.int32),
            rng.integers(-100, 100, (rows, 16), dtype=np.int32))  # fmt: skip


def raw_request(model: str, a: np.ndarray, b: np.ndarray, **fields: Any) -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(model_name=model, **fields)
    for name, arr in (("INPUT0", a), ("INPUT1", b)):
        req.inputs.add(name=name, datatype="INT32", shape=list(arr.shape))
        req.raw_input_contents.append(arr.tobytes())
    return req


def stub(harness: Harness, **options: Any) -> tuple[grpc.Channel, pb_grpc.GRPCInferenceServiceStub]:
    channel = grpc.insecure_channel(
        harness.url,
        options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)],
        **options,
    )
    return channel, pb_grpc.GRPCInferenceServiceStub(channel)


# ---------------------------------------------------------------------------------------------
# The fast path with tritonclient


def test_sync_infer_takes_the_fast_path(harness: Harness, client: Any) -> None:
    before = harness.handlers.forwarded("ModelInfer")
    for seed in range(20):
        a, b = sample(seed)
        result = client.infer("add_sub", add_sub_inputs(a, b), request_id=f"r{seed}")
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
        response = result.get_response()
        assert (response.model_name, response.model_version, response.id) == (
            "add_sub",
            "1",
            f"r{seed}",
        )
    # Explicit version, requested outputs (one of them), priority and timeout parameters.
    a, b = sample(99, rows=3)
    result = client.infer("add_sub", add_sub_inputs(a, b), model_version="1",
                          outputs=[grpcclient.InferRequestedOutput("OUTPUT1")],
                          priority=0, timeout=10_000_000)  # fmt: skip
    assert result.as_numpy("OUTPUT0") is None
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
    assert harness.handlers.forwarded("ModelInfer") == before  # nothing reached Python


def test_bytes_tensors_fast_path(harness: Harness, client: Any) -> None:
    before = harness.handlers.forwarded("ModelInfer")
    words = np.array([b"", "h\u00e9llo".encode(), b"a b", b"x" * 300], dtype=np.object_)
    inp = grpcclient.InferInput("IN", [4], "BYTES")
    inp.set_data_from_numpy(words)
    result = client.infer("words", [inp])
    assert result.as_numpy("OUT").tolist() == words.tolist()
    assert harness.handlers.forwarded("ModelInfer") == before


def test_async_infer_many_in_flight(harness: Harness, client: Any) -> None:
    done = threading.Semaphore(0)
    results: dict[int, Any] = {}

    def callback(i: int, result: Any, error: Any) -> None:
        results[i] = error if error is not None else result
        done.release()

    n = 200
    for i in range(n):
        a, b = sample(i)
        client.async_infer(
            "add_sub", add_sub_inputs(a, b), lambda result, error, i=i: callback(i, result, error)
        )
    for _ in range(n):
        assert done.acquire(timeout=30)
    for i in range(n):
        a, b = sample(i)
        np.testing.assert_array_equal(results[i].as_numpy("OUTPUT0"), a + b)


def test_aio_client(harness: Harness) -> None:
    import tritonclient.grpc.aio as aioclient

    async def main() -> None:
        async with aioclient.InferenceServerClient(harness.url) as c:
            assert await c.is_server_live()
            metadata = await c.get_model_metadata("add_sub")
            assert metadata.name == "add_sub"

            async def one(i: int) -> None:
                a, b = sample(i)
                inputs = add_sub_inputs(a, b)
                r = await c.infer("add_sub", inputs)
                np.testing.assert_array_equal(r.as_numpy("OUTPUT1"), a - b)

            await asyncio.gather(*(one(i) for i in range(300)))

    asyncio.run(main())


def test_streaming_through_the_bridge(harness: Harness, client: Any) -> None:
    results: list[Any] = []
    got = threading.Semaphore(0)

    def callback(result: Any, error: Any) -> None:
        results.append(error if error is not None else result)
        got.release()

    client.start_stream(callback=callback, headers={"x-stream-key": "v1"})
    n = 50
    for i in range(n):
        a, b = sample(i)
        client.async_stream_infer("add_sub", add_sub_inputs(a, b), request_id=str(i))
    for _ in range(n):
        assert got.acquire(timeout=30)
    client.stop_stream()
    assert [r.get_response().id for r in results] == [str(i) for i in range(n)]
    for i, r in enumerate(results):
        np.testing.assert_array_equal(r.as_numpy("INPUT1"), sample(i)[1])
    assert ("x-stream-key", "v1") in harness.handlers.calls[-1][1]


def test_stream_error_and_server_streaming(harness: Harness) -> None:
    channel, s = stub(harness)
    with channel:
        # A handler error ends the stream with its status.
        def requests() -> Iterator[pb.ModelInferRequest]:
            yield pb.ModelInferRequest(model_name="m", id="ok")
            yield pb.ModelInferRequest(model_name="m", id="fail")

        call = s.ModelStreamInfer(requests())
        first = next(call)
        assert first.infer_response.id == "ok"
        with pytest.raises(grpc.RpcError) as e:
            next(call)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "stream failed" in e.value.details()
        # Many responses to one request, then OK.
        count = channel.stream_stream("/test.Fake/Count")
        got = list(count(iter([b"300"])))
        assert got == [str(i).encode() for i in range(300)]


# ---------------------------------------------------------------------------------------------
# grpcio generated stubs, forwarding, errors


def test_generated_stubs(harness: Harness) -> None:
    channel, s = stub(harness)
    with channel:
        assert s.ServerLive(pb.ServerLiveRequest()).live
        assert s.ModelReady(pb.ModelReadyRequest(name="add_sub")).ready
        config = s.ModelConfig(pb.ModelConfigRequest(name="add_sub")).config
        assert config.max_batch_size == 8
        a, b = sample(5, rows=2)
        resp = s.ModelInfer(raw_request("add_sub", a, b, id="x"))
        out = np.frombuffer(resp.raw_output_contents[0], np.int32).reshape(2, 16)
        np.testing.assert_array_equal(out, a + b)
        assert [o.name for o in resp.outputs] == ["OUTPUT0", "OUTPUT1"]
        assert list(resp.outputs[0].shape) == [2, 16]
        health = health_pb2_grpc.HealthStub(channel)
        status = health.Check(health_pb2.HealthCheckRequest())
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        assert harness.handlers.calls[-1][0] == "Check"


def test_requests_the_fast_path_leaves_to_python(harness: Harness) -> None:
    channel, s = stub(harness)
    a, b = sample(7)
    with channel:
        # Typed contents instead of raw bytes.
        req = pb.ModelInferRequest(model_name="add_sub", id="typed")
        for name, arr in (("INPUT0", a), ("INPUT1", b)):
            t = req.inputs.add(name=name, datatype="INT32", shape=[1, 16])
            t.contents.int_contents.extend(arr.ravel().tolist())
        before = harness.handlers.forwarded("ModelInfer")
        resp = s.ModelInfer(req)
        np.testing.assert_array_equal(
            np.frombuffer(resp.raw_output_contents[0], np.int32), (a + b).ravel()
        )
        # A request parameter the fast path does not handle.
        req = raw_request("add_sub", a, b)
        req.parameters["custom"].string_param = "x"
        resp = s.ModelInfer(req)
        assert resp.model_version == "1"
        # A byte size that does not match the shape: Python words the error.
        req = raw_request("add_sub", a, b)
        req.raw_input_contents[0] = b"\0" * 12
        with pytest.raises(grpc.RpcError) as e:
            s.ModelInfer(req)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "INPUT0" in e.value.details()
        assert harness.handlers.forwarded("ModelInfer") == before + 3


@pytest.mark.parametrize(
    "mutate, code, text",
    [
        (lambda r: setattr(r, "model_name", "nope"), grpc.StatusCode.NOT_FOUND,
         "Request for unknown model: 'nope' is not found"),
        (lambda r: setattr(r, "model_version", "7"), grpc.StatusCode.NOT_FOUND, "version 7"),
        (lambda r: r.inputs[0].ClearField("shape") or r.inputs[0].shape.extend([2, 8]),
         grpc.StatusCode.INVALID_ARGUMENT, "unexpected shape for input 'INPUT0'"),
        (lambda r: setattr(r.inputs[1], "name", "INPUT9"), grpc.StatusCode.INVALID_ARGUMENT,
         "unexpected inference input 'INPUT9'"),
        (lambda r: r.outputs.add(name="NOPE"), grpc.StatusCode.INVALID_ARGUMENT,
         "unexpected inference output 'NOPE'"),
    ],
)  # fmt: skip
def test_errors_map_to_grpc_codes(harness: Harness, mutate: Any, code: Any, text: str) -> None:
    channel, s = stub(harness)
    a, b = sample(1)
    req = raw_request("add_sub", a, b)
    mutate(req)
    with channel, pytest.raises(grpc.RpcError) as e:
        s.ModelInfer(req)
    assert e.value.code() == code
    assert text in e.value.details()


def test_tritonclient_sees_triton_status_text(client: Any) -> None:
    a, b = sample(2)
    with pytest.raises(InferenceServerException) as e:
        client.infer("add_sub", add_sub_inputs(a[:, :8].copy(), b[:, :8].copy()))
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "unexpected shape for input 'INPUT0' for model 'add_sub'" in e.value.message()


def test_handler_errors(harness: Harness) -> None:
    channel, _ = stub(harness)
    with channel:
        echo = channel.unary_unary("/test.Fake/Echo")
        assert echo(b"\x00\x01binary") == b"\x00\x01binary"
        assert echo(b"") == b""
        for method, code, text in [
            ("/test.Fake/Fail", grpc.StatusCode.INVALID_ARGUMENT, "the model exploded"),
            ("/test.Fake/Bug", grpc.StatusCode.INTERNAL, "RuntimeError: a bug"),
            ("/inference.GRPCInferenceService/NoSuchRpc", grpc.StatusCode.UNIMPLEMENTED,
             "unknown method"),
        ]:  # fmt: skip
            with pytest.raises(grpc.RpcError) as e:
                channel.unary_unary(method)(b"")
            assert e.value.code() == code, method
            assert text in e.value.details()


def test_metadata_reaches_handlers(harness: Harness) -> None:
    channel, _ = stub(harness)
    with channel:
        echo = channel.unary_unary("/test.Fake/Echo")
        echo(b"x", metadata=[("x-key", "value 1"), ("triton-grpc-protocol-x", "y")])
    method, metadata = harness.handlers.calls[-1]
    assert method == "test.Fake/Echo"
    assert ("x-key", "value 1") in metadata and ("triton-grpc-protocol-x", "y") in metadata
    assert not any(k.startswith(":") or k in ("te", "content-type") for k, _ in metadata)


def test_error_text_survives_percent_encoding(harness: Harness) -> None:
    channel, _ = stub(harness)
    with channel, pytest.raises(grpc.RpcError) as e:
        channel.unary_unary("/test.Fake/Fail")(b"unicode")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details() == "bad input \u00e9\n100% [x]"


# ---------------------------------------------------------------------------------------------
# Large messages, many connections, compression


def test_large_messages_both_ways(harness: Harness) -> None:
    data = np.random.default_rng(3).standard_normal(3 * MiB // 4 * 2).astype(np.float32)  # 6 MiB
    c = grpcclient.InferenceServerClient(harness.url)
    inp = grpcclient.InferInput("IN", [data.size], "FP32")
    inp.set_data_from_numpy(data)
    for _ in range(3):
        result = c.infer("echo", [inp])
        np.testing.assert_array_equal(result.as_numpy("OUT"), data)
    c.close()


def test_messages_over_64_mib_by_default(tmp_path: Path) -> None:
    """The default limit is Triton's (INT32_MAX, as gRPC's max_receive_message_length there):
    a ~100 MiB request and its response go through; memory follows the bytes that arrived."""
    h = Harness(tmp_path)
    try:
        data = np.arange(100 * MiB // 4, dtype=np.float32)
        c = grpcclient.InferenceServerClient(h.url)
        inp = grpcclient.InferInput("IN", [data.size], "FP32")
        inp.set_data_from_numpy(data)
        result = c.infer("echo", [inp])
        out = result.as_numpy("OUT")
        assert out.shape == data.shape and out[-1] == data[-1]
        np.testing.assert_array_equal(out, data)
        del result, out
        c.close()
    finally:
        h.close()


def test_message_over_the_limit(harness: Harness) -> None:
    channel, s = stub(harness)
    req = pb.ModelInferRequest(model_name="echo")
    req.inputs.add(name="IN", datatype="FP32", shape=[9 * MiB])
    req.raw_input_contents.append(bytes(36 * MiB))
    with channel, pytest.raises(grpc.RpcError) as e:
        s.ModelInfer(req)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in e.value.details()
    # The connection still works.
    channel, s = stub(harness)
    with channel:
        assert s.ServerLive(pb.ServerLiveRequest()).live


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                     "uordblks", "fordblks", "keepcost")
    ]  # fmt: skip


def allocated_bytes() -> int:
    """Bytes the process has malloc'ed and not freed (glibc's mallinfo2: every arena, plus
    mmapped chunks), whether or not they were ever touched. RSS would miss buffers reserved
    but never written, which is exactly what an inflated length prefix costs."""
    mallinfo2 = ctypes.CDLL(None).mallinfo2
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return int(info.uordblks + info.hblkhd)


def test_announced_sizes_cost_no_memory(harness: Harness) -> None:
    """Prefixes announcing 30 MiB messages on 200 streams, with 3 bytes behind each: what is
    reserved follows the bytes that arrived, not the lengths announced (which cost the peer
    nothing). Measured as allocated bytes, not RSS: untouched reservations count too."""
    before = allocated_bytes()
    with RawH2(harness.port) as conn:
        conn.handshake()
        prefix = b"\0" + struct.pack(">I", 30 * MiB)
        conn.sock.sendall(
            b"".join(
                headers_frame(2 * i + 1, "/test.Fake/Echo") + data_frame(2 * i + 1, prefix + b"abc")
                for i in range(200)
            )
        )
        conn.sock.sendall(frame(PING, 0, 0, b"pingpong"))
        conn.frames_until(lambda f: f[0] == PING and f[3] == b"pingpong")
        # 200 x 1 MiB (the reader's old first reservation) would be 200 MiB.
        assert allocated_bytes() - before < 40 * MiB
    wait_for(lambda: harness.frontend.core.connection_count() <= 1)


def test_many_connections_and_streams(harness: Harness) -> None:
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            c = grpcclient.InferenceServerClient(harness.url)
            done = threading.Semaphore(0)
            bad: list[Any] = []
            for i in range(40):
                a, b = sample(k * 100 + i)

                def cb(result: Any, error: Any, a: np.ndarray = a, b: np.ndarray = b) -> None:
                    if error is not None or not np.array_equal(result.as_numpy("OUTPUT0"), a + b):
                        bad.append(error)
                    done.release()

                c.async_infer("add_sub", add_sub_inputs(a, b), cb)
            for _ in range(40):
                assert done.acquire(timeout=60)
            assert not bad
            c.close()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors


def test_compressed_requests(harness: Harness, client: Any) -> None:
    a, b = sample(11)
    for algorithm in ("gzip", "deflate"):
        result = client.infer("add_sub", add_sub_inputs(a, b), compression_algorithm=algorithm)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    channel, s = stub(harness, compression=grpc.Compression.Gzip)
    with channel:
        assert s.ServerLive(pb.ServerLiveRequest()).live


def test_compressed_messages_keep_their_order(harness: Harness) -> None:
    """Compressed messages are inflated off the I/O thread; the plain ones and the half-close
    that follow them on the same call wait their turn."""
    import gzip

    def message(i: int, compressed: bool) -> bytes:
        body = pb.ModelInferRequest(model_name="m", id=str(i)).SerializeToString()
        if not compressed:
            return grpc_message(body)
        packed = gzip.compress(body)
        return b"\x01" + struct.pack(">I", len(packed)) + packed

    with RawH2(harness.port) as conn:
        conn.handshake()
        block = header_block("/inference.GRPCInferenceService/ModelStreamInfer",
                             [("grpc-encoding", "gzip")])  # fmt: skip
        body = b"".join(message(i, compressed=i % 3 != 2) for i in range(12))
        conn.sock.sendall(frame(HEADERS, 0x4, 1, block) + data_frame(1, body, end_stream=True))
        headers, out, _ = conn.response(1)
        assert headers[b"grpc-status"] == b"0", headers
        ids = []
        while out:
            n = int.from_bytes(out[1:5], "big")
            resp = pb.ModelStreamInferResponse.FromString(out[5 : 5 + n])
            ids.append(resp.infer_response.id)
            out = out[5 + n :]
        assert ids == [str(i) for i in range(12)]
        # Unary: the end of the request waits for the inflated message.
        unary = header_block("/test.Fake/Echo", [("grpc-encoding", "deflate")])
        packed = zlib.compress(b"hello" * 1000)
        conn.sock.sendall(frame(HEADERS, 0x4, 3, unary) + data_frame(
            3, b"\x01" + struct.pack(">I", len(packed)) + packed, end_stream=True))  # fmt: skip
        headers, out, _ = conn.response(3)
        assert headers[b"grpc-status"] == b"0" and out == grpc_message(b"hello" * 1000)
        # Corrupt and oversized ones fail their call only.
        conn.sock.sendall(frame(HEADERS, 0x4, 5, unary) + data_frame(
            5, b"\x01" + struct.pack(">I", 4) + b"junk", end_stream=True))  # fmt: skip
        headers, _, _ = conn.response(5)
        assert headers[b"grpc-status"] == b"13" and b"decompress" in headers[b"grpc-message"]


# ---------------------------------------------------------------------------------------------
# Cancellation, deadlines, disconnects


def test_client_cancellation_reaches_python(harness: Harness) -> None:
    channel, _ = stub(harness)
    with channel:
        slow = channel.unary_unary("/test.Fake/Slow")
        future = slow.future(b"30")
        deadline = time.monotonic() + 10
        while "test.Fake/Slow" not in [m for m, _ in harness.handlers.calls]:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        future.cancel()
        while "test.Fake/Slow" not in harness.handlers.cancelled:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert channel.unary_unary("/test.Fake/Echo")(b"still") == b"still"


def test_deadline_exceeded(harness: Harness) -> None:
    channel, _ = stub(harness)
    with channel:
        n = len(harness.handlers.cancelled)
        with pytest.raises(grpc.RpcError) as e:
            channel.unary_unary("/test.Fake/Slow")(b"30", timeout=0.3)
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        deadline = time.monotonic() + 10
        while len(harness.handlers.cancelled) == n:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        # A fast-path request past its deadline: the client gets DEADLINE_EXCEEDED, the late
        # response is dropped, and the server goes on.
        harness.echo.gate.clear()
        try:
            c = grpcclient.InferenceServerClient(harness.url)
            inp = grpcclient.InferInput("IN", [4], "FP32")
            inp.set_data_from_numpy(np.ones(4, np.float32))
            with pytest.raises(InferenceServerException) as te:
                c.infer("echo", [inp], client_timeout=0.3)
            assert "DEADLINE_EXCEEDED" in te.value.status()
        finally:
            harness.echo.gate.set()
        assert c.infer("echo", [inp]).as_numpy("OUT").tolist() == [1, 1, 1, 1]
        c.close()


def test_cancel_in_flight_fast_path_request(harness: Harness) -> None:
    harness.echo.gate.clear()
    channel, s = stub(harness)
    req = pb.ModelInferRequest(model_name="echo")
    req.inputs.add(name="IN", datatype="FP32", shape=[2])
    req.raw_input_contents.append(np.ones(2, np.float32).tobytes())
    before = harness.echo.executed
    with channel:
        futures = [s.ModelInfer.future(req) for _ in range(5)]
        time.sleep(0.2)
        for f in futures:
            f.cancel()
        time.sleep(0.2)  # the resets reach the server while the first request holds the gate
        harness.echo.gate.set()
        assert list(s.ModelInfer(req).outputs[0].shape) == [2]
    # The request already executing finishes; the four queued behind it were dropped.
    assert harness.echo.executed - before == 2


def test_abrupt_disconnects(harness: Harness) -> None:
    a, b = sample(3)
    body = raw_request("add_sub", a, b).SerializeToString()
    for cut in (0, 10, 24, 40, 60, 100, 200):
        with RawH2(harness.port) as conn:
            conn.handshake()
            frames = headers_frame(1, "/inference.GRPCInferenceService/ModelInfer") + data_frame(
                1, grpc_message(body), end_stream=True
            )
            conn.sock.sendall(frames[:cut])
        # closed without reading anything
    with RawH2(harness.port) as conn:  # in flight when the client vanishes
        conn.handshake()
        conn.sock.sendall(
            headers_frame(1, "/test.Fake/Slow")
            + data_frame(1, grpc_message(b"0.5"), end_stream=True)
        )
    wait_for(lambda: harness.frontend.core.connection_count() <= 1)
    c = grpcclient.InferenceServerClient(harness.url)
    assert c.infer("add_sub", add_sub_inputs(a, b)).as_numpy("OUTPUT0").tolist() == (a + b).tolist()
    c.close()


# ---------------------------------------------------------------------------------------------
# HTTP/2 through raw sockets

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    range(10)
)


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([kind, flags])
        + struct.pack(">I", stream)
        + payload
    )


def settings_frame(**values: int) -> bytes:
    ids = {"header_table_size": 1, "initial_window_size": 4, "max_frame_size": 5}
    return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", ids[k], v) for k, v in values.items()))


def literal(name: str | bytes, value: str | bytes) -> bytes:
    n = name.encode() if isinstance(name, str) else name
    v = value.encode() if isinstance(value, str) else value
    assert len(n) < 127 and len(v) < 127
    return b"\x00" + bytes([len(n)]) + n + bytes([len(v)]) + v


def header_block(path: str, extra: Sequence[tuple[str, str]] = ()) -> bytes:
    fields = [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "t"),
              ("content-type", "application/grpc"), ("te", "trailers"), *extra]  # fmt: skip
    return b"".join(literal(k, v) for k, v in fields)


def headers_frame(stream: int, path: str, end_stream: bool = False) -> bytes:
    return frame(HEADERS, 0x4 | (0x1 if end_stream else 0), stream, header_block(path))


def data_frame(stream: int, payload: bytes, end_stream: bool = False) -> bytes:
    """DATA frames of at most 16384 bytes (the default SETTINGS_MAX_FRAME_SIZE)."""
    chunks = [payload[i : i + 16384] for i in range(0, len(payload), 16384)] or [b""]
    return b"".join(
        frame(DATA, 0x1 if end_stream and i == len(chunks) - 1 else 0, stream, c)
        for i, c in enumerate(chunks)
    )


def grpc_message(body: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", len(body)) + body


def wait_for(predicate: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


class RawH2:
    """A minimal HTTP/2 client over a socket, for protocol tests."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""
        self.hpack = codec.HpackDecoder()
        self.closed = False

    def __enter__(self) -> RawH2:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def handshake(self, **settings: int) -> None:
        self.sock.sendall(PREFACE + settings_frame(**settings))

    def next_frame(self, timeout: float = 10) -> tuple[int, int, int, bytes] | None:
        self.sock.settimeout(timeout)
        while True:
            if len(self.buffer) >= 9:
                length = int.from_bytes(self.buffer[:3], "big")
                if len(self.buffer) >= 9 + length:
                    kind, flags = self.buffer[3], self.buffer[4]
                    stream = int.from_bytes(self.buffer[5:9], "big") & 0x7FFFFFFF
                    payload = self.buffer[9 : 9 + length]
                    self.buffer = self.buffer[9 + length :]
                    return kind, flags, stream, payload
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                chunk = b""
            if not chunk:
                self.closed = True
                return None
            self.buffer += chunk

    def frames_until(
        self, predicate: Any, timeout: float = 10
    ) -> list[tuple[int, int, int, bytes]]:
        out = []
        while (f := self.next_frame(timeout)) is not None:
            out.append(f)
            if predicate(f):
                break
        return out

    def goaway_code(self) -> int | None:
        """Reads until GOAWAY (its error code) or the connection closes (None)."""
        for kind, _, _, payload in self.frames_until(lambda f: f[0] == GOAWAY):
            if kind == GOAWAY:
                return int.from_bytes(payload[4:8], "big")
        return None

    def response(self, stream: int) -> tuple[dict[bytes, bytes], bytes, list[int]]:
        """Headers + trailers, body, and the sizes of the DATA frames of one stream."""
        headers: dict[bytes, bytes] = {}
        body, sizes = b"", []
        for kind, flags, sid, payload in self.frames_until(
            lambda f: f[2] == stream and f[1] & 0x1 and f[0] in (HEADERS, DATA)
        ):
            if sid != stream:
                continue
            if kind == HEADERS:
                headers.update(dict(self.hpack.decode(payload)))
            elif kind == DATA:
                body += payload
                sizes.append(len(payload))
        return headers, body, sizes


def test_settings_ping_and_simple_call(harness: Harness) -> None:
    with RawH2(harness.port) as conn:
        conn.handshake()
        frames = conn.frames_until(lambda f: f[0] == SETTINGS and f[1] & 1)
        server_settings = [f for f in frames if f[0] == SETTINGS and not f[1] & 1]
        assert server_settings, "the server preface starts with SETTINGS"
        conn.sock.sendall(frame(PING, 0, 0, b"12345678"))
        pong = conn.frames_until(lambda f: f[0] == PING)[-1]
        assert pong[1] == 1 and pong[3] == b"12345678"
        # Padded HEADERS split over CONTINUATION, padded DATA: the echo method answers.
        block = header_block("/test.Fake/Echo")
        padded = bytes([3]) + block[:20] + b"\0\0\0"
        conn.sock.sendall(frame(HEADERS, 0x8, 1, padded) + frame(CONTINUATION, 0x4, 1, block[20:]))
        conn.sock.sendall(
            frame(DATA, 0x8 | 0x1, 1, bytes([5]) + grpc_message(b"hello") + b"\0" * 5)
        )
        headers, body, _ = conn.response(1)
        assert headers[b":status"] == b"200" and headers[b"grpc-status"] == b"0"
        assert headers[b"content-type"] == b"application/grpc"
        assert body == grpc_message(b"hello")


def test_peer_flow_control_windows_are_respected(harness: Harness) -> None:
    with RawH2(harness.port) as conn:
        conn.handshake(initial_window_size=100)
        conn.sock.sendall(
            headers_frame(1, "/test.Fake/Echo")
            + data_frame(1, grpc_message(b"z" * 1000), end_stream=True)
        )
        got = b""
        deadline = time.monotonic() + 10
        while len(got) < 1005:
            f = conn.next_frame(2)
            assert f is not None and time.monotonic() < deadline
            kind, _flags, sid, payload = f
            if kind == DATA and sid == 1:
                assert len(payload) <= 100
                got += payload
                # Opening the stream window by exactly what arrived keeps it at <= 100 bytes.
                conn.sock.sendall(frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", len(payload))))
        assert got == grpc_message(b"z" * 1000)


def test_large_response_frames_fit_peer_max_frame_size(harness: Harness) -> None:
    with RawH2(harness.port) as conn:
        conn.handshake(initial_window_size=(1 << 31) - 1)
        conn.sock.sendall(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", (1 << 31) - 1 - 65535)))
        payload = bytes(range(256)) * 1000
        conn.sock.sendall(
            headers_frame(1, "/test.Fake/Echo")
            + data_frame(1, grpc_message(payload), end_stream=True)
        )
        headers, body, sizes = conn.response(1)
        assert body == grpc_message(payload) and headers[b"grpc-status"] == b"0"
        assert max(sizes) <= 16384 and len(sizes) > 10


@pytest.mark.parametrize(
    "frames, code",
    [
        (frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 0)), 1),  # zero increment: PROTOCOL_ERROR
        (frame(DATA, 0, 0, b"x"), 1),  # DATA on stream 0
        (frame(DATA, 0, 9, b"x"), 1),  # DATA on an idle stream
        (frame(PING, 0, 0, b"123"), 6),  # FRAME_SIZE_ERROR
        (frame(SETTINGS, 0, 0, b"12345"), 6),
        (frame(SETTINGS, 0, 0, struct.pack(">HI", 5, 100)), 1),  # MAX_FRAME_SIZE below 16384
        (frame(SETTINGS, 0, 0, struct.pack(">HI", 4, 1 << 31)), 3),  # window too large
        (frame(HEADERS, 0x4, 2, header_block("/test.Fake/Echo")), 1),  # even stream id
        (frame(HEADERS, 0x4, 1, b"\x80"), 9),  # HPACK index 0: COMPRESSION_ERROR
        (frame(HEADERS, 0x0, 1, header_block("/x")) + frame(PING, 0, 0, b"12345678"), 1),
        (frame(CONTINUATION, 0x4, 1, b""), 1),  # CONTINUATION without HEADERS
        (frame(PUSH, 0x4, 1, b"\0\0\0\2"), 1),
        (frame(RST_STREAM, 0, 0, b"\0\0\0\0"), 1),
        (frame(DATA, 0, 1, b"x" * 20000), 6),  # larger than the max frame size we announced
    ],
)
def test_protocol_errors_send_goaway(harness: Harness, frames: bytes, code: int) -> None:
    with RawH2(harness.port) as conn:
        conn.handshake()
        conn.sock.sendall(frames)
        assert conn.goaway_code() == code


def test_stream_errors_reset_only_the_stream(harness: Harness) -> None:
    with RawH2(harness.port) as conn:
        conn.handshake()
        # Uppercase header name: a malformed request (RST_STREAM PROTOCOL_ERROR).
        bad = (
            literal(":method", "POST")
            + literal(":scheme", "http")
            + literal(":path", "/x")
            + literal("X-Up", "1")
        )
        conn.sock.sendall(frame(HEADERS, 0x5, 1, bad))
        rst = conn.frames_until(lambda f: f[0] == RST_STREAM)[-1]
        assert rst[2] == 1 and int.from_bytes(rst[3], "big") == 1
        # The connection still serves.
        conn.sock.sendall(
            headers_frame(3, "/test.Fake/Echo") + data_frame(3, grpc_message(b"k"), True)
        )
        _headers, body, _ = conn.response(3)
        assert body == grpc_message(b"k")


def test_receive_windows_are_enforced() -> None:
    """The server grants more window as it consumes data, so only a frame larger than what is
    left can overrun it: with small windows, a stream error, then a connection error."""
    core = _core.GrpcServer("127.0.0.1", 0, initial_stream_window=1000, connection_window=65535,
                            max_frame_size=100_000)  # fmt: skip
    core.start()
    try:
        with RawH2(core.port) as conn:
            conn.handshake()
            conn.sock.sendall(headers_frame(1, "/x") + frame(DATA, 0, 1, b"\0" * 2000))
            rst = conn.frames_until(lambda f: f[0] == RST_STREAM)[-1]
            assert rst[2] == 1 and int.from_bytes(rst[3], "big") == 3  # FLOW_CONTROL_ERROR
            conn.sock.sendall(headers_frame(3, "/x") + frame(DATA, 0, 3, b"\0" * 70_000))
            assert conn.goaway_code() == 3
    finally:
        core.stop()


def test_header_bytes_that_are_not_utf8(harness: Harness) -> None:
    with RawH2(harness.port) as conn:
        conn.handshake()
        block = (literal(":method", "POST") + literal(":scheme", "http")
                 + literal(":path", b"/test.Fake/\xff")
                 + literal("content-type", "application/grpc")
                 + literal("x-key", b"\xfe"))  # fmt: skip
        conn.sock.sendall(frame(HEADERS, 0x4, 1, block) + data_frame(1, grpc_message(b""), True))
        headers, _, _ = conn.response(1)
        assert headers[b"grpc-status"] == b"12"  # unknown method, named with U+FFFD
    assert ("x-key", "\ufffd") in harness.handlers.calls[-1][1]


def test_not_grpc_requests(harness: Harness) -> None:
    with RawH2(harness.port) as conn:
        conn.handshake()
        get = literal(":method", "GET") + literal(":scheme", "http") + literal(":path", "/")
        conn.sock.sendall(frame(HEADERS, 0x5, 1, get))
        headers, _, _ = conn.response(1)
        assert headers[b":status"] == b"405"
        block = header_block("/x").replace(b"application/grpc", b"text/plain123456")
        conn.sock.sendall(frame(HEADERS, 0x5, 3, block))
        headers, _, _ = conn.response(3)
        assert headers[b":status"] == b"415"
        # Unary call without a message; with two messages.
        conn.sock.sendall(headers_frame(5, "/test.Fake/Echo", end_stream=True))
        headers, _, _ = conn.response(5)
        assert headers[b"grpc-status"] == b"13"
        two = grpc_message(b"a") + grpc_message(b"b")
        conn.sock.sendall(headers_frame(7, "/test.Fake/Echo") + data_frame(7, two, True))
        headers, _, _ = conn.response(7)
        assert headers[b"grpc-status"] == b"13"
        # An unsupported grpc-encoding.
        block = header_block("/test.Fake/Echo", [("grpc-encoding", "snappy")])
        conn.sock.sendall(frame(HEADERS, 0x4, 9, block) + data_frame(9, grpc_message(b"z"), True))
        headers, _, _ = conn.response(9)
        assert headers[b"grpc-status"] == b"12" and b"snappy" in headers[b"grpc-message"]


def test_random_bytes_never_break_the_server(harness: Harness) -> None:
    rng = random.Random(7)
    valid = (settings_frame() + headers_frame(1, "/test.Fake/Echo")
             + data_frame(1, grpc_message(b"abc"), True))  # fmt: skip
    for i in range(150):
        with RawH2(harness.port) as conn:
            if i % 3 == 0:
                junk = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300)))
            else:  # a valid start, then mutated frames
                junk = bytearray(PREFACE + valid)
                for _ in range(rng.randint(1, 8)):
                    pos = rng.randrange(len(PREFACE), len(junk))
                    junk[pos] = rng.getrandbits(8)
                junk = bytes(junk) + bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 50)))
            try:
                conn.sock.sendall(junk)
                conn.sock.settimeout(0.2)
                conn.sock.recv(65536)
            except OSError:
                pass
    wait_for(lambda: harness.frontend.core.connection_count() <= 1)
    channel, s = stub(harness)
    with channel:
        assert s.ServerLive(pb.ServerLiveRequest()).live


# ---------------------------------------------------------------------------------------------
# Lifecycle: models coming and going, graceful shutdown


def test_registry_follows_the_server(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    try:
        assert h.frontend.core.models() == {"add_sub": [1], "echo": [1], "words": [1]}
        c = grpcclient.InferenceServerClient(h.url)
        inp = grpcclient.InferInput("IN", [3], "FP32")
        inp.set_data_from_numpy(np.arange(3, dtype=np.float32))
        # A second version becomes the latest; version 1 stays reachable.
        h.server.add_model(parse_config(ECHO), EchoBackend(), version=2)
        assert h.frontend.core.models()["echo"] == [1, 2]
        assert c.infer("echo", [inp]).get_response().model_version == "2"
        assert c.infer("echo", [inp], model_version="1").get_response().model_version == "1"
        # Removed: the request goes to Python, which reports it as Triton does.
        h.server.remove_model("echo")
        assert "echo" not in h.frontend.core.models()
        with pytest.raises(InferenceServerException) as e:
            c.infer("echo", [inp])
        assert e.value.status() == "StatusCode.NOT_FOUND"
        # Decoupled models never take the fast path.
        decoupled = parse_config(
            ECHO.replace('"echo"', '"dec"') + " model_transaction_policy { decoupled: true }"
        )
        h.server.add_model(decoupled, EchoBackend())
        assert "dec" not in h.frontend.core.models()
        # ...and, as in Triton, ModelInfer refuses them (they answer on ModelStreamInfer).
        with pytest.raises(InferenceServerException) as e:
            c.infer("dec", [inp])
        assert e.value.status() == "StatusCode.UNIMPLEMENTED"
        assert e.value.message() == (
            "ModelInfer RPC doesn't support models with decoupled transaction policy"
        )
        c.close()
    finally:
        h.close()


def test_reload_under_load_never_fails(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    stop = threading.Event()
    failures: list[Any] = []
    count = [0]

    def load() -> None:
        c = grpcclient.InferenceServerClient(h.url)
        inp = grpcclient.InferInput("IN", [2], "FP32")
        inp.set_data_from_numpy(np.ones(2, np.float32))
        while not stop.is_set():
            try:
                c.infer("echo", [inp])
                count[0] += 1
            except InferenceServerException as e:
                failures.append(e)
        c.close()

    threads = [threading.Thread(target=load) for _ in range(3)]
    try:
        for t in threads:
            t.start()
        for _ in range(10):  # replace version 1 again and again while requests flow
            time.sleep(0.03)
            h.server.add_model(parse_config(ECHO), EchoBackend())
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        h.close()
    assert not failures and count[0] > 0


def test_graceful_shutdown(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    try:
        channel, _ = stub(h)
        slow = channel.unary_unary("/test.Fake/Slow")
        future = slow.future(b"0.5")
        wait_for(lambda: h.handlers.slow_started.is_set())
        stopping = asyncio.run_coroutine_threadsafe(h.frontend.stop(10.0), h.loop.loop)
        assert future.result(timeout=10) == b"slept"  # in flight: finished
        stopping.result(timeout=10)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", h.port), timeout=2).recv(1)
        channel.close()
    finally:
        h.server.close()
        h.loop.close()


def test_restricted_inference_checks_the_header_and_keeps_the_fast_path(tmp_path: Path) -> None:
    from tritonlite.frontends.grpc import parse_restricted_protocols

    loop = LoopThread()
    server = Server()
    server.add_model(parse_config(ECHO), EchoBackend())
    handlers = GrpcHandlers(server, parse_restricted_protocols(["inference:X-Infer-Key=secret"]))
    forwarded: list[str] = []
    unary = handlers.unary

    async def counting(method: str, request: bytes, metadata: Any) -> bytes:
        forwarded.append(method)
        return await unary(method, request, metadata)

    handlers.unary = counting  # type: ignore[method-assign]
    frontend = loop.run(start_native_grpc(server, "127.0.0.1", 0, handlers=handlers))
    try:
        assert set(frontend.core.models()) == {"echo"}  # the fast path stays on
        c = grpcclient.InferenceServerClient(f"127.0.0.1:{frontend.port}")
        inp = grpcclient.InferInput("IN", [1], "FP32")
        inp.set_data_from_numpy(np.ones(1, np.float32))
        for headers in (None, {"x-infer-key": "wrong"}, {"other": "secret"}):
            with pytest.raises(InferenceServerException) as e:
                c.infer("echo", [inp], headers=headers)
            assert e.value.status() == "StatusCode.UNAVAILABLE"
            assert "This protocol is restricted, expecting header 'x-infer-key'" in e.value.message()
        assert forwarded == ["ModelInfer"] * 3  # refused by the Python handlers
        forwarded.clear()
        for _ in range(3):
            out = c.infer("echo", [inp], headers={"x-infer-key": "secret"}).as_numpy("OUT")
            assert out == [1]
        assert forwarded == []  # served in C++
        c.close()
    finally:
        loop.run(frontend.stop(1.0))
        server.close()
        loop.close()


def test_bind_failure_and_options() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        with pytest.raises(TritonError, match="cannot bind"):
            _core.GrpcServer("127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()
    with pytest.raises(TritonError, match="max_frame_size"):
        _core.GrpcServer("127.0.0.1", 0, max_frame_size=100)
    with pytest.raises(TritonError, match="max_message_bytes"):
        _core.GrpcServer("127.0.0.1", 0, max_message_bytes=0)


# ---------------------------------------------------------------------------------------------
# The codec against protobuf's generated classes


def test_decoder_matches_protobuf() -> None:
    rng = np.random.default_rng(0)
    for i in range(50):
        req = pb.ModelInferRequest(
            model_name=f"m{i}", model_version=str(i % 3), id="\u00e9" * (i % 4)
        )
        for k in range(int(rng.integers(0, 4))):
            t = req.inputs.add(
                name=f"in{k}",
                datatype="FP32",
                shape=rng.integers(-1, 9, int(rng.integers(0, 5))).tolist(),
            )
            req.raw_input_contents.append(rng.bytes(int(rng.integers(0, 64))))
            if k == 2:
                t.parameters["shared_memory_region"].string_param = "r"
                t.contents.fp32_contents.append(1.0)
        req.outputs.add(name="o").parameters["classification"].int64_param = 3
        req.parameters["priority"].uint64_param = i
        req.parameters["timeout"].int64_param = -i
        req.parameters["sequence_start"].bool_param = bool(i % 2)
        req.parameters["ratio"].double_param = i / 7
        req.parameters["sequence_id"].string_param = f"s{i}"
        got = codec.decode_model_infer_request(req.SerializeToString())
        assert got["model_name"] == req.model_name and got["id"] == req.id
        assert got["model_version"] == req.model_version
        assert got["raw_input_contents"] == list(req.raw_input_contents)
        assert [x["shape"] for x in got["inputs"]] == [list(t.shape) for t in req.inputs]
        assert [x["has_contents"] for x in got["inputs"]] == [
            t.HasField("contents") for t in req.inputs
        ]
        assert got["parameters"] == {"priority": i, "timeout": -i, "sequence_start": bool(i % 2),
                                     "ratio": i / 7, "sequence_id": f"s{i}"}  # fmt: skip
        assert got["outputs"] == [{"name": "o", "parameters": {"classification": 3}}]
    # Unknown fields are skipped; truncation and bad UTF-8 are refused like protobuf does.
    raw = raw_request("add_sub", *sample(0)).SerializeToString()
    unknown = b"\xa8\x06\x01" + b"\xb2\x06\x03abc"  # fields 101 (varint) and 102 (bytes)
    assert codec.decode_model_infer_request(unknown + raw)["model_name"] == "add_sub"
    assert codec.decode_model_infer_request(raw[:-3]) is None
    assert codec.decode_model_infer_request(b"\x0a\x02\xc3\x28") is None  # invalid UTF-8 name


def test_encoder_matches_protobuf() -> None:
    outputs = [("OUT0", np.arange(6, dtype=np.float32).reshape(2, 3)),
               ("S", np.array([b"ab", b""], dtype=np.object_)),
               ("E", np.zeros((0, 4), np.int64)), ("scalar", np.array(7, np.int8))]  # fmt: skip
    raw = codec.encode_model_infer_response("model", "3", "id-1", outputs)
    resp = pb.ModelInferResponse.FromString(raw)
    assert (resp.model_name, resp.model_version, resp.id) == ("model", "3", "id-1")
    assert [(o.name, o.datatype, list(o.shape)) for o in resp.outputs] == [
        ("OUT0", "FP32", [2, 3]),
        ("S", "BYTES", [2]),
        ("E", "INT64", [0, 4]),
        ("scalar", "INT8", []),
    ]
    assert resp.raw_output_contents[0] == outputs[0][1].tobytes()
    assert resp.raw_output_contents[1] == b"\x02\x00\x00\x00ab\x00\x00\x00\x00"
    assert resp.raw_output_contents[2] == b"" and resp.raw_output_contents[3] == b"\x07"
    assert raw == resp.SerializeToString()  # byte-identical to protobuf's own encoding


def test_encoder_sizes_multibyte_lengths_exactly() -> None:
    # The encoder sizes the message first and then writes in place: every length and varint
    # that takes more than one byte (long names and ids, big dimensions, outputs of 128+ and
    # 16k+ bytes), an empty model version and no outputs at all must still come out exactly as
    # protobuf writes them.
    long_name = "o" * 200
    outputs = [(long_name, np.zeros((300, 1), np.uint8)),
               ("big", np.arange(5000, dtype=np.int32).reshape(1, 5000)),
               ("n" * 127, np.array([-1], np.int64)), ("e", np.zeros((2**40, 0), np.float32))]  # fmt: skip
    for model, version, rid, outs in [("m" * 130, "", "i" * 20000, outputs), ("m", "1", "", [])]:
        raw = codec.encode_model_infer_response(model, version, rid, outs)
        resp = pb.ModelInferResponse.FromString(raw)
        assert (resp.model_name, resp.model_version, resp.id) == (model, version, rid)
        assert [list(o.shape) for o in resp.outputs] == [list(a.shape) for _, a in outs]
        assert [bytes(c) for c in resp.raw_output_contents] == [a.tobytes() for _, a in outs]
        assert raw == resp.SerializeToString()


def test_fast_path_requests_are_zero_copy_views() -> None:
    a, b = sample(0, rows=2)
    req = raw_request("add_sub", a, b, id="q")
    req.parameters["priority"].int64_param = 2
    req.parameters["timeout"].int64_param = 500  # int64 only, as Triton
    req.parameters["sequence_id"].int64_param = 42
    req.parameters["sequence_start"].bool_param = True
    req.parameters["sequence_end"].bool_param = True
    req.outputs.add(name="OUTPUT1")
    got = codec.fast_path_request(req.SerializeToString())
    assert got is not None
    assert (got["id"], got["priority"], got["timeout_us"], got["correlation_id"], got["flags"]) == (
        "q",
        2,
        500,
        42,
        3,
    )
    assert got["requested_outputs"] == ["OUTPUT1"]
    start, end = got["buffer_address"], got["buffer_address"] + got["buffer_size"]
    for (name, tensor), arr in zip(got["inputs"], (a, b)):
        assert start <= tensor.data_ptr and tensor.data_ptr + tensor.byte_size <= end
        view = tensor.numpy()
        assert not view.flags.writeable
        np.testing.assert_array_equal(view, arr)
    req.parameters["sequence_id"].string_param = "corr"
    assert codec.fast_path_request(req.SerializeToString())["correlation_id_str"] == "corr"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda r: r.inputs[0].contents.int_contents.append(1),
        lambda r: r.inputs[0].parameters["shared_memory_region"].string_param.__class__,
        lambda r: r.inputs[0].parameters["binary_data_size"].int64_param.__class__,
        lambda r: r.outputs.add(name="OUTPUT0").parameters["classification"].int64_param.__class__,
        lambda r: r.parameters["custom"].bool_param.__class__,
        lambda r: setattr(r.parameters["priority"], "string_param", "high"),
        lambda r: setattr(r.parameters["priority"], "int64_param", -1),
        lambda r: setattr(r.parameters["timeout"], "uint64_param", 5),  # Triton: int64 only
        lambda r: setattr(r.parameters["triton_enable_empty_final_response"], "int64_param", 1),
        lambda r: r.raw_input_contents.pop(),
        lambda r: r.raw_input_contents.__setitem__(0, b"123"),
        lambda r: setattr(r.inputs[0], "datatype", "TYPE_INT32"),
        lambda r: setattr(r.inputs[0], "datatype", "INT33"),
    ],
)
def test_what_the_fast_path_forwards(mutate: Any) -> None:
    req = raw_request("add_sub", *sample(0))
    assert codec.fast_path_request(req.SerializeToString()) is not None
    mutate(req)
    # Accessing a map entry creates it: the lambdas above add parameters that way.
    assert codec.fast_path_request(req.SerializeToString()) is None


class SignedBackend(EchoBackend):
    """OUT = IN, refusing negative values (INVALID_ARG)."""

    class Instance(EchoBackend.Instance):
        def execute(self, inputs: dict[str, np.ndarray], names: list[str]) -> dict[str, Any]:
            if (inputs["IN"] < 0).any():
                raise TritonError("negative", "INVALID_ARG")
            return {"OUT": inputs["IN"]}

    def create_instance(self, index: int, kind: str, device_id: int) -> SignedBackend.Instance:
        return SignedBackend.Instance(self)


def _stream_values(url: str, values: Sequence[float], headers: Any) -> list[Any]:
    """Each value on one stream, sent after the previous one's answer."""
    import queue

    answers: queue.Queue[Any] = queue.Queue()
    c = grpcclient.InferenceServerClient(url)
    c.start_stream(callback=lambda result, error: answers.put((result, error)), headers=headers)
    seen: list[Any] = []
    try:
        for value in values:
            inp = grpcclient.InferInput("IN", [1], "FP32")
            inp.set_data_from_numpy(np.array([value], np.float32))
            try:
                c.async_stream_infer("signed", [inp])
            except InferenceServerException as e:
                seen.append(("refused", e.message()))
                continue
            result, error = answers.get(timeout=30)
            if error is not None:
                seen.append((error.status(), error.message()))
            else:
                seen.append(float(result.as_numpy("OUT")[0]))
    finally:
        c.stop_stream()
        c.close()
    return seen


def test_triton_grpc_error_header_on_both_transports(tmp_path: Path) -> None:
    """With `triton_grpc_error: true` a model error ends ModelStreamInfer with its status (as
    Triton); without it the error is a message in the stream, which goes on. Unary ModelInfer
    refuses decoupled models. The same on the native transport and on grpcio's."""
    from tritonlite.frontends.grpc import start_grpc

    h = Harness(tmp_path)
    h.server.add_model(parse_config(ECHO.replace('"echo"', '"signed"')), SignedBackend())
    decoupled = parse_config(
        ECHO.replace('"echo"', '"dec"') + " model_transaction_policy { decoupled: true }"
    )
    h.server.add_model(decoupled, EchoBackend())
    # The harness's handlers echo streams: these two serve with the real handlers.
    native = h.loop.run(start_native_grpc(h.server, "127.0.0.1", 0))
    grpcio = h.loop.run(start_grpc(h.server, "127.0.0.1", 0))
    refused = (
        "refused",
        (
            "The stream is no longer in valid state, the error detail is reported through "
            "provided callback. A new stream should be started after stopping the current stream."
        ),
    )
    try:
        for url in (f"127.0.0.1:{native.port}", f"127.0.0.1:{grpcio.port}"):
            assert _stream_values(url, [1, -1, 3], {"triton_grpc_error": "true"}) == [
                1.0, ("StatusCode.INVALID_ARGUMENT", "negative"), refused,
            ]  # fmt: skip
            assert _stream_values(url, [1, -1, 3], None) == [1.0, (None, "negative"), 3.0]
            c = grpcclient.InferenceServerClient(url)
            inp = grpcclient.InferInput("IN", [1], "FP32")
            inp.set_data_from_numpy(np.ones(1, np.float32))
            with pytest.raises(InferenceServerException) as e:
                c.infer("dec", [inp])
            assert e.value.status() == "StatusCode.UNIMPLEMENTED"
            c.close()
    finally:
        h.loop.run(grpcio.stop(1.0))
        h.loop.run(native.stop(1.0))
        h.close()
