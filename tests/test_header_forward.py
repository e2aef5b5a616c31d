"""--http-header-forward-pattern / --grpc-header-forward-pattern: request headers whose names
match become string request parameters, which python models read from request.parameters().

Triton 2.51's behaviour (checked against it with a model answering request.parameters()): the
pattern is case-insensitive unless it starts with (?-i) and may match anywhere in the name; the
name is passed as the client sent it (gRPC metadata names are lower case on the wire); a header
named like a body parameter wins in the model's json.loads; reserved and triton_ names are
forwarded too; a -bin value is passed up to its first NUL. HTTP infer, gRPC ModelInfer and
ModelStreamInfer forward; nothing is forwarded without a pattern."""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from models import PYTHON_MODELS, serve_python_model
from serving import ServerProcess, wait_http_live
from test_grpc_native import LoopThread
from tritonlite import Server
from tritonlite.frontends.grpc import start_grpc
from tritonlite.frontends.http import start_http

MODEL = "echo_parameters"


def inputs(mod: Any) -> list[Any]:
    x = mod.InferInput("IN", [1], "INT32")
    x.set_data_from_numpy(np.array([7], np.int32))
    return [x]


def parameters_of(result: Any) -> dict[str, Any]:
    return json.loads(result.as_numpy("PARAMETERS")[0] or "{}")  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("header_forward")
    shutil.copytree(PYTHON_MODELS / MODEL, repo / MODEL)
    args = ("--http-header-forward-pattern=PREFIX_.*", "--grpc-header-forward-pattern=prefix_.*")
    with ServerProcess(repo, args=args) as srv:
        wait_http_live(srv)
        yield srv


def test_http_headers_that_match_reach_the_model(server: ServerProcess) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    headers = {"PREFIX_One": "v1", "prefix_two": "v2", "xPREFIX_three": "v3", "other": "o",
               "triton_x": "t"}  # fmt: skip
    result = client.infer(MODEL, inputs(httpclient), headers=headers)
    assert parameters_of(result) == {"PREFIX_One": "v1", "prefix_two": "v2", "xPREFIX_three": "v3"}
    # A header wins over a body parameter of the same name; the other parameters stay.
    result = client.infer(MODEL, inputs(httpclient), headers={"PREFIX_dup": "header"},
                          parameters={"PREFIX_dup": "body", "b": 1})  # fmt: skip
    assert parameters_of(result) == {"PREFIX_dup": "header", "b": 1}
    assert parameters_of(client.infer(MODEL, inputs(httpclient), headers={"other": "o"})) == {}


def test_grpc_metadata_that_matches_reaches_the_model(server: ServerProcess) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)  # the native transport
    headers = {"prefix_one": "v1", "xprefix_three": "v3", "other": "o", "prefix_raw-bin": b"ab\0c"}
    result = client.infer(MODEL, inputs(grpcclient), headers=headers)
    assert parameters_of(result) == {
        "prefix_one": "v1",
        "xprefix_three": "v3",
        "prefix_raw-bin": "ab",
    }
    result = client.infer(MODEL, inputs(grpcclient), headers={"prefix_dup": "header"},
                          parameters={"prefix_dup": "body", "b": 1})  # fmt: skip
    assert parameters_of(result) == {"prefix_dup": "header", "b": 1}
    # ModelStreamInfer: the stream's metadata reaches every request of the stream.
    responses: queue.Queue[Any] = queue.Queue()
    client.start_stream(lambda result, error: responses.put((result, error)),
                        headers={"prefix_stream": "s"})  # fmt: skip
    try:
        for i in range(2):
            client.async_stream_infer(MODEL, inputs(grpcclient), parameters={"i": i})
        got = [responses.get(timeout=60) for _ in range(2)]
    finally:
        client.stop_stream()
    assert all(error is None for _, error in got)
    assert sorted(json.dumps(parameters_of(r), sort_keys=True) for r, _ in got) == [
        json.dumps({"i": i, "prefix_stream": "s"}, sort_keys=True) for i in range(2)
    ]


def test_grpcio_transport_and_case_sensitive_patterns(tmp_path: Path) -> None:
    loop = LoopThread()
    server = Server()
    frontends: list[Any] = []
    try:
        serve_python_model(server, tmp_path, MODEL, "in_process")
        grpc_frontend = loop.run(start_grpc(server, "127.0.0.1", 0,
                                            header_forward_pattern="(?-i)prefix_"))  # fmt: skip
        sensitive = loop.run(start_http(server, "127.0.0.1", 0,
                                        header_forward_pattern="(?-i)PREFIX_"))  # fmt: skip
        plain = loop.run(start_http(server, "127.0.0.1", 0))
        frontends = [grpc_frontend, sensitive, plain]

        g = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_frontend.port}")
        result = g.infer(MODEL, inputs(grpcclient), headers={"prefix_a": "1", "xprefix": "2"})
        assert parameters_of(result) == {"prefix_a": "1"}  # search, but case-sensitive
        h = httpclient.InferenceServerClient(f"127.0.0.1:{sensitive.port}")
        result = h.infer(MODEL, inputs(httpclient), headers={"PREFIX_a": "1", "prefix_b": "2"})
        assert parameters_of(result) == {"PREFIX_a": "1"}
        h = httpclient.InferenceServerClient(f"127.0.0.1:{plain.port}")
        result = h.infer(MODEL, inputs(httpclient), headers={"PREFIX_a": "1"})
        assert parameters_of(result) == {}  # no pattern: no header is forwarded
    finally:
        for frontend in frontends:
            loop.run(frontend.stop(1.0))
        server.close()
        loop.close()


@pytest.mark.parametrize("flag", ["--http-header-forward-pattern", "--grpc-header-forward-pattern"])
def test_an_invalid_pattern_is_refused_at_start(tmp_path: Path, flag: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tritonlite.cli", "--model-repository", str(tmp_path),
         f"{flag}=(unclosed", "--grpc-port=0"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: {flag}: invalid regular expression '(unclosed': ")
