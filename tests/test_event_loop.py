"""The event loop never blocks: health, readiness and the repository index answer while a model
loads; a reload keeps the old version's uploaded files until that version is retired. (Request
bodies are in test_http_body_limits.py.)"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serving import ServerProcess, write_config

#: A stall of the event loop during a load lasted as long as the load (seconds); an answer
#: within this bound shows the loop kept running (generous for a loaded 2-core machine).
ANSWER_BOUND_S = 1.5
SLOW_INIT_S = 5

CONFIG = """
name: "{name}" backend: "python" max_batch_size: 0
input [{{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 1 ] }}]
output [{{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 1 ] }}]
instance_group [{{ count: 1 kind: KIND_CPU }}]
"""

SLOW_MODEL = """
import time
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        open({marker!r}, "w").close()
        time.sleep({delay})

    def execute(self, requests):
        return [pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor("OUTPUT0", r.inputs()[0].as_numpy())]) for r in requests]
"""

# Answers with the number in data.txt next to model.py, read at every request.
FILE_MODEL = """
import os, time
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        self.path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data.txt")
        time.sleep({delay})

    def execute(self, requests):
        value = float(open(self.path).read())
        return [pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor("OUTPUT0", np.array([value], np.float32))]) for r in requests]
"""


def _timed(call: Callable[[], Any]) -> tuple[float, Any]:
    start = time.monotonic()
    result = call()
    return time.monotonic() - start, result


def http_client(srv: ServerProcess) -> httpclient.InferenceServerClient:
    """A client of the server's HTTP endpoint, once it listens (the server is started when its
    gRPC endpoint answers; HTTP starts just after)."""
    client = httpclient.InferenceServerClient(srv.http_url, network_timeout=60)
    deadline = time.monotonic() + 30
    while True:
        try:
            if client.is_server_live():
                return client
        except Exception:  # not listening yet
            if time.monotonic() > deadline:
                raise
        time.sleep(0.05)


def _wait_for(path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout_s}s"
        time.sleep(0.05)


def test_health_readiness_and_index_answer_while_a_model_loads(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    marker = tmp_path / "initialize-started"
    write_config(repo / "slow", CONFIG.format(name="slow"))
    (repo / "slow" / "1").mkdir()
    (repo / "slow" / "1" / "model.py").write_text(
        SLOW_MODEL.format(marker=str(marker), delay=SLOW_INIT_S)
    )
    with ServerProcess(repo, args=("--model-control-mode=explicit",)) as srv:
        http = http_client(srv)
        grpc = grpcclient.InferenceServerClient(srv.grpc_url)
        load_error: list[BaseException] = []

        def load() -> None:
            try:
                httpclient.InferenceServerClient(srv.http_url, network_timeout=60).load_model(
                    "slow"
                )
            except BaseException as e:  # noqa: BLE001 - reported by the test below
                load_error.append(e)

        loader = threading.Thread(target=load)
        loader.start()
        try:
            _wait_for(marker, 30)  # the model's initialize is now sleeping
            answers = {
                "http live": _timed(http.is_server_live),
                "http ready": _timed(http.is_server_ready),
                "http model ready": _timed(lambda: http.is_model_ready("slow")),
                "http index": _timed(http.get_model_repository_index),
                "grpc live": _timed(lambda: grpc.is_server_live(client_timeout=30)),
                "grpc ready": _timed(lambda: grpc.is_server_ready(client_timeout=30)),
                "grpc model ready": _timed(lambda: grpc.is_model_ready("slow", client_timeout=30)),
                "grpc index": _timed(
                    lambda: grpc.get_model_repository_index(as_json=True, client_timeout=30)
                ),
            }
            still_loading = loader.is_alive()
        finally:
            loader.join(60)
        slow = {name: round(t, 2) for name, (t, _) in answers.items() if t > ANSWER_BOUND_S}
        assert not slow, f"answers that waited for the load: {slow}"
        assert still_loading, "the load ended before the checks: they proved nothing"
        assert answers["http live"][1] and answers["grpc live"][1]
        # Strict readiness: not ready while a model loads; the index says LOADING.
        assert answers["http ready"][1] is False and answers["grpc ready"][1] is False
        assert answers["http model ready"][1] is False
        assert answers["http index"][1] == [{"name": "slow", "version": "1", "state": "LOADING"}]
        grpc_index = answers["grpc index"][1]["models"]
        assert [(m["name"], m["state"]) for m in grpc_index] == [("slow", "LOADING")]
        assert not load_error, load_error
        assert http.is_model_ready("slow") and http.is_server_ready()


def _infer_value(client: httpclient.InferenceServerClient, name: str) -> float:
    inp = httpclient.InferInput("INPUT0", [1], "FP32")
    inp.set_data_from_numpy(np.zeros(1, np.float32))
    return float(client.infer(name, [inp]).as_numpy("OUTPUT0")[0])


def _file_load(client: httpclient.InferenceServerClient, value: float, delay: float) -> None:
    files = {
        "file:1/model.py": FILE_MODEL.format(delay=delay).encode(),
        "file:1/data.txt": str(value).encode(),
    }
    client.load_model(
        "uploaded",
        config=json.dumps(
            {
                "name": "uploaded",
                "backend": "python",
                "max_batch_size": 0,
                "input": [{"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [1]}],
                "output": [{"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [1]}],
            }
        ),
        files=files,
    )


def test_reload_keeps_the_old_upload_until_the_old_version_is_retired(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    with ServerProcess(repo, args=("--model-control-mode=explicit",)) as srv:
        client = http_client(srv)
        _file_load(client, 1.0, 0)
        assert _infer_value(client, "uploaded") == 1.0
        reload_error: list[BaseException] = []

        def reload() -> None:
            try:
                _file_load(httpclient.InferenceServerClient(srv.http_url, network_timeout=60),
                           2.0, 3)  # fmt: skip
            except BaseException as e:  # noqa: BLE001 - reported by the test below
                reload_error.append(e)

        reloader = threading.Thread(target=reload)
        reloader.start()
        answers: list[Any] = []
        deadline = time.monotonic() + 60
        try:
            time.sleep(0.5)  # the new version is loading (its initialize sleeps 3 s)
            while reloader.is_alive() and time.monotonic() < deadline:
                try:
                    answers.append(_infer_value(client, "uploaded"))
                except Exception as e:  # noqa: BLE001 - collected: the old version must answer
                    answers.append(str(e))
                time.sleep(0.1)
        finally:
            reloader.join(60)
        assert not reload_error, reload_error
        assert answers and all(a in (1.0, 2.0) for a in answers), answers
        assert answers[0] == 1.0  # the old version served from its files during the reload
        assert _infer_value(client, "uploaded") == 2.0
