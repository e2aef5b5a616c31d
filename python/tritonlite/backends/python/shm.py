"""Shared memory between the server and a python model's stub process.

This module owns how tensor bytes cross the process boundary; the small control messages that
describe them travel over the sockets in ``ipc.py``.

Each direction has one *arena*: a memfd mapping created by the sending side (the producer) and
mapped by the receiving side (the consumer). The producer packs all tensors of one message
(a batch of requests, one response, one BLS call) into one *block* of its arena:

    [64-byte header: u32 state, u32 unused, u64 block size][tensor 0][pad to 64][tensor 1]...

Blocks are handed out in ring order and freed out of order, in shared memory: the consumer sets
the header's state to FREE when it is done with the block (``ArenaMap.release``), and the
producer reclaims FREE blocks at the ring's tail the next time it allocates. No message is spent
on freeing, and small messages keep reusing the first pages of the arena. A message that does not
fit the arena's free space travels in a *dedicated segment* instead: a fresh memfd passed along
with the message, unmapped when the last view of it is gone.

On the consumer side, numeric tensors are zero-copy numpy views; every view of a block keeps one
``_BlockLease`` alive, and the lease frees the block when the last view is gone. BYTES tensors
are decoded into object arrays (a copy, as Triton does).

Memory ordering (correct on weakly ordered CPUs such as aarch64, not only on x86-64's TSO).
Two things cross between the processes:

* a block's contents, producer to consumer: the producer writes the header and the data, then
  sends the message that names the block; the consumer reads the block after receiving it. The
  socket send and receive are system calls that take the same kernel lock (a full barrier on
  both sides), so everything written before the send is visible after the receive.
* the block's state word, consumer to producer, with no system call in between: the consumer
  must have finished every read of the block before the producer may reuse it. A plain store of
  FREE could become visible before earlier loads of the block complete (ARM lets loads pass
  later stores), and the producer would overwrite data still being read. So the consumer
  writes FREE with a *release* store and the producer reads the state with an *acquire* load
  (``_core.atomic_store_u32`` / ``atomic_load_u32``, C++ ``__atomic`` builtins: Python has no
  atomics): every read of the block happens before the producer's next write to it.

The producer's own stores to the header (USED, the size) need no ordering of their own: the
consumer never reads them before the message naming the block arrives.

Both sides check what the other sent before touching memory (``read_tensors``): offsets and
sizes must lie inside the arena or the segment, numeric tensors must have exactly the bytes
their shape needs, and a segment must be a memfd sealed against shrinking (``memfd.py``: a
peer that could shrink it would turn our next read into SIGBUS).
"""

from __future__ import annotations

import ctypes
import mmap
import os
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from ... import _core, sizes
from ...datatypes import DATATYPES, to_numpy
from ...errors import TritonError
from .ipc import ProtocolError
from .memfd import map_fd, map_received, new_memfd

__all__ = ["Arena", "ArenaMap", "Location", "TensorMeta", "read_tensors", "write_tensors"]

HEADER = 64
ALIGN = 64
_USED = 1
_FREE = 0
_load = _core.atomic_load_u32
_store = _core.atomic_store_u32

#: Where a message's tensor bytes are: ("a", header offset) in the sender's arena, or
#: ("s", index of the fd passed with the message, size) for a dedicated segment, or None.
Location = tuple[Any, ...] | None
#: (name, Triton datatype, shape, offset in the block's data, byte size)
TensorMeta = tuple[str, str, tuple[int, ...], int, int]


def _align(n: int) -> int:
    return (n + ALIGN - 1) & ~(ALIGN - 1)


def _address(mm: mmap.mmap) -> int:
    # Raw views made from this address do not keep the mapping alive: their owner must (a lease
    # holds its ArenaMap, which holds the mmap).
    return ctypes.addressof(ctypes.c_char.from_buffer(mm))


class Arena:
    """The producer's side of one direction: a ring of blocks in a memfd mapping.

    Not thread-safe: callers serialize ``alloc`` (the stub and the server each hold a lock).
    """

    def __init__(
        self,
        size: int,
        name: str = "tritonlite-python",
        fd: int | None = None,
        keep_fd: bool = False,
    ) -> None:
        """A new arena of ``size`` bytes, or (``fd``) one the peer created for us to fill. The fd
        is closed once mapped unless ``keep_fd`` (to pass it on; then ``close_fd`` it)."""
        self.size = size
        self.fd = new_memfd(name, size) if fd is None else fd
        self.mm = map_fd(self.fd, size)
        if not keep_fd:
            self.close_fd()
        self.addr = _address(self.mm)
        self.words = memoryview(self.mm).cast("I")
        self._live: deque[tuple[int, int]] = deque()  # (header offset, block size), ring order

    def _freed(self, header_offset: int) -> bool:
        """The consumer is done with the block (acquire: its reads happened before)."""
        return _load(self.mm, header_offset) == _FREE

    def alloc(self, nbytes: int) -> int:
        """Header offset of a new block with ``nbytes`` of data, or -1 if it does not fit now."""
        total = HEADER + _align(nbytes)
        live = self._live
        words = self.words
        while live and self._freed(live[0][0]):
            live.popleft()
        if not live:
            start = 0 if total <= self.size else -1
        else:
            tail = live[0][0]
            last_offset, last_size = live[-1]
            head = last_offset + last_size
            if last_offset >= tail:  # not wrapped: free space is [head, size) and [0, tail)
                if head + total <= self.size:
                    start = head
                elif total <= tail:
                    start = 0
                else:
                    start = -1
            else:  # wrapped: free space is [head, tail)
                start = head if head + total <= tail else -1
        if start < 0:
            return -1
        words[start >> 2] = _USED
        words[(start >> 2) + 2] = total & 0xFFFFFFFF
        words[(start >> 2) + 3] = total >> 32
        live.append((start, total))
        return start

    def in_use(self) -> int:
        """Blocks not yet freed by the consumer (for tests)."""
        return sum(1 for off, _ in self._live if not self._freed(off))

    def close_fd(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def close(self) -> None:
        """Unmap now (only when no thread can still be writing to it)."""
        self.words.release()
        try:
            self.mm.close()
        except BufferError:  # views still exported; the mapping goes with them
            pass
        self.close_fd()


class _BlockLease:
    """Frees one arena block when the last numpy view of it is gone."""

    __slots__ = ("arena", "offset")

    def __init__(self, arena: ArenaMap, offset: int) -> None:
        self.arena = arena
        self.offset = offset

    def __del__(self) -> None:
        self.arena.release(self.offset)


class _View:
    """A numpy ``__array_interface__`` exporter whose lifetime holds a block lease."""

    __slots__ = ("__array_interface__", "lease")
    __array_interface__: dict[str, Any]
    lease: _BlockLease


class ArenaMap:
    """The consumer's side of one direction: the peer's arena, mapped."""

    def __init__(self, fd: int, size: int) -> None:
        self.size = size
        self.mm = map_fd(fd, size)
        os.close(fd)
        self.base = _address(self.mm)

    def release(self, header_offset: int) -> None:
        """Give a block back (release: every read of it happens before the producer reuses it)."""
        _store(self.mm, header_offset, _FREE)

    def lease(self, header_offset: int) -> _BlockLease:
        return _BlockLease(self, header_offset)


def _raw_bytes(value: Any) -> tuple[Any, int]:
    """(source, byte size) of one tensor's bytes in Triton's layout. ``source`` is a bytes-like
    object, or a core Tensor (copied with memmove from its data pointer)."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "OSU":
            data = _core.serialize_bytes(value)
            return data, len(data)
        if value.flags.c_contiguous:
            try:  # the array's own buffer, as bytes (no new array objects)
                raw = memoryview(value).cast("B")
                return raw, raw.nbytes
            except (TypeError, ValueError, BufferError):  # a dtype with no buffer format (BF16)
                pass
        flat = np.ascontiguousarray(value).reshape(-1).view(np.uint8)
        return flat, flat.nbytes
    # A core Tensor: its bytes are already in Triton's layout (BYTES serialized).
    return value, value.byte_size


def write_tensors(
    arena: Arena | None, tensors: Sequence[tuple[str, str, Sequence[int], Any]]
) -> tuple[list[TensorMeta], Location, list[int]]:
    """Pack (name, datatype, shape, numpy array | core Tensor) into one block.

    Returns the tensor descriptors, the block's location and the fds to pass with the message
    (a dedicated segment when the arena has no room; the caller closes those fds after sending).
    """
    if not tensors:
        return [], None, []
    sources = []
    metas: list[TensorMeta] = []
    offset = 0
    ndarray = np.ndarray
    for name, datatype, shape, value in tensors:
        # The common case inline (per tensor on the hot path): a C-contiguous numeric array's
        # own buffer, as bytes.
        if type(value) is ndarray and value.dtype.kind not in "OSU" and value.flags.c_contiguous:
            try:
                source: Any = memoryview(value).cast("B")
                nbytes = source.nbytes
            except (TypeError, ValueError, BufferError):  # no buffer format (BF16)
                source, nbytes = _raw_bytes(value)
        else:
            source, nbytes = _raw_bytes(value)
        sources.append(source)
        if type(shape) is not tuple:
            shape = tuple(map(int, shape))
        metas.append((name, datatype, shape, offset, nbytes))
        offset += (nbytes + ALIGN - 1) & ~(ALIGN - 1)
    total = offset
    header = arena.alloc(total) if arena is not None else -1
    if header >= 0:
        assert arena is not None
        mm, base, fds = arena.mm, header + HEADER, []
        location: Location = ("a", header)
    else:
        fd = new_memfd("tritonlite-python-segment", total)
        mm, base, fds = map_fd(fd, total), 0, [fd]
        location = ("s", 0, total)
    for (_, _, _, off, nbytes), source in zip(metas, sources, strict=True):
        if nbytes == 0:
            continue
        start = base + off
        if isinstance(source, (bytes, np.ndarray, memoryview)):
            mm[start : start + nbytes] = source  # type: ignore[assignment]
        else:
            addr = arena.addr if arena is not None and mm is arena.mm else _address(mm)
            ctypes.memmove(addr + start, source.data_ptr, nbytes)
    if fds:
        mm.close()
    return metas, location, fds


#: Bytes per element by datatype (0 for BYTES).
_ITEMSIZE = {name: _core.datatype_size(name) for name in DATATYPES}
MAX_DIMS = sizes.MAX_DIMS


def _check_metas(metas: Sequence[TensorMeta], limit: int) -> None:
    """ProtocolError unless every tensor's bytes lie in ``[0, limit)`` of its block and are
    exactly what its datatype and shape need (at least 4 per element for BYTES)."""
    checked = _CHECKED
    for name, datatype, shape, off, n in metas:
        if type(shape) is not tuple or (datatype, shape, n) not in checked:
            _check_shape(name, datatype, shape, n)
        if off < 0 or n < 0 or off + n > limit:
            raise ProtocolError(
                f"tensor '{name}': bytes [{off}, {off + n}) are outside the {limit} bytes of its "
                "shared memory"
            )


#: (datatype, shape, byte size) triples already found consistent: a batch's tensors repeat a
#: few of them, and the check below costs microseconds. Bounded (a peer could send a new shape
#: with every message): cleared when full.
_CHECKED: set[tuple[str, tuple[int, ...], int]] = set()
_CHECKED_MAX = 4096


def _check_shape(name: str, datatype: str, shape: Sequence[int], n: int) -> None:
    """ProtocolError unless ``n`` bytes are what a ``datatype`` tensor of ``shape`` needs."""
    key = (datatype, shape, n) if type(shape) is tuple else None
    if key is not None:
        try:
            if key in _CHECKED:
                return
        except TypeError:  # not hashable: not a shape (the full check below says why)
            key = None
    _check_shape_fully(name, datatype, shape, n)
    if key is not None:
        if len(_CHECKED) >= _CHECKED_MAX:
            _CHECKED.clear()
        _CHECKED.add(key)  # type: ignore[arg-type]


def _check_shape_fully(name: str, datatype: str, shape: Sequence[int], n: int) -> None:
    size = _ITEMSIZE.get(datatype)
    if size is None:
        raise ProtocolError(f"tensor '{name}': unknown datatype '{datatype}'")
    if len(shape) > MAX_DIMS or any(d < 0 for d in shape):
        raise ProtocolError(f"tensor '{name}': invalid shape {list(shape)}")
    try:
        count = sizes.element_count(shape)  # exact; [0, 2**62] refused: numpy cannot build it
    except TritonError:
        count = -1
    if count < 0 or ((count * size != n) if size else (count * sizes.BYTES_PREFIX > n)):
        raise ProtocolError(
            f"{n} bytes cannot hold {datatype} tensor '{name}' of shape {list(shape)}"
        )


def _close(fds: Sequence[int]) -> None:
    for fd in fds:
        os.close(fd)


def read_tensors(
    peer: ArenaMap | None,
    metas: Sequence[TensorMeta],
    location: Location,
    fds: Sequence[int],
    *,
    copy: bool = False,
) -> list[tuple[str, Any]]:
    """The tensors of one message as (name, numpy array) pairs. Every fd in ``fds`` is closed.

    Numeric tensors are zero-copy views that free the block when the last one is gone; with
    ``copy`` they are private copies as core Tensors and the block is freed at once. BYTES are
    decoded object arrays (core Tensors with ``copy``). ProtocolError when the descriptors do
    not fit their shared memory (see the module docstring)."""
    if location is None or location[0] == "a":
        if fds:
            _close(fds)
            raise ProtocolError("tensors in the arena came with a segment fd")
        if location is None:
            if metas:
                for name, datatype, shape, _, n in metas:  # say why, when a shape is wrong
                    _check_shape(name, datatype, shape, n)
                raise ProtocolError("tensor descriptors without shared memory")
            return []
        header = location[1]
        if peer is None or header < 0 or header % ALIGN or header > peer.size - HEADER:
            raise ProtocolError(f"arena block at {header} is outside the arena")
        data_base = header + HEADER
        try:
            _check_metas(metas, peer.size - data_base)
            end = max((off + n for _, _, _, off, n in metas), default=0)
            if copy:
                # One copy of the block's tensor bytes; each tensor a view of it.
                data = peer.mm[data_base : data_base + end]
                from_buffer = _core.Tensor.from_buffer
                return [
                    (name, from_buffer(dt, list(shape), data, off, n))
                    for name, dt, shape, off, n in metas
                ]
            lease = peer.lease(header)
            header = -1  # the lease frees it now
            block = _block_array(peer, lease, data_base, end)
            out = []
            ndarray, dtypes = np.ndarray, _NUMPY
            for name, dt, shape, off, n in metas:
                dtype = dtypes.get(dt)
                if dtype is None:  # BYTES (decoded), or one not seen yet
                    out.append((name, _arena_array(peer, block, dt, shape, data_base, off, n)))
                else:  # a view of the block (its bytes are exactly the shape's: checked)
                    out.append((name, ndarray(shape, dtype, block, off)))
            return out
        except ProtocolError:
            raise
        except Exception as e:  # malformed BYTES: the core's checks
            raise ProtocolError(f"tensor data: {e}") from None
        finally:
            if header >= 0:
                peer.release(header)
    if len(location) != 3 or location[1] != 0 or len(fds) != 1:
        _close(fds)
        raise ProtocolError("a segment message must come with exactly one fd")
    size = location[2]
    try:
        _check_metas(metas, size)  # before mapping anything the descriptors ask for
        mm = map_received(fds[0], size)
    except (OSError, ValueError) as e:
        raise ProtocolError(f"segment: {e}") from None
    finally:
        os.close(fds[0])
    try:
        if copy:
            out = [
                (name, _core.Tensor.from_buffer(dt, list(shape), mm[off : off + n]))
                for name, dt, shape, off, n in metas
            ]
            mm.close()
            return out
        return [(name, _segment_array(mm, dt, shape, off, n)) for name, dt, shape, off, n in metas]
    except ProtocolError:
        raise
    except Exception as e:
        raise ProtocolError(f"tensor data: {e}") from None


def _block_array(peer: ArenaMap, lease: _BlockLease, start: int, n: int) -> np.ndarray:
    """The ``n`` bytes of a block's data at ``start`` as one uint8 array holding the lease:
    every tensor of the block is a view of it (one exporter per block, not per tensor)."""
    view = _View()
    view.lease = lease
    view.__array_interface__ = {
        "data": (peer.base + start, False),
        "shape": (n,),
        "typestr": "|u1",
        "version": 3,
    }
    return np.asarray(view)


#: numpy dtypes of the numeric datatypes seen so far (filled by ``_arena_array``).
_NUMPY: dict[str, np.dtype[Any]] = {}


def _arena_array(
    peer: ArenaMap,
    block: np.ndarray,
    datatype: str,
    shape: tuple[int, ...],
    data_base: int,
    off: int,
    n: int,
) -> np.ndarray:
    if datatype == "BYTES":
        start = data_base + off
        return _core.deserialize_bytes(peer.mm[start : start + n], list(shape))  # type: ignore[no-any-return]
    dtype = to_numpy(datatype)
    if datatype in DATATYPES:
        _NUMPY[datatype] = dtype
    return block[off : off + n].view(dtype).reshape(shape)


def _segment_array(
    mm: mmap.mmap, datatype: str, shape: tuple[int, ...], start: int, n: int
) -> np.ndarray:
    if datatype == "BYTES":
        return _core.deserialize_bytes(mm[start : start + n], list(shape))  # type: ignore[no-any-return]
    return np.frombuffer(mm, np.uint8, n, start).view(to_numpy(datatype)).reshape(shape)
