"""Triton's classification extension: an output requested with a class count returns the
top-k entries of each batch row as BYTES strings "score:index[:label]", in Triton's format
(floats as "%f", integers as integers; ties keep the lower index first). Used by every frontend.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import INVALID_ARG, TritonError


def _bad(message: str) -> TritonError:
    return TritonError(message, INVALID_ARG)


_CLASSIFIABLE = {
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP32",
    "FP64",
}


def classify(
    values: np.ndarray, datatype: str, k: int, batched: bool, labels: Sequence[str]
) -> np.ndarray:
    """Triton's classification of an output: the top ``k`` of each batch row (of the whole tensor
    without batching), best first, as "score:index[:label]" bytes; shape [batch, k'] or [k'] with
    k' = min(k, elements per row). Ties keep the lower index first."""
    if datatype not in _CLASSIFIABLE:
        raise _bad(f"class result not available for output due to unsupported type '{datatype}'")
    batch = int(values.shape[0]) if batched and values.ndim > 0 else 0
    rows = values.reshape(batch, -1) if batch else values.reshape(1, -1)
    top = min(k, rows.shape[1])
    is_float = datatype in ("FP32", "FP64")
    out = np.empty((rows.shape[0], top), dtype=np.object_)
    for r, row in enumerate(rows):
        # Descending and stable: ~x reverses integer order without overflow, -x float order.
        order = np.argsort(-row if is_float else ~row, kind="stable")[:top]
        for j, idx in enumerate(order.tolist()):
            v = row[idx]
            text = f"{float(v):f}" if is_float else str(int(v))
            text += f":{idx}"
            if idx < len(labels):
                text += f":{labels[idx]}"
            out[r, j] = text.encode("utf-8")
    return out if batch else out.reshape(top)
