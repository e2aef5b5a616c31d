"""Triton's classification extension: an output requested with ``classification: k``
returns the top-k entries of each batch row as BYTES strings "score:index[:label]"."""

from __future__ import annotations

import numpy as np

from ..errors import INVALID_ARG, TritonError


def classify(
    values: np.ndarray, k: int, batched: bool, labels: list[str], model: str, output: str
) -> np.ndarray:
    """Top-k of each row (of the whole tensor when not batched) as an object array of bytes,
    shape [batch, k] or [k]."""
    if k <= 0:
        raise TritonError(
            f"classification count for output '{output}' of model '{model}' must be > 0, got {k}",
            INVALID_ARG,
        )
    if values.dtype == np.object_:
        raise TritonError(
            f"output '{output}' of model '{model}' has datatype BYTES, which cannot be classified",
            INVALID_ARG,
        )
    rows = values.reshape(values.shape[0], -1) if batched else values.reshape(1, -1)
    k = min(k, rows.shape[1])
    out = np.empty((rows.shape[0], k), dtype=np.object_)
    for r, row in enumerate(rows):
        top = np.argsort(-row.astype(np.float64), kind="stable")[:k]
        for j, idx in enumerate(top):
            text = f"{float(row[idx]):f}:{int(idx)}"
            if idx < len(labels):
                text += f":{labels[idx]}"
            out[r, j] = text.encode()
    return out if batched else out.reshape(k)
