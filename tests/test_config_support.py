"""ModelConfig fields tritonlite does not simply honour: reshape, passive instances, metric_tags
and label files are implemented; the rest is refused at load naming the field, or warned about
where it has no effect (config_support.py; docs/config_fields.md)."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from models import make_identity_onnx
from serving import ServerProcess, write_config
from tritonlite import Server, TritonError
from tritonlite import config as cfg

ONNX_ID = """
name: "{name}"
backend: "onnxruntime"
max_batch_size: 8
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: {in_dims} {in_reshape} }} ]
output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: {out_dims} {out_reshape} }} ]
{extra}
"""


def _onnx(repo: Path, name: str, model_dims: tuple[int, ...], **fields: str) -> Path:
    values = {"in_dims": "[ 16 ]", "in_reshape": "", "out_dims": "[ 16 ]", "out_reshape": "",
              "extra": "", **fields}  # fmt: skip
    write_config(repo / name, ONNX_ID.format(name=name, **values))
    make_identity_onnx(repo / name / "1" / "model.onnx", dims=model_dims)
    return repo / name


PASSIVE_PY = """
import json, os
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        self.name = args["model_instance_name"]
        with open(os.environ["INIT_LOG"], "a") as f:
            f.write(self.name + "\\n")

    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "WHO", np.array([self.name.encode()], dtype=object))]) for _ in requests]
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    repo = tmp_path_factory.mktemp("support_repo")
    # The model computes on [B, 16]; clients see [B, 4, 4] in and [B, 2, 8] out.
    _onnx(repo, "reshaped", (16,), in_dims="[ 4, 4 ]", in_reshape="reshape { shape: [ 16 ] }",
          out_dims="[ 2, 8 ]", out_reshape="reshape { shape: [ 16 ] }")  # fmt: skip
    # Per-item scalars: the model is [B] (what ONNX auto-complete maps to dims [1], reshape []).
    _onnx(repo, "scalar", (), in_dims="[ 1 ]", in_reshape="reshape { shape: [ ] }",
          out_dims="[ 1 ]", out_reshape="reshape { shape: [ ] }",
          extra='metric_tags { key: "team" value: "search" }')  # fmt: skip
    # Variable-size dims carry over: clients [B, n, 4] <-> the model [B, n, 2, 2].
    _onnx(repo, "variable", (-1, 2, 2), in_dims="[ -1, 4 ]",
          in_reshape="reshape { shape: [ -1, 2, 2 ] }", out_dims="[ -1, 4 ]",
          out_reshape="reshape { shape: [ -1, 2, 2 ] }")  # fmt: skip
    write_config(
        repo / "passive",
        'name: "passive"\nbackend: "python"\nmax_batch_size: 0\n'
        'output [ { name: "WHO" data_type: TYPE_STRING dims: [ 1 ] } ]\n'
        'instance_group [ { name: "active" count: 1 kind: KIND_CPU },\n'
        '  { name: "standby" count: 2 kind: KIND_CPU passive: true } ]\n',
    )
    (repo / "passive" / "1").mkdir()
    (repo / "passive" / "1" / "model.py").write_text(PASSIVE_PY)
    log = repo.parent / "init.log"
    with ServerProcess(repo, env={"INIT_LOG": str(log)}) as srv:
        yield srv, log


def test_reshape_is_applied_both_ways(served) -> None:  # type: ignore[no-untyped-def]
    srv, _ = served
    x = np.arange(32, dtype=np.float32).reshape(2, 4, 4)
    for mod in (grpcclient, httpclient):
        client = mod.InferenceServerClient(srv.grpc_url if mod is grpcclient else srv.http_url)
        inp = mod.InferInput("INPUT0", [2, 4, 4], "FP32")
        inp.set_data_from_numpy(x)
        out = client.infer("reshaped", [inp]).as_numpy("OUTPUT0")
        np.testing.assert_array_equal(out, x.reshape(2, 2, 8))


def test_auto_completed_scalar_reshape_serves(served) -> None:  # type: ignore[no-untyped-def]
    srv, _ = served
    client = grpcclient.InferenceServerClient(srv.grpc_url)
    x = np.array([[1.5], [2.5], [3.5]], np.float32)
    inp = grpcclient.InferInput("INPUT0", [3, 1], "FP32")
    inp.set_data_from_numpy(x)
    np.testing.assert_array_equal(client.infer("scalar", [inp]).as_numpy("OUTPUT0"), x)


def test_variable_dims_carry_over_a_reshape(served) -> None:  # type: ignore[no-untyped-def]
    srv, _ = served
    client = grpcclient.InferenceServerClient(srv.grpc_url)
    for n in (2, 6):
        x = np.arange(4 * n, dtype=np.float32).reshape(1, n, 4)
        inp = grpcclient.InferInput("INPUT0", [1, n, 4], "FP32")
        inp.set_data_from_numpy(x)
        np.testing.assert_array_equal(client.infer("variable", [inp]).as_numpy("OUTPUT0"), x)


def test_passive_instances_load_but_never_execute(served) -> None:  # type: ignore[no-untyped-def]
    srv, log = served
    client = grpcclient.InferenceServerClient(srv.grpc_url)
    seen = {client.infer("passive", []).as_numpy("WHO")[0] for _ in range(12)}
    assert seen == {b"active_0"}  # the active group's instance only
    initialized = sorted(log.read_text().split())
    assert initialized == ["active_0", "standby_0", "standby_1"]  # as Triton: all loaded


def test_metric_tags_become_labels(served) -> None:  # type: ignore[no-untyped-def]
    srv, _ = served
    text = urllib.request.urlopen(srv.metrics_url, timeout=10).read().decode()
    assert 'nv_inference_request_success{_team="search",model="scalar",version="1"}' in text
    assert 'nv_inference_request_failure{_team="search",model="scalar",reason="BACKEND",' in text
    assert 'nv_inference_request_success{model="reshaped",version="1"}' in text


# ---- refused and warned, at load -----------------------------------------------------------


def _load(repo: Path, text: str, name: str = "m", backend: str = "onnxruntime") -> cfg.ModelConfig:
    head = f'name: "{name}"\nbackend: "{backend}"\nmax_batch_size: 4\n'
    io = ('input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 16 ] } ]\n'
          'output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 16 ] } ]\n')  # fmt: skip
    write_config(repo / name, head + (io if "input [" not in text else "") + text)
    (repo / name / "1").mkdir(exist_ok=True)
    return cfg.load_model_config(repo / name, auto_complete=False)


SEQ = "sequence_batching { %s }\n"
STATE = ('sequence_batching { state [ { input_name: "S_IN" output_name: "S_OUT" '
         'data_type: TYPE_FP32 dims: [ 2 ] %s } ] }\n')  # fmt: skip


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('runtime: "model.py"\n', "runtime 'model.py' is not supported by tritonlite"),
        (
            'model_repository_agents { agents [ { name: "checksum" } ] }\n',
            "model_repository_agents is not supported by tritonlite",
        ),
        (
            'model_operations { op_library_filename: [ "/tmp/libops.so" ] }\n',
            "model_operations.op_library_filename is not supported by tritonlite",
        ),
        (
            SEQ % "iterative_sequence: true",
            "sequence_batching.iterative_sequence is not supported by tritonlite",
        ),
        (
            STATE % "use_growable_memory: true use_same_buffer_for_input_output: true",
            "'use_growable_memory' can only work with KIND_GPU model instances right now.",
        ),
        (
            STATE % "use_growable_memory: true",
            (
                "In order to 'use_growable_memory', you must also enable 'use_single_buffer' for state "
                "input name 'S_IN'."
            ),
        ),
        (
            STATE
            % 'initial_state [ { data_type: TYPE_INT32 dims: [ 2 ] zero_data: true name: "i" } ]',
            (
                "The data type used for 'initial_state' field of state 'S_IN' does not match the state "
                "data type."
            ),
        ),
        (
            STATE % "initial_state [ { data_type: TYPE_FP32 dims: [ 2 ] zero_data: true } ]",
            "Field 'name' must be set when using initial_state for state input 'S_IN'.",
        ),
        (
            STATE
            % 'initial_state [ { data_type: TYPE_FP32 dims: [ 3 ] zero_data: true name: "i" } ]',
            "'initial_state' dim for input name 'S_IN' doesn't match 'state' dim description. 3 != 2",
        ),
        (
            "instance_group [ { count: 1 kind: KIND_CPU passive: true } ]\n",
            "every instance group is passive",
        ),
    ],
)
def test_unimplemented_fields_are_refused_by_name(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(TritonError) as info:
        _load(tmp_path, text)
    assert message in info.value.message
    assert info.value.status == "INVALID_ARG"


RAGGED_IO = (
    'input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] allow_ragged_batch: true } ]\n'
    'output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]\n'
)
BATCH_INPUT = ('batch_input [ { kind: BATCH_ELEMENT_COUNT target_name: "N" '
               'data_type: TYPE_FP32 source_input: "INPUT0" } ]\n')  # fmt: skip
BATCH_OUTPUT = ('batch_output [ { kind: BATCH_SCATTER_WITH_INPUT_SHAPE target_name: "OUTPUT0" '
                'source_input: "INPUT0" } ]\n')  # fmt: skip


@pytest.mark.parametrize("backend", ["onnxruntime", "python"])
def test_ragged_batching_is_accepted(tmp_path: Path, backend: str) -> None:
    config = _load(tmp_path, RAGGED_IO + BATCH_INPUT + BATCH_OUTPUT, backend=backend)
    assert config.input[0].allow_ragged_batch
    assert [b.target_name[0] for b in config.batch_input] == ["N"]
    assert [b.target_name[0] for b in config.batch_output] == ["OUTPUT0"]


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (RAGGED_IO, "input 'INPUT0' allow_ragged_batch"),
        (
            'input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]\n'
            'output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]\n' + BATCH_INPUT,
            "batch_input 'N'",
        ),
        (
            'input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]\n'
            'output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]\n' + BATCH_OUTPUT,
            "batch_output 'OUTPUT0'",
        ),
    ],
)
def test_ragged_batching_is_refused_for_pytorch(tmp_path: Path, text: str, field: str) -> None:
    with pytest.raises(TritonError) as info:
        _load(tmp_path, text, backend="pytorch")
    assert info.value.message == (
        f"model 'm': {field} is not supported by tritonlite: ragged batching is implemented for "
        "onnxruntime and python models only"
    )


def test_reshape_refused_where_not_applied(tmp_path: Path) -> None:
    with pytest.raises(TritonError, match="output 'OUTPUT0' reshape is not supported"):
        _load(tmp_path, 'input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 16 ] } ]\n'
              'output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 16 ] '
              "reshape { shape: [ 4, 4 ] } } ]\n", backend="python")  # fmt: skip


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("optimization { cuda { graphs: true } }\n", "optimization.cuda"),
        ("optimization { priority: PRIORITY_MAX }\n", "optimization.priority"),
        ("optimization { eager_batching: true }\n", "optimization.eager_batching"),
        (
            'instance_group [ { count: 1 kind: KIND_CPU host_policy: "numa0" } ]\n',
            "instance_group 'm_0' host_policy 'numa0'",
        ),
        ('cc_model_filenames { key: "7.5" value: "m.onnx" }\n', "cc_model_filenames"),
        (
            STATE % "use_same_buffer_for_input_output: true",
            "state 'S_IN' use_same_buffer_for_input_output",
        ),
    ],
)
def test_fields_without_effect_load_with_a_warning(
    tmp_path: Path, text: str, field: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="tritonlite"):
        _load(tmp_path, text)
    assert any(
        f"model 'm': {field} has no effect in tritonlite" in r.getMessage() for r in caplog.records
    ), [r.getMessage() for r in caplog.records]


def test_label_files_must_exist_inside_the_model_directory(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("top\nsecret\n")
    for label, message in (
        ("missing.txt", "failed to open text file for read"),
        ("../secret.txt", "is outside the model directory"),
    ):
        repo = tmp_path / label.replace("/", "_").replace(".", "_")
        _onnx(repo, "m", (16,), out_dims=f'[ 16 ] label_filename: "{label}"')
        with pytest.raises(TritonError, match="failed to load all models") as info:
            Server(repo)
        assert message in info.value.message


def test_ensemble_step_namespace_is_refused(tmp_path: Path) -> None:
    write_config(
        tmp_path / "e",
        'name: "e"\nplatform: "ensemble"\nmax_batch_size: 4\n'
        'input [ { name: "X" data_type: TYPE_FP32 dims: [ 16 ] } ]\n'
        'output [ { name: "Y" data_type: TYPE_FP32 dims: [ 16 ] } ]\n'
        'ensemble_scheduling { step [ { model_name: "m" model_version: -1 model_namespace: "ns"\n'
        '  input_map { key: "INPUT0" value: "X" } output_map { key: "OUTPUT0" value: "Y" } } ] }\n',
    )
    (tmp_path / "e" / "1").mkdir()
    with pytest.raises(TritonError, match="ensemble step 'm' model_namespace is not supported"):
        cfg.load_model_config(tmp_path / "e", auto_complete=False)
