"""The HTTP/REST frontend end to end with the real tritonclient (sync, async_infer and aio).

One in-process Server (an explicit-control repository of ONNX models plus Python test backends
added with ``add_model``) is served by ``start_http`` on a free localhost port, its event loop
running in a background thread. Raw ``http.client`` requests check what tritonclient cannot
send: malformed bodies, status codes and Triton's error texts.
"""

from __future__ import annotations

import base64
import asyncio
import gzip
import http.client
import json
import logging
import os
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest
import tritonclient.http as httpclient
import tritonclient.http.aio as aiohttpclient
import tritonclient.utils.shared_memory as shm
from google.protobuf import text_format
from models import make_add_sub_onnx, make_identity_onnx
from tritonclient.utils import InferenceServerException
from tritonlite import Server, TritonError
from tritonlite._proto import model_config_pb2 as mc
from tritonlite.datatypes import DATATYPES
from tritonlite.frontends.http import (
    HttpApi,
    HttpFrontend,
    Reply,
    parse_restricted_apis,
    start_http,
)

pytestmark = pytest.mark.timeout(120)


def config(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())


class Fn:
    """A gathered-batch backend running ``fn(inputs) -> outputs``."""

    def __init__(self, fn: Callable[[dict[str, np.ndarray]], dict[str, Any]]) -> None:
        self.fn = fn

    def create_instance(self, index: int, kind: str, device_id: int) -> Fn:
        return self

    def execute(self, inputs: dict[str, np.ndarray], names: list[str]) -> dict[str, Any]:
        return self.fn(inputs)

    def close(self) -> None:
        pass


class PerRequest:
    """A per-request backend: ``answer(request)`` responds as it likes."""

    per_request_execution = True

    def __init__(self, answer: Callable[[Any], None]) -> None:
        self.answer = answer

    def create_instance(self, index: int, kind: str, device_id: int) -> PerRequest:
        return self

    def execute_requests(self, requests: list[Any]) -> None:
        for r in requests:
            self.answer(r)

    def close(self) -> None:
        pass


SIMPLE_IO = """
input [{ name: "INPUT0" data_type: TYPE_INT32 dims: [ 16 ] },
       { name: "INPUT1" data_type: TYPE_INT32 dims: [ 16 ] }]
output [{ name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 16 ] },
        { name: "OUTPUT1" data_type: TYPE_INT32 dims: [ 16 ] }]
"""


def _config_type(datatype: str) -> str:
    return "TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}"


def add_models(server: Server, recorded: list[dict[str, Any]]) -> None:
    server.add_model(
        config(f'name: "simple" max_batch_size: 8 {SIMPLE_IO}'),
        Fn(lambda i: {"OUTPUT0": i["INPUT0"] + i["INPUT1"], "OUTPUT1": i["INPUT0"] - i["INPUT1"]}),
    )
    for dt in DATATYPES:
        server.add_model(
            config(
                f'name: "identity_{dt}" max_batch_size: 0 '
                f'input [{{ name: "INPUT0" data_type: {_config_type(dt)} dims: [ -1 ] }}] '
                f'output [{{ name: "OUTPUT0" data_type: {_config_type(dt)} dims: [ -1 ] }}]'
            ),
            Fn(lambda i: {"OUTPUT0": i["INPUT0"]}),
        )
    server.add_model(
        config(
            'name: "int_scores" max_batch_size: 0 '
            'input [{ name: "INPUT0" data_type: TYPE_INT32 dims: [ 6 ] }] '
            'output [{ name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 6 ] }]'
        ),
        Fn(lambda i: {"OUTPUT0": i["INPUT0"]}),
    )

    def stream(r: Any) -> None:
        inputs = dict(r.inputs())
        text = inputs["text_input"].numpy()
        for i in range(int(inputs["count"].numpy()[0])):
            r.respond({"text_output": text, "index": np.array([i], np.int32)}, final=False)
        r.respond(final=True)

    server.add_model(
        config(
            'name: "decoupled" max_batch_size: 0 model_transaction_policy { decoupled: true } '
            'input [{ name: "text_input" data_type: TYPE_STRING dims: [ 1 ] }, '
            '{ name: "count" data_type: TYPE_INT32 dims: [ 1 ] }] '
            'output [{ name: "text_output" data_type: TYPE_STRING dims: [ 1 ] }, '
            '{ name: "index" data_type: TYPE_INT32 dims: [ 1 ] }]'
        ),
        PerRequest(stream),
    )

    def record(r: Any) -> None:
        recorded.append(
            {
                "id": r.id,
                "correlation_id": r.correlation_id,
                "correlation_id_str": r.correlation_id_str,
                "flags": r.flags,
                "priority": r.priority,
                "timeout_us": r.timeout_us,
            }
        )
        r.respond({"OUT": dict(r.inputs())["IN"].numpy().copy()})

    server.add_model(
        config(
            'name: "recorder" max_batch_size: 0 '
            'input [{ name: "IN" data_type: TYPE_INT32 dims: [ -1 ] }] '
            'output [{ name: "OUT" data_type: TYPE_INT32 dims: [ -1 ] }]'
        ),
        PerRequest(record),
    )

    def explode(inputs: dict[str, np.ndarray]) -> dict[str, Any]:
        raise RuntimeError("model exploded")

    server.add_model(
        config(
            'name: "failing" max_batch_size: 0 '
            'input [{ name: "IN" data_type: TYPE_INT32 dims: [ -1 ] }] '
            'output [{ name: "OUT" data_type: TYPE_INT32 dims: [ -1 ] }]'
        ),
        Fn(explode),
    )


CLASSIFIER = (
    'name: "classifier" platform: "onnxruntime_onnx" max_batch_size: 4 '
    'input [{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] }] '
    'output [{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] label_filename: "labels.txt" }]'
)
LOADABLE = (
    'name: "loadable" platform: "onnxruntime_onnx" max_batch_size: 4 '
    'input [{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] }] '
    'output [{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] }]'
)


def build_repository(root: Path) -> Path:
    repo = root / "repo"
    (repo / "onnx_simple").mkdir(parents=True)
    (repo / "onnx_simple" / "config.pbtxt").write_text(
        f'name: "onnx_simple" platform: "onnxruntime_onnx" max_batch_size: 8 {SIMPLE_IO}'
        "dynamic_batching { max_queue_delay_microseconds: 100 }"
    )
    make_add_sub_onnx(repo / "onnx_simple" / "1" / "model.onnx", "INT32")
    (repo / "classifier").mkdir()
    (repo / "classifier" / "config.pbtxt").write_text(CLASSIFIER)
    (repo / "classifier" / "labels.txt").write_text("cat\ndog\nbird\nfish\n")
    make_identity_onnx(repo / "classifier" / "1" / "model.onnx", "FP32", dims=[4])
    (repo / "loadable").mkdir()
    (repo / "loadable" / "config.pbtxt").write_text(LOADABLE)
    make_identity_onnx(repo / "loadable" / "1" / "model.onnx", "FP32", dims=[4])
    return repo


@dataclass
class Env:
    server: Server
    loop: asyncio.AbstractEventLoop
    frontend: HttpFrontend
    repo: Path
    recorded: list[dict[str, Any]]

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.frontend.port}"

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    repo = build_repository(tmp_path_factory.mktemp("http"))
    server = Server(repo, model_control_mode="explicit", load_models=["*"])
    recorded: list[dict[str, Any]] = []
    add_models(server, recorded)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="http-test-loop", daemon=True)
    thread.start()
    frontend = asyncio.run_coroutine_threadsafe(start_http(server, "127.0.0.1", 0), loop).result(30)
    try:
        yield Env(server, loop, frontend, repo, recorded)
    finally:
        asyncio.run_coroutine_threadsafe(frontend.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        server.close()
        loop.close()


@pytest.fixture
def client(env: Env) -> Iterator[httpclient.InferenceServerClient]:
    c = httpclient.InferenceServerClient(env.url, concurrency=4)
    yield c
    c.close()


@dataclass
class Raw:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error(self) -> str:
        return str(self.json()["error"])


def request(
    env: Env,
    method: str,
    path: str,
    body: bytes | str | Any = b"",
    headers: dict[str, str] | None = None,
) -> Raw:
    if not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    conn = http.client.HTTPConnection("127.0.0.1", env.frontend.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return Raw(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


def binary_request(
    header: dict[str, Any], tail: bytes, headers: dict[str, str] | None = None
) -> tuple[bytes, dict[str, str]]:
    head = json.dumps(header).encode()
    out = {
        "Inference-Header-Content-Length": str(len(head)),
        "Content-Type": "application/octet-stream",
    }
    out.update(headers or {})
    return head + tail, out


def split_binary(raw: Raw) -> tuple[dict[str, Any], bytes]:
    n = int(raw.headers["inference-header-content-length"])
    return json.loads(raw.body[:n]), raw.body[n:]


A = np.arange(16, dtype=np.int32).reshape(1, 16)
B = np.full((1, 16), 3, dtype=np.int32)


def simple_inputs(
    binary: bool = True, a: np.ndarray = A, b: np.ndarray = B
) -> list[httpclient.InferInput]:
    inputs = []
    for name, value in (("INPUT0", a), ("INPUT1", b)):
        i = httpclient.InferInput(name, list(value.shape), "INT32")
        i.set_data_from_numpy(value, binary_data=binary)
        inputs.append(i)
    return inputs


def json_input(name: str, datatype: str, shape: list[int], data: Any) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


SIMPLE_JSON = {
    "inputs": [
        json_input("INPUT0", "INT32", [1, 16], list(range(16))),
        json_input("INPUT1", "INT32", [1, 16], [1] * 16),
    ]
}


# ---- health, metadata, configuration ---------------------------------------------------------


def test_health_and_server_metadata(client: httpclient.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta["name"] == "triton"  # Triton's default --id
    for ext in ("binary_tensor_data", "classification", "system_shared_memory", "model_repository"):
        assert ext in meta["extensions"]


def test_model_ready_and_metadata(client: httpclient.InferenceServerClient, env: Env) -> None:
    assert client.is_model_ready("simple") and client.is_model_ready("simple", "1")
    assert not client.is_model_ready("simple", "2") and not client.is_model_ready("nope")
    assert request(env, "GET", "/v2/models/nope/ready").error == "Model version not ready"
    assert request(env, "GET", "/v2/models/simple/versions/0/ready").status == 400
    meta = client.get_model_metadata("simple")
    assert meta == {
        "name": "simple",
        "versions": ["1"],
        "platform": "",
        "inputs": [
            {"name": "INPUT0", "datatype": "INT32", "shape": [-1, 16]},
            {"name": "INPUT1", "datatype": "INT32", "shape": [-1, 16]},
        ],
        "outputs": [
            {"name": "OUTPUT0", "datatype": "INT32", "shape": [-1, 16]},
            {"name": "OUTPUT1", "datatype": "INT32", "shape": [-1, 16]},
        ],
    }
    assert client.get_model_metadata("onnx_simple", "1")["platform"] == "onnxruntime_onnx"


def test_model_config_prints_integers_as_numbers(client: httpclient.InferenceServerClient) -> None:
    cfg = client.get_model_config("onnx_simple")
    assert cfg["name"] == "onnx_simple" and cfg["max_batch_size"] == 8
    assert cfg["input"][0]["dims"] == [16] and cfg["input"][0]["data_type"] == "TYPE_INT32"
    # uint64 in the proto: protobuf's own JSON mapping would print "100".
    assert cfg["dynamic_batching"]["max_queue_delay_microseconds"] == 100
    # Fields without presence are printed, as Triton prints them.
    assert cfg["input"][0]["optional"] is False and cfg["input"][0]["format"] == "FORMAT_NONE"
    assert cfg["output"][0]["label_filename"] == ""
    labels = client.get_model_config("classifier")["output"][0]["label_filename"]
    assert labels == "labels.txt"


@pytest.mark.parametrize(
    "method, path, status, error",
    [
        ("GET", "/v2/models/nope", 404, "Request for unknown model: 'nope' is not found"),
        (
            "GET",
            "/v2/models/simple/versions/9",
            404,
            "Request for unknown model: 'simple' version 9 is not found",
        ),
        (
            "GET",
            "/v2/models/simple/versions/0",
            404,
            "Request for unknown model: 'simple' version 0 is not found",
        ),
        ("GET", "/v2/models/nope/config", 404, "Request for unknown model: 'nope' is not found"),
        ("GET", "/v2/models/simple/versions/abc", 404, "Not Found"),
        ("GET", "/v2/models/simple/versions/-1/ready", 404, "Not Found"),
        ("GET", "/v2/models/simple/", 404, "Not Found"),
        ("GET", "/v2/nothing", 404, "Not Found"),
        ("GET", "/nothing", 404, "Not Found"),
        ("POST", "/v2/health/live", 405, "Method Not Allowed"),
        ("GET", "/v2/models/simple/infer", 405, "Method Not Allowed"),
        ("PUT", "/v2/models/simple/infer", 405, "Method Not Allowed"),
        ("POST", "/v2/models/simple/ready", 405, "Method Not Allowed"),
        ("GET", "/v2/repository/index", 405, "Method Not Allowed"),
        ("POST", "/v2/models/simple/versions/1/trace/setting", 404, "Not Found"),
        (
            "GET",
            "/v2/models/simple/versions/99999999999999999999/ready",
            400,
            "failed to get model version from specified version string '99999999999999999999'",
        ),
    ],
)
def test_routes_and_status_codes(env: Env, method: str, path: str, status: int, error: str) -> None:
    r = request(env, method, path)
    assert r.status == status
    assert error in r.error
    assert r.headers["content-type"] == "application/json"


def test_health_endpoints_of_a_stopped_server() -> None:
    server = Server()
    api = HttpApi(server)
    server.close()

    async def get(path: str) -> Reply:
        async def no_body() -> bytes:
            return b""

        return await api.dispatch("GET", path, {}, no_body)

    assert asyncio.run(get("/v2/health/live")).status == 400
    assert asyncio.run(get("/v2/health/ready")).status == 400


# ---- inference: JSON and binary tensors -----------------------------------------------------

VALUES: dict[str, np.ndarray] = {
    "BOOL": np.array([True, False, True]),
    "UINT8": np.array([0, 7, 255], np.uint8),
    "UINT16": np.array([0, 7, 65535], np.uint16),
    "UINT32": np.array([0, 7, 2**32 - 1], np.uint32),
    "UINT64": np.array([0, 7, 2**64 - 1], np.uint64),
    "INT8": np.array([-128, 0, 127], np.int8),
    "INT16": np.array([-(2**15), 0, 2**15 - 1], np.int16),
    "INT32": np.array([-(2**31), 0, 2**31 - 1], np.int32),
    "INT64": np.array([-(2**63), 0, 2**63 - 1], np.int64),
    "FP16": np.array([0.5, -1.25, 65504], np.float16),
    "BF16": np.array([1.5, -2.0, 3.140625], ml_dtypes.bfloat16),
    "FP32": np.array([0.1, -1e30, 3.5], np.float32),
    "FP64": np.array([0.1, -1e300, np.pi], np.float64),
    "BYTES": np.array([b"abc", b"", "h\u00e9llo".encode()], dtype=np.object_),
}


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("datatype", DATATYPES)
def test_identity_every_datatype(
    client: httpclient.InferenceServerClient, env: Env, datatype: str, binary: bool
) -> None:
    value = VALUES[datatype]
    if datatype == "BF16" and not binary:
        # tritonclient refuses BF16 as JSON; tritonlite takes (and returns) it as numbers.
        body = {"inputs": [json_input("INPUT0", "BF16", [3], [1.5, -2.0, 3.140625])]}
        out = request(env, "POST", "/v2/models/identity_BF16/infer", body).json()["outputs"][0]
        assert out == {
            "name": "OUTPUT0",
            "datatype": "BF16",
            "shape": [3],
            "data": [1.5, -2.0, 3.140625],
        }
        return
    i = httpclient.InferInput("INPUT0", [3], datatype)
    i.set_data_from_numpy(value, binary_data=binary)
    result = client.infer(
        f"identity_{datatype}",
        [i],
        outputs=[httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary)],
    )
    got = result.as_numpy("OUTPUT0")
    output = result.get_output("OUTPUT0")
    assert output["datatype"] == datatype and output["shape"] == [3]
    assert ("data" in output) != binary
    if datatype == "BYTES":
        assert [
            bytes(v) if isinstance(v, bytes) else v.encode() for v in got.tolist()
        ] == value.tolist()
    else:
        assert got.dtype == value.dtype
        np.testing.assert_array_equal(got, value)


def test_binary_bytes_keep_non_utf8_content(
    client: httpclient.InferenceServerClient, env: Env
) -> None:
    value = np.array([b"\xff\xfe", b"ok"], dtype=np.object_)
    i = httpclient.InferInput("INPUT0", [2], "BYTES")
    i.set_data_from_numpy(value)
    got = client.infer("identity_BYTES", [i]).as_numpy("OUTPUT0")
    assert got.tolist() == value.tolist()
    # As JSON the bytes pass through unchanged, as Triton writes them.
    body, headers = binary_request(
        {
            "inputs": [
                {
                    "name": "INPUT0",
                    "datatype": "BYTES",
                    "shape": [1],
                    "parameters": {"binary_data_size": 6},
                }
            ]
        },
        b"\x02\x00\x00\x00\xff\xfe",
    )
    r = request(env, "POST", "/v2/models/identity_BYTES/infer", body, headers)
    assert b'"data":["\xff\xfe"]' in r.body


def test_lone_surrogates_in_json_strings(env: Env) -> None:
    text = '{"id":"\\ud800x","inputs":[{"name":"INPUT0","datatype":"BYTES","shape":[1],"data":["\\udfff"]}]}'
    r = request(env, "POST", "/v2/models/identity_BYTES/infer", text)
    assert (r.status, r.error) == (400, "Unable to parse 'id': the string is not valid UTF-8")
    text = '{"inputs":[{"name":"INPUT0","datatype":"BYTES","shape":[1],"data":["\\udfff"]}]}'
    r = request(env, "POST", "/v2/models/identity_BYTES/infer", text)
    assert r.status == 200  # a BYTES element keeps what it was sent, as raw bytes
    assert b'"data":["\xed\xbf\xbf"]' in r.body
    r = request(env, "POST", "/v2/models/identity_BYTES/infer", text.replace("INPUT0", "\\ud800"))
    assert (r.status, r.error) == (400, "Unable to parse 'name': the string is not valid UTF-8")


def test_json_nested_data_and_special_floats(env: Env) -> None:
    body = {"inputs": [json_input("INPUT0", "FP64", [3], [[1.5], ["NaN-not-allowed"]])]}
    assert request(env, "POST", "/v2/models/identity_FP64/infer", body).status == 400
    text = '{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[3],"data":[NaN,Infinity,[-Infinity]]}]}'
    r = request(env, "POST", "/v2/models/identity_FP32/infer", text)
    assert r.status == 200
    assert b'"data":[NaN,Infinity,-Infinity]' in r.body
    nested = {"inputs": [json_input("INPUT0", "INT32", [1, 16], [list(range(8)), list(range(8, 16))]),
                         json_input("INPUT1", "INT32", [1, 16], [[1] * 16])]}  # fmt: skip
    out = request(env, "POST", "/v2/models/simple/infer", nested).json()["outputs"]
    assert out[0]["data"] == [v + 1 for v in range(16)]


def test_infer_sync_async_and_request_id(client: httpclient.InferenceServerClient) -> None:
    for binary in (True, False):
        r = client.infer("simple", simple_inputs(binary), request_id="req-7")
        assert r.get_response()["id"] == "req-7"
        assert (
            r.get_response()["model_name"] == "simple" and r.get_response()["model_version"] == "1"
        )
        np.testing.assert_array_equal(r.as_numpy("OUTPUT0"), A + B)
        np.testing.assert_array_equal(r.as_numpy("OUTPUT1"), A - B)
    pending = [
        client.async_infer("onnx_simple", simple_inputs(b=np.full((1, 16), i, np.int32)))
        for i in range(8)
    ]
    for i, p in enumerate(pending):
        np.testing.assert_array_equal(p.get_result().as_numpy("OUTPUT0"), A + i)


def test_infer_with_the_aio_client(env: Env) -> None:
    async def main() -> list[Any]:
        async with aiohttpclient.InferenceServerClient(env.url) as c:
            assert await c.is_server_live()
            assert (await c.get_model_metadata("simple"))["name"] == "simple"
            results = await asyncio.gather(
                *[
                    c.infer("simple", simple_inputs(b=np.full((1, 16), i, np.int32)))
                    for i in range(16)
                ]
            )
            return [r.as_numpy("OUTPUT0") for r in results]

    for i, out in enumerate(asyncio.run(main())):
        np.testing.assert_array_equal(out, A + i)


def test_requested_outputs_and_binary_data_output(
    client: httpclient.InferenceServerClient, env: Env
) -> None:
    r = client.infer(
        "simple",
        simple_inputs(),
        outputs=[httpclient.InferRequestedOutput("OUTPUT1", binary_data=False)],
    )
    assert [o["name"] for o in r.get_response()["outputs"]] == ["OUTPUT1"]
    assert r.get_output("OUTPUT1")["data"] == (A - B).ravel().tolist()
    # Request-level binary_data_output; an output's own binary_data wins.
    body = dict(SIMPLE_JSON, parameters={"binary_data_output": True})
    header, tail = split_binary(request(env, "POST", "/v2/models/simple/infer", body))
    assert [o["parameters"] for o in header["outputs"]] == [{"binary_data_size": 64}] * 2
    assert np.frombuffer(tail[:64], np.int32).tolist() == [v + 1 for v in range(16)]
    body["outputs"] = [{"name": "OUTPUT0", "parameters": {"binary_data": False}}]
    r = request(env, "POST", "/v2/models/simple/infer", body)
    assert r.headers["content-type"] == "application/json"
    assert r.json()["outputs"][0]["data"] == [v + 1 for v in range(16)]


def test_raw_binary_request(env: Env) -> None:
    data = np.arange(5, dtype=np.int32).tobytes()
    r = request(
        env,
        "POST",
        "/v2/models/identity_INT32/infer",
        data,
        {"Inference-Header-Content-Length": "0"},
    )
    header, tail = split_binary(r)
    assert header["outputs"][0]["shape"] == [5]
    assert tail == data
    r = request(
        env, "POST", "/v2/models/simple/infer", data, {"Inference-Header-Content-Length": "0"}
    )
    assert r.status == 400
    assert "Raw request must only have 1 input (found 1) to be deduced but got 2 inputs" in r.error


def test_binary_inputs_are_views_of_the_request_body() -> None:
    """Zero copy: the tensor a backend sees points into the received body."""
    seen: list[int] = []

    def keep(r: Any) -> None:
        seen.append(dict(r.inputs())["IN"].data_ptr)
        r.respond({"OUT": np.zeros(4, np.int32)})

    server = Server()
    server.add_model(
        config(
            'name: "m" max_batch_size: 0 input [{ name: "IN" data_type: TYPE_INT32 dims: [ 4 ] }] '
            'output [{ name: "OUT" data_type: TYPE_INT32 dims: [ 4 ] }]'
        ),
        PerRequest(keep),
    )
    api = HttpApi(server)
    body, headers = binary_request(
        {
            "inputs": [
                {
                    "name": "IN",
                    "datatype": "INT32",
                    "shape": [4],
                    "parameters": {"binary_data_size": 16},
                }
            ]
        },
        np.arange(4, dtype=np.int32).tobytes(),
    )
    lowered = {k.lower(): v for k, v in headers.items()}

    async def read() -> bytes:
        return body

    reply = asyncio.run(api.dispatch("POST", "/v2/models/m/infer", lowered, read))
    server.close()
    assert reply.status == 200
    start = np.frombuffer(body, np.uint8).ctypes.data
    assert seen == [start + len(body) - 16]


# ---- request parameters -----------------------------------------------------------------------


def test_sequence_priority_timeout_parameters_reach_the_model(
    client: httpclient.InferenceServerClient, env: Env
) -> None:
    i = httpclient.InferInput("IN", [2], "INT32")
    i.set_data_from_numpy(np.array([1, 2], np.int32))
    env.recorded.clear()
    client.infer(
        "recorder",
        [i],
        request_id="r1",
        sequence_id=42,
        sequence_start=True,
        priority=3,
        timeout=5000,
    )
    client.infer("recorder", [i], sequence_id="corr-A", sequence_end=True)
    client.infer("recorder", [i], sequence_id=2**64 - 1, sequence_start=True, sequence_end=True)
    assert env.recorded == [
        {
            "id": "r1",
            "correlation_id": 42,
            "correlation_id_str": "",
            "flags": 1,
            "priority": 3,
            "timeout_us": 5000,
        },
        {
            "id": "",
            "correlation_id": 0,
            "correlation_id_str": "corr-A",
            "flags": 2,
            "priority": 0,
            "timeout_us": 0,
        },
        {
            "id": "",
            "correlation_id": 2**64 - 1,
            "correlation_id_str": "",
            "flags": 3,
            "priority": 0,
            "timeout_us": 0,
        },
    ]


# ---- compression ------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_requests_and_responses(
    client: httpclient.InferenceServerClient, algorithm: str
) -> None:
    for binary in (True, False):
        r = client.infer(
            "simple",
            simple_inputs(binary),
            request_compression_algorithm=algorithm,
            response_compression_algorithm=algorithm,
        )
        np.testing.assert_array_equal(r.as_numpy("OUTPUT0"), A + B)


def test_compression_on_the_wire(env: Env) -> None:
    raw = json.dumps(SIMPLE_JSON).encode()
    for coding, packed in (("gzip", gzip.compress(raw)), ("deflate", zlib.compress(raw))):
        r = request(env, "POST", "/v2/models/simple/infer", packed, {"Content-Encoding": coding})
        assert r.status == 200 and r.headers.get("content-encoding") is None
    r = request(
        env,
        "POST",
        "/v2/models/simple/infer",
        raw,
        {"Accept-Encoding": "br, gzip;q=0.5, deflate;q=0.4"},
    )
    assert r.headers["content-encoding"] == "gzip"
    assert json.loads(gzip.decompress(r.body))["outputs"][1]["data"] == [v - 1 for v in range(16)]
    r = request(env, "POST", "/v2/models/simple/infer", raw, {"Accept-Encoding": "deflate"})
    assert r.headers["content-encoding"] == "deflate" and json.loads(zlib.decompress(r.body))
    r = request(env, "POST", "/v2/models/simple/infer", raw, {"Accept-Encoding": "br, identity"})
    assert "content-encoding" not in r.headers and r.json()
    r = request(env, "POST", "/v2/models/simple/infer", raw, {"Content-Encoding": "br"})
    assert (r.status, r.error) == (501, "Unsupported compression type")
    assert r.headers["accept-encoding"] == "gzip, deflate"
    r = request(env, "POST", "/v2/models/simple/infer", raw, {"Content-Encoding": "gzip"})
    assert r.status == 400 and "failed to decompress the request body as 'gzip'" in r.error


# ---- classification ---------------------------------------------------------------------------


def test_classification_with_labels(client: httpclient.InferenceServerClient) -> None:
    i = httpclient.InferInput("INPUT0", [2, 4], "FP32")
    i.set_data_from_numpy(np.array([[0.1, 0.7, 0.2, 0.0], [1, 2, 3, 4]], np.float32))
    for binary in (True, False):
        out = httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary, class_count=2)
        r = client.infer("classifier", [i], outputs=[out])
        assert r.get_output("OUTPUT0")["datatype"] == "BYTES"
        got = [
            [v.decode() if isinstance(v, bytes) else v for v in row]
            for row in r.as_numpy("OUTPUT0").tolist()
        ]
        assert got == [
            ["0.700000:1:dog", "0.200000:2:bird"],
            ["4.000000:3:fish", "3.000000:2:bird"],
        ]
    out = httpclient.InferRequestedOutput("OUTPUT0", binary_data=False, class_count=10)
    r = client.infer("classifier", [i], outputs=[out])
    assert r.get_output("OUTPUT0")["shape"] == [2, 4]


def test_classification_of_integers_without_labels(
    client: httpclient.InferenceServerClient,
) -> None:
    i = httpclient.InferInput("INPUT0", [6], "INT32")
    i.set_data_from_numpy(np.array([5, -3, 9, 9, 0, 7], np.int32))
    out = httpclient.InferRequestedOutput("OUTPUT0", binary_data=False, class_count=3)
    r = client.infer("int_scores", [i], outputs=[out])
    assert r.get_output("OUTPUT0") == {
        "name": "OUTPUT0",
        "datatype": "BYTES",
        "shape": [3],
        "data": ["9:2", "9:3", "7:5"],  # ties keep the lower index first
    }


# ---- shared memory ----------------------------------------------------------------------------


IN_KEY = f"/tl_http_test_in_{os.getpid()}"
OUT_KEY = f"/tl_http_test_out_{os.getpid()}"


@pytest.fixture
def shm_regions(client: httpclient.InferenceServerClient) -> Iterator[tuple[Any, Any]]:
    client.unregister_system_shared_memory()
    inp = shm.create_shared_memory_region("in", IN_KEY, 128)
    out = shm.create_shared_memory_region("out", OUT_KEY, 256)
    client.register_system_shared_memory("in", IN_KEY, 128)
    client.register_system_shared_memory("out", OUT_KEY, 128, offset=64)
    try:
        yield inp, out
    finally:
        client.unregister_system_shared_memory()
        shm.destroy_shared_memory_region(inp)
        shm.destroy_shared_memory_region(out)


def test_shared_memory_inputs_and_outputs(
    client: httpclient.InferenceServerClient, shm_regions: Any
) -> None:
    inp, out = shm_regions
    shm.set_shared_memory_region(inp, [A, B])
    status = {r["name"]: r for r in client.get_system_shared_memory_status()}
    assert status["out"] == {
        "name": "out",
        "key": OUT_KEY,
        "offset": 64,
        "byte_size": 128,
    }
    assert client.get_system_shared_memory_status("in") == [
        {"name": "in", "key": IN_KEY, "offset": 0, "byte_size": 128}
    ]
    inputs = [
        httpclient.InferInput("INPUT0", [1, 16], "INT32"),
        httpclient.InferInput("INPUT1", [1, 16], "INT32"),
    ]
    inputs[0].set_shared_memory("in", 64)
    inputs[1].set_shared_memory("in", 64, offset=64)
    outputs = [
        httpclient.InferRequestedOutput("OUTPUT0"),
        httpclient.InferRequestedOutput("OUTPUT1"),
    ]
    outputs[0].set_shared_memory("out", 64)
    outputs[1].set_shared_memory("out", 64, offset=64)
    r = client.infer("onnx_simple", inputs, outputs=outputs)
    assert r.get_output("OUTPUT0") == {"name": "OUTPUT0", "datatype": "INT32", "shape": [1, 16]}
    # The "out" region starts 64 bytes into its shm object.
    got0 = shm.get_contents_as_numpy(out, np.int32, [1, 16], offset=64)
    got1 = shm.get_contents_as_numpy(out, np.int32, [1, 16], offset=128)
    np.testing.assert_array_equal(got0, A + B)
    np.testing.assert_array_equal(got1, A - B)
    # Mixed: a shared-memory input and a JSON input, JSON output.
    inputs[1] = httpclient.InferInput("INPUT1", [1, 16], "INT32")
    inputs[1].set_data_from_numpy(B, binary_data=False)
    r = client.infer("simple", inputs)
    np.testing.assert_array_equal(r.as_numpy("OUTPUT0"), A + B)
    client.unregister_system_shared_memory("in")
    assert [r["name"] for r in client.get_system_shared_memory_status()] == ["out"]


def test_shared_memory_errors(
    client: httpclient.InferenceServerClient, env: Env, shm_regions: Any
) -> None:
    with pytest.raises(InferenceServerException) as e:
        client.register_system_shared_memory("in", IN_KEY, 64)
    assert (e.value.status(), e.value.message()) == (
        "400",
        "shared memory region 'in' already in manager",
    )
    with pytest.raises(InferenceServerException) as e:
        client.register_system_shared_memory("x", "/tl_http_no_such_key", 64)
    assert e.value.status() == "500"  # Triton's code and text
    assert e.value.message() == "Unable to open shared memory region: '/tl_http_no_such_key'"
    with pytest.raises(InferenceServerException, match="invalid args") as e:
        client.register_system_shared_memory("x", IN_KEY, 64, offset=100)
    assert e.value.status() == "400"
    with pytest.raises(InferenceServerException) as e:
        client.get_system_shared_memory_status("nope")
    assert e.value.status() == "404"
    assert e.value.message() == "Unable to find system shared memory region: 'nope'"
    r = request(env, "POST", "/v2/systemsharedmemory/region/y/register", {"key": IN_KEY})
    assert (r.status, r.error) == (400, "Shared memory register request has no 'byte_size' field")
    r = request(
        env,
        "POST",
        "/v2/systemsharedmemory/region/y/register",
        {"key": "/../etc/passwd", "byte_size": 4},
    )
    assert r.status == 500 and "Unable to open shared memory region" in r.error

    def infer(inputs: list[dict[str, Any]], outputs: list[dict[str, Any]] | None = None) -> Raw:
        body: dict[str, Any] = {"inputs": inputs}
        if outputs is not None:
            body["outputs"] = outputs
        return request(env, "POST", "/v2/models/simple/infer", body)

    def shm_input(name: str, region: str, offset: int, size: int) -> dict[str, Any]:
        params = {
            "shared_memory_region": region,
            "shared_memory_offset": offset,
            "shared_memory_byte_size": size,
        }
        return {"name": name, "datatype": "INT32", "shape": [1, 16], "parameters": params}

    good = shm_input("INPUT1", "in", 64, 64)
    r = infer([shm_input("INPUT0", "nope", 0, 64), good])
    assert (r.status, r.error) == (404, "Unable to find shared memory region: 'nope'")
    r = infer([shm_input("INPUT0", "in", 100, 64), good])
    assert (
        r.status == 400 and "Invalid offset + byte size for shared memory region: 'in'" in r.error
    )
    r = infer([shm_input("INPUT0", "in", 200, 64), good])
    assert r.status == 400 and "Invalid offset for shared memory region: 'in'" in r.error
    r = infer([shm_input("INPUT0", "in", 0, 60), good])
    assert r.status == 400
    assert (
        "input byte size mismatch for input 'INPUT0' for model 'simple'. Expected 64, got 60"
        in r.error
    )
    two = [shm_input("INPUT0", "in", 0, 64), good]
    r = infer(
        two,
        [
            {
                "name": "OUTPUT0",
                "parameters": {"shared_memory_region": "out", "shared_memory_byte_size": 32},
            }
        ],
    )
    assert r.status == 400
    assert (
        "shared memory size specified with the request for output 'OUTPUT0' (32 bytes) should be at "
        "least 64 bytes to hold the results" in r.error
    )
    r = infer(
        two,
        [
            {
                "name": "OUTPUT0",
                "parameters": {"shared_memory_region": "zz", "shared_memory_byte_size": 64},
            }
        ],
    )
    assert (r.status, r.error) == (404, "Unable to find shared memory region: 'zz'")
    r = infer(
        two,
        [{"name": "OUTPUT0", "parameters": {"shared_memory_region": "out", "binary_data": False}}],
    )
    assert r.status == 200
    r = infer(
        two,
        [{"name": "OUTPUT0", "parameters": {"shared_memory_region": "out", "binary_data": True}}],
    )
    assert (r.status, r.error) == (
        400,
        "Output can't set both 'shared_memory_region' and 'binary_data'",
    )
    r = infer(
        two,
        [{"name": "OUTPUT0", "parameters": {"shared_memory_region": "out", "classification": 1}}],
    )
    assert (r.status, r.error) == (
        400,
        "Output can't set both 'shared_memory_region' and 'classification'",
    )


def test_cuda_shared_memory_answers_like_a_build_without_gpus(
    client: httpclient.InferenceServerClient, env: Env
) -> None:
    assert client.get_cuda_shared_memory_status() == []
    r = request(env, "GET", "/v2/cudasharedmemory/region/x/status")
    assert (r.status, r.error) == (404, "Unable to find cuda shared memory region: 'x'")
    # Triton 2.51's answers (checked against it): a handle that is not 64 bytes, then any
    # registration on a server without GPUs; missing fields are named.
    body = {"raw_handle": {"b64": "AAAA"}, "device_id": 0, "byte_size": 64}
    r = request(env, "POST", "/v2/cudasharedmemory/region/c1/register", body)
    assert (r.status, r.error) == (
        400,
        "'raw_handle' must be a valid base64 encoded cudaIpcMemHandle_t",
    )
    body["raw_handle"] = {"b64": base64.b64encode(bytes(64)).decode()}
    r = request(env, "POST", "/v2/cudasharedmemory/region/c1/register", body)
    assert (r.status, r.error) == (400, "failed to register shared memory region: invalid args")
    r = request(env, "POST", "/v2/cudasharedmemory/region/c1/register", {"device_id": 0})
    assert (r.status, r.error) == (400, "Shared memory register request has no 'raw_handle' field")
    del body["byte_size"]
    r = request(env, "POST", "/v2/cudasharedmemory/region/c1/register", body)
    assert (r.status, r.error) == (400, "Shared memory register request has no 'byte_size' field")
    client.unregister_cuda_shared_memory()
    client.unregister_cuda_shared_memory("c1")


# ---- model repository ---------------------------------------------------------------------------


def test_repository_index_unload_and_load(
    client: httpclient.InferenceServerClient, env: Env
) -> None:
    index = {m["name"]: m for m in client.get_model_repository_index()}
    assert index["loadable"] == {"name": "loadable", "version": "1", "state": "READY"}
    client.unload_model("loadable")
    assert not client.is_model_ready("loadable")
    index = {m["name"]: m for m in client.get_model_repository_index()}
    assert index["loadable"]["state"] == "UNAVAILABLE" and index["loadable"]["reason"] == "unloaded"
    ready = request(env, "POST", "/v2/repository/index", {"ready": True}).json()
    assert "loadable" not in [m["name"] for m in ready]
    client.load_model("loadable")
    assert client.is_model_ready("loadable")


def test_load_with_config_and_file_overrides(
    client: httpclient.InferenceServerClient, env: Env, tmp_path: Path
) -> None:
    model = make_identity_onnx(tmp_path / "model.onnx", "FP32", dims=[3])
    cfg = json.dumps(
        {
            "name": "uploaded",
            "platform": "onnxruntime_onnx",
            "max_batch_size": 2,
            "input": [{"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [3]}],
            "output": [{"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [3]}],
        }
    )
    client.load_model("uploaded", config=cfg, files={"file:1/model.onnx": model.read_bytes()})
    assert client.is_model_ready("uploaded")
    i = httpclient.InferInput("INPUT0", [1, 3], "FP32")
    i.set_data_from_numpy(np.array([[1, 2, 3]], np.float32))
    np.testing.assert_array_equal(client.infer("uploaded", [i]).as_numpy("OUTPUT0"), [[1, 2, 3]])
    client.unload_model("uploaded")
    r = request(env, "POST", "/v2/repository/models/uploaded/load",
                {"parameters": {"config": cfg, "file:1/model.onnx": "!!not base64"}})  # fmt: skip
    assert r.status == 400 and "is not valid base64" in r.error
    r = request(env, "POST", "/v2/repository/models/uploaded/load", {"parameters": {"config": 5}})
    assert (r.status, r.error) == (
        400,
        "Unable to parse 'config': attempt to access JSON non-string as string",
    )


def test_repository_errors(client: httpclient.InferenceServerClient, env: Env) -> None:
    with pytest.raises(InferenceServerException, match="failed to load 'nope'") as e:
        client.load_model("nope")
    assert e.value.status() == "500"  # as Triton 2.51
    client.unload_model("nope")  # Triton: unloading a model that isn't there succeeds
    r = request(env, "POST", "/v2/repository/models/a%2Fb/load")
    assert r.status == 400 and "invalid model name 'a/b'" in r.error
    r = request(env, "POST", "/v2/repository/index", {"ready": "yes"})
    assert (r.status, r.error) == (
        400,
        "Unable to parse 'ready': attempt to access JSON non-boolean as boolean",
    )
    r = request(env, "POST", "/v2/repository/index", "{bad")
    assert r.status == 400 and r.error.startswith("failed to parse the request JSON buffer")


# ---- statistics -------------------------------------------------------------------------------


def test_statistics(client: httpclient.InferenceServerClient, env: Env) -> None:
    before = client.get_inference_statistics("onnx_simple")["model_stats"][0]
    for _ in range(3):
        client.infer("onnx_simple", simple_inputs())
    stats = client.get_inference_statistics("onnx_simple", "1")["model_stats"]
    assert len(stats) == 1
    s = stats[0]
    assert list(s) == [
        "name", "version", "last_inference", "inference_count", "execution_count",
        "inference_stats", "response_stats", "batch_stats", "memory_usage",
    ]  # fmt: skip
    assert s["name"] == "onnx_simple" and s["version"] == "1"
    assert (
        s["inference_stats"]["success"]["count"]
        == before["inference_stats"]["success"]["count"] + 3
    )
    assert s["inference_count"] == before["inference_count"] + 3
    assert isinstance(s["inference_stats"]["success"]["ns"], int)
    everything = client.get_inference_statistics()["model_stats"]
    assert {"simple", "onnx_simple", "decoupled"} <= {m["name"] for m in everything}
    raw = request(env, "GET", "/v2/models/stats").json()["model_stats"]
    assert [m["name"] for m in raw] == [m["name"] for m in everything]
    r = request(env, "GET", "/v2/models/nope/stats")
    assert (r.status, r.error) == (400, "requested model 'nope' is not available")
    r = request(env, "GET", "/v2/models/simple/versions/3/stats")
    assert (r.status, r.error) == (
        400,
        "requested model version is not available for model 'simple'",
    )


# ---- generate -------------------------------------------------------------------------------------


def sse_events(body: bytes) -> list[Any]:
    assert body.endswith(b"\n\n") or body == b""
    return [json.loads(chunk[len(b"data: ") :]) for chunk in body.split(b"\n\n") if chunk]


def test_generate_and_generate_stream(env: Env) -> None:
    r = request(
        env,
        "POST",
        "/v2/models/decoupled/generate",
        {"text_input": "hello", "count": 1, "id": "g1"},
    )
    assert r.status == 200 and r.headers["content-type"] == "application/json"
    assert r.json() == {
        "id": "g1",
        "index": 0,
        "model_name": "decoupled",
        "model_version": "1",
        "text_output": "hello",
    }
    r = request(
        env, "POST", "/v2/models/decoupled/generate_stream", {"text_input": ["hi"], "count": [3]}
    )
    assert r.status == 200 and r.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert sse_events(r.body) == [
        {"index": i, "model_name": "decoupled", "model_version": "1", "text_output": "hi"}
        for i in range(3)
    ]
    r = request(
        env, "POST", "/v2/models/decoupled/generate_stream", {"text_input": "hi", "count": 0}
    )
    assert (r.status, r.body) == (200, b"")
    # A model that is not decoupled answers once; outputs of more than one element are lists.
    r = request(
        env, "POST", "/v2/models/simple/generate", {"INPUT0": list(range(16)), "INPUT1": [1] * 16}
    )
    assert r.json() == {
        "OUTPUT0": [v + 1 for v in range(16)],
        "OUTPUT1": [v - 1 for v in range(16)],
        "model_name": "simple",
        "model_version": "1",
    }
    events = sse_events(request(env, "POST", "/v2/models/simple/generate_stream",
                                {"INPUT0": list(range(16)), "INPUT1": [1] * 16}).body)  # fmt: skip
    assert len(events) == 1 and events[0]["OUTPUT0"][0] == 1


@pytest.mark.parametrize(
    "path, body, status, error",
    [
        ("/v2/models/decoupled/generate", {"text_input": "hello", "count": 3}, 400,
         ("generate expects model to produce exactly 1 response, use generate stream for model "
          "that generates various number of responses")),
        ("/v2/models/decoupled/generate", {"text_input": "hello"}, 400,
         "expected 2 inputs but got 1 inputs for model 'decoupled'"),
        ("/v2/models/decoupled/generate_stream", {"text_input": "hello"}, 400,
         "expected 2 inputs but got 1 inputs for model 'decoupled'"),
        ("/v2/models/decoupled/generate", {"text_input": 5, "count": 1}, 400,
         "Unable to parse 'data' of input 'text_input'"),
        ("/v2/models/decoupled/generate", {"text_input": "a", "count": 1.5}, 400,
         "Unable to parse 'data' of input 'count'"),
        ("/v2/models/simple/generate", {"INPUT0": [1, 2, 3], "INPUT1": [1] * 16}, 400,
         "The schema can not convert input 'INPUT0' to tensor with proper shape"),
        ("/v2/models/nope/generate", {}, 404, "Request for unknown model: 'nope' is not found"),
        ("/v2/models/decoupled/generate", [], 400, "generate request must be a JSON object"),
        ("/v2/models/decoupled/generate", "{bad", 400, "failed to parse the request JSON buffer"),
    ],
)  # fmt: skip
def test_generate_errors(env: Env, path: str, body: Any, status: int, error: str) -> None:
    r = request(env, "POST", path, body)
    assert r.status == status
    assert error in r.error


def test_generate_stream_reports_a_model_error_as_an_event(env: Env) -> None:
    r = request(env, "POST", "/v2/models/failing/generate_stream", {"IN": [1, 2]})
    assert r.status == 500
    events = sse_events(r.body)
    assert len(events) == 1 and "model exploded" in events[0]["error"]


# ---- trace and logging --------------------------------------------------------------------------


def test_trace_settings(client: httpclient.InferenceServerClient, env: Env) -> None:
    base = client.get_trace_settings()
    assert base == {
        "trace_level": ["OFF"], "trace_rate": "1000", "trace_count": "-1", "log_frequency": "0",
        "trace_file": "", "trace_mode": "triton",
    }  # fmt: skip
    assert client.update_trace_settings("simple", {"trace_rate": "7"})["trace_rate"] == "7"
    assert client.get_trace_settings("simple")["trace_rate"] == "7"
    assert client.get_trace_settings()["trace_rate"] == "1000"
    assert client.update_trace_settings("simple", {"trace_rate": None})["trace_rate"] == "1000"
    updated = client.update_trace_settings(settings={"trace_count": "5"})
    assert updated["trace_level"] == ["OFF"] and updated["trace_count"] == "5"
    client.update_trace_settings(settings={"trace_count": None})
    assert client.get_trace_settings() == base
    for settings, status, error in [
        ({"trace_rate": "abc"}, 400, "Unable to parse 'trace_rate', got: abc"),
        (
            {"trace_count": "-5"},
            400,
            "Unable to parse 'trace_count'. Expecting value >= -1, got:-5",
        ),
        ({"trace_rate": 5}, 500, "attempt to access JSON non-string as string"),  # as Triton
        (
            {"trace_level": ["TIMESTAMPS"]},  # no --trace-config triton,file=...
            400,
            "Attempting to set invalid trace setting :trace file name is not given",
        ),
        (
            {"trace_file": "/tmp/x"},
            501,
            "trace file location can not be updated through network protocol",
        ),
    ]:
        r = request(env, "POST", "/v2/trace/setting", settings)
        assert (r.status, r.error) == (status, error)
    # Triton ignores level names it does not know.
    assert client.update_trace_settings(settings={"trace_level": ["BOGUS"]}) == base
    r = request(env, "GET", "/v2/models/nope/trace/setting")
    assert (r.status, r.error) == (400, "Request for unknown model : nope")


def test_log_settings(client: httpclient.InferenceServerClient, env: Env) -> None:
    logger = logging.getLogger("tritonlite")
    level = logger.level
    try:
        _check_log_settings(client, env)
    finally:
        logger.setLevel(level)  # the settings drive the tritonlite logger's level


def _check_log_settings(client: httpclient.InferenceServerClient, env: Env) -> None:
    base = client.get_log_settings()
    assert base == {
        "log_file": "", "log_info": True, "log_warning": True, "log_error": True,
        "log_verbose_level": 0, "log_format": "default",
    }  # fmt: skip
    updated = client.update_log_settings({"log_verbose_level": 1, "log_format": "ISO8601"})
    assert updated["log_verbose_level"] == 1 and updated["log_format"] == "ISO8601"
    client.update_log_settings({"log_verbose_level": 0, "log_format": "default"})
    assert client.get_log_settings() == base
    for settings, status, error in [
        ({"log_format": "bad"}, 400, "invalid argument for --log_format, got: bad"),
        (
            {"log_info": "x"},
            400,
            "Unable to parse 'log_info': attempt to access JSON non-boolean as boolean",
        ),
        ({"log_verbose_level": -1}, 400, "Unable to parse 'log_verbose_level'"),
        (
            {"log_file": "/tmp/x.log"},
            501,
            "log file location can not be updated through network protocol",
        ),
    ]:
        r = request(env, "POST", "/v2/logging", settings)
        assert r.status == status and error in r.error
    assert client.get_log_settings() == base


# ---- inference errors ---------------------------------------------------------------------------


def _inputs(*specs: dict[str, Any]) -> dict[str, Any]:
    return {"inputs": list(specs)}


IN0 = json_input("INPUT0", "INT32", [1, 16], list(range(16)))
IN1 = json_input("INPUT1", "INT32", [1, 16], [1] * 16)


@pytest.mark.parametrize(
    "model, body, status, error",
    [
        ("nope", _inputs(IN0), 404, "Request for unknown model: 'nope' is not found"),
        ("simple", "{bad json", 400, "failed to parse the request JSON buffer"),
        ("simple", [], 400, "Unable to parse 'inputs': attempt to access non-existing object member 'inputs'"),
        ("simple", {"inputs": {}}, 400, "Unable to parse 'inputs': attempt to access JSON non-array as array"),
        ("simple", _inputs(IN0), 400,
         ("expected 2 inputs but got 1 inputs for model 'simple'. Got input(s) ['INPUT0'], but "
          "missing required input(s) ['INPUT1']. Please provide all required input(s).")),
        ("simple", _inputs(IN0, json_input("INPUT1", "FP32", [1, 16], [1] * 16)), 400,
         "inference input 'INPUT1' data-type is 'FP32', but model 'simple' expects 'INT32'"),
        ("simple", _inputs(IN0, json_input("INPUT1", "INT32", [1, 8], [1] * 8)), 400,
         "unexpected shape for input 'INPUT1' for model 'simple'. Expected [-1,16], got [1,8]"),
        ("simple", _inputs(IN0, json_input("INPUT1", "INT32", [1, 16], [1] * 15)), 400,
         "Unable to parse 'data' of input 'INPUT1': Shape does not match true shape of 'data' field"),
        ("simple", _inputs(IN0, json_input("INPUT1", "INT32", [1, 16], [1.5] * 16)), 400,
         "attempt to access JSON non-signed-integer as signed-integer"),
        ("simple", _inputs(IN0, json_input("INPUT1", "INT32", [1, 16], ["1"] * 16)), 400,
         "attempt to access JSON non-signed-integer as signed-integer"),
        ("simple", _inputs(IN0, json_input("INPUT1", "INT32", [1, 16], 5)), 400,
         "Unable to parse 'data' of input 'INPUT1': attempt to access JSON non-array as array"),
        ("identity_INT8", _inputs(json_input("INPUT0", "INT8", [1], [300])), 400,
         "value out of range for INT8 [-128, 127]"),
        ("identity_UINT8", _inputs(json_input("INPUT0", "UINT8", [1], [-1])), 400, "out of range"),
        ("identity_BOOL", _inputs(json_input("INPUT0", "BOOL", [1], [1])), 400,
         "attempt to access JSON non-boolean as boolean"),
        ("identity_BYTES", _inputs(json_input("INPUT0", "BYTES", [2], ["a", 5])), 400,
         "attempt to access JSON non-string as string"),
        ("identity_FP32", _inputs(json_input("INPUT0", "FP32", [1], [True])), 400,
         "attempt to access JSON non-number as number"),
        ("simple", _inputs(IN0, {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16]}), 400,
         ("Input must set only one of the following fields: 'data', 'binary_data_size' in "
          "'parameters', 'shared_memory_region' in 'parameters'. But no field is set")),
        ("simple", _inputs(IN0, dict(IN1, parameters={"binary_data_size": 64})), 400,
         "But set 'data' 'binary_data_size'"),
        ("simple", _inputs(dict(IN0, datatype="XX"), IN1), 400, "invalid datatype for input INPUT0"),
        ("simple", _inputs({"datatype": "INT32", "shape": [1], "data": [1]}), 400,
         "Unable to parse 'name': attempt to access non-existing object member 'name'"),
        ("simple", _inputs({"name": "INPUT0", "shape": [1], "data": [1]}), 400,
         "Unable to parse 'datatype': attempt to access non-existing object member 'datatype'"),
        ("simple", _inputs({"name": "INPUT0", "datatype": "INT32", "data": [1]}), 400,
         "Unable to parse 'shape': attempt to access non-existing object member 'shape'"),
        ("simple", _inputs(dict(IN0, shape=[1, -16])), 400,
         "Unable to parse 'shape': attempt to access JSON non-unsigned-integer as unsigned-integer"),
        ("simple", _inputs(dict(IN0, shape="x")), 400, "Unable to parse 'shape': attempt to access JSON non-array as array"),
        ("simple", dict(_inputs(IN0, IN1), outputs=[{"name": "NOPE"}]), 400,
         "unexpected inference output 'NOPE' for model 'simple'"),
        ("simple", dict(_inputs(IN0, IN1), outputs=[{"parameters": {}}]), 400,
         "Unable to parse 'name': attempt to access non-existing object member 'name'"),
        ("simple", dict(_inputs(IN0, IN1), outputs=[{"name": "OUTPUT0", "parameters": {"binary_data": "yes"}}]), 400,
         "Unable to parse 'binary_data': attempt to access JSON non-boolean as boolean"),
        ("simple", dict(_inputs(IN0, IN1), id=5), 400, "Unable to parse 'id': attempt to access JSON non-string as string"),
        ("simple", dict(_inputs(IN0, IN1), parameters={"priority": "a"}), 400,
         "Unable to parse 'priority': attempt to access JSON non-unsigned-integer as unsigned-integer"),
        ("simple", dict(_inputs(IN0, IN1), parameters={"sequence_id": 1.5}), 400,
         "Unable to parse 'sequence_id': expected an unsigned integer or a string"),
        ("simple", dict(_inputs(IN0, IN1), parameters={"sequence_start": 1}), 400,
         "Unable to parse 'sequence_start': attempt to access JSON non-boolean as boolean"),
        ("simple", _inputs(IN0, IN0, IN1), 400, "[request id: <id_unknown>] input 'INPUT0' already exists in request"),
        ("simple", dict(_inputs(IN0, IN1), outputs=[{"name": "OUTPUT0", "parameters": {"classification": -1}}]),
         400, "Unable to set 'classification': attempt to access JSON non-unsigned-integer as unsigned-integer"),
        ("identity_BYTES", dict(_inputs(json_input("INPUT0", "BYTES", [1], ["a"])),
                                outputs=[{"name": "OUTPUT0", "parameters": {"classification": 1}}]),
         400, "class result not available for output due to unsupported type 'BYTES'"),
        ("decoupled", _inputs(), 501, "HTTP end point doesn't support models with decoupled transaction policy"),
        ("failing", _inputs(json_input("IN", "INT32", [1], [1])), 500, "model exploded"),
    ],
)  # fmt: skip
def test_infer_errors(env: Env, model: str, body: Any, status: int, error: str) -> None:
    r = request(env, "POST", f"/v2/models/{model}/infer", body)
    assert r.status == status, r.body
    assert error in r.error
    # The model keeps serving.
    assert request(env, "POST", "/v2/models/simple/infer", SIMPLE_JSON).status == 200


def _binary_input(
    name: str, size: int, datatype: str = "INT32", shape: list[int] | None = None
) -> dict[str, Any]:
    return {
        "name": name,
        "datatype": datatype,
        "shape": shape or [1, 16],
        "parameters": {"binary_data_size": size},
    }


@pytest.mark.parametrize(
    "model, header, tail, status, error",
    [
        ("simple", _inputs(_binary_input("INPUT0", 64), _binary_input("INPUT1", 60)), bytes(124), 400,
         "input byte size mismatch for input 'INPUT1' for model 'simple'. Expected 64, got 60"),
        ("simple", _inputs(_binary_input("INPUT0", 64), _binary_input("INPUT1", 64)), bytes(124), 400,
         "unexpected size for input 'INPUT1', expecting 4 additional bytes for model 'simple'"),
        ("simple", _inputs(_binary_input("INPUT0", 64), _binary_input("INPUT1", 64)), bytes(132), 400,
         "unexpected additional input data for model 'simple'"),
        ("simple", _inputs(_binary_input("INPUT0", "x"), _binary_input("INPUT1", 64)), bytes(128), 400,  # type: ignore[arg-type]
         "Unable to parse 'binary_data_size': attempt to access JSON non-unsigned-integer as unsigned-integer"),
        ("identity_BYTES", _inputs(_binary_input("INPUT0", 9, "BYTES", [2])), b"\x01\x00\x00\x00a\x09\x00\x00\x00",
         400, "invalid BYTES data for input 'INPUT0' of model 'identity_BYTES'"),
    ],
)  # fmt: skip
def test_binary_infer_errors(
    env: Env, model: str, header: Any, tail: bytes, status: int, error: str
) -> None:
    body, headers = binary_request(header, tail)
    r = request(env, "POST", f"/v2/models/{model}/infer", body, headers)
    assert r.status == status
    assert error in r.error


def test_inference_header_length_errors(env: Env) -> None:
    body = json.dumps(SIMPLE_JSON).encode()
    for value in ("100000", "-5"):
        r = request(
            env, "POST", "/v2/models/simple/infer", body, {"Inference-Header-Content-Length": value}
        )
        assert (r.status, r.error) == (
            400,
            f"inference header size should be in range (0, {len(body)}), got: {value}",
        )


# ---- limits and restrictions ----------------------------------------------------------------------


@pytest.fixture
def small_frontend(env: Env) -> Iterator[HttpFrontend]:
    frontend = env.run(
        start_http(
            env.server,
            "127.0.0.1",
            0,
            max_body_bytes=2048,
            restricted_apis=["inference,model-repository:infer-key=secret", "health:h=1"],
        )
    )
    yield frontend
    env.run(frontend.stop())


def test_body_size_limit_and_decompression_bomb(env: Env, small_frontend: HttpFrontend) -> None:
    conn_env = Env(env.server, env.loop, small_frontend, env.repo, env.recorded)
    headers = {"infer-key": "secret"}
    assert request(conn_env, "POST", "/v2/models/simple/infer", SIMPLE_JSON, headers).status == 200
    r = request(conn_env, "POST", "/v2/models/simple/infer", b"x" * 5000, headers)
    assert (r.status, r.error) == (
        400,
        "request size of 5000 bytes exceeds the maximum allowed input size of 2048 bytes. "
        "Use --http-max-input-size to increase the limit.",
    )
    bomb = gzip.compress(b" " * 100_000)
    r = request(
        conn_env, "POST", "/v2/models/simple/infer", bomb, {**headers, "Content-Encoding": "gzip"}
    )
    assert (r.status, r.error) == (
        400,
        "Decompressed data size exceeds the maximum allowed value of 2048 bytes. "
        "Use --http-max-input-size to increase the limit.",
    )


def test_restricted_apis(env: Env, small_frontend: HttpFrontend) -> None:
    restricted = Env(env.server, env.loop, small_frontend, env.repo, env.recorded)
    r = request(restricted, "POST", "/v2/models/simple/infer", SIMPLE_JSON)
    assert (r.status, r.error) == (403, "This API is restricted, expecting header 'infer-key'")
    assert (
        request(
            restricted, "POST", "/v2/models/simple/infer", SIMPLE_JSON, {"infer-key": "wrong"}
        ).status
        == 403
    )
    assert request(restricted, "POST", "/v2/repository/index").status == 403
    assert request(restricted, "GET", "/v2/health/live").status == 403
    assert request(restricted, "GET", "/v2/health/live", headers={"h": "1"}).status == 200
    assert request(restricted, "GET", "/v2").status == 200  # metadata is not restricted
    client = httpclient.InferenceServerClient(restricted.url)
    try:
        r = client.infer("simple", simple_inputs(), headers={"infer-key": "secret"})
        np.testing.assert_array_equal(r.as_numpy("OUTPUT0"), A + B)
    finally:
        client.close()


def test_parse_restricted_apis() -> None:
    assert parse_restricted_apis(["health,metadata:k=v", "inference:x=1"]) == {
        "health": ("k", "v"), "metadata": ("k", "v"), "inference": ("x", "1"),
    }  # fmt: skip
    for bad, message in [
        ("health", "expected '<category>"),
        ("bogus:k=v", "invalid restricted API category 'bogus'"),
        ("health:k", "expected '<category>"),
    ]:
        with pytest.raises(TritonError, match=message):
            parse_restricted_apis([bad])
    with pytest.raises(TritonError, match="given more than once"):
        parse_restricted_apis(["health:a=1", "health:b=2"])


def test_concurrent_clients_get_their_own_answers(env: Env) -> None:
    errors: list[BaseException] = []

    def worker(offset: int) -> None:
        c = httpclient.InferenceServerClient(env.url)
        try:
            for i in range(20):
                b = np.full((1, 16), offset * 100 + i, np.int32)
                r = c.infer("onnx_simple", simple_inputs(b=b))
                np.testing.assert_array_equal(r.as_numpy("OUTPUT0"), A + b)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            c.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors


# ---- the JSON codec: the fast path (orjson) never changes what the exact path (json) does ----


@pytest.mark.parametrize(
    "obj",
    [
        {"outputs": [{"name": "A", "datatype": "FP32", "data": [1.5, float("nan"), float("inf")]}]},
        {"s": "\udcff\udcfeabc"},  # raw non-UTF-8 bytes kept as surrogate escapes
        {"big": 2**70, "neg": -(2**64)},
        {"plain": [1, 2.25, None, True, "ü"]},
    ],
)
def test_codec_dumps_matches_the_exact_encoder(obj: Any) -> None:
    import json as stdjson

    from tritonlite.frontends import http_codec

    text = stdjson.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    expected = text.encode("utf-8", "surrogateescape")
    assert http_codec.dumps(obj) == expected


@pytest.mark.parametrize(
    "raw",
    [b'{"a":[1,2.5,null]}', b'{"x":NaN,"y":Infinity}', b'{"s":"\xff\xfe"}',
     b'{"big":123456789012345678901234567890}'],
)  # fmt: skip
def test_codec_loads_matches_the_exact_decoder(raw: bytes) -> None:
    import json as stdjson

    from tritonlite.frontends import http_codec

    assert http_codec.loads(raw) == stdjson.loads(raw.decode("utf-8", "surrogateescape")) or (
        raw.startswith(b'{"x":NaN')  # NaN != NaN: compare the shape instead
        and str(http_codec.loads(raw)) == str(stdjson.loads(raw.decode()))
    )


@pytest.mark.parametrize(
    "raw, expected",
    [
        (b'{"id":"a","id":"b"}', {"id": "a"}),
        (b'{"inputs":[{"name":"A","name":"B"}]}', {"inputs": [{"name": "A"}]}),
        (b'{"p":{"a":1,"a":2},"s":"no:dup"}', {"p": {"a": 1}, "s": "no:dup"}),
        (b'[1,{"a":1,"a":2}]', [1, {"a": 1}]),  # an object the fast count skips
        (b'{"a":[[{"b":1,"b":2}]]}', {"a": [[{"b": 1}]]}),
        (b'{"s":"a:b","t":1}', {"s": "a:b", "t": 1}),  # ':' in a string: the exact path agrees
    ],
)
def test_a_repeated_member_name_keeps_its_first_value(raw: bytes, expected: Any) -> None:
    """As Triton's parser (RapidJSON FindMember) reads a repeated name (checked against Triton
    2.51: tests/parity/fixtures/http_duplicate_key.json)."""
    from tritonlite.frontends import http_codec

    assert http_codec.loads(raw) == expected
    assert http_codec.loads(memoryview(raw)) == expected
    members = http_codec.loads(b'{"a":1,"b":2,"a":3}', members=True)
    assert (members, members.names) == ({"a": 1, "b": 2}, ["a", "b", "a"])


def test_raw_binary_request_shapes(env: Env) -> None:
    """Triton's deduction (tests/parity/fixtures/http_raw_binary.json has the full record): the
    variable dimension takes whole elements, what is left over is a byte size mismatch."""
    raw = {"Inference-Header-Content-Length": "0"}
    r = request(env, "POST", "/v2/models/identity_INT32/infer", b"12345", raw)
    assert (r.status, r.error) == (
        400,
        (
            "[request id: <id_unknown>] input byte size mismatch for input 'raw_input' for model "
            "'identity_INT32'. Expected 4, got 5"
        ),
    )


@pytest.mark.parametrize(
    "raw, message",
    [
        # RapidJSON's texts and byte offsets, as Triton 2.51 answers them (the full record:
        # tests/parity/fixtures/http_json_syntax_errors.json)
        (b"AAAA", "Invalid value. at 0"),
        (b"  ", "The document is empty. at 2"),
        (b'{"a":tru}', "Invalid value. at 8"),
        (b"[1 2]", "Missing a comma or ']' after an array element. at 3"),
        (b'{"s":"]}", "a":[{"b":1} 2]}', "Missing a comma or ']' after an array element. at 24"),
        (b'{"\xc3\xa9":1 "b"}', "Missing a comma or '}' after an object member. at 8"),
        (b'{"a":1.}', "Miss fraction part in number. at 7"),
        (b'{"a":1e+}', "Miss exponent in number. at 8"),
        (b'{"a":-1e999}', "Number too big to be stored in double. at 5"),
        (b'{"a":"\\u12G4"}', "Incorrect hex digit after \\u escape in string. at 6"),
        (b'{"a":"abc', "Missing a closing quotation mark in string. at 9"),
    ],
)
def test_json_syntax_errors_have_rapidjsons_words(raw: bytes, message: str) -> None:
    from tritonlite.frontends import http_codec

    with pytest.raises(TritonError) as e:
        http_codec.loads(raw)
    assert e.value.message == f"failed to parse the request JSON buffer: {message}"
