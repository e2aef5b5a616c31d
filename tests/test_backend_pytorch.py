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
from models import make_add_sub_torchscript, make_identity_torchscript
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
