"""Conversions between Triton datatype names, config names and numpy dtypes."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core

#: Every datatype Triton knows, in its wire spelling.
DATATYPES = (
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "BF16", "FP32", "FP64", "BYTES",
)  # fmt: skip


def to_wire_name(name: str) -> str:
    """'TYPE_INT32' -> 'INT32', 'TYPE_STRING' -> 'BYTES'; wire names pass through."""
    bare = name[5:] if name.startswith("TYPE_") else name
    return "BYTES" if bare == "STRING" else bare


def to_config_name(name: str) -> str:
    """'INT32' -> 'TYPE_INT32', 'BYTES' -> 'TYPE_STRING'."""
    wire = to_wire_name(name)
    return "TYPE_STRING" if wire == "BYTES" else "TYPE_" + wire


_NUMPY_DTYPES: dict[str, np.dtype[Any]] = {}  # to_numpy's answers (on hot paths: a dict hit)


def to_numpy(name: str) -> np.dtype[Any]:
    """numpy dtype for a datatype ('BYTES' -> object; 'BF16' needs ml_dtypes)."""
    dtype = _NUMPY_DTYPES.get(name)
    if dtype is None:
        dtype = _core.datatype_to_numpy(name)  # raises for a name that is no datatype
        if isinstance(name, str) and name in DATATYPES:
            _NUMPY_DTYPES[name] = dtype
    return dtype


def from_numpy(dtype: Any) -> str:
    """Triton wire datatype name for a numpy dtype (object/bytes/str -> 'BYTES')."""
    return _core.numpy_to_datatype(np.dtype(dtype))  # type: ignore[no-any-return]


def element_size(name: str) -> int:
    """Bytes per element; 0 for BYTES."""
    return _core.datatype_size(name)  # type: ignore[no-any-return]
