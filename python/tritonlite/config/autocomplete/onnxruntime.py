"""The onnxruntime backend's auto-complete: max_batch_size, dynamic batching, inputs and
outputs from the ONNX file's signature (read with ``onnx``, else ``onnxruntime``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..._proto import model_config_pb2 as _pb
from ...errors import INVALID_ARG, TritonError
from ..constants import _ONNX_BACKEND, _ONNX_FILE, WILDCARD_DIM, ModelConfig
from ..versions import version_dirs

_log = logging.getLogger("tritonlite.config")

_DEFAULT_MAX_BATCH_SIZE = 4  # tritonserver's --backend-config default-max-batch-size


# ONNX TensorProto element types (onnx.TensorProto.DataType) -> config data type.
_ONNX_ELEM_TYPES = {
    1: "TYPE_FP32",
    2: "TYPE_UINT8",
    3: "TYPE_INT8",
    4: "TYPE_UINT16",
    5: "TYPE_INT16",
    6: "TYPE_INT32",
    7: "TYPE_INT64",
    8: "TYPE_STRING",
    9: "TYPE_BOOL",
    10: "TYPE_FP16",
    11: "TYPE_FP64",
    12: "TYPE_UINT32",
    13: "TYPE_UINT64",
    16: "TYPE_BF16",
}
# onnxruntime's NodeArg.type strings -> config data type (fallback when onnx is absent).
_ORT_TYPES = {
    "tensor(float)": "TYPE_FP32",
    "tensor(uint8)": "TYPE_UINT8",
    "tensor(int8)": "TYPE_INT8",
    "tensor(uint16)": "TYPE_UINT16",
    "tensor(int16)": "TYPE_INT16",
    "tensor(int32)": "TYPE_INT32",
    "tensor(int64)": "TYPE_INT64",
    "tensor(string)": "TYPE_STRING",
    "tensor(bool)": "TYPE_BOOL",
    "tensor(float16)": "TYPE_FP16",
    "tensor(double)": "TYPE_FP64",
    "tensor(uint32)": "TYPE_UINT32",
    "tensor(uint64)": "TYPE_UINT64",
    "tensor(bfloat16)": "TYPE_BF16",
}


def _backend_setting(
    hints: Mapping[str, Mapping[str, str]] | None, backend: str, key: str
) -> str | None:
    if not hints:
        return None
    for scope in (backend, ""):
        value = hints.get(scope, {}).get(key)
        if value is not None:
            return value
    return None


@dataclass(frozen=True)
class _OnnxTensor:
    name: str
    data_type: str  # config name, "" when the type is not a supported tensor type
    dims: list[int]


def _onnx_model_path(config: ModelConfig, model_dir: Path) -> Path | None:
    for version in sorted(version_dirs(model_dir), reverse=True):
        path = model_dir / str(version) / str(config.default_model_filename)
        if path.is_dir() and (path / _ONNX_FILE).is_file():
            return path / _ONNX_FILE  # a large model stored as a directory
        if path.is_file():
            return path
    return None


def _read_onnx_signature(
    path: Path, hints: Mapping[str, Mapping[str, str]] | None = None
) -> tuple[list[_OnnxTensor], list[_OnnxTensor]]:
    """Graph inputs (initializers excluded) and outputs, with -1 for unknown dims."""
    try:
        import onnx
    except ImportError:
        return _read_ort_signature(path, hints)

    model = onnx.load(str(path), load_external_data=False)
    initializers = {init.name for init in model.graph.initializer}

    def convert(value: Any) -> _OnnxTensor:
        tensor_type = value.type.tensor_type if value.type.HasField("tensor_type") else None
        data_type = _ONNX_ELEM_TYPES.get(tensor_type.elem_type, "") if tensor_type else ""
        dims: list[int] = []
        if tensor_type is not None and tensor_type.HasField("shape"):
            dims = [
                d.dim_value if d.HasField("dim_value") else WILDCARD_DIM
                for d in tensor_type.shape.dim
            ]
        return _OnnxTensor(value.name, data_type, dims)

    inputs = [convert(v) for v in model.graph.input if v.name not in initializers]
    outputs = [convert(v) for v in model.graph.output]
    return inputs, outputs


def _read_ort_signature(
    path: Path, hints: Mapping[str, Mapping[str, str]] | None = None
) -> tuple[list[_OnnxTensor], list[_OnnxTensor]]:
    import onnxruntime as ort

    from ...backends import ort_threads

    # This may be the process's first session, which fixes its thread pools (see ort_threads).
    pools = ort_threads.parse(lambda key: _backend_setting(hints, "onnxruntime", key))

    def options() -> Any:
        o = ort.SessionOptions()
        o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        if not ort_threads.configure(o, pools, path.name, own_threads=False):
            o.intra_op_num_threads = 1  # only the signature is read: no thread pool
        return o

    try:
        session = ort.InferenceSession(str(path), options(), providers=["CPUExecutionProvider"])
    except Exception as exc:
        if not ort_threads.follow_environment(exc):
            raise
        session = ort.InferenceSession(str(path), options(), providers=["CPUExecutionProvider"])

    def convert(arg: Any) -> _OnnxTensor:
        shape = arg.shape if isinstance(arg.shape, list) else []
        dims = [d if isinstance(d, int) and d >= 0 else WILDCARD_DIM for d in shape]
        return _OnnxTensor(arg.name, _ORT_TYPES.get(arg.type, ""), dims)

    return [convert(a) for a in session.get_inputs()], [convert(a) for a in session.get_outputs()]


def onnx_auto_complete(
    config: ModelConfig,
    model_dir: Path,
    hints: Mapping[str, Mapping[str, str]] | None,
) -> None:
    """The onnxruntime backend's auto-complete: max_batch_size, batching, inputs, outputs.

    As Triton's onnxruntime backend (AutoCompleteConfig): a config that already lists inputs
    (or batch inputs) and outputs is left alone, max_batch_size included; otherwise the model
    fills max_batch_size and the missing side(s), a listed side kept as it is.
    """
    has_inputs = len(config.input) + len(config.batch_input) > 0
    has_outputs = len(config.output) > 0
    if has_inputs and has_outputs:
        _log.info(
            "skipping model configuration auto-complete for '%s': inputs and outputs already "
            "specified",
            config.name,
        )
        return
    path = _onnx_model_path(config, model_dir)
    if path is None:
        return  # nothing to read; loading the backend reports the missing file
    try:
        inputs, outputs = _read_onnx_signature(path, hints)
    except Exception as e:  # noqa: BLE001 - any reader failure is a bad model file
        raise TritonError(
            f"autofill failed for model '{config.name}': unable to read {path}: {e}",
            INVALID_ARG,
        ) from None

    can_batch = all(t.dims and t.dims[0] == WILDCARD_DIM for t in (*inputs, *outputs))
    if can_batch:
        if config.max_batch_size == 0:
            setting = _backend_setting(hints, _ONNX_BACKEND, "default-max-batch-size")
            default = _DEFAULT_MAX_BATCH_SIZE if setting is None else int(setting)
            config.max_batch_size = max(default, 0)
            _log.warning(
                "autofilled max_batch_size to %d for model '%s' since batching is "
                "supporrted but no max_batch_size is specified in model configuration. "
                "Must specify max_batch_size to utilize autofill with a larger max batch "
                "size",
                config.max_batch_size,
                config.name,
            )
        if config.max_batch_size > 1 and config.WhichOneof("scheduling_choice") is None:
            config.dynamic_batching.SetInParent()
    elif config.max_batch_size != 0:
        raise TritonError(
            f"autofill failed for model '{config.name}': model does not support batching "
            "while non-zero max_batch_size is specified",
            INVALID_ARG,
        )

    # Tensors the sequence batcher supplies or consumes (control inputs, implicit state) are
    # model tensors but not client tensors: they never join the config's inputs or outputs.
    seq = config.sequence_batching
    server_inputs = {c.name for c in seq.control_input} | {s.input_name for s in seq.state}
    server_inputs |= {name for b in config.batch_input for name in b.target_name}  # batch_input
    server_outputs = {s.output_name for s in seq.state}
    if not has_inputs:
        found = [t for t in inputs if t.name not in server_inputs]
        _complete_ios(config, config.input, found, "input")
    if not has_outputs:
        _complete_ios(
            config, config.output, [t for t in outputs if t.name not in server_outputs], "output"
        )


def _complete_ios(config: ModelConfig, ios: Any, found: list[_OnnxTensor], kind: str) -> None:
    """Keep the configured tensors (filling a missing data_type/dims), add the others."""
    by_name = {t.name: t for t in found}
    listed = set()
    for io in ios:
        listed.add(io.name)
        tensor = by_name.get(io.name)
        if tensor is None:
            continue
        if io.data_type == _pb.TYPE_INVALID and tensor.data_type:
            io.data_type = _pb.DataType.Value(tensor.data_type)
        if not io.dims:
            dims, reshape = _config_dims(tensor.dims, config.max_batch_size)
            io.dims.extend(dims)
            if reshape and not io.HasField("reshape"):
                io.reshape.SetInParent()
    for tensor in found:
        if tensor.name in listed:
            continue
        if not tensor.data_type:
            raise TritonError(
                f"autofill failed for model '{config.name}': unsupported ONNX type for "
                f"{kind} '{tensor.name}'",
                INVALID_ARG,
            )
        dims, reshape = _config_dims(tensor.dims, config.max_batch_size)
        io = ios.add(name=tensor.name, data_type=_pb.DataType.Value(tensor.data_type))
        io.dims.extend(dims)
        if reshape:
            io.reshape.SetInParent()


def _config_dims(model_dims: list[int], max_batch_size: int) -> tuple[list[int], bool]:
    """Config dims for model dims (batch dim dropped when batching) and whether an empty
    reshape is needed (a scalar per batch item is written as dims [1], reshape [])."""
    dims = list(model_dims[1:] if max_batch_size > 0 else model_dims)
    if dims:
        return dims, False
    return [1], max_batch_size > 0
