"""Backend ``parameters`` through a real ``tritonlite-server`` and tritonclient: the onnxruntime
and PyTorch backends honour Triton's parameters, refuse bad values at load with a message naming
the parameter and the model, and name in the log the keys they ignore (as Triton ignores them).
A torch.export ``model.pt2`` is served. The backends' own tests check each option's effect."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from models import make_add_sub_exported, make_add_sub_onnx
from serving import ServerProcess, write_config
from tritonclient.utils import InferenceServerException

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


def _params(**params: str) -> str:
    return "".join(
        f'parameters {{ key: "{k}" value {{ string_value: "{v}" }} }}\n' for k, v in params.items()
    )


def _onnx(repo: Path, name: str, params: str) -> None:
    make_add_sub_onnx(repo / name / "1" / "model.onnx")
    write_config(
        repo / name,
        f"""name: "{name}" platform: "onnxruntime_onnx" max_batch_size: 8
input [{{ name: "INPUT0" data_type: TYPE_FP32 dims: [16] }},
       {{ name: "INPUT1" data_type: TYPE_FP32 dims: [16] }}]
output [{{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [16] }},
        {{ name: "OUTPUT1" data_type: TYPE_FP32 dims: [16] }}]
instance_group [{{ kind: KIND_CPU count: 2 }}]
{params}""",
    )


def _torch(repo: Path, name: str, params: str) -> None:
    make_add_sub_exported(repo / name / "1" / "model.pt2")
    write_config(
        repo / name,
        f"""name: "{name}" platform: "pytorch_libtorch" max_batch_size: 8
input [{{ name: "INPUT0" data_type: TYPE_FP32 dims: [16] }},
       {{ name: "INPUT1" data_type: TYPE_FP32 dims: [16] }}]
output [{{ name: "OUTPUT__0" data_type: TYPE_FP32 dims: [16] }},
        {{ name: "OUTPUT__1" data_type: TYPE_FP32 dims: [16] }}]
{params}""",
    )


def _add_sub(url: str, model: str, outputs: tuple[str, str], http: bool = False) -> None:
    client_module = httpclient if http else grpcclient
    client = client_module.InferenceServerClient(url)
    a = np.arange(32, dtype=np.float32).reshape(2, 16)
    b = np.ones((2, 16), np.float32)
    inputs = []
    for name, value in (("INPUT0", a), ("INPUT1", b)):
        tensor = client_module.InferInput(name, [2, 16], "FP32")
        tensor.set_data_from_numpy(value)
        inputs.append(tensor)
    result = client.infer(model, inputs)
    np.testing.assert_array_equal(result.as_numpy(outputs[0]), a + b)
    np.testing.assert_array_equal(result.as_numpy(outputs[1]), a - b)


def _load_errors(srv: ServerProcess, model: str) -> list[str]:
    texts = []
    for client in (grpcclient.InferenceServerClient(srv.grpc_url),
                   httpclient.InferenceServerClient(srv.http_url)):  # fmt: skip
        with pytest.raises(InferenceServerException) as e:
            client.load_model(model)
        texts.append(str(e.value.message()))
    return texts


@pytest.mark.torch
def test_parameters_honoured_refused_and_warned(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    repo = tmp_path / "repo"
    _onnx(repo, "ort_params", _params(**{
        "share_session_between_instances": "true",
        "memory.enable_memory_arena_shrinkage": "cpu:0",
        "intra_op_thread_count": "1",
        "enable_cuda_graph": "1",
    }))  # fmt: skip
    _onnx(repo, "ort_bad", _params(**{"memory.enable_memory_arena_shrinkage": "gpu:0"}))
    _torch(repo, "pt2", _params(ENABLE_WEIGHT_SHARING="true", NUM_THREADS="2"))
    _torch(repo, "pt_bad", _params(ENABLE_CACHE_CLEANING="sometimes"))
    args = ("--model-control-mode=explicit", "--load-model=ort_params", "--load-model=pt2")
    with ServerProcess(repo, args=args) as srv:
        for http in (False, True):
            url = srv.http_url if http else srv.grpc_url
            _add_sub(url, "ort_params", ("OUTPUT0", "OUTPUT1"), http)
            _add_sub(url, "pt2", ("OUTPUT__0", "OUTPUT__1"), http)
        for text in _load_errors(srv, "ort_bad"):
            assert text == (
                "failed to load 'ort_bad' version 1: model 'ort_bad': parameter "
                "'memory.enable_memory_arena_shrinkage' names gpu:0, which has no memory arena: "
                "instance 0 runs on the CPU"
            )
        for text in _load_errors(srv, "pt_bad"):
            assert "model 'pt_bad': parameter 'ENABLE_CACHE_CLEANING' must be a boolean" in text
        log = srv.log()
    assert (
        "model 'ort_params': parameter 'enable_cuda_graph' is not one the onnxruntime backend "
        "reads: ignored (as Triton does)"
    ) in log
    assert "model 'pt2': parameter 'NUM_THREADS' is not one the pytorch backend reads" in log
