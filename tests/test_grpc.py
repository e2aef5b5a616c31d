"""End to end over gRPC with the real tritonclient: tritonlite-server in its own process."""

from __future__ import annotations

import asyncio
import json
import queue
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aiogrpcclient
from tritonclient.utils import InferenceServerException

from models import make_add_sub_onnx, make_identity_onnx
from serving import ServerProcess, write_config
from tritonlite._proto import grpc_service_pb2 as pb
from tritonlite._proto import grpc_service_pb2_grpc as pb_grpc
from tritonlite._proto import health_pb2, health_pb2_grpc

HERE = Path(__file__).parent

SIMPLE = """
name: "simple" platform: "onnxruntime_onnx" max_batch_size: 8
input [{ name: "INPUT0" data_type: TYPE_INT32 dims: [ 16 ] },
       { name: "INPUT1" data_type: TYPE_INT32 dims: [ 16 ] }]
output [{ name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 16 ] },
        { name: "OUTPUT1" data_type: TYPE_INT32 dims: [ 16 ] }]
dynamic_batching { max_queue_delay_microseconds: 1000 }
"""


def build_repository(root: Path) -> Path:
    repo = root / "repo"
    write_config(repo / "simple", SIMPLE)
    make_add_sub_onnx(repo / "simple" / "1" / "model.onnx", dtype="INT32")
    write_config(repo / "simple_string", SIMPLE.replace('"simple"', '"simple_string"').replace("TYPE_INT32", "TYPE_STRING"))
    make_add_sub_onnx(repo / "simple_string" / "1" / "model.onnx", dtype="BYTES")
    write_config(
        repo / "classifier",
        'name: "classifier" platform: "onnxruntime_onnx" max_batch_size: 4 '
        'input [{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] }] '
        'output [{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] label_filename: "labels.txt" }]',
    )
    (repo / "classifier" / "labels.txt").write_text("cat\ndog\nbird\nfish\n")
    make_identity_onnx(repo / "classifier" / "1" / "model.onnx", dtype="FP32", dims=[4])
    # Two versions, both served.
    write_config(
        repo / "versioned",
        'name: "versioned" platform: "onnxruntime_onnx" max_batch_size: 4 '
        "version_policy { all { } } "
        'input [{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] }] '
        'output [{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] }]',
    )
    for v in (1, 2):
        make_identity_onnx(repo / "versioned" / str(v) / "model.onnx", dtype="FP32", dims=[4])
    return repo


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    repo = build_repository(tmp_path_factory.mktemp("grpc"))
    with ServerProcess(repo, args=("--model-control-mode=explicit", "--load-model=*")) as srv:
        yield srv


@pytest.fixture
def client(server: ServerProcess) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(server.grpc_url)


def simple_inputs(a: np.ndarray, b: np.ndarray, dtype: str = "INT32") -> list[grpcclient.InferInput]:
    i0 = grpcclient.InferInput("INPUT0", list(a.shape), dtype)
    i1 = grpcclient.InferInput("INPUT1", list(b.shape), dtype)
    i0.set_data_from_numpy(a)
    i1.set_data_from_numpy(b)
    return [i0, i1]


A = np.arange(16, dtype=np.int32).reshape(1, 16)
B = np.full((1, 16), 3, dtype=np.int32)


def test_health_and_metadata(client: grpcclient.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("simple")
    assert client.is_model_ready("versioned", "1") and client.is_model_ready("versioned", "2")
    assert not client.is_model_ready("versioned", "3")
    assert not client.is_model_ready("nope")
    meta = client.get_server_metadata(as_json=True)
    assert meta["name"] == "triton" and "model_repository" in meta["extensions"]
    m = client.get_model_metadata("simple", as_json=True)
    assert m["platform"] == "onnxruntime_onnx"
    assert m["inputs"][0] == {"name": "INPUT0", "datatype": "INT32", "shape": ["-1", "16"]}
    assert client.get_model_metadata("versioned", as_json=True)["versions"] == ["1", "2"]


def test_grpc_health_service(server: ServerProcess) -> None:
    with grpc.insecure_channel(server.grpc_url) as ch:
        resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
    assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_model_config(client: grpcclient.InferenceServerClient) -> None:
    cfg = client.get_model_config("simple", as_json=True)["config"]
    assert cfg["name"] == "simple" and cfg["max_batch_size"] == 8
    assert cfg["input"][0]["data_type"] == "TYPE_INT32"
    with pytest.raises(InferenceServerException, match="unknown model"):
        client.get_model_config("nope")


def test_sync_infer(client: grpcclient.InferenceServerClient) -> None:
    r = client.infer("simple", simple_inputs(A, B), request_id="req-7")
    np.testing.assert_array_equal(r.as_numpy("OUTPUT0"), A + B)
    np.testing.assert_array_equal(r.as_numpy("OUTPUT1"), A - B)
    resp = r.get_response()
    assert resp.id == "req-7" and resp.model_version == "1"


def test_requested_outputs_only(client: grpcclient.InferenceServerClient) -> None:
    r = client.infer("simple", simple_inputs(A, B), outputs=[grpcclient.InferRequestedOutput("OUTPUT1")])
    assert r.as_numpy("OUTPUT0") is None
    np.testing.assert_array_equal(r.as_numpy("OUTPUT1"), A - B)


def test_batched_request(client: grpcclient.InferenceServerClient) -> None:
    a = np.arange(64, dtype=np.int32).reshape(4, 16)
    r = client.infer("simple", simple_inputs(a, a))
    np.testing.assert_array_equal(r.as_numpy("OUTPUT0"), a * 2)


def test_bytes_model(client: grpcclient.InferenceServerClient) -> None:
    a = np.array([[str(i).encode() for i in range(16)]], dtype=np.object_)
    b = np.array([[b"1"] * 16], dtype=np.object_)
    r = client.infer("simple_string", simple_inputs(a, b, "BYTES"))
    assert [int(x) for x in r.as_numpy("OUTPUT0")[0]] == [i + 1 for i in range(16)]
    assert [int(x) for x in r.as_numpy("OUTPUT1")[0]] == [i - 1 for i in range(16)]


def test_async_infer_with_callback(client: grpcclient.InferenceServerClient) -> None:
    results: queue.Queue[Any] = queue.Queue()
    for i in range(8):
        a = np.full((1, 16), i, np.int32)
        client.async_infer("simple", simple_inputs(a, B), lambda result, error, i=i: results.put((i, result, error)))
    got = sorted((results.get(timeout=30) for _ in range(8)), key=lambda x: x[0])
    for i, r, e in got:
        assert e is None
        np.testing.assert_array_equal(r.as_numpy("OUTPUT0"), np.full((1, 16), i + 3))


def test_aio_client(server: ServerProcess) -> None:
    async def main() -> None:
        client = aiogrpcclient.InferenceServerClient(server.grpc_url)
        try:
            assert await client.is_server_ready()
            inputs = []
            for name, arr in (("INPUT0", A), ("INPUT1", B)):
                t = aiogrpcclient.InferInput(name, [1, 16], "INT32")
                t.set_data_from_numpy(arr)
                inputs.append(t)
            rs = await asyncio.gather(*[client.infer("simple", inputs) for _ in range(16)])
            for r in rs:
                np.testing.assert_array_equal(r.as_numpy("OUTPUT0"), A + B)
        finally:
            await client.close()

    asyncio.run(main())


def test_stream_infer(client: grpcclient.InferenceServerClient) -> None:
    results: queue.Queue[Any] = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        for i in range(5):
            a = np.full((1, 16), i, np.int32)
            client.async_stream_infer("simple", simple_inputs(a, B), request_id=str(i))
        got = {}
        for _ in range(5):
            r, e = results.get(timeout=30)
            assert e is None
            got[r.get_response().id] = r.as_numpy("OUTPUT0")
        for i in range(5):
            np.testing.assert_array_equal(got[str(i)], np.full((1, 16), i + 3))
        # An error in the stream arrives as that response's error; the stream goes on.
        client.async_stream_infer("nope", simple_inputs(A, B))
        r, e = results.get(timeout=30)
        assert e is not None and "unknown model" in str(e)
        client.async_stream_infer("simple", simple_inputs(A, B))
        r, e = results.get(timeout=30)
        assert e is None
    finally:
        client.stop_stream()


def test_statistics_match_what_was_sent(client: grpcclient.InferenceServerClient) -> None:
    def counts() -> tuple[int, int]:
        s = client.get_inference_statistics("versioned", "2", as_json=True)["model_stats"][0]
        return int(s.get("inference_count", 0)), int(s["inference_stats"]["success"].get("count", 0))

    before = counts()
    x = np.ones((3, 4), np.float32)
    t = grpcclient.InferInput("INPUT0", [3, 4], "FP32")
    t.set_data_from_numpy(x)
    for _ in range(5):
        client.infer("versioned", [t], model_version="2")
    client.infer("versioned", [t], model_version="1")
    after = counts()
    assert after[0] - before[0] == 15  # inferences count rows
    assert after[1] - before[1] == 5


def test_classification(client: grpcclient.InferenceServerClient) -> None:
    x = np.array([[0.1, 0.7, 0.05, 0.15]], np.float32)
    t = grpcclient.InferInput("INPUT0", [1, 4], "FP32")
    t.set_data_from_numpy(x)
    r = client.infer("classifier", [t], outputs=[grpcclient.InferRequestedOutput("OUTPUT0", class_count=2)])
    out = [s.decode() if isinstance(s, bytes) else s for s in r.as_numpy("OUTPUT0")[0]]
    assert out == ["0.700000:1:dog", "0.150000:3:fish"]


def test_typed_contents_with_our_stub(server: ServerProcess) -> None:
    req = pb.ModelInferRequest(model_name="simple")
    for name, arr in (("INPUT0", A), ("INPUT1", B)):
        t = req.inputs.add(name=name, datatype="INT32", shape=[1, 16])
        t.contents.int_contents.extend(arr.ravel().tolist())
    with grpc.insecure_channel(server.grpc_url) as ch:
        resp = pb_grpc.GRPCInferenceServiceStub(ch).ModelInfer(req)
    out = dict(zip([o.name for o in resp.outputs], resp.raw_output_contents))
    np.testing.assert_array_equal(np.frombuffer(out["OUTPUT0"], np.int32), (A + B).ravel())
    bad = pb.ModelInferRequest(model_name="simple")
    t = bad.inputs.add(name="INPUT0", datatype="INT32", shape=[1, 16])
    t.contents.int_contents.extend([1, 2])
    with grpc.insecure_channel(server.grpc_url) as ch, pytest.raises(grpc.RpcError) as info:
        pb_grpc.GRPCInferenceServiceStub(ch).ModelInfer(bad)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == (  # Triton 2.51's text
        "[request id: <id_unknown>] input byte size mismatch for input 'INPUT0' for model "
        "'simple'. Expected 64, got 8"
    )
    # Data in another field than the datatype's: Triton's text.
    del t.contents.int_contents[:]
    t.contents.fp32_contents.extend([1.0] * 16)
    with grpc.insecure_channel(server.grpc_url) as ch, pytest.raises(grpc.RpcError) as info:
        pb_grpc.GRPCInferenceServiceStub(ch).ModelInfer(bad)
    assert info.value.details() == (
        "unexpected explicit tensor data for input tensor 'INPUT0' for model 'simple' of type "
        "'FP32', expected datatype 'INT32'"
    )


@pytest.mark.parametrize(
    "model, version, inputs, code, text",
    [
        ("nope", "", lambda: simple_inputs(A, B), "NOT_FOUND", "Request for unknown model: 'nope' is not found"),
        ("simple", "9", lambda: simple_inputs(A, B), "NOT_FOUND", "'simple' version 9 is not found"),
        ("simple", "", lambda: simple_inputs(A.astype(np.float32), B.astype(np.float32), "FP32"),
         "INVALID_ARGUMENT", "inference input 'INPUT0' data-type is 'FP32', but model 'simple' expects 'INT32'"),
        ("simple", "", lambda: simple_inputs(A[:, :8].copy(), B[:, :8].copy()),
         "INVALID_ARGUMENT", "unexpected shape for input 'INPUT0' for model 'simple'. Expected [-1,16], got [1,8]"),
        ("simple", "", lambda: simple_inputs(np.zeros((9, 16), np.int32), np.zeros((9, 16), np.int32)),
         "INVALID_ARGUMENT", "inference request batch-size must be <= 8 for 'simple'"),
    ],
)  # fmt: skip
def test_error_paths(client: grpcclient.InferenceServerClient, model: str, version: str,
                     inputs: Any, code: str, text: str) -> None:  # fmt: skip
    with pytest.raises(InferenceServerException) as info:
        client.infer(model, inputs(), model_version=version)
    assert info.value.status() == f"StatusCode.{code}"
    assert text in info.value.message()


def test_repository_index_load_and_unload(client: grpcclient.InferenceServerClient) -> None:
    index = {(m["name"], m.get("version")): m for m in client.get_model_repository_index(as_json=True)["models"]}
    assert index[("simple", "1")]["state"] == "READY"
    client.unload_model("classifier")
    assert not client.is_model_ready("classifier")
    index = {m["name"]: m for m in client.get_model_repository_index(as_json=True)["models"]}
    assert index["classifier"]["state"] == "UNAVAILABLE"
    client.load_model("classifier")
    assert client.is_model_ready("classifier")
    # A load with a config override: max_batch_size 2 now.
    cfg = client.get_model_config("classifier", as_json=True)["config"]
    cfg["max_batch_size"] = 2
    cfg.get("dynamic_batching", {}).pop("preferred_batch_size", None)
    client.load_model("classifier", config=json.dumps(cfg))
    assert client.get_model_config("classifier", as_json=True)["config"]["max_batch_size"] == 2
    # Triton 2.51's codes and texts: load of an unknown model INTERNAL, unload of one succeeds,
    # statistics of an unknown model or version INVALID_ARGUMENT.
    with pytest.raises(InferenceServerException, match="failed to load 'nope'") as e:
        client.load_model("nope")
    assert e.value.status() == "StatusCode.INTERNAL"
    client.unload_model("nope")
    with pytest.raises(InferenceServerException) as e:
        client.get_inference_statistics("nope")
    assert (e.value.status(), e.value.message()) == (
        "StatusCode.INVALID_ARGUMENT", "requested model 'nope' is not available")  # fmt: skip
    with pytest.raises(InferenceServerException) as e:
        client.get_inference_statistics("classifier", "7")
    assert (e.value.status(), e.value.message()) == (
        "StatusCode.INVALID_ARGUMENT", "requested model version is not available for model 'classifier'")  # fmt: skip
    # No model named: every model's statistics, the version ignored (as Triton).
    every = client.get_inference_statistics("", "7", as_json=True)["model_stats"]
    assert {m["name"] for m in every} >= {"classifier", "simple"}
    with pytest.raises(InferenceServerException, match="invalid model name"):
        client.load_model("../simple")


def test_load_with_file_override(client: grpcclient.InferenceServerClient, tmp_path: Path) -> None:
    onnx_path = make_identity_onnx(tmp_path / "m.onnx", dtype="INT32", dims=[2])
    config = json.dumps({
        "name": "uploaded", "platform": "onnxruntime_onnx", "max_batch_size": 2,
        "input": [{"name": "INPUT0", "data_type": "TYPE_INT32", "dims": [2]}],
        "output": [{"name": "OUTPUT0", "data_type": "TYPE_INT32", "dims": [2]}],
    })  # fmt: skip
    client.load_model("uploaded", config=config, files={"file:1/model.onnx": onnx_path.read_bytes()})
    t = grpcclient.InferInput("INPUT0", [1, 2], "INT32")
    t.set_data_from_numpy(np.array([[5, 6]], np.int32))
    assert client.infer("uploaded", [t]).as_numpy("OUTPUT0").tolist() == [[5, 6]]
    client.unload_model("uploaded")


def test_cuda_shared_memory_answers_like_a_triton_without_gpus(
    client: grpcclient.InferenceServerClient,
) -> None:
    assert client.get_cuda_shared_memory_status(as_json=True).get("regions", {}) == {}
    with pytest.raises(InferenceServerException) as info:
        client.register_cuda_shared_memory("r", b"aGFuZGxl", 0, 64)  # base64, as tritonclient wants
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT"  # Triton 2.51 without GPUs
    assert info.value.message() == "failed to register shared memory region: invalid args"


def test_trace_and_log_settings(client: grpcclient.InferenceServerClient) -> None:
    settings = client.update_trace_settings(settings={"trace_rate": "5"}, as_json=True)
    assert settings["settings"]["trace_rate"]["value"] == ["5"]
    logs = client.update_log_settings({"log_verbose_level": 1}, as_json=True)
    assert logs["settings"]["log_verbose_level"]["uint32_param"] == 1


def test_triton_documentation_client_runs_unchanged(server: ServerProcess) -> None:
    proc = subprocess.run(
        [sys.executable, str(HERE / "clients" / "simple_grpc_infer_client.py"), "-u", server.grpc_url],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASS: infer" in proc.stdout
    assert "0 + 1 = 1" in proc.stdout


def test_restricted_protocol(tmp_path: Path) -> None:
    repo = build_repository(tmp_path)
    args = ("--grpc-restricted-protocol=model-repository,statistics:admin-key=secret",)
    with ServerProcess(repo, args=args) as srv:
        client = grpcclient.InferenceServerClient(srv.grpc_url)
        assert client.is_server_live()  # unrestricted group
        with pytest.raises(InferenceServerException) as info:
            client.get_model_repository_index()
        assert info.value.status() == "StatusCode.UNAVAILABLE"
        assert "expecting header 'admin-key'" in info.value.message()
        with pytest.raises(InferenceServerException):
            client.get_inference_statistics("simple", headers={"admin-key": "wrong"})
        assert client.get_inference_statistics("simple", headers={"admin-key": "secret"})
        assert client.get_model_repository_index(headers={"admin-key": "secret"})


def test_sequences_over_grpc_streaming() -> None:
    """Interleaved sequences (numeric and string IDs) streamed to the bundled accumulator."""
    repo = HERE.parent / "model_repository"
    with ServerProcess(repo, args=()) as srv:
        client = grpcclient.InferenceServerClient(srv.grpc_url)
        results: queue.Queue[Any] = queue.Queue()
        client.start_stream(callback=lambda result, error: results.put((result, error)))
        plans = {101: [1.0, 2.0, 3.0], "user-7": [10.0, 20.0, 30.0], 102: [5.0, 5.0, 5.0]}
        try:
            for step in range(3):
                for seq_id, values in plans.items():
                    x = grpcclient.InferInput("INPUT", [1, 1], "FP32")
                    x.set_data_from_numpy(np.array([[values[step]]], np.float32))
                    client.async_stream_infer(
                        "sequence_accumulator", [x], request_id=f"{seq_id}:{step}",
                        sequence_id=seq_id, sequence_start=step == 0, sequence_end=step == 2,
                    )  # fmt: skip
            got: dict[str, float] = {}
            for _ in range(9):
                result, error = results.get(timeout=30)
                assert error is None, error
                got[result.get_response().id] = float(result.as_numpy("OUTPUT")[0, 0])
        finally:
            client.stop_stream()
    for seq_id, values in plans.items():
        assert [got[f"{seq_id}:{s}"] for s in range(3)] == list(np.cumsum(values))


def test_validation_errors_carry_the_request_id(client: grpcclient.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as info:
        client.infer("simple", simple_inputs(A.astype(np.float32), B.astype(np.float32), "FP32"),
                     request_id="req-7")  # fmt: skip
    assert info.value.message() == (
        "[request id: req-7] inference input 'INPUT0' data-type is 'FP32', but model 'simple' "
        "expects 'INT32'"
    )


@pytest.mark.parametrize(
    "datatype, shape, raw, text",
    [
        ("INT32", [1, 16], b"\x00" * 32, "[request id: <id_unknown>] "
         "input byte size mismatch for input 'INPUT0' for model 'simple'. Expected 64, got 32"),
        # Triton reports a wrong shape before the size of the data that goes with it.
        ("INT32", [1, 8], b"\x00" * 64, "[request id: <id_unknown>] unexpected shape for input "
         "'INPUT0' for model 'simple'. Expected [-1,16], got [1,8]. NOTE: Setting a non-zero"),
        ("BYTES", [1, 16], b"\x05\x00\x00\x00ab",
         "input 'INPUT0' for model 'simple_string': BYTES tensor: malformed BYTES data"),
        ("FP99", [1, 16], b"", "[request id: <id_unknown>] inference input 'INPUT0' data-type is "
         "'<invalid>', but model 'simple' expects 'INT32'"),
    ],
)  # fmt: skip
def test_bad_raw_contents(server: ServerProcess, datatype: str, shape: list[int], raw: bytes,
                          text: str) -> None:  # fmt: skip
    model = "simple_string" if datatype == "BYTES" else "simple"
    req = pb.ModelInferRequest(model_name=model)
    req.inputs.add(name="INPUT0", datatype=datatype, shape=shape)
    req.inputs.add(name="INPUT1", datatype=datatype, shape=shape)
    req.raw_input_contents.extend([raw, raw])
    with grpc.insecure_channel(server.grpc_url) as ch, pytest.raises(grpc.RpcError) as info:
        pb_grpc.GRPCInferenceServiceStub(ch).ModelInfer(req)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert text in info.value.details()


def test_system_shared_memory_inference(client: grpcclient.InferenceServerClient) -> None:
    import tritonclient.utils.shared_memory as shm

    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.full((1, 16), 2, np.int32)
    nbytes = a.nbytes
    key = f"/tritonlite-test-{id(client)}"
    handle = shm.create_shared_memory_region("regs", key, nbytes * 4)
    try:
        shm.set_shared_memory_region(handle, [a, b])  # inputs at offsets 0 and 64
        client.unregister_system_shared_memory()
        client.register_system_shared_memory("regs", key, nbytes * 4)
        status = client.get_system_shared_memory_status(as_json=True)
        assert status["regions"]["regs"]["byte_size"] == str(nbytes * 4)
        inputs = [grpcclient.InferInput("INPUT0", [1, 16], "INT32"),
                  grpcclient.InferInput("INPUT1", [1, 16], "INT32")]  # fmt: skip
        inputs[0].set_shared_memory("regs", nbytes, offset=0)
        inputs[1].set_shared_memory("regs", nbytes, offset=nbytes)
        outputs = [grpcclient.InferRequestedOutput("OUTPUT0"), grpcclient.InferRequestedOutput("OUTPUT1")]
        outputs[0].set_shared_memory("regs", nbytes, offset=2 * nbytes)
        outputs[1].set_shared_memory("regs", nbytes, offset=3 * nbytes)
        result = client.infer("simple", inputs, outputs=outputs)
        # As Triton 2.51: no data in the response, one empty raw_output_contents entry per output.
        assert list(result.get_response().raw_output_contents) == [b"", b""]
        sum_ = shm.get_contents_as_numpy(handle, np.int32, [1, 16], offset=2 * nbytes)
        diff = shm.get_contents_as_numpy(handle, np.int32, [1, 16], offset=3 * nbytes)
        np.testing.assert_array_equal(sum_, a + b)
        np.testing.assert_array_equal(diff, a - b)
        # One output in shared memory, one in the response: raw_output_contents stays aligned
        # with outputs (perf_analyzer and tritonclient index one by the other).
        mixed = client.infer("simple", inputs, outputs=[outputs[0], grpcclient.InferRequestedOutput("OUTPUT1")])
        assert [o.name for o in mixed.get_response().outputs] == ["OUTPUT0", "OUTPUT1"]
        np.testing.assert_array_equal(mixed.as_numpy("OUTPUT1"), a - b)
        # Out of bounds: an offset past the registered region is INVALID_ARGUMENT, never a read.
        bad = grpcclient.InferInput("INPUT0", [1, 16], "INT32")
        bad.set_shared_memory("regs", nbytes, offset=4 * nbytes - 8)
        with pytest.raises(InferenceServerException) as info:
            client.infer("simple", [bad, inputs[1]])
        assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
        with pytest.raises(InferenceServerException):
            client.register_system_shared_memory("regs", key, nbytes)  # already registered
        with pytest.raises(InferenceServerException):
            client.register_system_shared_memory("other", "/no-such-key", 64)
        client.unregister_system_shared_memory("regs")
        assert client.get_system_shared_memory_status(as_json=True).get("regions", {}) == {}
    finally:
        shm.destroy_shared_memory_region(handle)


def test_request_parameters_reach_a_python_model_over_grpc_and_http(tmp_path: Path) -> None:
    """As Triton 2.51 (checked side by side): the request's own parameters reach
    request.parameters() as JSON; reserved ones don't; uint64 values and other 'triton_' keys
    are refused with Triton's texts."""
    import shutil

    import tritonclient.http as httpclient

    repo = tmp_path / "repo"
    shutil.copytree(HERE / "python_models" / "inspect_args", repo / "inspect_args")
    write_config(repo / "ens", 'name: "ens" platform: "ensemble" max_batch_size: 2 '
                 'input [{ name: "IN" data_type: TYPE_INT32 dims: [ 1 ] }] '
                 'output [{ name: "REQUEST" data_type: TYPE_STRING dims: [ 1 ] }] '
                 'ensemble_scheduling { step [{ model_name: "inspect_args" model_version: -1 '
                 'input_map { key: "IN" value: "IN" } output_map { key: "REQUEST" value: "REQUEST" } }] }')  # fmt: skip
    (repo / "ens" / "1").mkdir(exist_ok=True)
    x = np.array([[1]], np.int32)
    params = {"s": "abc", "n": 7, "ok": True}
    with ServerProcess(repo) as srv:
        g = grpcclient.InferenceServerClient(srv.grpc_url)
        gin = grpcclient.InferInput("IN", [1, 1], "INT32")
        gin.set_data_from_numpy(x)
        out = g.infer("inspect_args", [gin], parameters=params, priority=1, timeout=10**8,
                      outputs=[grpcclient.InferRequestedOutput("REQUEST")])  # fmt: skip
        assert json.loads(json.loads(out.as_numpy("REQUEST")[0, 0])["parameters"]) == params
        # An ensemble's steps get the request's parameters, as in Triton.
        out = g.infer("ens", [gin], parameters=params)
        assert json.loads(json.loads(out.as_numpy("REQUEST")[0, 0])["parameters"]) == params
        h = httpclient.InferenceServerClient(srv.http_url)
        hin = httpclient.InferInput("IN", [1, 1], "INT32")
        hin.set_data_from_numpy(x)
        out = h.infer("inspect_args", [hin], parameters={**params, "f": 1.5})
        assert json.loads(json.loads(out.as_numpy("REQUEST")[0, 0])["parameters"]) == {
            **params, "f": 1.5}  # fmt: skip
        # HTTP's own texts; generate hands every parameter over as it is, as Triton's does.
        import urllib.error
        import urllib.request

        def post(path: str, body: dict[str, Any]) -> tuple[int, Any]:
            url = f"http://{srv.http_url}/v2/models/inspect_args/{path}"
            try:
                with urllib.request.urlopen(url, data=json.dumps(body).encode()) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read())

        infer = {"inputs": [{"name": "IN", "datatype": "INT32", "shape": [1, 1], "data": [1]}]}
        assert post("infer", {**infer, "parameters": {"triton_x": "v"}}) == (400, {"error":
            "parameter keys starting with 'triton_' are reserved for Triton usage and should not "
            "be specified."})  # fmt: skip
        assert post("infer", {**infer, "parameters": {"l": [1]}}) == (400, {"error":
            "parameter 'l' has invalid type. It should be either 'int', 'bool', or 'string'."})  # fmt: skip
        status, body = post("generate", {"IN": [[1]], "parameters": {"timeout": 5, "triton_x": "v"}})
        assert status == 200 and json.loads(json.loads(body["REQUEST"])["parameters"]) == {
            "timeout": 5, "triton_x": "v"}  # fmt: skip
        assert post("generate", {"IN": [[1]], "parameters": {"l": [1]}}) == (400, {"error":
            "Converting keyword: 'parameters': parameter 'l' has invalid type. It should be "
            "either 'int', 'bool', or 'string'."})  # fmt: skip
        # A parameter string that isn't valid UTF-8: a clear 400, not an internal error.
        raw = json.dumps(infer).encode()[:-1] + b', "parameters": {"a": "\xff"}}'
        request = urllib.request.Request(f"http://{srv.http_url}/v2/models/inspect_args/infer",
                                         data=raw)  # fmt: skip
        with pytest.raises(urllib.error.HTTPError) as bad_text:
            urllib.request.urlopen(request)
        assert bad_text.value.code == 400
        req = pb.ModelInferRequest(model_name="inspect_args")
        req.inputs.add(name="IN", datatype="INT32", shape=[1, 1])
        req.raw_input_contents.append(x.tobytes())
        with grpc.insecure_channel(srv.grpc_url) as ch:
            stub = pb_grpc.GRPCInferenceServiceStub(ch)
            # Triton 2.51's refusals, also of the parameters it consumes.
            for key, set_value, text in (
                ("u", lambda p: setattr(p, "uint64_param", 3), "invalid value type for 'u' "
                 "parameter, expected int64_param, bool_param, or string_param."),
                ("triton_x", lambda p: setattr(p, "string_param", "v"), "parameter keys starting "
                 "with 'triton_' are reserved for Triton usage."),
                ("priority", lambda p: setattr(p, "string_param", "x"), "invalid value type for "
                 "'priority' parameter, expected int64_param or uint64_param."),
                ("priority", lambda p: setattr(p, "int64_param", -1),
                 "invalid value for 'priority', expected value >= 0."),
                ("timeout", lambda p: setattr(p, "uint64_param", 5),
                 "invalid value type for 'timeout' parameter, expected int64_param."),
                ("sequence_start", lambda p: setattr(p, "int64_param", 1),
                 "invalid value type for 'sequence_start' parameter, expected bool_param."),
                ("sequence_id", lambda p: setattr(p, "bool_param", True), "invalid value type "
                 "for 'sequence_id' parameter, expected int64_param or string_param."),
                ("triton_enable_empty_final_response", lambda p: setattr(p, "string_param", "x"),
                 "invalid value type for 'triton_enable_empty_final_response' parameter, "
                 "expected bool_param."),
            ):  # fmt: skip
                bad = pb.ModelInferRequest()
                bad.CopyFrom(req)
                set_value(bad.parameters[key])
                with pytest.raises(grpc.RpcError) as info:
                    stub.ModelInfer(bad)
                assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert info.value.details().startswith(text)
            # Over gRPC binary_data_output is the model's (only HTTP consumes it).
            passed = pb.ModelInferRequest()
            passed.CopyFrom(req)
            passed.parameters["binary_data_output"].bool_param = True
            resp = stub.ModelInfer(passed)
            seen = json.loads(resp.raw_output_contents[1][4:])["parameters"]
            assert json.loads(seen) == {"binary_data_output": True}


def test_decoupled_python_models_stream_over_grpc(tmp_path: Path) -> None:
    """Triton's decoupled repeat and square python models, streamed over ModelStreamInfer."""
    import shutil

    repo = tmp_path / "repo"
    for name in ("repeat", "square"):
        shutil.copytree(HERE / "python_models" / name, repo / name)
    with ServerProcess(repo) as srv:
        client = grpcclient.InferenceServerClient(srv.grpc_url)
        results: queue.Queue[Any] = queue.Queue()
        client.start_stream(callback=lambda result, error: results.put((result, error)))
        try:
            values = np.array([4, 8, 15, 16], np.int32)
            x = grpcclient.InferInput("IN", [4], "INT32")
            x.set_data_from_numpy(values)
            client.async_stream_infer("repeat", [x], request_id="r",
                                      enable_empty_final_response=True)  # fmt: skip
            got, final_seen = [], False
            while not final_seen:
                result, error = results.get(timeout=30)
                assert error is None, error
                resp = result.get_response()
                final_seen = resp.parameters["triton_final_response"].bool_param
                if result.as_numpy("OUT") is not None:
                    got.append((int(result.as_numpy("IDX")[0]), int(result.as_numpy("OUT")[0])))
            assert got == [(i, int(v)) for i, v in enumerate(values)]

            n = grpcclient.InferInput("IN", [1], "INT32")
            n.set_data_from_numpy(np.array([5], np.int32))
            client.async_stream_infer("square", [n])
            outs = [results.get(timeout=30) for _ in range(5)]
            assert all(e is None for _, e in outs)
            assert [int(r.as_numpy("OUT")[0]) for r, _ in outs] == [5] * 5
        finally:
            client.stop_stream()
