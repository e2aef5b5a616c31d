"""The onnxruntime backend: every datatype against a direct InferenceSession, Triton's simple
models, batching, requested outputs, session options, providers, and each error path."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from google.protobuf import text_format
from models import make_add_sub_onnx, make_identity_onnx, make_mlp_onnx

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from tritonlite import TritonError  # noqa: E402
from tritonlite._proto import model_config_pb2  # noqa: E402
from tritonlite.backends import onnxruntime as ort_backend  # noqa: E402

ml_dtypes = pytest.importorskip("ml_dtypes")

DATATYPES = [
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "BF16", "FP32", "FP64", "BYTES",
]  # fmt: skip
NUMPY = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
    "UINT64": np.uint64, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
    "INT64": np.int64, "FP16": np.float16, "BF16": ml_dtypes.bfloat16, "FP32": np.float32,
    "FP64": np.float64, "BYTES": np.object_,
}  # fmt: skip


def config_type(dtype: str) -> str:
    return "TYPE_STRING" if dtype == "BYTES" else f"TYPE_{dtype}"


def make_config(
    name: str,
    dtype: str = "FP32",
    dims: tuple[int, ...] = (16,),
    max_batch_size: int = 8,
    inputs: tuple[str, ...] = ("INPUT0", "INPUT1"),
    outputs: tuple[str, ...] = ("OUTPUT0", "OUTPUT1"),
    extra: str = "",
) -> model_config_pb2.ModelConfig:
    """A complete config in Triton's text format; ``extra`` is appended verbatim."""
    ios = "".join(
        f'{kind} {{ name: "{n}" data_type: {config_type(dtype)} dims: {list(dims)} }}\n'
        for kind, names in (("input", inputs), ("output", outputs))
        for n in names
    )
    text = (
        f'name: "{name}" platform: "onnxruntime_onnx" max_batch_size: {max_batch_size}\n'
        f"{ios}{extra}"
    )
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def load(config: Any, version_dir: Path, kind: str = "KIND_CPU", device_id: int = 0) -> Any:
    backend = ort_backend.create_backend(config, version_dir.parent, version_dir)
    return backend.create_instance(0, kind, device_id)


def sample(dtype: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype == "BYTES":
        words = [b"", "h\u00e9llo".encode(), "\u65e5\u672c".encode(), b"plain", b"a b"]
        flat = [words[i % len(words)] for i in rng.integers(0, 50, size=int(np.prod(shape)))]
        out = np.empty(len(flat), dtype=object)
        out[:] = flat
        return out.reshape(shape)
    if dtype == "BOOL":
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    np_type = NUMPY[dtype]
    if dtype in ("FP16", "BF16", "FP32", "FP64"):
        return (rng.standard_normal(shape) * 8).astype(np_type)
    info = np.iinfo(np_type)
    return rng.integers(info.min, info.max, size=shape, dtype=np_type, endpoint=True)


def direct_run(model: Path, feeds: dict[str, np.ndarray], names: list[str]) -> list[np.ndarray]:
    """What a plain InferenceSession returns (strings as bytes, BF16 through OrtValue)."""
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    bf16 = any(
        a.type == "tensor(bfloat16)" for a in (*session.get_inputs(), *session.get_outputs())
    )
    if not bf16:
        converted = {
            k: np.vectorize(bytes.decode, otypes=[object])(v) if v.dtype == object else v
            for k, v in feeds.items()
        }
        results = session.run(names, converted)
        return [
            np.vectorize(str.encode, otypes=[object])(r) if r.dtype == object else r
            for r in results
        ]
    values = {
        k: ort.OrtValue.ortvalue_from_numpy_with_onnx_type(v.view(np.uint16), 16)
        if v.dtype == ml_dtypes.bfloat16
        else ort.OrtValue.ortvalue_from_numpy(v)
        for k, v in feeds.items()
    }
    outs = session.run_with_ort_values(names, values)
    results = []
    for out in outs:
        if out.data_type() == "tensor(bfloat16)":
            raw = np.ctypeslib.as_array(
                (ctypes.c_uint16 * int(np.prod(out.shape()))).from_address(out.data_ptr())
            )
            results.append(raw.copy().reshape(out.shape()).view(ml_dtypes.bfloat16))
        else:
            results.append(out.numpy())
    return results


def assert_same(actual: np.ndarray, expected: np.ndarray) -> None:
    assert isinstance(actual, np.ndarray)
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    if actual.dtype == object:
        assert actual.tolist() == expected.tolist()
    else:  # bit-exact, NaNs included
        assert actual.tobytes() == expected.tobytes()


# -------------------------------------------------------------------------------------------------
# Every datatype


@pytest.mark.parametrize("dtype", DATATYPES)
def test_identity_matches_onnxruntime_for_every_datatype(tmp_path: Path, dtype: str) -> None:
    model = make_identity_onnx(tmp_path / "1" / "model.onnx", dtype, dims=[4], batch=True)
    instance = load(
        make_config("ident", dtype, (4,), inputs=("INPUT0",), outputs=("OUTPUT0",)), tmp_path / "1"
    )
    x = sample(dtype, (3, 4))
    out = instance.execute({"INPUT0": x}, ["OUTPUT0"])
    assert list(out) == ["OUTPUT0"]
    (expected,) = direct_run(model, {"INPUT0": x}, ["OUTPUT0"])
    assert_same(out["OUTPUT0"], expected)
    assert_same(out["OUTPUT0"], x if dtype != "BYTES" else expected)
    instance.close()


@pytest.mark.parametrize("dtype", DATATYPES)
def test_add_sub_matches_onnxruntime_for_every_datatype(tmp_path: Path, dtype: str) -> None:
    model = make_add_sub_onnx(tmp_path / "1" / "model.onnx", dtype, dims=[16])
    instance = load(make_config("simple", dtype), tmp_path / "1")
    if dtype == "BYTES":  # simple_string: decimal numbers as strings
        a = np.array([str(i).encode() for i in range(32)], dtype=object).reshape(2, 16)
        b = np.array([str(7 - i).encode() for i in range(32)], dtype=object).reshape(2, 16)
    else:
        a, b = sample(dtype, (2, 16), seed=1), sample(dtype, (2, 16), seed=2)
    feeds = {"INPUT0": a, "INPUT1": b}
    with np.errstate(over="ignore"):
        out = instance.execute(feeds, ["OUTPUT0", "OUTPUT1"])
    expected = direct_run(model, feeds, ["OUTPUT0", "OUTPUT1"])
    assert_same(out["OUTPUT0"], expected[0])
    assert_same(out["OUTPUT1"], expected[1])


def test_simple_int32(tmp_path: Path) -> None:
    make_add_sub_onnx(tmp_path / "1" / "model.onnx", "INT32")
    instance = load(make_config("simple", "INT32"), tmp_path / "1")
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.ones((1, 16), dtype=np.int32)
    out = instance.execute({"INPUT0": a, "INPUT1": b}, ["OUTPUT0", "OUTPUT1"])
    np.testing.assert_array_equal(out["OUTPUT0"], a + b)
    np.testing.assert_array_equal(out["OUTPUT1"], a - b)
    assert out["OUTPUT0"].dtype == np.int32


def test_simple_int8(tmp_path: Path) -> None:
    make_add_sub_onnx(tmp_path / "1" / "model.onnx", "INT8")
    instance = load(make_config("simple_int8", "INT8"), tmp_path / "1")
    a = np.arange(-8, 8, dtype=np.int8).reshape(1, 16)
    b = np.full((1, 16), 3, dtype=np.int8)
    out = instance.execute({"INPUT0": a, "INPUT1": b}, ["OUTPUT0", "OUTPUT1"])
    np.testing.assert_array_equal(out["OUTPUT0"], a + b)
    np.testing.assert_array_equal(out["OUTPUT1"], a - b)
    assert out["OUTPUT1"].dtype == np.int8


def test_simple_string(tmp_path: Path) -> None:
    make_add_sub_onnx(tmp_path / "1" / "model.onnx", "BYTES")
    instance = load(make_config("simple_string", "BYTES"), tmp_path / "1")
    a = np.array([[str(i).encode() for i in range(16)]], dtype=object)
    b = np.array([[b"1"] * 16], dtype=object)
    out = instance.execute({"INPUT0": a, "INPUT1": b}, ["OUTPUT0", "OUTPUT1"])
    assert out["OUTPUT0"].tolist() == [[str(i + 1).encode() for i in range(16)]]
    assert out["OUTPUT1"].tolist() == [[str(i - 1).encode() for i in range(16)]]


def test_string_identity_keeps_empty_and_non_ascii_elements(tmp_path: Path) -> None:
    make_identity_onnx(tmp_path / "1" / "model.onnx", "BYTES", dims=[-1], batch=False)
    config = make_config("strings", "BYTES", (-1,), 0, ("INPUT0",), ("OUTPUT0",))
    instance = load(config, tmp_path / "1")
    values = [b"", "\u00fcnic\u00f6de".encode(), "\U0001f600".encode(), b"", b"nul\x00inside"]
    x = np.empty(len(values), dtype=object)
    x[:] = values
    out = instance.execute({"INPUT0": x}, ["OUTPUT0"])["OUTPUT0"]
    assert out.dtype == object
    assert out.tolist() == values
    assert all(type(v) is bytes for v in out)


def test_string_input_that_is_not_utf8_is_invalid_arg(tmp_path: Path) -> None:
    make_identity_onnx(tmp_path / "1" / "model.onnx", "BYTES", dims=[2], batch=False)
    config = make_config("strings", "BYTES", (2,), 0, ("INPUT0",), ("OUTPUT0",))
    instance = load(config, tmp_path / "1")
    with pytest.raises(TritonError) as info:
        instance.execute({"INPUT0": np.array([b"ok", b"\xff\xfe"], dtype=object)}, ["OUTPUT0"])
    assert info.value.status == "INVALID_ARG"
    assert "'strings'" in info.value.message and "UTF-8" in info.value.message


def test_bf16_output_outlives_the_instance(tmp_path: Path) -> None:
    make_identity_onnx(tmp_path / "1" / "model.onnx", "BF16", dims=[-1], batch=False)
    config = make_config("bf16", "BF16", (-1,), 0, ("INPUT0",), ("OUTPUT0",))
    instance = load(config, tmp_path / "1")
    x = np.array([1.5, -2.0, 3.25], dtype=ml_dtypes.bfloat16)
    out = instance.execute({"INPUT0": x}, ["OUTPUT0"])["OUTPUT0"]
    empty = instance.execute({"INPUT0": x[:0]}, ["OUTPUT0"])["OUTPUT0"]
    instance.close()
    del instance
    assert out.dtype == ml_dtypes.bfloat16 and out.tolist() == x.tolist()
    assert empty.shape == (0,) and empty.dtype == ml_dtypes.bfloat16


# -------------------------------------------------------------------------------------------------
# Batching and outputs


def test_batch_of_four_equals_four_single_runs(tmp_path: Path) -> None:
    make_add_sub_onnx(tmp_path / "1" / "model.onnx", "FP32")
    instance = load(make_config("simple"), tmp_path / "1")
    a, b = sample("FP32", (4, 16), 1), sample("FP32", (4, 16), 2)
    batched = instance.execute({"INPUT0": a, "INPUT1": b}, ["OUTPUT0", "OUTPUT1"])
    for i in range(4):
        single = instance.execute(
            {"INPUT0": a[i : i + 1], "INPUT1": b[i : i + 1]}, ["OUTPUT0", "OUTPUT1"]
        )
        for name in ("OUTPUT0", "OUTPUT1"):
            assert_same(batched[name][i : i + 1], single[name])


def test_mlp_batch_of_four_matches_single_runs(tmp_path: Path) -> None:
    make_mlp_onnx(tmp_path / "1" / "model.onnx", in_dim=32, hidden=64, layers=3, out_dim=8)
    config = make_config("mlp", "FP32", (32,), 8, ("INPUT0",), ())
    config.output.add(name="OUTPUT0", data_type=model_config_pb2.TYPE_FP32, dims=[8])
    instance = load(config, tmp_path / "1")
    x = sample("FP32", (4, 32))
    batched = instance.execute({"INPUT0": x}, ["OUTPUT0"])["OUTPUT0"]
    assert batched.shape == (4, 8)
    for i in range(4):
        single = instance.execute({"INPUT0": x[i : i + 1]}, ["OUTPUT0"])["OUTPUT0"]
        np.testing.assert_allclose(batched[i : i + 1], single, rtol=1e-5, atol=1e-5)


def test_only_requested_outputs_are_returned(tmp_path: Path) -> None:
    make_add_sub_onnx(tmp_path / "1" / "model.onnx", "INT32")
    instance = load(make_config("simple", "INT32"), tmp_path / "1")
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    out = instance.execute({"INPUT0": a, "INPUT1": a}, ["OUTPUT1"])
    assert list(out) == ["OUTPUT1"]
    np.testing.assert_array_equal(out["OUTPUT1"], np.zeros_like(a))


def test_non_contiguous_input(tmp_path: Path) -> None:
    make_add_sub_onnx(tmp_path / "1" / "model.onnx", "FP32")
    instance = load(make_config("simple"), tmp_path / "1")
    wide = sample("FP32", (2, 32))
    a, b = wide[:, ::2], wide[:, 1::2]
    out = instance.execute({"INPUT0": a, "INPUT1": b}, ["OUTPUT0"])
    np.testing.assert_array_equal(out["OUTPUT0"], a + b)


def test_read_only_input(tmp_path: Path) -> None:
    make_add_sub_onnx(tmp_path / "1" / "model.onnx", "FP32")
    instance = load(make_config("simple"), tmp_path / "1")
    a = np.frombuffer(np.arange(16, dtype=np.float32).tobytes(), dtype=np.float32).reshape(1, 16)
    assert not a.flags.writeable
    out = instance.execute({"INPUT0": a, "INPUT1": a}, ["OUTPUT0"])
    np.testing.assert_array_equal(out["OUTPUT0"], a * 2)


# -------------------------------------------------------------------------------------------------
# Session options and providers


def test_session_options_from_parameters(tmp_path: Path) -> None:
    make_add_sub_onnx(tmp_path / "1" / "model.onnx")
    params = {
        "intra_op_thread_count": "1",
        "inter_op_thread_count": "2",
        "execution_mode": "1",
        "enable_mem_arena": "false",
        "enable_mem_pattern": "0",
        "session.intra_op.allow_spinning": "0",
    }
    extra = "optimization { graph { level: 1 } }\n" + "".join(
        f'parameters {{ key: "{k}" value {{ string_value: "{v}" }} }}\n' for k, v in params.items()
    )
    instance = load(make_config("opts", extra=extra), tmp_path / "1")
    options = instance.session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.inter_op_num_threads == 2
    assert options.execution_mode == ort.ExecutionMode.ORT_PARALLEL
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    assert options.enable_cpu_mem_arena is False
    assert options.enable_mem_pattern is False
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert instance.session.get_providers() == ["CPUExecutionProvider"]


def _param_config(name: str, params: dict[str, str], extra: str = "") -> Any:
    text = extra + "".join(
        f'parameters {{ key: "{k}" value {{ string_value: "{v}" }} }}\n' for k, v in params.items()
    )
    return make_config(name, extra=text)


def test_share_session_between_instances(tmp_path: Path) -> None:
    """One session for the instances on a device (Triton's later onnxruntime backend); each
    instance its own otherwise. Both run."""
    make_add_sub_onnx(tmp_path / "1" / "model.onnx")
    x = np.ones((1, 16), np.float32)
    for share, same in (("true", True), ("0", False)):
        config = _param_config("share", {"share_session_between_instances": share})
        backend = ort_backend.create_backend(config, tmp_path, tmp_path / "1")
        a, b = backend.create_instance(0, "KIND_CPU", 0), backend.create_instance(1, "KIND_CPU", 0)
        assert (a.session is b.session) is same
        for instance in (a, b):
            assert instance.execute({"INPUT0": x, "INPUT1": x}, ["OUTPUT0"])["OUTPUT0"][0, 0] == 2
        backend.close()


def test_memory_arena_shrinkage_is_a_run_option(tmp_path: Path) -> None:
    make_add_sub_onnx(tmp_path / "1" / "model.onnx")
    config = _param_config("shrink", {"memory.enable_memory_arena_shrinkage": "cpu:0"})
    instance = load(config, tmp_path / "1")
    assert instance.run_options.get_run_config_entry("memory.enable_memory_arena_shrinkage") == (
        "cpu:0"
    )
    x = np.ones((2, 16), np.float32)
    assert instance.execute({"INPUT0": x, "INPUT1": x}, ["OUTPUT1"])["OUTPUT1"].sum() == 0
    assert load(make_config("plain"), tmp_path / "1").run_options is None


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"memory.enable_memory_arena_shrinkage": "everything"}, "must list devices as 'cpu:0'"),
        ({"memory.enable_memory_arena_shrinkage": "gpu:0"}, "instance 0 runs on the CPU"),
        ({"memory.enable_memory_arena_shrinkage": "cpu:1"}, "the CPU is device 0"),
        (
            {"memory.enable_memory_arena_shrinkage": "cpu:0", "enable_mem_arena": "0"},
            "enable_mem_arena is off",
        ),
        ({"share_session_between_instances": "sometimes"}, "must be a boolean"),
    ],
)
def test_bad_parameters_are_refused_by_name(
    tmp_path: Path, params: dict[str, str], expected: str
) -> None:
    make_add_sub_onnx(tmp_path / "1" / "model.onnx")
    with pytest.raises(TritonError) as info:
        load(_param_config("bad_param", params), tmp_path / "1")
    assert info.value.status == "INVALID_ARG"
    assert "'bad_param'" in info.value.message and expected in info.value.message
    assert next(iter(params)) in info.value.message or "share_session" in info.value.message


def test_unknown_parameters_are_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Triton ignores parameters a backend does not read; tritonlite names each one."""
    make_add_sub_onnx(tmp_path / "1" / "model.onnx")
    params = {
        "enable_cuda_graph": "1",
        "my_note": "x",
        "intra_op_thread_count": "1",
        "session.intra_op.allow_spinning": "0",
        "sequence_backlog_limit": "4",
    }
    with caplog.at_level("WARNING"):
        instance = load(_param_config("unknown", params), tmp_path / "1")
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 2, warned
    assert warned[0].startswith(
        "model 'unknown': parameter 'enable_cuda_graph' is not one the onnxruntime backend "
        "reads: ignored (as Triton does); CUDA graphs are an option of the CUDA execution "
        "accelerator"
    )
    assert "parameter 'my_note'" in warned[1]
    assert instance.session.get_session_options().intra_op_num_threads == 1


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        (None, "ORT_ENABLE_ALL"),
        (0, "ORT_ENABLE_ALL"),
        (-1, "ORT_ENABLE_BASIC"),
        (1, "ORT_ENABLE_EXTENDED"),
        (2, "ORT_DISABLE_ALL"),
    ],
)
def test_graph_optimization_level_follows_triton(
    tmp_path: Path, level: int | None, expected: str
) -> None:
    make_add_sub_onnx(tmp_path / "1" / "model.onnx")
    extra = "" if level is None else f"optimization {{ graph {{ level: {level} }} }}"
    instance = load(make_config("level", extra=extra), tmp_path / "1")
    options = instance.session.get_session_options()
    assert options.graph_optimization_level == getattr(ort.GraphOptimizationLevel, expected)
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL


def test_default_intra_op_threads_split_cores_between_instances(tmp_path: Path) -> None:
    make_add_sub_onnx(tmp_path / "1" / "model.onnx")
    config = make_config("split", extra="instance_group { kind: KIND_CPU count: 2 }")
    instance = load(config, tmp_path / "1")
    cores = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )
    assert instance.session.get_session_options().intra_op_num_threads == max(1, cores // 2)


def test_gpu_instance_fails_clearly_without_cuda_provider(tmp_path: Path) -> None:
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    make_add_sub_onnx(tmp_path / "1" / "model.onnx")
    with pytest.raises(TritonError) as info:
        load(make_config("gpu_simple"), tmp_path / "1", "KIND_GPU", 0)
    message = info.value.message
    assert info.value.status == "UNAVAILABLE"
    assert "'gpu_simple'" in message and "CUDAExecutionProvider" in message
    assert "CPUExecutionProvider" in message  # says what is available


def test_tensorrt_accelerator_fails_clearly_without_tensorrt(tmp_path: Path) -> None:
    if "TensorrtExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has TensorRT")
    make_add_sub_onnx(tmp_path / "1" / "model.onnx")
    extra = """optimization { execution_accelerators { gpu_execution_accelerator {
        name: "tensorrt"
        parameters { key: "precision_mode" value: "FP16" }
        parameters { key: "max_workspace_size_bytes" value: "1073741824" } } } }"""
    with pytest.raises(TritonError) as info:
        load(make_config("trt_simple", extra=extra), tmp_path / "1", "KIND_GPU", 0)
    assert info.value.status == "UNAVAILABLE"
    assert "'trt_simple'" in info.value.message
    assert "TensorrtExecutionProvider" in info.value.message


def test_tensorrt_and_cuda_provider_options() -> None:
    config = make_config(
        "trt",
        extra="""optimization { execution_accelerators { gpu_execution_accelerator {
            name: "tensorrt"
            parameters { key: "precision_mode" value: "FP16" }
            parameters { key: "max_workspace_size_bytes" value: "1073741824" }
            parameters { key: "trt_engine_cache_enable" value: "1" } } } }
        parameters { key: "cudnn_conv_algo_search" value { string_value: "1" } }""",
    )
    providers = ort_backend._providers(config, "KIND_GPU", 3)
    assert providers[0] == (
        "TensorrtExecutionProvider",
        {
            "trt_fp16_enable": "1",
            "trt_max_workspace_size": "1073741824",
            "trt_engine_cache_enable": "1",
            "device_id": "3",
        },
    )
    assert providers[1] == (
        "CUDAExecutionProvider",
        {"cudnn_conv_algo_search": "HEURISTIC", "device_id": "3"},
    )
    assert providers[2] == "CPUExecutionProvider"
    # GPU accelerators do not apply to CPU instances (as in Triton).
    assert ort_backend._providers(config, "KIND_CPU", 0) == ["CPUExecutionProvider"]


def test_openvino_accelerator_fails_clearly_without_openvino(tmp_path: Path) -> None:
    if "OpenVINOExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has OpenVINO")
    make_add_sub_onnx(tmp_path / "1" / "model.onnx")
    extra = (
        'optimization { execution_accelerators { cpu_execution_accelerator { name: "openvino" } } }'
    )
    with pytest.raises(TritonError) as info:
        load(make_config("ov_simple", extra=extra), tmp_path / "1")
    assert info.value.status == "UNAVAILABLE"
    assert "'ov_simple'" in info.value.message and "OpenVINOExecutionProvider" in info.value.message


@pytest.mark.filterwarnings("ignore:Specified provider")
def test_provider_onnxruntime_silently_drops_fails_the_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if "OpenVINOExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has OpenVINO")
    make_add_sub_onnx(tmp_path / "1" / "model.onnx")
    real = ort.get_available_providers()
    monkeypatch.setattr(
        ort_backend.ort, "get_available_providers", lambda: [*real, "OpenVINOExecutionProvider"]
    )
    extra = (
        'optimization { execution_accelerators { cpu_execution_accelerator { name: "openvino" } } }'
    )
    with pytest.raises(TritonError) as info:
        load(make_config("ov_simple", extra=extra), tmp_path / "1")
    assert info.value.status == "UNAVAILABLE"
    assert "'ov_simple'" in info.value.message and "could not create" in info.value.message
    assert "OpenVINOExecutionProvider" in info.value.message


@pytest.mark.parametrize(
    "extra",
    [
        'optimization { execution_accelerators { cpu_execution_accelerator { name: "mkl" } } }',
        'parameters { key: "execution_mode" value { string_value: "3" } }',
        'parameters { key: "intra_op_thread_count" value { string_value: "many" } }',
        'parameters { key: "enable_mem_arena" value { string_value: "maybe" } }',
        "optimization { graph { level: 7 } }",
    ],
)
def test_bad_options_fail_the_load(tmp_path: Path, extra: str) -> None:
    make_add_sub_onnx(tmp_path / "1" / "model.onnx")
    with pytest.raises(TritonError) as info:
        load(make_config("bad_opts", extra=extra), tmp_path / "1")
    assert info.value.status == "INVALID_ARG"
    assert "'bad_opts'" in info.value.message


# -------------------------------------------------------------------------------------------------
# Load and run errors


def test_missing_model_file(tmp_path: Path) -> None:
    (tmp_path / "1").mkdir()
    with pytest.raises(TritonError) as info:
        load(make_config("nofile"), tmp_path / "1")
    assert info.value.status in ("UNAVAILABLE", "INVALID_ARG")
    assert "'nofile'" in info.value.message
    assert str(tmp_path / "1" / "model.onnx") in info.value.message


def test_default_model_filename_and_model_directory(tmp_path: Path) -> None:
    make_add_sub_onnx(tmp_path / "1" / "custom.onnx", "INT32")
    config = make_config("custom", "INT32", extra='default_model_filename: "custom.onnx"')
    instance = load(config, tmp_path / "1")
    a = np.ones((1, 16), np.int32)
    assert instance.execute({"INPUT0": a, "INPUT1": a}, ["OUTPUT0"])["OUTPUT0"].sum() == 32
    # A directory named like the model file holds <dir>/model.onnx (Triton's convention).
    make_add_sub_onnx(tmp_path / "2" / "model.onnx" / "model.onnx", "INT32")
    load(make_config("dir", "INT32"), tmp_path / "2")


def test_corrupt_model_file(tmp_path: Path) -> None:
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "model.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(TritonError) as info:
        load(make_config("corrupt"), tmp_path / "1")
    assert info.value.status == "INVALID_ARG"
    assert "'corrupt'" in info.value.message and "onnx runtime error" in info.value.message


def test_runtime_error_from_wrong_shape_names_the_model(tmp_path: Path) -> None:
    make_add_sub_onnx(tmp_path / "1" / "model.onnx")
    instance = load(make_config("shapes"), tmp_path / "1")
    a = np.ones((1, 16), np.float32)
    b = np.ones((1, 15), np.float32)
    with pytest.raises(TritonError) as info:
        instance.execute({"INPUT0": a, "INPUT1": b}, ["OUTPUT0"])
    assert info.value.status == "INTERNAL"
    assert info.value.message.startswith("onnx runtime error 2 for model 'shapes': ")
    assert "INPUT1" in info.value.message


def test_runtime_error_from_missing_input_names_the_model(tmp_path: Path) -> None:
    make_add_sub_onnx(tmp_path / "1" / "model.onnx")
    instance = load(make_config("missing_in"), tmp_path / "1")
    with pytest.raises(TritonError) as info:
        instance.execute({"INPUT0": np.ones((1, 16), np.float32)}, ["OUTPUT0"])
    assert info.value.status == "INTERNAL"
    assert "'missing_in'" in info.value.message and "INPUT1" in info.value.message


def test_execute_after_close(tmp_path: Path) -> None:
    make_add_sub_onnx(tmp_path / "1" / "model.onnx")
    instance = load(make_config("closed"), tmp_path / "1")
    instance.close()
    with pytest.raises(TritonError, match="'closed'"):
        instance.execute({}, ["OUTPUT0"])


@pytest.mark.parametrize(
    ("config_kwargs", "needle"),
    [
        ({"dtype": "INT32"}, "TYPE_INT32"),  # datatype differs from the model's FP32
        ({"inputs": ("INPUT0", "INPUTX")}, "INPUTX"),  # not a model input
        ({"inputs": ("INPUT0",)}, "INPUT1"),  # model input missing from the config
        ({"outputs": ("OUTPUT0", "OUTPUTX")}, "OUTPUTX"),
        ({"dims": (8,)}, "[8]"),
        ({"max_batch_size": 0}, "[16]"),  # the model's batch dim would be a config dim
    ],
)
def test_config_that_does_not_match_the_model_fails_the_load(
    tmp_path: Path, config_kwargs: dict[str, Any], needle: str
) -> None:
    make_add_sub_onnx(tmp_path / "1" / "model.onnx", "FP32", dims=[16])
    with pytest.raises(TritonError) as info:
        load(make_config("mismatch", **config_kwargs), tmp_path / "1")
    assert info.value.status == "INVALID_ARG"
    assert "'mismatch'" in info.value.message and needle in info.value.message


def test_batching_config_on_a_model_without_batch_dim_fails(tmp_path: Path) -> None:
    make_add_sub_onnx(tmp_path / "1" / "model.onnx", "FP32", dims=[16], batch=False)
    with pytest.raises(TritonError, match="dynamic first"):
        load(make_config("nobatch", max_batch_size=4), tmp_path / "1")
    load(make_config("nobatch", max_batch_size=0), tmp_path / "1")


def test_reshape_is_checked_instead_of_dims(tmp_path: Path) -> None:
    make_identity_onnx(tmp_path / "1" / "model.onnx", "FP32", dims=[2, 8], batch=True)
    config = make_config("reshaped", "FP32", (16,), 4, ("INPUT0",), ("OUTPUT0",))
    config.input[0].reshape.shape.extend([2, 8])
    config.output[0].reshape.shape.extend([2, 8])
    load(config, tmp_path / "1")


# -------------------------------------------------------------------------------------------------
# Auto-complete


def test_explicit_max_batch_size_zero_is_kept_for_a_dynamic_first_dim(tmp_path: Path) -> None:
    # Triton's onnxruntime backend leaves a config that lists inputs and outputs alone
    # (AutoCompleteConfig): max_batch_size 0 stays 0 and the model's dynamic first dim is an
    # ordinary dim of each request, never a batch across requests.
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from serving import ServerProcess

    model_dir = tmp_path / "models" / "ident"
    make_identity_onnx(model_dir / "1" / "model.onnx", "FP32", (3,), batch=True)
    (model_dir / "config.pbtxt").write_text(
        'name: "ident" platform: "onnxruntime_onnx" max_batch_size: 0\n'
        'input [{ name: "INPUT0" data_type: TYPE_FP32 dims: [ -1, 3 ] }]\n'
        'output [{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1, 3 ] }]\n'
    )
    with ServerProcess(tmp_path / "models") as srv:
        http = httpclient.InferenceServerClient(srv.http_url)
        config = http.get_model_config("ident")
        assert config["max_batch_size"] == 0
        assert "dynamic_batching" not in config
        assert [i["dims"] for i in config["input"]] == [[-1, 3]]
        http.close()
        client = grpcclient.InferenceServerClient(srv.grpc_url)
        data = np.arange(6, dtype=np.float32).reshape(2, 3)
        tensor = grpcclient.InferInput("INPUT0", [2, 3], "FP32")
        tensor.set_data_from_numpy(data)
        result = client.infer("ident", [tensor])
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)
        client.close()


def test_plain_cpu_execute_skips_the_python_run_wrapper(tmp_path: Path) -> None:
    # The plain case on a CPU-only session calls onnxruntime's binding directly (issue #20: ~1.2
    # µs less per batch); its errors are still worded and coded by the backend.
    make_add_sub_onnx(tmp_path / "1" / "model.onnx")
    instance = load(make_config("direct"), tmp_path / "1")
    assert instance._direct_run is not None
    session = instance.session

    def wrapper_called(*args: object, **kwargs: object) -> None:
        raise AssertionError("InferenceSession.run was called")

    session.run = wrapper_called  # type: ignore[method-assign]
    a = np.arange(32, dtype=np.float32).reshape(2, 16)
    out = instance.execute({"INPUT0": a, "INPUT1": a}, ["OUTPUT0", "OUTPUT1"])
    np.testing.assert_array_equal(out["OUTPUT0"], a + a)
    np.testing.assert_array_equal(out["OUTPUT1"], a - a)
    with pytest.raises(TritonError) as info:
        instance.execute({"INPUT0": a, "INPUT1": a.astype(np.int32)}, ["OUTPUT0"])
    assert info.value.status == "INTERNAL"
    assert info.value.message.startswith("onnx runtime error 2 for model 'direct': ")
    instance.close()
    assert instance._direct_run is None
    with pytest.raises(TritonError, match="'direct'"):
        instance.execute({"INPUT0": a, "INPUT1": a}, ["OUTPUT0"])
