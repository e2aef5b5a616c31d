"""Triton's error for an input whose data doesn't have the size its datatype and shape call for.

Triton checks an input's datatype and shape against the model before the size of its data, so
a client that sends ``[1, 8]`` with 16 values hears about the shape, not about bytes. The
frontends measure sizes while decoding, before the core's checks run; on a mismatch they ask
here which error Triton would give. Only the error path comes here. The texts carry Triton's
``[request id: ...]`` prefix, as the core's checks do (csrc/core/validation.cc).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import _core, sizes
from .._proto import model_config_pb2 as mc
from ..datatypes import to_wire_name
from ..errors import INVALID_ARG, TritonError

_BATCH_DIM_NOTE = (
    ". NOTE: Setting a non-zero max_batch_size in the model config requires a batch dimension "
    "to be prepended to each input shape. If you want to specify the full shape including the "
    "batch dim in your input dims config, try setting max_batch_size to zero. See the model "
    "configuration docs for more info on max_batch_size."
)


def request_id_prefix(request_id: str) -> str:
    return f"[request id: {request_id or '<id_unknown>'}] "


def unknown_datatype_error(config: Any, request_id: str, name: str) -> TritonError:
    """Triton's error for input ``name`` declared with a datatype name it doesn't know."""
    spec = next((i for i in config.input if i.name == name), None)
    if spec is None:
        return TritonError(
            f"unexpected inference input '{name}' for model '{config.name}'", INVALID_ARG
        )
    return TritonError(
        f"{request_id_prefix(request_id)}inference input '{name}' data-type is '<invalid>', but "
        f"model '{config.name}' expects '{to_wire_name(mc.DataType.Name(spec.data_type))}'",
        INVALID_ARG,
    )


def _declaration_error(
    config: Any, prefix: str, name: str, datatype: str, shape: Sequence[int]
) -> TritonError | None:
    """Triton's datatype or shape error when input ``name`` is declared wrongly for the model."""
    model = config.name
    spec = next((i for i in config.input if i.name == name), None)
    if spec is None:
        return None
    wanted = to_wire_name(mc.DataType.Name(spec.data_type))
    if datatype != wanted:
        return TritonError(
            f"{prefix}inference input '{name}' data-type is '{datatype}', but model "
            f"'{model}' expects '{wanted}'",
            INVALID_ARG,
        )
    dims = list(spec.dims)
    batching = config.max_batch_size > 0
    declared = list(shape)[1:] if batching else list(shape)
    if (
        (batching and not shape)
        or len(declared) != len(dims)
        or any(d != -1 and d != g for d, g in zip(dims, declared, strict=True))
    ):
        full = [-1, *dims] if batching else dims
        return TritonError(
            f"{prefix}unexpected shape for input '{name}' for model '{model}'. Expected "
            f"[{','.join(map(str, full))}], got [{','.join(map(str, shape))}]"
            + (_BATCH_DIM_NOTE if batching else ""),
            INVALID_ARG,
        )
    return None


def input_size_error(
    config: Any,
    request_id: str,
    name: str,
    datatype: str,
    shape: Sequence[int],
    expected: int,
    got: int,
) -> TritonError:
    """The error for input ``name`` of ``config``'s model whose data is ``got`` bytes where its
    declared ``datatype`` and ``shape`` need ``expected``: a datatype or shape error when the
    declaration itself is wrong for the model, else the byte size mismatch."""
    prefix = request_id_prefix(request_id)
    declared = _declaration_error(config, prefix, name, datatype, shape)
    if declared is not None:
        return declared
    return TritonError(
        f"{prefix}input byte size mismatch for input '{name}' for model '{config.name}'. Expected "
        f"{expected}, got {got}",
        INVALID_ARG,
    )


def bytes_count_error(
    config: Any, request_id: str, name: str, shape: Sequence[int], data: Any
) -> TritonError | None:
    """Triton's error for BYTES input ``name`` whose serialized ``data`` holds another number of
    elements than ``shape`` (a shape error first, as Triton); None when the counts agree or the
    data is malformed (the caller's error stands). Counting allocates nothing."""
    try:
        expected = sizes.element_count(shape)
        got = _core.bytes_element_count(data)
    except TritonError:
        return None
    if got == expected:
        return None
    prefix = request_id_prefix(request_id)
    declared = _declaration_error(config, prefix, name, "BYTES", shape)
    if declared is not None:
        return declared
    return TritonError(
        f"{prefix}expected {expected} string elements for inference input '{name}' for model "
        f"'{config.name}', got {got}",
        INVALID_ARG,
    )
