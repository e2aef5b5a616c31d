"""Test-model builders: small ONNX and TorchScript models written in code (no downloads).

Each ``make_*`` function writes one model file to ``path`` (parent directories are created) and
returns that path, e.g. ``make_add_sub_onnx(repo / "simple" / "1" / "model.onnx", "INT32")``.
``dtype`` is a Triton datatype in wire or config spelling ('FP32', 'TYPE_FP32', 'BYTES',
'TYPE_STRING'). ONNX models use opset ``ONNX_OPSET`` and IR ``ONNX_IR_VERSION``, which every
onnxruntime the project supports (>= 1.18) loads. ``onnx`` and ``torch`` are imported only by the
builders that need them.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ONNX_OPSET = 17
ONNX_IR_VERSION = 8

#: Triton wire datatype -> onnx.TensorProto element type name.
ONNX_ELEMENT_TYPES = {
    "BOOL": "BOOL",
    "UINT8": "UINT8",
    "UINT16": "UINT16",
    "UINT32": "UINT32",
    "UINT64": "UINT64",
    "INT8": "INT8",
    "INT16": "INT16",
    "INT32": "INT32",
    "INT64": "INT64",
    "FP16": "FLOAT16",
    "BF16": "BFLOAT16",
    "FP32": "FLOAT",
    "FP64": "DOUBLE",
    "BYTES": "STRING",
}

# Types onnxruntime's CPU Add/Sub kernels lack: add_sub computes them in another type.
_ADD_SUB_COMPUTE = {"BOOL": "INT32", "BF16": "FP32", "BYTES": "INT32"}


def wire_dtype(dtype: str) -> str:
    """'TYPE_FP32' -> 'FP32', 'TYPE_STRING'/'STRING' -> 'BYTES'."""
    bare = dtype[5:] if dtype.startswith("TYPE_") else dtype
    return "BYTES" if bare == "STRING" else bare


def _onnx_type(dtype: str) -> int:
    from onnx import TensorProto

    return int(getattr(TensorProto, ONNX_ELEMENT_TYPES[wire_dtype(dtype)]))


def _onnx_shape(dims: Sequence[int], batch: bool) -> list[int | str]:
    shape: list[int | str] = ["batch"] if batch else []
    shape += [d if d >= 0 else f"dim{i}" for i, d in enumerate(dims)]
    return shape


def _save_onnx(graph: Any, path: str | Path) -> Path:
    import onnx
    from onnx import helper

    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", ONNX_OPSET)],
        producer_name="tritonlite-tests",
    )
    model.ir_version = ONNX_IR_VERSION
    onnx.checker.check_model(model)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    return out


def make_identity_onnx(
    path: str | Path,
    dtype: str = "FP32",
    dims: Sequence[int] = (16,),
    batch: bool = True,
    input_name: str = "INPUT0",
    output_name: str = "OUTPUT0",
) -> Path:
    """OUTPUT0 = INPUT0 for any datatype (BYTES, BOOL, BF16 included); -1 dims are dynamic and
    ``batch`` adds a dynamic first dim."""
    from onnx import helper

    elem, shape = _onnx_type(dtype), _onnx_shape(dims, batch)
    graph = helper.make_graph(
        [helper.make_node("Identity", [input_name], [output_name])],
        "identity",
        [helper.make_tensor_value_info(input_name, elem, shape)],
        [helper.make_tensor_value_info(output_name, elem, shape)],
    )
    return _save_onnx(graph, path)


def make_add_sub_onnx(
    path: str | Path,
    dtype: str = "FP32",
    dims: Sequence[int] = (16,),
    batch: bool = True,
    input_names: Sequence[str] = ("INPUT0", "INPUT1"),
    output_names: Sequence[str] = ("OUTPUT0", "OUTPUT1"),
) -> Path:
    """Triton's "simple" model: OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1.

    BYTES is Triton's simple_string (decimal strings, added as INT32); BOOL computes in INT32 and
    casts back (so OUTPUT0 = a or b, OUTPUT1 = a xor b); BF16 computes in FP32.
    """
    from onnx import helper

    wire = wire_dtype(dtype)
    elem, shape = _onnx_type(wire), _onnx_shape(dims, batch)
    compute = _ADD_SUB_COMPUTE.get(wire)
    nodes = []
    a, b = input_names
    if compute is not None:
        nodes += [
            helper.make_node("Cast", [a], ["a_cast"], to=_onnx_type(compute)),
            helper.make_node("Cast", [b], ["b_cast"], to=_onnx_type(compute)),
        ]
        a, b = "a_cast", "b_cast"
    sum_name, diff_name = output_names if compute is None else ("sum", "diff")
    nodes += [
        helper.make_node("Add", [a, b], [sum_name]),
        helper.make_node("Sub", [a, b], [diff_name]),
    ]
    if compute is not None:
        nodes += [
            helper.make_node("Cast", ["sum"], [output_names[0]], to=elem),
            helper.make_node("Cast", ["diff"], [output_names[1]], to=elem),
        ]
    graph = helper.make_graph(
        nodes,
        "add_sub",
        [helper.make_tensor_value_info(n, elem, shape) for n in input_names],
        [helper.make_tensor_value_info(n, elem, shape) for n in output_names],
    )
    return _save_onnx(graph, path)


def make_mlp_onnx(
    path: str | Path,
    in_dim: int = 512,
    hidden: int = 1024,
    layers: int = 4,
    out_dim: int = 16,
    seed: int = 0,
    input_name: str = "INPUT0",
    output_name: str = "OUTPUT0",
) -> Path:
    """An FP32 MLP with a dynamic batch dim: ``layers`` Gemm layers (in_dim -> hidden -> ... ->
    out_dim) with ReLU between them; He-initialised from ``seed``."""
    from onnx import TensorProto, helper, numpy_helper

    if layers < 1:
        raise ValueError("layers must be >= 1")
    rng = np.random.default_rng(seed)
    sizes = [in_dim] + [hidden] * (layers - 1) + [out_dim]
    nodes, initializers = [], []
    current = input_name
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        w = (rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        bias = (rng.standard_normal(fan_out) * 0.01).astype(np.float32)
        initializers += [
            numpy_helper.from_array(w, f"w{i}"),
            numpy_helper.from_array(bias, f"b{i}"),
        ]
        last = i == layers - 1
        gemm_out = output_name if last else f"gemm{i}"
        nodes.append(helper.make_node("Gemm", [current, f"w{i}", f"b{i}"], [gemm_out]))
        if not last:
            nodes.append(helper.make_node("Relu", [gemm_out], [f"relu{i}"]))
            current = f"relu{i}"
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", in_dim])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", out_dim])],
        initializer=initializers,
    )
    return _save_onnx(graph, path)


# -------------------------------------------------------------------------------------------------
# TorchScript (torch is imported only here)


def _save_script(module: Any, path: str | Path) -> Path:
    import torch

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.* is deprecated in 2.x
        torch.jit.script(module).save(str(out))
    return out


def make_add_sub_torchscript(
    path: str | Path,
    output: str = "tuple",
    output_names: Sequence[str] = ("OUTPUT0", "OUTPUT1"),
) -> Path:
    """forward(self, INPUT0, INPUT1) returning (INPUT0 + INPUT1, INPUT0 - INPUT1) as a tuple,
    a list, or (``output="dict"``) a dict keyed by ``output_names``. Works for any dtype torch
    adds; configs may name the inputs INPUT0/INPUT1 (by argument name) or INPUT__0/INPUT__1."""
    import torch
    from torch import Tensor

    class AddSubTuple(torch.nn.Module):
        def forward(self, INPUT0: Tensor, INPUT1: Tensor) -> tuple[Tensor, Tensor]:  # noqa: N803
            return INPUT0 + INPUT1, INPUT0 - INPUT1

    class AddSubList(torch.nn.Module):
        def forward(self, INPUT0: Tensor, INPUT1: Tensor) -> list[Tensor]:  # noqa: N803
            return [INPUT0 + INPUT1, INPUT0 - INPUT1]

    class AddSubDict(torch.nn.Module):
        def __init__(self, keys: Sequence[str]) -> None:
            super().__init__()
            self.sum_key: str = keys[0]
            self.diff_key: str = keys[1]

        def forward(self, INPUT0: Tensor, INPUT1: Tensor) -> dict[str, Tensor]:  # noqa: N803
            return {self.sum_key: INPUT0 + INPUT1, self.diff_key: INPUT0 - INPUT1}

    modules: dict[str, Any] = {
        "tuple": AddSubTuple,
        "list": AddSubList,
        "dict": lambda: AddSubDict(output_names),
    }
    if output not in modules:
        raise ValueError(f"output must be one of {sorted(modules)}")
    return _save_script(modules[output](), path)


def make_add_sub_exported(path: str | Path, aoti: bool = False, dict_input: bool = False) -> Path:
    """``make_add_sub_torchscript``'s model (FP32, dims [-1, 16]) as a ``torch.export.save``
    archive, or with ``aoti`` an AOTInductor package (compiles C++: tens of seconds). With
    ``dict_input`` forward takes one dict with keys INPUT0 and INPUT1."""
    import torch
    from torch import Tensor

    class AddSub(torch.nn.Module):
        def forward(self, INPUT0: Tensor, INPUT1: Tensor) -> tuple[Tensor, Tensor]:  # noqa: N803
            return INPUT0 + INPUT1, INPUT0 - INPUT1

    class DictAddSub(torch.nn.Module):
        def forward(self, inputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
            return inputs["INPUT0"] + inputs["INPUT1"], inputs["INPUT0"] - inputs["INPUT1"]

    batch = torch.export.Dim("batch", max=1024)
    x, y = torch.ones(2, 16), torch.ones(2, 16)  # two tensors: export dedups one passed twice
    if dict_input:
        args: tuple[Any, ...] = ({"INPUT0": x, "INPUT1": y},)
        shapes: Any = ({"INPUT0": {0: batch}, "INPUT1": {0: batch}},)
    else:
        args, shapes = (x, y), ({0: batch}, {0: batch})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        program = torch.export.export(
            DictAddSub() if dict_input else AddSub(), args, dynamic_shapes=shapes
        )
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        if aoti:
            torch._inductor.aoti_compile_and_package(program, package_path=str(out))
        else:
            torch.export.save(program, str(out))
    return out


def make_identity_torchscript(path: str | Path, strings: bool = False) -> Path:
    """forward(self, INPUT0) returning INPUT0: a Tensor of any dtype, or with ``strings`` a
    List[str] (how TorchScript models take Triton BYTES tensors)."""
    import torch
    from torch import Tensor

    class Identity(torch.nn.Module):
        def forward(self, INPUT0: Tensor) -> Tensor:  # noqa: N803
            return INPUT0

    class StringIdentity(torch.nn.Module):
        def forward(self, INPUT0: list[str]) -> list[str]:  # noqa: N803
            return INPUT0

    return _save_script(StringIdentity() if strings else Identity(), path)


def make_accumulator_onnx(path: str | Path) -> Path:
    """A stateless running-sum model for implicit state: OUTPUT = INPUT + STATE_IN and
    STATE_OUT = OUTPUT; INPUT/STATE_IN/OUTPUT/STATE_OUT are FP32 [-1, 1]."""
    from onnx import TensorProto, helper

    shape = ["batch", 1]
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["INPUT", "STATE_IN"], ["OUTPUT"]),
            helper.make_node("Identity", ["OUTPUT"], ["STATE_OUT"]),
        ],
        "accumulator",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in ("INPUT", "STATE_IN")],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in ("OUTPUT", "STATE_OUT")],
    )
    return _save_onnx(graph, path)


def make_plus_onnx(path: str | Path, plus: float, dims: int = 4) -> Path:
    """OUTPUT0 = INPUT0 + plus (FP32 [-1, dims]): tells models and versions apart."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["INPUT0", "c"], ["OUTPUT0"])],
        "plus",
        [helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, ["b", dims])],
        [helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, ["b", dims])],
        [helper.make_tensor("c", TensorProto.FLOAT, [1], [plus])],
    )
    return _save_onnx(graph, path)


PYTHON_MODELS = Path(__file__).parent / "python_models"


def serve_python_model(
    server: Any,
    repo: Path,
    source: str,
    mode: str,
    extra_config: str = "",
    name: str = "",
    replace: tuple[str, str] = ("", ""),
) -> Any:
    """Serve tests/python_models/<source> as <name> on ``server`` in ``mode`` ("stub" or
    "in_process"), through the config layer with python auto-complete; its config.pbtxt edited
    (renamed, ``replace``d, ``extra_config`` appended). Returns the backend."""
    import functools
    import shutil

    from tritonlite import config as model_config
    from tritonlite.backends.python import create_backend, python_auto_complete

    name = name or source
    model_dir = repo / name
    shutil.copytree(PYTHON_MODELS / source, model_dir)
    config_file = model_dir / "config.pbtxt"
    text = config_file.read_text().replace(f'name: "{source}"', f'name: "{name}"')
    if replace[0]:
        text = text.replace(*replace)
    text += f'\nparameters {{ key: "EXECUTION_MODE" value {{ string_value: "{mode}" }} }}\n'
    config_file.write_text(text + extra_config)
    config = model_config.load_model_config(
        model_dir, python_auto_complete=functools.partial(python_auto_complete, model_dir=model_dir)
    )
    backend = create_backend(config, model_dir, model_dir / "1", server=server)
    server.add_model(config, backend, 1)
    return backend
