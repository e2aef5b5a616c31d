"""Element counts and byte sizes of tensors whose shapes come from a peer.

Owns: the one place the Python side turns a shape into a size. Python integers never wrap, so
the sizes are exact; what matters is that every frontend compares them with the bytes actually
present *before* anything is allocated for the shape (numpy would otherwise try to build an
array of ``[2**32, 2**32]`` elements, or a wrapped 64-bit product would make ``[2**62]`` FP32
look like 0 bytes). The C++ core does the same with ``csrc/util/checked_math.h``.

- ``element_count(shape)``: the exact product; more than 64 dimensions or a negative one is an
  INVALID_ARG error, and so is a shape with a zero dimension whose other dimensions multiply
  past ``MAX_ELEMENTS`` (``[0, 2**62]`` has no elements, but numpy cannot build it: no data check would catch it).
- ``byte_size(datatype, shape)``: the exact bytes of a fixed-size datatype; for BYTES the least
  a serialization of that many elements takes (4 bytes of length prefix each), so a BYTES shape
  announcing more elements than the data could hold is refused before anything is reserved.
- ``fits(datatype, shape, present)``: whether ``present`` bytes can be that tensor's data.
"""

from __future__ import annotations

from collections.abc import Iterable

from . import _core
from .errors import INVALID_ARG, TritonError

#: The largest element count or byte size a tensor may have (int64, as Triton and the core).
MAX_TENSOR_SIZE = 2**63 - 1

#: The most elements a shape may describe, zero dimensions aside: MAX_TENSOR_SIZE bytes of the
#: largest element (8 bytes, also a numpy object pointer). As kMaxElements in checked_math.h.
MAX_ELEMENTS = MAX_TENSOR_SIZE // 8

#: Bytes every BYTES element takes at least: its 4-byte little-endian length prefix.
BYTES_PREFIX = 4

#: The most dimensions a shape may have (numpy's limit). Checked before the product, which
#: thousands of huge dimensions would make slow to compute and too long to print.
MAX_DIMS = 64


def element_count(shape: Iterable[int]) -> int:
    """The exact number of elements of ``shape``; INVALID_ARG for a negative dimension or a
    shape with no elements that numpy could still not build (see the module docstring)."""
    dims = [int(d) for d in shape]
    if len(dims) > MAX_DIMS:
        raise TritonError(
            f"shape has {len(dims)} dimensions, more than the {MAX_DIMS} a tensor may have",
            INVALID_ARG,
        )
    nonzero = 1
    for d in dims:
        if d < 0:
            raise TritonError(f"negative dimension in shape {_text(dims)}", INVALID_ARG)
        nonzero *= d or 1
    if 0 in dims:
        if nonzero > MAX_ELEMENTS:
            raise TritonError(f"shape {_text(dims)} is too large", INVALID_ARG)
        return 0
    return nonzero


def _text(dims: list[int]) -> str:
    return f"[{','.join(map(str, dims))}]"


def byte_size(datatype: str, shape: Iterable[int]) -> int:
    """Exact bytes of a ``datatype`` tensor of ``shape`` (BYTES: the least its data can take)."""
    size = _core.datatype_size(datatype) if datatype != "BYTES" else BYTES_PREFIX
    return element_count(shape) * size


def fits(datatype: str, shape: Iterable[int], present: int) -> bool:
    """Whether ``present`` bytes can be the data of that tensor: exactly its size for a
    fixed-size datatype, at least 4 bytes per element for BYTES; never above MAX_TENSOR_SIZE."""
    needed = byte_size(datatype, shape)
    if needed > MAX_TENSOR_SIZE:
        return False
    return needed <= present if datatype == "BYTES" else needed == present
