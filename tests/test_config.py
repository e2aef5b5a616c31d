"""Model configuration: parsing, backend resolution, auto-complete, defaults, validation,
version policies, overrides and the JSON Triton serves.

Expected texts and defaults were taken from a real Triton 2.51 (CPU, python backend) given
the same configs (see the report in the config.py change for the probes).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest
from tritonlite import config as cfg
from tritonlite._proto import model_config_pb2 as pb
from tritonlite.errors import TritonError

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402 (after importorskip)

IO = """
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] } ]
"""

# Triton's examples/model_repository/simple/config.pbtxt
SIMPLE = """
name: "simple"
platform: "tensorflow_graphdef"
max_batch_size: 8
input [
  {
    name: "INPUT0"
    data_type: TYPE_INT32
    dims: [ 16 ]
  },
  {
    name: "INPUT1"
    data_type: TYPE_INT32
    dims: [ 16 ]
  }
]
output [
  {
    name: "OUTPUT0"
    data_type: TYPE_INT32
    dims: [ 16 ]
  },
  {
    name: "OUTPUT1"
    data_type: TYPE_INT32
    dims: [ 16 ]
  }
]
"""

# GET /v2/models/minimal/config from Triton 2.51 for a python model whose config.pbtxt is
# 'backend: "python"' plus IO above.
TRITON_MINIMAL_JSON = {
    "name": "minimal",
    "platform": "",
    "backend": "python",
    "runtime": "",
    "version_policy": {"latest": {"num_versions": 1}},
    "max_batch_size": 0,
    "input": [
        {
            "name": "IN",
            "data_type": "TYPE_FP32",
            "format": "FORMAT_NONE",
            "dims": [4],
            "is_shape_tensor": False,
            "allow_ragged_batch": False,
            "optional": False,
            "is_non_linear_format_io": False,
        }
    ],
    "output": [
        {
            "name": "OUT",
            "data_type": "TYPE_FP32",
            "dims": [4],
            "label_filename": "",
            "is_shape_tensor": False,
            "is_non_linear_format_io": False,
        }
    ],
    "batch_input": [],
    "batch_output": [],
    "optimization": {
        "priority": "PRIORITY_DEFAULT",
        "input_pinned_memory": {"enable": True},
        "output_pinned_memory": {"enable": True},
        "gather_kernel_buffer_threshold": 0,
        "eager_batching": False,
    },
    "instance_group": [
        {
            "name": "minimal",
            "kind": "KIND_CPU",
            "count": 1,
            "gpus": [],
            "secondary_devices": [],
            "profile": [],
            "passive": False,
            "host_policy": "",
        }
    ],
    "default_model_filename": "model.py",
    "cc_model_filenames": {},
    "metric_tags": {},
    "parameters": {},
    "model_warmup": [],
}


def make_model(
    root: Path,
    name: str,
    config: str | None,
    files: dict[str, str | bytes] | None = None,
    versions: tuple[int, ...] = (1,),
) -> Path:
    """A model directory: config.pbtxt (unless None) and the files in each version dir."""
    model_dir = root / name
    model_dir.mkdir(parents=True)
    if config is not None:
        (model_dir / "config.pbtxt").write_text(config)
    for version in versions:
        vdir = model_dir / str(version)
        vdir.mkdir()
        for filename, content in (files or {}).items():
            path = vdir / filename
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
    return model_dir


def python_model(root: Path, name: str, config: str | None, **kw: object) -> Path:
    return make_model(root, name, config, {"model.py": "# python model\n"}, **kw)  # type: ignore[arg-type]


def onnx_bytes(
    inputs: list[tuple[str, int, list[int | str]]],
    outputs: list[tuple[str, int, list[int | str]]],
    initializers: tuple[str, ...] = (),
) -> bytes:
    """A serialized ONNX graph with the given signature (Identity nodes; shapes only)."""
    graph_inputs = [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs]
    inits = []
    for name in initializers:
        graph_inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [1]))
        inits.append(helper.make_tensor(name, TensorProto.FLOAT, [1], [0.0]))
    graph_outputs = [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs]
    nodes = [
        helper.make_node("Identity", [inputs[i % len(inputs)][0]], [name])
        for i, (name, _, _) in enumerate(outputs)
    ]
    graph = helper.make_graph(nodes, "g", graph_inputs, graph_outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


BATCHING = onnx_bytes(
    inputs=[("x", TensorProto.FLOAT, ["N", 3]), ("y", TensorProto.INT64, ["N", 2, "S"])],
    outputs=[("z", TensorProto.FLOAT, ["N", 3])],
)
FIXED = onnx_bytes(
    inputs=[("x", TensorProto.INT32, [2, 3])],
    outputs=[("z", TensorProto.INT32, [2, 3])],
)


def errmsg(excinfo: pytest.ExceptionInfo[TritonError]) -> str:
    assert excinfo.value.status == "INVALID_ARG"
    return excinfo.value.message


# --------------------------------------------------------------------------- parsing


def test_parse_triton_simple_config() -> None:
    config = cfg.parse_config_text(SIMPLE, "simple")
    assert config.name == "simple"
    assert config.platform == "tensorflow_graphdef"
    assert config.max_batch_size == 8
    assert [i.name for i in config.input] == ["INPUT0", "INPUT1"]
    assert [o.name for o in config.output] == ["OUTPUT0", "OUTPUT1"]
    assert list(config.input[0].dims) == [16]
    assert config.input[1].data_type == pb.TYPE_INT32


def test_load_triton_simple_fills_tensorflow_defaults(tmp_path: Path) -> None:
    model_dir = make_model(tmp_path, "simple", SIMPLE, {"model.graphdef": b"\0"})
    config = cfg.load_model_config(model_dir)
    assert config.backend == "tensorflow"
    assert config.default_model_filename == "model.graphdef"
    # Triton's default CPU instance count is 2 for tensorflow and onnxruntime.
    assert [(g.name, g.count, g.kind) for g in config.instance_group] == [
        ("simple", 2, pb.ModelInstanceGroup.KIND_CPU)
    ]


def test_syntax_error_names_model_file_line_and_column() -> None:
    text = (
        'backend: "python"\nmax_batch_size: 8\ninput [ { name: "IN" dims: [ 4 ] \n}\noutput [ ]\n'
    )
    with pytest.raises(TritonError) as excinfo:
        cfg.parse_config_text(text, "m", "/repo/m/config.pbtxt")
    message = errmsg(excinfo)
    assert message.startswith(
        "failed to read text proto from /repo/m/config.pbtxt for model 'm': 5:1:"
    )
    assert 'Expected ","' in message


def test_unknown_field_error_has_line() -> None:
    with pytest.raises(TritonError) as excinfo:
        cfg.parse_config_text('backend: "python"\nfoo: 3\n', "m")
    assert errmsg(excinfo) == (
        "failed to read text proto from config.pbtxt for model 'm': 2:1: "
        'Message type "inference.ModelConfig" has no field named "foo".'
    )


def test_enum_number_out_of_range_is_invalid_arg() -> None:
    """Found by tests/cpp/fuzz/atheris_config.py: protobuf raised a bare ValueError."""
    text = 'input [ { name: "IN" data_type: 77777777777777777777 dims: [ 4 ] } ]'
    with pytest.raises(TritonError) as excinfo:
        cfg.parse_config_text(text, "m")
    assert errmsg(excinfo).startswith(
        "failed to read text proto from config.pbtxt for model 'm': Value out of range"
    )


def test_unknown_data_type_lists_valid_types() -> None:
    with pytest.raises(TritonError) as excinfo:
        cfg.parse_config_text('input [ { name: "IN" data_type: TYPE_FOO dims: [ 4 ] } ]', "m")
    message = errmsg(excinfo)
    assert "1:33:" in message
    assert "has no value named TYPE_FOO" in message
    assert (
        "(valid values: TYPE_BOOL, TYPE_UINT8," in message and "TYPE_STRING, TYPE_BF16)" in message
    )
    assert "TYPE_INVALID" not in message


def test_numeric_unknown_data_type_is_rejected(tmp_path: Path) -> None:
    model_dir = python_model(
        tmp_path, "m", 'backend: "python"\ninput [ { name: "IN" data_type: 99 dims: [ 1 ] } ]'
    )
    with pytest.raises(TritonError) as excinfo:
        cfg.load_model_config(model_dir)
    assert errmsg(excinfo).startswith("model input 'IN' has unknown data_type 99 (valid values:")


# --------------------------------------------------------------------------- validation

VALIDATION_CASES = {
    # name: (config.pbtxt, Triton 2.51's message)
    "neg_mbs": (
        'backend: "python"\nmax_batch_size: -1\n' + IO,
        "'max_batch_size' must be non-negative value for neg_mbs",
    ),
    "in_noname": (
        'backend: "python"\ninput [ { data_type: TYPE_FP32 dims: [ 4 ] } ]',
        "model input must specify 'name' for in_noname",
    ),
    "in_notype": (
        'backend: "python"\ninput [ { name: "IN" dims: [ 4 ] } ]',
        "model input 'IN' must specify 'data_type' for in_notype",
    ),
    "in_nodims": (
        'backend: "python"\ninput [ { name: "IN" data_type: TYPE_FP32 } ]',
        "model input 'IN' must specify 'dims' for in_nodims",
    ),
    # empty dims are an error even for a batching model
    "in_nodims_batch": (
        'backend: "python"\nmax_batch_size: 4\ninput [ { name: "IN" data_type: TYPE_FP32 } ]',
        "model input 'IN' must specify 'dims' for in_nodims_batch",
    ),
    "out_nodims": (
        'backend: "python"\noutput [ { name: "OUT" data_type: TYPE_FP32 } ]',
        "model output 'OUT' must specify 'dims' for out_nodims",
    ),
    "dim0": (
        'backend: "python"\ninput [ { name: "IN" data_type: TYPE_FP32 dims: [ 0 ] } ]',
        (
            "model input 'IN' dimension must be integer >= 1, or -1 to indicate a variable-size "
            "dimension for dim0"
        ),
    ),
    "dimneg2": (
        'backend: "python"\ninput [ { name: "IN" data_type: TYPE_FP32 dims: [ -2 ] } ]',
        (
            "model input 'IN' dimension must be integer >= 1, or -1 to indicate a variable-size "
            "dimension for dimneg2"
        ),
    ),
    "outdim0": (
        'backend: "python"\noutput [ { name: "OUT" data_type: TYPE_FP32 dims: [ 0 ] } ]',
        (
            "model output 'OUT' dimension must be integer >= 1, or -1 to indicate a variable-size "
            "dimension for outdim0"
        ),
    ),
    "dup_in": (
        (
            'backend: "python"\ninput [ { name: "IN" data_type: TYPE_FP32 dims: [ 4 ] },'
            ' { name: "IN" data_type: TYPE_FP32 dims: [ 4 ] } ]'
        ),
        "model input 'IN' is specified more than once for dup_in",  # tritonlite only
    ),
    "dup_out": (
        (
            'backend: "python"\noutput [ { name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] },'
            ' { name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] } ]'
        ),
        "model output 'OUT' is specified more than once for dup_out",  # tritonlite only
    ),
    "reshape_bad": (
        (
            'backend: "python"\n'
            'input [ { name: "IN" data_type: TYPE_FP32 dims: [ 4 ] reshape { shape: [ 2, 3 ] } } ]'
        ),
        "model input 'IN' has different size for dims and reshape for reshape_bad",
    ),
    "reshape_wildcards": (
        (
            'backend: "python"\n'
            'input [ { name: "IN" data_type: TYPE_FP32 dims: [ -1, 4 ] reshape { shape: [ 2, -1, 2 ] } } ]'
        ),
        "model input 'IN' has different size for dims and reshape for reshape_wildcards",
    ),
    "reshape_empty_nobatch": (
        (
            'backend: "python"\n'
            'input [ { name: "IN" data_type: TYPE_FP32 dims: [ 1 ] reshape { } } ]'
        ),
        (
            "model input 'IN' cannot have empty reshape for non-batching model as scalar tensors "
            "are not supported for reshape_empty_nobatch"
        ),
    ),
    "pbs_big": (
        'backend: "python"\nmax_batch_size: 4\ndynamic_batching { preferred_batch_size: [ 8 ] }\n'
        + IO,
        "dynamic batching preferred size must be <= max batch size for pbs_big",
    ),
    "pbs_zero": (
        'backend: "python"\nmax_batch_size: 4\ndynamic_batching { preferred_batch_size: [ 0 ] }\n'
        + IO,
        "dynamic batching preferred size must be positive for pbs_zero",
    ),
    "prio_bad": (
        'backend: "python"\nmax_batch_size: 4\n'
        "dynamic_batching { priority_levels: 2 default_priority_level: 3 }\n" + IO,
        "default priority level must be in range [1, 2] for prio_bad",
    ),
    "prio_zero": (
        'backend: "python"\nmax_batch_size: 4\ndynamic_batching { priority_levels: 2 }\n' + IO,
        "default priority level must be in range [1, 2] for prio_zero",
    ),
    "prio_policy": (
        'backend: "python"\nmax_batch_size: 4\ndynamic_batching { priority_levels: 2 '
        "default_priority_level: 1 priority_queue_policy { key: 5 value { } } }\n" + IO,
        "priority queue policy must have priority level in range [1, 2] for prio_policy",
    ),
    "ig_gpu": (
        'backend: "python"\ninstance_group [ { kind: KIND_GPU } ]\n' + IO,
        "instance group ig_gpu_0 of model ig_gpu has kind KIND_GPU but no GPUs are available",
    ),
    "ig_cpu_gpus": (
        'backend: "python"\ninstance_group [ { kind: KIND_CPU gpus: [ 0 ] } ]\n' + IO,
        (
            "instance group ig_cpu_gpus_0 of model ig_cpu_gpus has kind KIND_CPU but specifies one "
            "or more GPUs"
        ),
    ),
    "vp_specific_empty": (
        'backend: "python"\nversion_policy { specific { } }\n' + IO,
        (
            "at least one version must be available under the version policy of model "
            "'vp_specific_empty'"
        ),
    ),
    "seq_noname": (
        'backend: "python"\nmax_batch_size: 8\nsequence_batching { control_input [ { control '
        "[ { kind: CONTROL_SEQUENCE_START int32_false_true: [0,1] } ] } ] }\n" + IO,
        "sequence batching control tensor must have a name for seq_noname",
    ),
    "seq_3vals": (
        'backend: "python"\nmax_batch_size: 8\nsequence_batching { control_input [ { name: "S" '
        "control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [0,1,2] } ] } ] }\n" + IO,
        (
            "sequence batching control 'int32_false_true' must have exactly 2 entries for "
            "CONTROL_SEQUENCE_START for seq_3vals"
        ),
    ),
    "seq_novals": (
        'backend: "python"\nmax_batch_size: 8\nsequence_batching { control_input [ { name: "S" '
        "control [ { kind: CONTROL_SEQUENCE_END } ] } ] }\n" + IO,
        (
            "sequence batching must specify either 'int32_false_true', 'fp32_false_true' or "
            "'bool_false_true' for CONTROL_SEQUENCE_END for seq_novals"
        ),
    ),
    "seq_twotypes": (
        'backend: "python"\nmax_batch_size: 8\nsequence_batching { control_input [ { name: "S" '
        "control [ { kind: CONTROL_SEQUENCE_READY int32_false_true: [0,1] "
        "fp32_false_true: [0,1] } ] } ] }\n" + IO,
        (
            "sequence batching specifies more than one from 'int32_false_true', 'fp32_false_true' "
            "and 'bool_false_true' for CONTROL_SEQUENCE_READY for seq_twotypes"
        ),
    ),
    "seq_corrid_fp32": (
        'backend: "python"\nmax_batch_size: 8\nsequence_batching { control_input [ { name: "C" '
        "control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_FP32 } ] } ] }\n" + IO,
        (
            "unexpected data type for control CONTROL_SEQUENCE_CORRID for seq_corrid_fp32. Allowed "
            "data types are TYPE_UINT64, TYPE_INT64, TYPE_UINT32, TYPE_INT32 and TYPE_STRING"
        ),
    ),
    "seq_dup_tensor": (
        'backend: "python"\nmax_batch_size: 8\nsequence_batching { control_input [ '
        '{ name: "S" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [0,1] } ] }, '
        '{ name: "S" control [ { kind: CONTROL_SEQUENCE_END int32_false_true: [0,1] } ] } ] }\n'
        + IO,
        (
            "sequence batching control tensor 'S' is specified for multiple control kinds for "
            "seq_dup_tensor"
        ),
    ),
    "seq_two_starts": (
        'backend: "python"\nmax_batch_size: 8\nsequence_batching { control_input [ '
        '{ name: "S" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [0,1] } ] }, '
        '{ name: "T" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [0,1] } ] } ] }\n'
        + IO,
        "sequence batching specifies multiple CONTROL_SEQUENCE_START tensors for seq_two_starts",
    ),
    "ensemble_nosched": (
        'platform: "ensemble"\n' + IO,
        "ensemble scheduling must be set for ensemble ensemble_nosched whose platform is ensemble",
    ),
    "plat_unknown": (
        'platform: "foo_bar"\n' + IO,
        "unexpected platform type 'foo_bar' for plat_unknown",
    ),
    "pair_mismatch": (
        'platform: "pytorch_libtorch"\nbackend: "onnxruntime"\n' + IO,
        "unexpected 'platform' and 'backend' pair, got:pytorch_libtorch, onnxruntime",
    ),
}


@pytest.mark.parametrize("name", sorted(VALIDATION_CASES))
def test_validation_error_texts(tmp_path: Path, name: str) -> None:
    text, expected = VALIDATION_CASES[name]
    model_dir = python_model(tmp_path, name, text)
    with pytest.raises(TritonError) as excinfo:
        cfg.load_model_config(model_dir)
    assert errmsg(excinfo) == expected


def test_instance_count_below_one_gets_the_default(tmp_path: Path) -> None:
    # Triton fills the default count instead of rejecting count 0 or -3.
    text = 'backend: "python"\ninstance_group [ { count: 0 }, { count: -3 kind: KIND_CPU } ]\n' + IO
    config = cfg.load_model_config(python_model(tmp_path, "m", text))
    assert [(g.name, g.count) for g in config.instance_group] == [("m_0", 1), ("m_1", 1)]


def test_dynamic_batching_without_batching_is_allowed(tmp_path: Path) -> None:
    text = 'backend: "python"\ndynamic_batching {}\n' + IO
    config = cfg.load_model_config(python_model(tmp_path, "m", text))
    assert cfg.has_dynamic_batching(config)
    assert list(config.dynamic_batching.preferred_batch_size) == []


def test_platform_and_unknown_backend_pair_is_allowed(tmp_path: Path) -> None:
    # As in Triton: a backend it does not know (python) may carry any platform.
    text = 'platform: "onnxruntime_onnx"\nbackend: "python"\n' + IO
    config = cfg.load_model_config(python_model(tmp_path, "m", text))
    assert (config.platform, config.backend) == ("onnxruntime_onnx", "python")


def test_reshape_with_matching_variable_chunks(tmp_path: Path) -> None:
    text = (
        'backend: "onnxruntime"\ninput [ { name: "IN" data_type: TYPE_FP32 dims: [ 2, 4, -1, 6 ] '
        'reshape { shape: [ 8, -1, 1, 6 ] } } ]\noutput [ { name: "OUT" data_type: TYPE_FP32 '
        "dims: [ 1 ] } ]"
    )
    config = cfg.load_model_config(make_model(tmp_path, "m", text, {}))
    assert cfg.input_specs(config)[0].reshape == [8, -1, 1, 6]


def test_reshape_is_refused_for_python_models(tmp_path: Path) -> None:
    text = (
        'backend: "python"\ninput [ { name: "IN" data_type: TYPE_FP32 dims: [ 2, 4 ] '
        "reshape { shape: [ 8 ] } } ]"
    )
    with pytest.raises(TritonError, match="model 'm': input 'IN' reshape is not supported by "
                                          "tritonlite"):  # fmt: skip
        cfg.load_model_config(python_model(tmp_path, "m", text))


# --------------------------------------------------------------------------- ensembles

ENSEMBLE = """
platform: "ensemble"
max_batch_size: 4
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] } ]
ensemble_scheduling { step [
  { model_name: "a" model_version: -1 input_map { key: "x" value: "IN" }
    output_map { key: "y" value: "MID" } },
  { model_name: "b" model_version: -1 input_map { key: "x" value: "MID" }
    output_map { key: "y" value: "OUT" } }
] }
"""


def test_ensemble_defaults_and_json(tmp_path: Path) -> None:
    config = cfg.load_model_config(make_model(tmp_path, "ens", ENSEMBLE))
    assert config.backend == "" and config.default_model_filename == ""
    assert not config.instance_group
    assert not config.HasField("optimization")
    out = cfg.config_to_json(config)
    assert out["instance_group"] == []
    assert out["ensemble_scheduling"]["step"][0]["model_version"] == -1
    assert "optimization" not in out


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda t: t.replace('value: "IN" }', 'value: "OTHER" }'),
            "ensemble input 'IN' for ensemble ens' is not used",
        ),
        (
            lambda t: t.replace(
                'output_map { key: "y" value: "OUT" }', 'output_map { key: "y" value: "X" }'
            ),
            "ensemble output 'OUT' for ensemble ens' is not used",
        ),
        (
            lambda t: t.replace(
                'input_map { key: "x" value: "MID" }', 'input_map { key: "x" value: "NOPE" }'
            ),
            (
                "output 'OUT' for ensemble 'ens' is not written: at least one of its depending "
                "tensors, 'NOPE', is not connected"
            ),
        ),
        (
            lambda t: t.replace('model_name: "b" ', ""),
            "must specify 'model_name' in step 1 of ensemble 'ens'",
        ),
        (
            lambda t: t + "instance_group [ { count: 1 } ]\n",
            "instance group should not be specified for ensemble 'ens'",
        ),
        (
            lambda t: t.replace('platform: "ensemble"', 'platform: "ensemble"\nbackend: "python"'),
            "Ensemble model 'ens' must have platform type 'ensemble' and empty backend type",
        ),
    ],
)
def test_ensemble_validation(tmp_path: Path, change: object, expected: str) -> None:
    text = change(ENSEMBLE)  # type: ignore[operator]
    with pytest.raises(TritonError) as excinfo:
        cfg.load_model_config(make_model(tmp_path, "ens", text))
    assert errmsg(excinfo) == expected


# --------------------------------------------------------------------------- defaults


def test_defaults_match_triton_for_minimal_python_model(tmp_path: Path) -> None:
    model_dir = python_model(tmp_path, "minimal", 'backend: "python"\n' + IO)
    out = cfg.config_to_json(cfg.load_model_config(model_dir))
    assert out == TRITON_MINIMAL_JSON
    assert list(out) == list(TRITON_MINIMAL_JSON)  # same key order as Triton's printer
    assert list(out["input"][0]) == list(TRITON_MINIMAL_JSON["input"][0])


def test_defaults_no_config_python_model(tmp_path: Path) -> None:
    # Triton: backend from model.py, name from the directory, no inputs/outputs.
    out = cfg.config_to_json(cfg.load_model_config(python_model(tmp_path, "noconfig", None)))
    expected = dict(TRITON_MINIMAL_JSON, name="noconfig", input=[], output=[])
    expected["instance_group"] = [dict(TRITON_MINIMAL_JSON["instance_group"][0], name="noconfig")]
    assert out == expected


def test_default_preferred_batch_size_and_sequence_defaults(tmp_path: Path) -> None:
    text = 'backend: "python"\nmax_batch_size: 8\ndynamic_batching {}\n' + IO
    out = cfg.config_to_json(cfg.load_model_config(python_model(tmp_path, "dynb", text)))
    assert out["dynamic_batching"] == {
        "preferred_batch_size": [8],
        "max_queue_delay_microseconds": 0,
        "preserve_ordering": False,
        "priority_levels": 0,
        "default_priority_level": 0,
        "priority_queue_policy": {},
    }
    text = 'backend: "python"\nmax_batch_size: 8\nsequence_batching { oldest {} }\n' + IO
    out = cfg.config_to_json(cfg.load_model_config(python_model(tmp_path, "seqb", text)))
    assert out["sequence_batching"] == {
        "oldest": {
            "max_candidate_sequences": 0,
            "preferred_batch_size": [8],
            "max_queue_delay_microseconds": 0,
            "preserve_ordering": False,
        },
        "max_sequence_idle_microseconds": 1000000,
        "control_input": [],
        "state": [],
        "iterative_sequence": False,
    }


def test_instance_group_names(tmp_path: Path) -> None:
    # Triton: an added default group is named after the model; unnamed listed groups
    # get "<model>_<index>".
    text = 'backend: "python"\ninstance_group [ { count: 2 kind: KIND_CPU }, { name: "custom" } ]\n'
    config = cfg.load_model_config(python_model(tmp_path, "ig", text + IO))
    assert [(g.name, g.count, g.kind) for g in config.instance_group] == [
        ("ig_0", 2, pb.ModelInstanceGroup.KIND_CPU),
        ("custom", 1, pb.ModelInstanceGroup.KIND_CPU),
    ]


def test_kind_auto_and_gpu_with_devices(tmp_path: Path) -> None:
    text = 'backend: "python"\ninstance_group [ { kind: KIND_GPU }, { kind: KIND_AUTO } ]\n' + IO
    model_dir = python_model(tmp_path, "m", text)
    config = cfg.load_model_config(model_dir, gpus=[0, 1])
    kinds = [(g.kind, list(g.gpus)) for g in config.instance_group]
    assert kinds == [(pb.ModelInstanceGroup.KIND_GPU, [0, 1])] * 2
    with pytest.raises(TritonError) as excinfo:
        cfg.load_model_config(
            python_model(
                tmp_path, "g", 'backend: "python"\ninstance_group [ { kind: KIND_GPU gpus: [3] } ]'
            ),
            gpus=[0],
        )
    assert errmsg(excinfo) == (
        "instance group g_0 of model g specifies invalid or unsupported gpu id 3. GPUs with at "
        "least the minimum required CUDA compute compatibility of 6.000000 are: 0"
    )


def test_kind_auto_is_cpu_without_gpus(tmp_path: Path) -> None:
    text = 'backend: "python"\ninstance_group [ { kind: KIND_AUTO } ]\n' + IO
    config = cfg.load_model_config(python_model(tmp_path, "m", text))
    assert config.instance_group[0].kind == pb.ModelInstanceGroup.KIND_CPU


def test_optimization_left_as_given(tmp_path: Path) -> None:
    text = 'backend: "python"\noptimization { input_pinned_memory { enable: false } }\n' + IO
    config = cfg.load_model_config(python_model(tmp_path, "m", text))
    assert config.optimization.input_pinned_memory.enable is False
    assert config.optimization.output_pinned_memory.enable is True


# --------------------------------------------------------------------------- backends


@pytest.mark.parametrize(
    ("filename", "backend", "platform"),
    [
        ("model.onnx", "onnxruntime", "onnxruntime_onnx"),
        ("model.pt", "pytorch", "pytorch_libtorch"),
        ("model.py", "python", ""),
        ("model.plan", "tensorrt", "tensorrt_plan"),
    ],
)
def test_backend_inferred_from_files(
    tmp_path: Path, filename: str, backend: str, platform: str
) -> None:
    content = FIXED if filename == "model.onnx" else b"\0"
    model_dir = make_model(
        tmp_path, "m", IO if filename != "model.onnx" else None, {filename: content}
    )
    if filename == "model.onnx":
        config = cfg.load_model_config(model_dir)
    else:
        config = cfg.load_model_config(model_dir, auto_complete=False)
    assert (config.backend, config.platform, config.default_model_filename) == (
        backend,
        platform,
        filename,
    )


@pytest.mark.parametrize(
    ("text", "backend", "platform", "filename"),
    [
        ('platform: "onnxruntime_onnx"', "onnxruntime", "onnxruntime_onnx", "model.onnx"),
        ('backend: "onnxruntime"', "onnxruntime", "onnxruntime_onnx", "model.onnx"),
        ('platform: "pytorch_libtorch"', "pytorch", "pytorch_libtorch", "model.pt"),
        ('backend: "pytorch"', "pytorch", "pytorch_libtorch", "model.pt"),
        ('backend: "python"', "python", "", "model.py"),
        ('default_model_filename: "model.py"', "python", "", "model.py"),
        ('backend: "python"\ndefault_model_filename: "run.py"', "python", "", "run.py"),
    ],
)
def test_backend_platform_resolution(
    tmp_path: Path, text: str, backend: str, platform: str, filename: str
) -> None:
    model_dir = make_model(tmp_path, "m", text + "\n" + IO)
    config = cfg.load_model_config(model_dir, auto_complete=False)
    assert (config.backend, config.platform, config.default_model_filename) == (
        backend,
        platform,
        filename,
    )


def test_resolution_runs_with_auto_complete_disabled(tmp_path: Path) -> None:
    # As in Triton with --disable-auto-complete-config: backend still comes from model.py.
    config = cfg.load_model_config(python_model(tmp_path, "m", IO), auto_complete=False)
    assert config.backend == "python"


def test_no_backend_found(tmp_path: Path) -> None:
    with pytest.raises(TritonError) as excinfo:
        cfg.load_model_config(make_model(tmp_path, "nofiles", None))
    assert errmsg(excinfo) == (
        "Invalid model name: Could not determine backend for model 'nofiles' with no backend "
        "in model configuration. Expected model name of the form 'model.<backend_name>'."
    )


def test_custom_backend_from_model_name(tmp_path: Path) -> None:
    config = cfg.load_model_config(make_model(tmp_path, "m.identity", IO))
    assert (config.backend, config.default_model_filename) == ("identity", "model.identity")


# --------------------------------------------------------------------------- ONNX auto-complete


def test_onnx_auto_complete_batching_model_without_config(tmp_path: Path) -> None:
    model_dir = make_model(tmp_path, "b", None, {"model.onnx": BATCHING})
    config = cfg.load_model_config(model_dir)
    assert config.max_batch_size == 4  # Triton's default-max-batch-size
    assert list(config.dynamic_batching.preferred_batch_size) == [4]
    assert [(s.name, s.datatype, s.dims) for s in cfg.input_specs(config)] == [
        ("x", "FP32", [3]),
        ("y", "INT64", [2, -1]),
    ]
    assert [(s.name, s.datatype, s.dims) for s in cfg.output_specs(config)] == [("z", "FP32", [3])]
    assert [(g.name, g.count) for g in config.instance_group] == [("b", 2)]  # ORT on CPU: 2
    assert config.platform == "onnxruntime_onnx"


def test_onnx_auto_complete_non_batching_model(tmp_path: Path) -> None:
    config = cfg.load_model_config(make_model(tmp_path, "f", None, {"model.onnx": FIXED}))
    assert config.max_batch_size == 0
    assert not cfg.has_dynamic_batching(config)
    assert [(s.name, s.datatype, s.dims) for s in cfg.input_specs(config)] == [
        ("x", "INT32", [2, 3])
    ]


def test_onnx_auto_complete_keeps_explicit_max_batch_size(tmp_path: Path) -> None:
    model_dir = make_model(tmp_path, "b", "max_batch_size: 16\n", {"model.onnx": BATCHING})
    config = cfg.load_model_config(model_dir)
    assert config.max_batch_size == 16
    assert list(config.dynamic_batching.preferred_batch_size) == [16]


def test_onnx_auto_complete_keeps_sequence_batching(tmp_path: Path) -> None:
    model_dir = make_model(
        tmp_path, "b", "max_batch_size: 8\nsequence_batching {}\n", {"model.onnx": BATCHING}
    )
    config = cfg.load_model_config(model_dir)
    assert config.HasField("sequence_batching") and not cfg.has_dynamic_batching(config)


def test_onnx_default_max_batch_size_from_backend_hints(tmp_path: Path) -> None:
    model_dir = make_model(tmp_path, "b", None, {"model.onnx": BATCHING})
    hints = {"onnxruntime": {"default-max-batch-size": "1"}}
    config = cfg.load_model_config(model_dir, backend_hints=hints)
    assert config.max_batch_size == 1
    assert not cfg.has_dynamic_batching(config)  # Triton adds it only when > 1
    config = cfg.load_model_config(model_dir, backend_hints={"": {"default-max-batch-size": "32"}})
    assert config.max_batch_size == 32


def test_onnx_batching_config_on_non_batching_model(tmp_path: Path) -> None:
    model_dir = make_model(tmp_path, "f", "max_batch_size: 8\n", {"model.onnx": FIXED})
    with pytest.raises(TritonError) as excinfo:
        cfg.load_model_config(model_dir)
    assert errmsg(excinfo) == (
        "autofill failed for model 'f': model does not support batching while non-zero "
        "max_batch_size is specified"
    )


def test_onnx_partial_config_keeps_listed_and_adds_missing(tmp_path: Path) -> None:
    # Triton's onnxruntime backend: a listed side is kept as it is; only a missing side is
    # filled from the model.
    text = """
    max_batch_size: 2
    input [ { name: "y" data_type: TYPE_INT64 dims: [ 2, 5 ] }, { name: "x" data_type: TYPE_FP32 dims: [ 3 ] } ]
    """
    model_dir = make_model(tmp_path, "b", text, {"model.onnx": BATCHING})
    config = cfg.load_model_config(model_dir)
    assert [(s.name, s.datatype, s.dims) for s in cfg.input_specs(config)] == [
        ("y", "INT64", [2, 5]),  # as configured
        ("x", "FP32", [3]),
    ]
    assert [(s.name, s.datatype, s.dims) for s in cfg.output_specs(config)] == [("z", "FP32", [3])]


def test_onnx_listed_inputs_and_outputs_skip_auto_complete(tmp_path: Path) -> None:
    # Triton's onnxruntime backend (AutoCompleteConfig): inputs and outputs both listed means no
    # auto-complete at all; an explicit max_batch_size: 0 stays 0 (no batching, the model's
    # dynamic first dim is an ordinary dim) and no dynamic_batching is added.
    text = """
    max_batch_size: 0
    input [ { name: "x" data_type: TYPE_FP32 dims: [ -1, 3 ] },
            { name: "y" data_type: TYPE_INT64 dims: [ -1, 2, -1 ] } ]
    output [ { name: "z" data_type: TYPE_FP32 dims: [ -1, 3 ] } ]
    """
    config = cfg.load_model_config(make_model(tmp_path, "b", text, {"model.onnx": BATCHING}))
    assert config.max_batch_size == 0
    assert not cfg.has_dynamic_batching(config)
    assert [(s.name, s.dims) for s in cfg.input_specs(config)] == [
        ("x", [-1, 3]),
        ("y", [-1, 2, -1]),
    ]
    # Not even a batching config on a model that cannot batch is looked at (Triton reads no
    # model file then; the backend's load checks the model against the config).
    text = """
    max_batch_size: 8
    input [ { name: "x" data_type: TYPE_INT32 dims: [ 2, 3 ] } ]
    output [ { name: "z" data_type: TYPE_INT32 dims: [ 2, 3 ] } ]
    """
    config = cfg.load_model_config(make_model(tmp_path, "f", text, {"model.onnx": FIXED}))
    assert config.max_batch_size == 8


def test_onnx_initializers_are_not_inputs_and_scalars_get_reshape(tmp_path: Path) -> None:
    model = onnx_bytes(
        inputs=[("x", TensorProto.FLOAT, ["N"])],
        outputs=[("s", TensorProto.FLOAT, ["N"])],
        initializers=("w",),
    )
    config = cfg.load_model_config(make_model(tmp_path, "s", None, {"model.onnx": model}))
    assert [s.name for s in cfg.input_specs(config)] == ["x"]
    # batch-only shape: dims [1] with an empty reshape, as Triton's onnxruntime backend does
    assert cfg.input_specs(config)[0].dims == [1]
    assert cfg.input_specs(config)[0].reshape == []


def test_onnx_uses_highest_version_with_the_file(tmp_path: Path) -> None:
    model_dir = make_model(tmp_path, "v", None, {"model.onnx": FIXED}, versions=(1,))
    (model_dir / "3").mkdir()
    (model_dir / "3" / "model.onnx").write_bytes(BATCHING)
    (model_dir / "7").mkdir()  # no model file
    config = cfg.load_model_config(model_dir)
    assert config.max_batch_size == 4


def test_onnx_without_onnx_package_uses_onnxruntime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("onnxruntime")
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx -> ImportError
    config = cfg.load_model_config(make_model(tmp_path, "b", None, {"model.onnx": BATCHING}))
    assert config.max_batch_size == 4
    assert [(s.name, s.datatype, s.dims) for s in cfg.input_specs(config)] == [
        ("x", "FP32", [3]),
        ("y", "INT64", [2, -1]),
    ]


def test_bad_onnx_file(tmp_path: Path) -> None:
    model_dir = make_model(tmp_path, "bad", None, {"model.onnx": b"not an onnx model"})
    with pytest.raises(TritonError) as excinfo:
        cfg.load_model_config(model_dir)
    assert errmsg(excinfo).startswith("autofill failed for model 'bad': unable to read ")


def test_auto_complete_disabled_needs_config(tmp_path: Path) -> None:
    model_dir = make_model(tmp_path, "b", None, {"model.onnx": BATCHING})
    with pytest.raises(TritonError) as excinfo:
        cfg.load_model_config(model_dir, auto_complete=False)
    assert errmsg(excinfo) == (
        f"failed to open text file for read {model_dir / 'config.pbtxt'}: No such file or directory"
    )


def test_auto_complete_disabled_leaves_io_alone(tmp_path: Path) -> None:
    model_dir = make_model(tmp_path, "b", 'backend: "onnxruntime"\n', {"model.onnx": BATCHING})
    config = cfg.load_model_config(model_dir, auto_complete=False)
    assert config.max_batch_size == 0 and not config.input and not config.output


# --------------------------------------------------------------------------- python hook


def test_python_auto_complete_hook(tmp_path: Path) -> None:
    seen: list[pb.ModelConfig] = []

    def complete(partial: pb.ModelConfig) -> pb.ModelConfig:
        seen.append(partial)
        done = pb.ModelConfig()
        done.CopyFrom(partial)
        done.max_batch_size = 4
        done.input.add(name="A", data_type=pb.TYPE_STRING, dims=[1])
        done.output.add(name="B", data_type=pb.TYPE_STRING, dims=[1])
        done.dynamic_batching.SetInParent()
        done.model_transaction_policy.decoupled = True
        done.backend = "ignored"  # only what a backend may auto-complete is taken
        return done

    config = cfg.load_model_config(python_model(tmp_path, "p", None), python_auto_complete=complete)
    assert seen and seen[0].backend == "python" and not seen[0].input
    assert config.backend == "python"
    assert config.max_batch_size == 4
    assert [s.datatype for s in cfg.input_specs(config)] == ["BYTES"]
    assert list(config.dynamic_batching.preferred_batch_size) == [4]
    assert config.model_transaction_policy.decoupled


def test_python_hook_not_called_without_auto_complete(tmp_path: Path) -> None:
    def boom(partial: pb.ModelConfig) -> pb.ModelConfig:
        raise AssertionError("called")

    model_dir = python_model(tmp_path, "p", 'backend: "python"\n')
    cfg.load_model_config(model_dir, auto_complete=False, python_auto_complete=boom)


def test_python_hook_must_return_a_config(tmp_path: Path) -> None:
    with pytest.raises(TritonError) as excinfo:
        cfg.load_model_config(python_model(tmp_path, "p", None), python_auto_complete=lambda c: {})  # type: ignore[arg-type,return-value]
    assert errmsg(excinfo) == "auto-complete for model 'p' must return a ModelConfig, got dict"


def test_python_hook_result_is_validated(tmp_path: Path) -> None:
    def complete(partial: pb.ModelConfig) -> pb.ModelConfig:
        done = pb.ModelConfig()
        done.input.add(name="A", data_type=pb.TYPE_FP32)
        return done

    with pytest.raises(TritonError) as excinfo:
        cfg.load_model_config(python_model(tmp_path, "p", None), python_auto_complete=complete)
    assert errmsg(excinfo) == "model input 'A' must specify 'dims' for p"


# --------------------------------------------------------------------------- versions


def test_version_dirs_numeric_only(tmp_path: Path) -> None:
    model_dir = tmp_path / "m"
    for name in ("1", "2", "10", "0", "03", "abc", "-4", "7x"):
        (model_dir / name).mkdir(parents=True)
    (model_dir / "5").write_text("a file, not a version")
    assert list(cfg.version_dirs(model_dir)) == [0, 1, 2, 10]
    assert cfg.version_dirs(model_dir)[10] == model_dir / "10"
    assert cfg.version_dirs(tmp_path / "missing") == {}


def _policy(text: str, name: str = "m") -> pb.ModelConfig:
    config = cfg.parse_config_text(text, name)
    config.name = name
    return config


def test_select_versions_policies(caplog: pytest.LogCaptureFixture) -> None:
    available = [3, 1, 2, 10]
    assert cfg.select_versions(_policy(""), available) == [10]
    assert cfg.select_versions(
        _policy("version_policy { latest { num_versions: 2 } }"), available
    ) == [3, 10]
    assert cfg.select_versions(
        _policy("version_policy { latest { num_versions: 9 } }"), available
    ) == [1, 2, 3, 10]
    assert cfg.select_versions(_policy("version_policy { all { } }"), available) == [1, 2, 3, 10]
    specific = _policy("version_policy { specific { versions: [ 2, 1 ] } }")
    assert cfg.select_versions(specific, available) == [1, 2]
    # Listed versions that are missing are logged with Triton's text; the rest load.
    caplog.set_level(logging.ERROR, logger="tritonlite.config")
    partial = _policy("version_policy { specific { versions: [ 1, 7, 9 ] } }", "vp")
    assert cfg.select_versions(partial, available) == [1]
    assert [r.getMessage() for r in caplog.records] == [
        "version 7 is specified for model 'vp', but the version directory is not present",
        "version 9 is specified for model 'vp', but the version directory is not present",
    ]


@pytest.mark.parametrize(
    ("text", "available"),
    [
        ("version_policy { specific { versions: [ 7 ] } }", [1, 2]),
        ("version_policy { latest { num_versions: 0 } }", [1, 2]),
        ("", []),
        ("version_policy { all { } }", []),
    ],
)
def test_select_versions_none_left(text: str, available: list[int]) -> None:
    with pytest.raises(TritonError) as excinfo:
        cfg.select_versions(_policy(text, "vp"), available)
    assert errmsg(excinfo) == (
        "at least one version must be available under the version policy of model 'vp'"
    )


# --------------------------------------------------------------------------- override, names


def test_json_override_replaces_file_config(tmp_path: Path) -> None:
    model_dir = python_model(tmp_path, "m", 'backend: "python"\nmax_batch_size: 8\n' + IO)
    override = json.dumps(
        {
            "backend": "python",
            "max_batch_size": 2,
            "input": [{"name": "X", "data_type": "type_int32", "dims": [3]}],
            "output": [{"name": "Y", "data_type": "TYPE_INT32", "dims": ["3"]}],
        }
    )
    config = cfg.load_model_config(model_dir, override=override)
    assert config.max_batch_size == 2
    assert [(s.name, s.datatype, s.dims) for s in cfg.input_specs(config)] == [("X", "INT32", [3])]
    assert [s.name for s in cfg.output_specs(config)] == ["Y"]
    # An empty override is an empty config: everything comes from auto-complete again.
    config = cfg.load_model_config(model_dir, override="{}")
    assert config.backend == "python" and not config.input


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("{not json", "Expecting property name"),
        ('{"backend": "python", "bogus_field": 1}', 'no field named "bogus_field"'),
        (
            '{"input": [{"name": "a", "data_type": "TYPE_BAD", "dims": [1]}]}',
            "Invalid enum value TYPE_BAD for enum type inference.DataType",
        ),
        (
            '{"input": [{"name": "a", "data_type": "TYPE_BAD", "dims": [1]}]}',
            "TYPE_BOOL, TYPE_UINT8",
        ),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_bad_json_override(tmp_path: Path, override: str, fragment: str) -> None:
    model_dir = python_model(tmp_path, "m", None)
    with pytest.raises(TritonError) as excinfo:
        cfg.load_model_config(model_dir, override=override)
    message = errmsg(excinfo)
    assert message.startswith("Invalid config override for model 'm': ")
    assert fragment in message


def test_name_mismatch(tmp_path: Path) -> None:
    model_dir = python_model(tmp_path, "name_mismatch", 'name: "other"\nbackend: "python"\n' + IO)
    with pytest.raises(TritonError) as excinfo:
        cfg.load_model_config(model_dir)
    assert errmsg(excinfo) == (
        "unexpected directory name 'name_mismatch' for model 'other', directory name must "
        "equal model name"
    )
    with pytest.raises(TritonError) as excinfo:
        cfg.load_model_config(python_model(tmp_path, "m", None), override='{"name": "other"}')
    assert "for model 'other', directory name must equal model name" in errmsg(excinfo)


def test_model_name_defaults_to_directory_and_can_be_given(tmp_path: Path) -> None:
    model_dir = python_model(tmp_path, "tmpdir123", 'name: "real"\nbackend: "python"\n')
    config = cfg.load_model_config(model_dir, model_name="real")
    assert config.name == "real"
    assert config.instance_group[0].name == "real"
    assert cfg.load_model_config(python_model(tmp_path, "d", None)).name == "d"


# --------------------------------------------------------------------------- JSON, helpers


def test_config_to_json_int64_fields() -> None:
    config = cfg.parse_config_text(
        """
        name: "m"
        version_policy { specific { versions: [ 1, 3 ] } }
        max_batch_size: 4
        input [ { name: "IN" data_type: TYPE_FP32 dims: [ -1, 2 ] reshape { shape: [ -1, 1, 2 ] } } ]
        dynamic_batching { max_queue_delay_microseconds: 100 priority_levels: 2
          default_priority_level: 1
          default_queue_policy { default_timeout_microseconds: 5 }
          priority_queue_policy { key: 2 value { default_timeout_microseconds: 7 } } }
        instance_group [ { secondary_devices [ { device_id: 9 } ] } ]
        """,
        "m",
    )
    out = cfg.config_to_json(config)
    assert out["version_policy"] == {"specific": {"versions": [1, 3]}}
    assert out["input"][0]["dims"] == [-1, 2]
    assert out["input"][0]["reshape"] == {"shape": [-1, 1, 2]}
    batching = out["dynamic_batching"]
    assert batching["max_queue_delay_microseconds"] == 100
    assert batching["priority_levels"] == 2 and batching["default_priority_level"] == 1
    assert batching["default_queue_policy"]["default_timeout_microseconds"] == 5
    assert batching["priority_queue_policy"]["2"]["default_timeout_microseconds"] == 7
    # Triton leaves this 64-bit field as protobuf's JSON string.
    assert out["instance_group"][0]["secondary_devices"][0]["device_id"] == "9"
    json.dumps(out)  # serializable
    assert cfg.config_to_json(pb.ModelConfig()) == {}


def test_specs_and_dynamic_batching() -> None:
    config = cfg.parse_config_text(
        """
        max_batch_size: 8
        input [
          { name: "A" data_type: TYPE_STRING dims: [ -1 ] optional: true },
          { name: "B" data_type: TYPE_BF16 dims: [ 4 ] reshape { shape: [ 2, 2 ] } }
        ]
        output [ { name: "C" data_type: TYPE_INT8 dims: [ 1 ] } ]
        """,
        "m",
    )
    assert cfg.input_specs(config) == [
        cfg.TensorSpec("A", "BYTES", [-1], optional=True),
        cfg.TensorSpec("B", "BF16", [4], reshape=[2, 2]),
    ]
    assert cfg.output_specs(config) == [cfg.TensorSpec("C", "INT8", [1])]
    assert not cfg.has_dynamic_batching(config)
    config.dynamic_batching.SetInParent()
    assert cfg.has_dynamic_batching(config)


def test_auto_complete_leaves_sequence_control_and_state_tensors_to_the_server(
    tmp_path: Path,
) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from models import make_accumulator_onnx

    model_dir = tmp_path / "acc"
    make_accumulator_onnx(model_dir / "1" / "model.onnx")
    (model_dir / "config.pbtxt").write_text(
        'name: "acc" platform: "onnxruntime_onnx" max_batch_size: 4 '
        'sequence_batching { state [{ input_name: "STATE_IN" output_name: "STATE_OUT" '
        "data_type: TYPE_FP32 dims: [ 1 ] }] }"
    )
    config = cfg.load_model_config(model_dir)
    assert [i.name for i in config.input] == ["INPUT"]
    assert [o.name for o in config.output] == ["OUTPUT"]
