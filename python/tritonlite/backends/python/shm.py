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

The state word is written by one side and read by the other with plain stores and loads: the
consumer has finished every read of a block before it writes FREE (program order, and x86-64's
TSO keeps loads from passing later stores).
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
from ...datatypes import to_numpy
from ...errors import TritonError

__all__ = ["Arena", "ArenaMap", "Location", "TensorMeta", "read_tensors", "write_tensors"]

HEADER = 64
ALIGN = 64
_USED = 1
_FREE = 0

#: Where a message's tensor bytes are: ("a", header offset) in the sender's arena, or
#: ("s", index of the fd passed with the message, size) for a dedicated segment, or None.
Location = tuple[Any, ...] | None
#: (name, Triton datatype, shape, offset in the block's data, byte size)
TensorMeta = tuple[str, str, tuple[int, ...], int, int]


def _align(n: int) -> int:
    return (n + ALIGN - 1) & ~(ALIGN - 1)


def _map_fd(fd: int, size: int) -> mmap.mmap:
    return mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)


def _address(mm: mmap.mmap) -> int:
    # Raw views made from this address do not keep the mapping alive: their owner must (a lease
    # holds its ArenaMap, which holds the mmap).
    return ctypes.addressof(ctypes.c_char.from_buffer(mm))


def new_memfd(name: str, size: int) -> int:
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, max(size, 1))
    except BaseException:
        os.close(fd)
        raise
    return fd


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
        self.mm = _map_fd(self.fd, size)
        if not keep_fd:
            self.close_fd()
        self.addr = _address(self.mm)
        self.words = memoryview(self.mm).cast("I")
        self._live: deque[tuple[int, int]] = deque()  # (header offset, block size), ring order

    def alloc(self, nbytes: int) -> int:
        """Header offset of a new block with ``nbytes`` of data, or -1 if it does not fit now."""
        total = HEADER + _align(nbytes)
        live = self._live
        words = self.words
        while live and words[live[0][0] >> 2] == _FREE:
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
        return sum(1 for off, _ in self._live if self.words[off >> 2] != _FREE)

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
        self.mm = _map_fd(fd, size)
        os.close(fd)
        self.base = _address(self.mm)
        self.words = memoryview(self.mm).cast("I")

    def release(self, header_offset: int) -> None:
        self.words[header_offset >> 2] = _FREE

    def lease(self, header_offset: int) -> _BlockLease:
        return _BlockLease(self, header_offset)


def _raw_bytes(value: Any) -> tuple[Any, int]:
    """(source, byte size) of one tensor's bytes in Triton's layout. ``source`` is a bytes-like
    object, or a core Tensor (copied with memmove from its data pointer)."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "OSU":
            data = _core.serialize_bytes(value)
            return data, len(data)
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
    for name, datatype, shape, value in tensors:
        source, nbytes = _raw_bytes(value)
        sources.append(source)
        metas.append((name, datatype, tuple(int(d) for d in shape), offset, nbytes))
        offset += _align(nbytes)
    total = offset
    header = arena.alloc(total) if arena is not None else -1
    if header >= 0:
        assert arena is not None
        mm, base, fds = arena.mm, header + HEADER, []
        location: Location = ("a", header)
    else:
        fd = new_memfd("tritonlite-python-segment", total)
        mm, base, fds = _map_fd(fd, max(total, 1)), 0, [fd]
        location = ("s", 0, total)
    for (_, _, _, off, nbytes), source in zip(metas, sources, strict=True):
        if nbytes == 0:
            continue
        start = base + off
        if isinstance(source, (bytes, np.ndarray)):
            mm[start : start + nbytes] = source  # type: ignore[assignment]
        else:
            addr = arena.addr if arena is not None and mm is arena.mm else _address(mm)
            ctypes.memmove(addr + start, source.data_ptr, nbytes)
    if fds:
        mm.close()
    return metas, location, fds


def read_tensors(
    peer: ArenaMap | None,
    metas: Sequence[TensorMeta],
    location: Location,
    fds: Sequence[int],
    *,
    copy: bool = False,
) -> list[tuple[str, Any]]:
    """The tensors of one message as (name, numpy array) pairs.

    Numeric tensors are zero-copy views that free the block when the last one is gone; with
    ``copy`` they are private copies as core Tensors and the block is freed at once. BYTES are
    decoded object arrays (core Tensors with ``copy``). A descriptor whose byte size cannot be
    its datatype and shape raises ValueError before anything is allocated for the shape."""
    for name, dt, shape, _, n in metas:
        if not _consistent(dt, shape, n):
            for fd in fds:
                os.close(fd)
            if location is not None and location[0] == "a" and peer is not None:
                peer.release(location[1])
            raise ValueError(f"{n} bytes cannot hold {dt} tensor '{name}' of shape {list(shape)}")
    if location is None:
        for fd in fds:
            os.close(fd)
        return [(name, _empty(dt, shape, copy)) for name, dt, shape, _, _ in metas]
    if location[0] == "a":
        assert peer is not None
        header = location[1]
        data_base = header + HEADER
        try:
            if copy:
                return [
                    (
                        name,
                        _core.Tensor.from_buffer(
                            dt, list(shape), peer.mm[data_base + off : data_base + off + n]
                        ),
                    )
                    for name, dt, shape, off, n in metas
                ]
            lease = peer.lease(header)
            header = -1  # the lease frees it now
            return [
                (name, _arena_array(peer, lease, dt, shape, data_base + off, n))
                for name, dt, shape, off, n in metas
            ]
        finally:
            if header >= 0:
                peer.release(header)
    fd = fds[location[1]]
    size = location[2]
    mm = _map_fd(fd, max(size, 1))
    os.close(fd)
    if copy:
        out = [
            (name, _core.Tensor.from_buffer(dt, list(shape), mm[off : off + n]))
            for name, dt, shape, off, n in metas
        ]
        mm.close()
        return out
    return [(name, _segment_array(mm, dt, shape, off, n)) for name, dt, shape, off, n in metas]


def _consistent(datatype: str, shape: Sequence[int], n: int) -> bool:
    """Whether ``n`` bytes can be a ``datatype`` tensor of ``shape`` (one numpy can build)."""
    try:
        return sizes.fits(datatype, shape, n)
    except TritonError:  # a negative dimension, or [0, 2**62]
        return False


def _empty(datatype: str, shape: tuple[int, ...], copy: bool) -> Any:
    if copy:
        return _core.Tensor.from_buffer(datatype, list(shape), b"")
    if datatype == "BYTES":
        return np.empty(shape, dtype=object)
    return np.empty(shape, dtype=to_numpy(datatype))


def _arena_array(
    peer: ArenaMap, lease: _BlockLease, datatype: str, shape: tuple[int, ...], start: int, n: int
) -> np.ndarray:
    if datatype == "BYTES":
        return _core.deserialize_bytes(peer.mm[start : start + n], list(shape))  # type: ignore[no-any-return]
    view = _View()
    view.lease = lease
    view.__array_interface__ = {
        "data": (peer.base + start, False),
        "shape": (n,),
        "typestr": "|u1",
        "version": 3,
    }
    return np.asarray(view).view(to_numpy(datatype)).reshape(shape)


def _segment_array(
    mm: mmap.mmap, datatype: str, shape: tuple[int, ...], start: int, n: int
) -> np.ndarray:
    if datatype == "BYTES":
        return _core.deserialize_bytes(mm[start : start + n], list(shape))  # type: ignore[no-any-return]
    return np.frombuffer(mm, np.uint8, n, start).view(to_numpy(datatype)).reshape(shape)
