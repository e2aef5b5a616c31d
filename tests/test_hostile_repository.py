"""Hostile clients of the repository API: path tricks in model names and file overrides.

Every trick is refused with a clear INVALID_ARG (HTTP 400 / gRPC INVALID_ARGUMENT) before
anything is written, no temporary directory is left behind, nothing outside the model directory
is touched, and the server goes on serving a well-formed load.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serving import ServerProcess, wait_http_live
from tritonclient.utils import InferenceServerException

CONFIG = (
    '{"name": "up", "backend": "python", "max_batch_size": 0,'
    ' "input": [{"name": "IN", "data_type": "TYPE_FP32", "dims": [1]}],'
    ' "output": [{"name": "OUT", "data_type": "TYPE_FP32", "dims": [1]}]}'
)
MODEL_PY = b"""
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [
            pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy())]
            )
            for r in requests
        ]
"""

BAD_NAMES = ["%2e%2e", "..%2f..%2fetc", "a%00b", "%2fetc", "a%5cb"]
BAD_FILE_KEYS = [
    ("file:../x", "outside the model directory"),
    ("file:1/../../x", "outside the model directory"),
    ("file:/etc/x", "outside the model directory"),
    ("file:", "outside the model directory"),
    ("file:1/a\x00b", "NUL"),
    ("file:1/" + "y" * 300, "longer than"),
    ("file:1//model.py", "not a file path"),
    ("file:1/./model.py", "not a file path"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> ServerProcess:
    repo = tmp_path_factory.mktemp("repo")
    scratch = tmp_path_factory.mktemp("scratch")
    with ServerProcess(
        repo, args=("--model-control-mode=explicit",), env={"TMPDIR": str(scratch)}
    ) as srv:
        srv.scratch = scratch  # type: ignore[attr-defined]
        wait_http_live(srv)  # start() waits for gRPC; HTTP opens after it (a race under load)
        yield srv


def _leftovers(server: ServerProcess) -> list[str]:
    return sorted(p.name for p in server.scratch.iterdir() if p.name.startswith("tritonlite-model"))  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_http_model_name_path_tricks_are_refused(server: ServerProcess, name: str) -> None:
    import urllib.request

    req = urllib.request.Request(
        f"http://{server.http_url}/v2/repository/models/{name}/load", data=b"", method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=10)
    assert info.value.code == 400
    assert "invalid model name" in info.value.read().decode()


@pytest.mark.parametrize("name", ["..", "../../etc", "a/b", "/etc", "a\\b", "a\x00b"])
def test_grpc_model_name_path_tricks_are_refused(server: ServerProcess, name: str) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    with pytest.raises(InferenceServerException) as info:
        client.load_model(name)
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "invalid model name" in info.value.message()


@pytest.mark.parametrize("key,reason", BAD_FILE_KEYS)
def test_file_override_tricks_are_refused_and_leave_nothing(
    server: ServerProcess, key: str, reason: str
) -> None:
    files = {key: b"hi", "file:1/model.py": MODEL_PY}
    for client in (
        httpclient.InferenceServerClient(server.http_url),
        grpcclient.InferenceServerClient(server.grpc_url),
    ):
        with pytest.raises(InferenceServerException) as info:
            client.load_model("up", config=CONFIG, files=files)
        # Triton 2.51's answer to a malformed override; the reason is in the server's log.
        assert info.value.message() == "failed to load 'up', failed to poll from model repository"
        assert info.value.status() in ("500", "StatusCode.INTERNAL")
    assert reason in server.log()
    assert _leftovers(server) == []
    assert not (Path(server.scratch).parent / "x").exists()  # type: ignore[attr-defined]


def test_file_that_is_also_a_directory_is_a_clear_error(server: ServerProcess) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    files = {"file:1/model.py": MODEL_PY, "file:1/model.py/x": b"hi"}
    with pytest.raises(InferenceServerException) as info:
        client.load_model("up", config=CONFIG, files=files)
    assert info.value.status() == "400"
    assert "cannot write the file overrides" in info.value.message()
    assert _leftovers(server) == []


def test_well_formed_upload_still_loads_and_serves(server: ServerProcess) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    client.load_model("up", config=CONFIG, files={"file:1/model.py": MODEL_PY})
    assert client.is_model_ready("up")
    x = grpcclient.InferInput("IN", [1], "FP32")
    x.set_data_from_numpy(np.array([2.5], dtype=np.float32))
    out = client.infer("up", [x]).as_numpy("OUT")
    assert out.tolist() == [2.5]
    client.unload_model("up")
