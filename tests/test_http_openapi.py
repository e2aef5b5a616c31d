"""docs/openapi.yaml against the running HTTP frontend, with schemathesis.

Schemathesis generates requests for every operation of the spec (schema-valid and invalid ones),
bounded to a few examples per operation. Every response must come from the spec (status code,
content type, body schema), and the server must never fail: no 5xx except the 501 answers the
spec documents (Triton's UNSUPPORTED). Afterwards the server still serves inference.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import schemathesis
from google.protobuf import text_format
from hypothesis import HealthCheck, settings
from models import make_add_sub_onnx
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from tritonlite import Server
from tritonlite._proto import model_config_pb2 as mc
from tritonlite.frontends.http import HttpFrontend, start_http

SPEC = Path(__file__).resolve().parent.parent / "docs" / "openapi.yaml"

#: The 5xx answers that are part of the API (Triton's UNSUPPORTED), not failures.
DOCUMENTED_501 = (
    "Unsupported compression type",
    "HTTP end point doesn't support models with decoupled transaction policy",
    "trace file location can not be updated through network protocol",
    "log file location can not be updated through network protocol",
)
#: Triton 2.51's 500 answers to a trace setting of the wrong JSON type (docs/openapi.yaml).
DOCUMENTED_500 = (
    "attempt to access JSON non-string as string",
    "attempt to access JSON non-array as array",
)

pytestmark = pytest.mark.timeout(120)


class Fn:
    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def create_instance(self, index: int, kind: str, device_id: int) -> Fn:
        return self

    def execute(self, inputs: dict[str, np.ndarray], names: list[str]) -> dict[str, Any]:
        return self.fn(inputs)

    def close(self) -> None:
        pass


class Stream:
    per_request_execution = True

    def create_instance(self, index: int, kind: str, device_id: int) -> Stream:
        return self

    def execute_requests(self, requests: list[Any]) -> None:
        for r in requests:
            r.respond({"OUT": dict(r.inputs())["IN"].numpy().copy()}, final=False)
            r.respond(final=True)

    def close(self) -> None:
        pass


def _config(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())


@pytest.fixture(scope="module")
def frontend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpFrontend]:
    repo = tmp_path_factory.mktemp("openapi") / "repo"
    (repo / "onnx_simple").mkdir(parents=True)
    (repo / "onnx_simple" / "config.pbtxt").write_text(
        'name: "onnx_simple" platform: "onnxruntime_onnx" max_batch_size: 8 '
        'input [{ name: "INPUT0" data_type: TYPE_INT32 dims: [ 16 ] }, '
        '{ name: "INPUT1" data_type: TYPE_INT32 dims: [ 16 ] }] '
        'output [{ name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 16 ] }, '
        '{ name: "OUTPUT1" data_type: TYPE_INT32 dims: [ 16 ] }]'
    )
    make_add_sub_onnx(repo / "onnx_simple" / "1" / "model.onnx", "INT32")
    server = Server(repo, model_control_mode="explicit", load_models=["*"])
    server.add_model(
        _config(
            'name: "simple" max_batch_size: 8 '
            'input [{ name: "INPUT0" data_type: TYPE_INT32 dims: [ 16 ] }, '
            '{ name: "INPUT1" data_type: TYPE_INT32 dims: [ 16 ] }] '
            'output [{ name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 16 ] }]'
        ),
        Fn(lambda i: {"OUTPUT0": i["INPUT0"] + i["INPUT1"]}),
    )
    server.add_model(
        _config(
            'name: "identity_FP32" max_batch_size: 0 '
            'input [{ name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] }] '
            'output [{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] }]'
        ),
        Fn(lambda i: {"OUTPUT0": i["INPUT0"]}),
    )
    server.add_model(
        _config(
            'name: "decoupled" max_batch_size: 0 model_transaction_policy { decoupled: true } '
            'input [{ name: "IN" data_type: TYPE_INT32 dims: [ -1 ] }] '
            'output [{ name: "OUT" data_type: TYPE_INT32 dims: [ -1 ] }]'
        ),
        Stream(),
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    http = asyncio.run_coroutine_threadsafe(start_http(server, "127.0.0.1", 0), loop).result(30)
    # The fuzzed /v2/logging calls set the process-wide "tritonlite" log level (log_error false
    # silences it): put it back, or later tests that read the log (caplog) see nothing.
    level = logging.getLogger("tritonlite").level
    yield http
    logging.getLogger("tritonlite").setLevel(level)
    asyncio.run_coroutine_threadsafe(http.stop(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    server.close()
    loop.close()


# Loaded at import (no network needed); requests go to the fixture's port via `base_url`.
schema = schemathesis.openapi.from_path(SPEC)


def test_spec_is_valid_openapi() -> None:
    schemathesis.openapi.from_path(SPEC).validate()


@schema.parametrize()
@settings(
    max_examples=int(os.environ.get("TRITONLITE_FUZZ_EXAMPLES", "8")),
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_and_never_fails(case: Any, frontend: HttpFrontend) -> None:
    response = case.call(base_url=f"http://127.0.0.1:{frontend.port}", timeout=30)
    if response.status_code >= 500:
        error = response.json().get("error", "")
        documented = (response.status_code == 501 and error in DOCUMENTED_501) or (
            # Triton's answers (INTERNAL) to loading a model the repository doesn't have and to
            # registering a shared-memory key that cannot be opened
            response.status_code == 500
            and (
                error.endswith("failed to poll from model repository")
                or error.startswith("Unable to open shared memory region: ")
            )
        ) or (
            response.status_code == 500
            and error in DOCUMENTED_500
            and case.formatted_path.endswith("/trace/setting")
        )
        assert documented, (
            f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
        )
    case.validate_response(
        response,
        checks=[status_code_conformance, content_type_conformance, response_schema_conformance],
    )


def test_server_still_serves_after_fuzzing(frontend: HttpFrontend) -> None:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(f"127.0.0.1:{frontend.port}")
    try:
        assert client.is_server_live()
        inputs = []
        for name in ("INPUT0", "INPUT1"):
            i = httpclient.InferInput(name, [1, 16], "INT32")
            i.set_data_from_numpy(np.ones((1, 16), np.int32))
            inputs.append(i)
        assert client.infer("onnx_simple", inputs).as_numpy("OUTPUT0").sum() == 32
    finally:
        client.close()
