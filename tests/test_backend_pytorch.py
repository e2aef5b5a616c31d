"""The PyTorch (TorchScript) backend: Triton's input/output naming conventions, every datatype,
zero-copy inputs and outputs, batching, and each error path including a missing torch."""

from __future__ import annotations

import importlib
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from google.protobuf import text_format
from models import make_add_sub_exported, make_add_sub_torchscript, make_identity_torchscript
from tritonlite import TritonError
from tritonlite._proto import model_config_pb2

torch = pytest.importorskip("torch")
ml_dtypes = pytest.importorskip("ml_dtypes")

from tritonlite.backends import pytorch as torch_backend  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

NUMPY = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
    "UINT64": np.uint64, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
    "INT64": np.int64, "FP16": np.float16, "BF16": ml_dtypes.bfloat16, "FP32": np.float32,
    "FP64": np.float64,
}  # fmt: skip


def make_config(
    name: str,
    inputs: tuple[str, ...] = ("INPUT__0", "INPUT__1"),
    outputs: tuple[str, ...] = ("OUTPUT__0", "OUTPUT__1"),
    dtype: str = "FP32",
    dims: tuple[int, ...] = (16,),
    max_batch_size: int = 8,
    extra: str = "",
) -> model_config_pb2.ModelConfig:
    data_type = "TYPE_STRING" if dtype == "BYTES" else f"TYPE_{dtype}"
    ios = "".join(
        f'{kind} {{ name: "{n}" data_type: {data_type} dims: {list(dims)} }}\n'
        for kind, names in (("input", inputs), ("output", outputs))
        for n in names
    )
    text = (
        f'name: "{name}" platform: "pytorch_libtorch" max_batch_size: {max_batch_size}\n'
        f"{ios}{extra}"
    )
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def load(config: Any, version_dir: Path, kind: str = "KIND_CPU") -> Any:
    backend = torch_backend.create_backend(config, version_dir.parent, version_dir)
    return backend.create_instance(0, kind, 0)


def sample(dtype: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype == "BOOL":
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if dtype in ("FP16", "BF16", "FP32", "FP64"):
        return (rng.standard_normal(shape) * 8).astype(NUMPY[dtype])
    info = np.iinfo(NUMPY[dtype])
    return rng.integers(0, min(info.max, 1000), size=shape, dtype=NUMPY[dtype])


def to_numpy(value: Any) -> np.ndarray:
    if value.dtype == torch.bfloat16:
        return value.view(torch.uint16).numpy().view(ml_dtypes.bfloat16)
    return np.from_dlpack(value)


AB = (np.arange(16, dtype=np.float32).reshape(1, 16), np.full((1, 16), 2.0, np.float32))


# -------------------------------------------------------------------------------------------------
# Naming conventions


def test_positional_inputs_by_index_suffix(tmp_path: Path) -> None:
    make_add_sub_torchscript(tmp_path / "1" / "model.pt")
    # Config order differs from the index order: the suffix decides the position.
    config = make_config("simple", inputs=("INPUT__1", "INPUT__0"))
    instance = load(config, tmp_path / "1")
    a, b = AB
    out = instance.execute({"INPUT__0": a, "INPUT__1": b}, ["OUTPUT__0", "OUTPUT__1"])
    np.testing.assert_array_equal(to_numpy(out["OUTPUT__0"]), a + b)
    np.testing.assert_array_equal(to_numpy(out["OUTPUT__1"]), a - b)


def test_inputs_by_forward_argument_name(tmp_path: Path) -> None:
    make_add_sub_torchscript(tmp_path / "1" / "model.pt")
    # Names match forward(self, INPUT0, INPUT1); listed in the other order on purpose.
    config = make_config("named", inputs=("INPUT1", "INPUT0"), outputs=("OUTPUT0", "OUTPUT1"))
    instance = load(config, tmp_path / "1")
    a, b = AB
    out = instance.execute({"INPUT0": a, "INPUT1": b}, ["OUTPUT0", "OUTPUT1"])
    np.testing.assert_array_equal(to_numpy(out["OUTPUT0"]), a + b)
    np.testing.assert_array_equal(to_numpy(out["OUTPUT1"]), a - b)


def test_inputs_in_config_order_when_names_follow_no_convention(tmp_path: Path) -> None:
    make_add_sub_torchscript(tmp_path / "1" / "model.pt")
    config = make_config("ordered", inputs=("A", "B"), outputs=("SUM", "DIFF"))
    instance = load(config, tmp_path / "1")
    a, b = AB
    out = instance.execute({"B": b, "A": a}, ["DIFF"])
    assert list(out) == ["DIFF"]
    np.testing.assert_array_equal(to_numpy(out["DIFF"]), a - b)


@pytest.mark.parametrize("output", ["tuple", "list"])
def test_sequence_outputs_by_index(tmp_path: Path, output: str) -> None:
    make_add_sub_torchscript(tmp_path / "1" / "model.pt", output=output)
    instance = load(make_config("seq", outputs=("OUTPUT__1", "OUTPUT__0")), tmp_path / "1")
    a, b = AB
    out = instance.execute({"INPUT__0": a, "INPUT__1": b}, ["OUTPUT__1"])
    assert list(out) == ["OUTPUT__1"]
    np.testing.assert_array_equal(to_numpy(out["OUTPUT__1"]), a - b)


def test_dict_outputs_by_key(tmp_path: Path) -> None:
    make_add_sub_torchscript(
        tmp_path / "1" / "model.pt", output="dict", output_names=("sum", "diff")
    )
    instance = load(make_config("dict_out", outputs=("diff", "sum")), tmp_path / "1")
    a, b = AB
    out = instance.execute({"INPUT__0": a, "INPUT__1": b}, ["sum", "diff"])
    np.testing.assert_array_equal(to_numpy(out["sum"]), a + b)
    np.testing.assert_array_equal(to_numpy(out["diff"]), a - b)


def test_dict_input(tmp_path: Path) -> None:
    from torch import Tensor, nn

    class DictInput(nn.Module):
        def forward(self, inputs: dict[str, Tensor]) -> Tensor:
            return inputs["x"] * 2 + inputs["y"]

    (tmp_path / "1").mkdir()
    torch.jit.script(DictInput()).save(str(tmp_path / "1" / "model.pt"))
    instance = load(
        make_config("dict_in", inputs=("y", "x"), outputs=("OUTPUT__0",)), tmp_path / "1"
    )
    a, b = AB
    out = instance.execute({"x": a, "y": b}, ["OUTPUT__0"])
    np.testing.assert_array_equal(to_numpy(out["OUTPUT__0"]), a * 2 + b)


# -------------------------------------------------------------------------------------------------
# Datatypes, zero-copy, batching


@pytest.mark.parametrize("dtype", sorted(NUMPY))
def test_identity_for_every_datatype_is_zero_copy(tmp_path: Path, dtype: str) -> None:
    path = make_identity_torchscript(tmp_path / "1" / "model.pt")
    config = make_config("ident", ("INPUT__0",), ("OUTPUT__0",), dtype, (4,))
    instance = load(config, tmp_path / "1")
    x = sample(dtype, (3, 4))
    out = instance.execute({"INPUT__0": x}, ["OUTPUT__0"])["OUTPUT__0"]
    assert isinstance(out, torch.Tensor) and out.is_contiguous()
    assert out.data_ptr() == x.ctypes.data  # numpy -> torch -> back without a copy
    back = to_numpy(out)
    assert back.dtype == x.dtype and back.tobytes() == x.tobytes()
    direct = torch.jit.load(str(path))(
        torch.from_numpy(x.view(np.uint16)).view(torch.bfloat16)
        if dtype == "BF16"
        else torch.from_numpy(x)
    )
    assert out.dtype == direct.dtype and torch.equal(out, direct)


@pytest.mark.parametrize(
    "dtype", ["UINT8", "INT8", "INT16", "INT32", "INT64", "FP16", "BF16", "FP32", "FP64"]
)
def test_add_sub_matches_torchscript_for_numeric_datatypes(tmp_path: Path, dtype: str) -> None:
    path = make_add_sub_torchscript(tmp_path / "1" / "model.pt")
    instance = load(make_config("simple", dtype=dtype), tmp_path / "1")
    a, b = sample(dtype, (2, 16), 1), sample(dtype, (2, 16), 2)
    out = instance.execute({"INPUT__0": a, "INPUT__1": b}, ["OUTPUT__0", "OUTPUT__1"])
    module = torch.jit.load(str(path))
    ta, tb = (
        torch.from_numpy(v.view(np.uint16)).view(torch.bfloat16)
        if dtype == "BF16"
        else torch.from_numpy(v)
        for v in (a, b)
    )
    expected = module(ta, tb)
    assert torch.equal(out["OUTPUT__0"], expected[0])
    assert torch.equal(out["OUTPUT__1"], expected[1])


def test_read_only_input_is_zero_copy_without_warnings(tmp_path: Path) -> None:
    make_identity_torchscript(tmp_path / "1" / "model.pt")
    instance = load(make_config("ro", ("INPUT__0",), ("OUTPUT__0",)), tmp_path / "1")
    buffer = np.arange(16, dtype=np.float32).tobytes()
    x = np.frombuffer(buffer, dtype=np.float32).reshape(1, 16)
    assert not x.flags.writeable
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = instance.execute({"INPUT__0": x}, ["OUTPUT__0"])["OUTPUT__0"]
    assert out.data_ptr() == x.ctypes.data
    np.testing.assert_array_equal(to_numpy(out), x)


def test_output_is_contiguous_and_zero_copy_to_numpy(tmp_path: Path) -> None:
    make_add_sub_torchscript(tmp_path / "1" / "model.pt")
    instance = load(make_config("zc"), tmp_path / "1")
    a, b = AB
    out = instance.execute({"INPUT__0": a, "INPUT__1": b}, ["OUTPUT__0"])["OUTPUT__0"]
    assert out.is_contiguous() and out.is_inference()
    view = np.from_dlpack(out)
    assert view.ctypes.data == out.data_ptr()
    np.testing.assert_array_equal(view, a + b)


def test_non_contiguous_output_is_made_contiguous(tmp_path: Path) -> None:
    make_identity_torchscript(tmp_path / "1" / "model.pt")
    instance = load(make_config("nc", ("INPUT__0",), ("OUTPUT__0",), dims=(4,)), tmp_path / "1")
    x = np.arange(16, dtype=np.float32).reshape(4, 4).T  # Fortran-ordered view
    out = instance.execute({"INPUT__0": x}, ["OUTPUT__0"])["OUTPUT__0"]
    assert out.is_contiguous()
    np.testing.assert_array_equal(to_numpy(out), x)


def test_batch_of_four_equals_four_single_runs(tmp_path: Path) -> None:
    make_add_sub_torchscript(tmp_path / "1" / "model.pt")
    instance = load(make_config("batch"), tmp_path / "1")
    a, b = sample("FP32", (4, 16), 1), sample("FP32", (4, 16), 2)
    batched = instance.execute({"INPUT__0": a, "INPUT__1": b}, ["OUTPUT__0", "OUTPUT__1"])
    for i in range(4):
        single = instance.execute(
            {"INPUT__0": a[i : i + 1], "INPUT__1": b[i : i + 1]}, ["OUTPUT__0", "OUTPUT__1"]
        )
        for name in ("OUTPUT__0", "OUTPUT__1"):
            assert torch.equal(batched[name][i : i + 1], single[name])


def test_strings_as_list_of_str(tmp_path: Path) -> None:
    make_identity_torchscript(tmp_path / "1" / "model.pt", strings=True)
    config = make_config("strings", ("INPUT__0",), ("OUTPUT__0",), "BYTES", (-1,), 0)
    instance = load(config, tmp_path / "1")
    values = [b"", "h\u00e9llo".encode(), "\U0001f600".encode(), b"x"]
    x = np.empty(len(values), dtype=object)
    x[:] = values
    out = instance.execute({"INPUT__0": x}, ["OUTPUT__0"])["OUTPUT__0"]
    assert isinstance(out, np.ndarray) and out.dtype == object
    assert out.tolist() == values
    empty = instance.execute({"INPUT__0": x[:0]}, ["OUTPUT__0"])["OUTPUT__0"]
    assert empty.shape == (0,) and empty.dtype == object
    with pytest.raises(TritonError, match="UTF-8") as info:
        instance.execute({"INPUT__0": np.array([b"\xff"], dtype=object)}, ["OUTPUT__0"])
    assert info.value.status == "INVALID_ARG"


def test_inference_mode_and_optimized_execution_parameters(tmp_path: Path) -> None:
    make_add_sub_torchscript(tmp_path / "1" / "model.pt")
    extra = """parameters { key: "INFERENCE_MODE" value { string_value: "false" } }
        parameters { key: "DISABLE_OPTIMIZED_EXECUTION" value { string_value: "true" } }"""
    instance = load(make_config("no_inference_mode", extra=extra), tmp_path / "1")
    a, b = AB
    out = instance.execute({"INPUT__0": a, "INPUT__1": b}, ["OUTPUT__0"])["OUTPUT__0"]
    assert not out.is_inference() and not out.requires_grad
    np.testing.assert_array_equal(to_numpy(out), a + b)
    assert torch._C._get_graph_executor_optimize()  # switched off only during execute
    with pytest.raises(TritonError, match="boolean"):
        bad = 'parameters { key: "INFERENCE_MODE" value { string_value: "sometimes" } }'
        load(make_config("bad_param", extra=bad), tmp_path / "1")


def _params(**params: str) -> str:
    return "".join(
        f'parameters {{ key: "{k}" value {{ string_value: "{v}" }} }}\n' for k, v in params.items()
    )


def test_weight_sharing_loads_one_module_per_device(tmp_path: Path) -> None:
    make_add_sub_torchscript(tmp_path / "1" / "model.pt")
    a, b = AB
    for value, shared in (("true", True), ("false", False)):
        config = make_config("share", extra=_params(ENABLE_WEIGHT_SHARING=value))
        backend = torch_backend.create_backend(config, tmp_path, tmp_path / "1")
        first, second = (backend.create_instance(i, "KIND_CPU", 0) for i in (0, 1))
        assert (first.module is second.module) is shared
        for instance in (first, second):
            out = instance.execute({"INPUT__0": a, "INPUT__1": b}, ["OUTPUT__0"])
            np.testing.assert_array_equal(to_numpy(out["OUTPUT__0"]), a + b)


@pytest.fixture
def jit_switches() -> Any:
    """TorchScript's process-wide switches, put back after the test."""
    c = torch._C
    saved = (
        c._jit_texpr_fuser_enabled(),
        c._jit_set_profiling_mode(True),
        c._jit_set_profiling_executor(True),
    )
    c._jit_set_profiling_mode(saved[1])
    c._jit_set_profiling_executor(saved[2])
    yield saved
    c._jit_set_texpr_fuser_enabled(saved[0])
    c._jit_set_profiling_mode(saved[1])
    c._jit_set_profiling_executor(saved[2])


def test_jit_switches_are_set_for_each_execution(tmp_path: Path, jit_switches: Any) -> None:
    """ENABLE_TENSOR_FUSER / ENABLE_JIT_PROFILING / ENABLE_JIT_EXECUTOR: TorchScript's
    process-wide switches, set before each execution as Triton's backend does."""
    c = torch._C
    make_add_sub_torchscript(tmp_path / "1" / "model.pt")
    extra = _params(
        ENABLE_TENSOR_FUSER="false", ENABLE_JIT_PROFILING="false", ENABLE_JIT_EXECUTOR="false"
    )
    instance = load(make_config("jit", extra=extra), tmp_path / "1")
    c._jit_set_texpr_fuser_enabled(True)
    c._jit_set_profiling_mode(True)
    c._jit_set_profiling_executor(True)
    a, b = AB
    out = instance.execute({"INPUT__0": a, "INPUT__1": b}, ["OUTPUT__1"])
    np.testing.assert_array_equal(to_numpy(out["OUTPUT__1"]), a - b)
    assert c._jit_texpr_fuser_enabled() is False
    assert c._jit_set_profiling_mode(True) is False
    assert c._jit_set_profiling_executor(True) is False
    # Without the parameters a model leaves the switches as they are.
    plain = load(make_config("plain"), tmp_path / "1")
    c._jit_set_texpr_fuser_enabled(False)
    plain.execute({"INPUT__0": a, "INPUT__1": b}, ["OUTPUT__1"])
    assert c._jit_texpr_fuser_enabled() is False


def test_cudnn_and_cache_cleaning_parameters_are_read(tmp_path: Path) -> None:
    """DISABLE_CUDNN and ENABLE_CACHE_CLEANING act on GPU instances only (as Triton's); on the
    CPU they are read (and checked) and change nothing."""
    make_add_sub_torchscript(tmp_path / "1" / "model.pt")
    extra = _params(DISABLE_CUDNN="true", ENABLE_CACHE_CLEANING="1")
    backend = torch_backend.create_backend(make_config("gpu_opts", extra=extra), tmp_path,
                                           tmp_path / "1")  # fmt: skip
    assert backend.cudnn is False and backend.cache_cleaning is True
    enabled = torch.backends.cudnn.enabled
    a, b = AB
    backend.create_instance(0, "KIND_CPU", 0).execute({"INPUT__0": a, "INPUT__1": b}, [])
    assert torch.backends.cudnn.enabled == enabled


@pytest.mark.parametrize(
    "key",
    [
        "DISABLE_CUDNN", "ENABLE_WEIGHT_SHARING", "ENABLE_CACHE_CLEANING", "ENABLE_TENSOR_FUSER",
        "ENABLE_JIT_PROFILING", "ENABLE_JIT_EXECUTOR",
    ],
)  # fmt: skip
def test_bad_boolean_parameters_are_refused_by_name(tmp_path: Path, key: str) -> None:
    make_add_sub_torchscript(tmp_path / "1" / "model.pt")
    with pytest.raises(TritonError) as info:
        load(make_config("bad_bool", extra=_params(**{key: "perhaps"})), tmp_path / "1")
    assert info.value.status == "INVALID_ARG"
    assert f"model 'bad_bool': parameter '{key}' must be a boolean" in info.value.message


def test_unknown_parameters_are_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_add_sub_torchscript(tmp_path / "1" / "model.pt")
    extra = _params(NUM_THREADS="2", ENABLE_NVFUSER="true", my_label="x", INFERENCE_MODE="true")
    with caplog.at_level("WARNING"):
        load(make_config("unknown", extra=extra), tmp_path / "1")
    warned = sorted(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert len(warned) == 3, warned
    assert warned[0].startswith(
        "model 'unknown': parameter 'ENABLE_NVFUSER' is not one the pytorch backend reads: "
        "ignored (as Triton does); NVFuser left PyTorch"
    )
    assert "'NUM_THREADS'" in warned[1] and "INTRA_OP_THREAD_COUNT" in warned[1]
    assert "'my_label'" in warned[2]


# -------------------------------------------------------------------------------------------------
# torch.export programs and AOTInductor packages (model.pt2)


def test_exported_program_as_model_pt2(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """No model.pt but a model.pt2: loaded with torch.export.load; inputs matched to forward()'s
    argument names and passed by position (an exported program takes no keywords)."""
    make_add_sub_exported(tmp_path / "1" / "model.pt2")
    config = make_config("exported", inputs=("INPUT1", "INPUT0"), outputs=("OUTPUT0", "OUTPUT1"),
                         extra=_params(DISABLE_OPTIMIZED_EXECUTION="true"))  # fmt: skip
    with caplog.at_level("WARNING"):
        backend = torch_backend.create_backend(config, tmp_path, tmp_path / "1")
    assert backend.format == "torch.export"
    assert any("'DISABLE_OPTIMIZED_EXECUTION' applies to TorchScript models only" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    instance = backend.create_instance(0, "KIND_CPU", 0)
    a, b = np.repeat(AB[0], 3, axis=0), np.repeat(AB[1], 3, axis=0)
    out = instance.execute({"INPUT0": a, "INPUT1": b}, ["OUTPUT0", "OUTPUT1"])
    np.testing.assert_array_equal(to_numpy(out["OUTPUT0"]), a + b)
    np.testing.assert_array_equal(to_numpy(out["OUTPUT1"]), a - b)


def test_exported_program_with_dict_input(tmp_path: Path) -> None:
    make_add_sub_exported(tmp_path / "1" / "model.pt2", dict_input=True)
    config = make_config("exported_dict", inputs=("INPUT0", "INPUT1"),
                         extra='default_model_filename: "model.pt2"')  # fmt: skip
    instance = load(config, tmp_path / "1")
    a, b = AB
    out = instance.execute({"INPUT0": a, "INPUT1": b}, ["OUTPUT__1"])
    np.testing.assert_array_equal(to_numpy(out["OUTPUT__1"]), a - b)


def test_exported_program_inputs_that_do_not_fit_fail_the_load(tmp_path: Path) -> None:
    make_add_sub_exported(tmp_path / "1" / "model.pt2")
    config = make_config("exported_bad", inputs=("INPUT0",), outputs=("OUTPUT0",))
    with pytest.raises(TritonError, match=r"argument\(s\) INPUT1 have no configured input"):
        load(config, tmp_path / "1")


@pytest.fixture(scope="module")
def aoti_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One AOTInductor package for the module's tests (compiling it takes a while)."""
    return make_add_sub_exported(tmp_path_factory.mktemp("aoti") / "add_sub.pt2", aoti=True)


def test_aotinductor_package(tmp_path: Path, aoti_package: Path) -> None:
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "model.pt2").write_bytes(aoti_package.read_bytes())
    config = make_config("aoti", extra=_params(ENABLE_WEIGHT_SHARING="true"))
    backend = torch_backend.create_backend(config, tmp_path, tmp_path / "1")
    assert backend.format == "AOTInductor"
    first, second = (backend.create_instance(i, "KIND_CPU", 0) for i in (0, 1))
    assert first.module is second.module
    a, b = np.repeat(AB[0], 2, axis=0), np.repeat(AB[1], 2, axis=0)
    out = first.execute({"INPUT__0": a, "INPUT__1": b}, ["OUTPUT__0", "OUTPUT__1"])
    np.testing.assert_array_equal(to_numpy(out["OUTPUT__0"]), a + b)
    np.testing.assert_array_equal(to_numpy(out["OUTPUT__1"]), a - b)


# -------------------------------------------------------------------------------------------------
# Errors


def test_missing_model_file(tmp_path: Path) -> None:
    (tmp_path / "1").mkdir()
    with pytest.raises(TritonError) as info:
        load(make_config("nofile"), tmp_path / "1")
    assert info.value.status == "UNAVAILABLE"
    assert "'nofile'" in info.value.message
    assert str(tmp_path / "1" / "model.pt") in info.value.message


def test_corrupt_model_file(tmp_path: Path) -> None:
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "model.pt").write_bytes(b"not a zip archive")
    with pytest.raises(TritonError) as info:
        load(make_config("corrupt"), tmp_path / "1")
    assert info.value.status == "INVALID_ARG" and "'corrupt'" in info.value.message


def test_gpu_instance_without_cuda(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is available")
    make_add_sub_torchscript(tmp_path / "1" / "model.pt")
    with pytest.raises(TritonError) as info:
        load(make_config("gpu_simple"), tmp_path / "1", "KIND_GPU")
    assert info.value.status == "UNAVAILABLE"
    assert "'gpu_simple'" in info.value.message and "CUDA" in info.value.message


def test_runtime_error_names_the_model(tmp_path: Path) -> None:
    make_add_sub_torchscript(tmp_path / "1" / "model.pt")
    instance = load(make_config("shapes"), tmp_path / "1")
    with pytest.raises(TritonError) as info:
        instance.execute(
            {"INPUT__0": np.ones((1, 16), np.float32), "INPUT__1": np.ones((1, 15), np.float32)},
            ["OUTPUT__0"],
        )
    assert info.value.status == "INTERNAL"
    assert info.value.message.startswith("PyTorch execute failure for model 'shapes': ")


def test_output_datatype_must_match_config(tmp_path: Path) -> None:
    make_add_sub_torchscript(tmp_path / "1" / "model.pt")
    instance = load(make_config("dtypes", dtype="FP32"), tmp_path / "1")
    x = np.ones((1, 16), np.float64)
    with pytest.raises(TritonError) as info:
        instance.execute({"INPUT__0": x, "INPUT__1": x}, ["OUTPUT__0"])
    assert info.value.status == "INTERNAL"
    assert "'dtypes'" in info.value.message and "torch.float64" in info.value.message


@pytest.mark.parametrize(
    ("inputs", "needle"),
    [
        (("INPUT__0", "INPUT__2"), "without gaps"),
        (("A", "B", "C"), "3 inputs"),
        (("INPUT0",), "INPUT1"),  # by name, but forward's INPUT1 has no input
        (("INPUT__0",), "INPUT1"),  # positional, forward's second argument has no input
    ],
)
def test_inputs_that_do_not_fit_forward_fail_the_load(
    tmp_path: Path, inputs: tuple[str, ...], needle: str
) -> None:
    make_add_sub_torchscript(tmp_path / "1" / "model.pt")
    with pytest.raises(TritonError) as info:
        load(make_config("bad_inputs", inputs=inputs), tmp_path / "1")
    assert info.value.status == "INVALID_ARG"
    assert "'bad_inputs'" in info.value.message and needle in info.value.message


def test_output_index_beyond_results(tmp_path: Path) -> None:
    make_add_sub_torchscript(tmp_path / "1" / "model.pt")
    instance = load(make_config("few", outputs=("OUTPUT__0", "OUTPUT__5")), tmp_path / "1")
    a, b = AB
    with pytest.raises(TritonError, match="returned 2 output"):
        instance.execute({"INPUT__0": a, "INPUT__1": b}, ["OUTPUT__5"])


def test_module_imports_and_fails_clearly_without_torch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tritonlite.backends

    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    monkeypatch.setattr(tritonlite.backends, "pytorch", torch_backend)  # restored afterwards
    monkeypatch.delitem(sys.modules, "tritonlite.backends.pytorch")
    fresh = importlib.import_module("tritonlite.backends.pytorch")
    assert fresh is not torch_backend
    (tmp_path / "1").mkdir()
    with pytest.raises(TritonError) as info:
        fresh.create_backend(make_config("needs_torch"), tmp_path, tmp_path / "1")
    assert info.value.status == "UNAVAILABLE"
    assert "'needs_torch'" in info.value.message
    assert "requires PyTorch: pip install 'tritonlite[torch]'" in info.value.message
