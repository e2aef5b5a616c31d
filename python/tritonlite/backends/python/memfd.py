"""Sealed memfds: the only kind of file a stub process and the server share.

This module owns making them and mapping one that the peer made. A memfd that the other
process can still shrink is a trap: after we map it, an ``ftruncate`` on its side turns our next
read of the mapping into SIGBUS, which kills the whole server. So every memfd is created with
``MFD_ALLOW_SEALING`` and sealed against shrinking and growing (``F_SEAL_SHRINK | F_SEAL_GROW |
F_SEAL_SEAL``) before it is handed over, and ``map_received`` refuses an fd that is not a
regular file sealed that way, or smaller than the message says (``ValueError``; the callers turn
it into a protocol error). Writing stays allowed: that is what the mapping is for.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import stat

__all__ = ["SEALS", "map_fd", "map_received", "new_memfd"]

#: The seals every shared memfd carries: its size is fixed for its whole life.
SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL


def new_memfd(name: str, size: int) -> int:
    """A new memfd of ``size`` bytes (at least 1), sealed so nobody can change its size."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        os.ftruncate(fd, max(size, 1))
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, SEALS)
    except BaseException:
        os.close(fd)
        raise
    return fd


def map_fd(fd: int, size: int) -> mmap.mmap:
    """Map ``size`` bytes (at least 1) of a memfd read-write and shared."""
    return mmap.mmap(fd, max(size, 1), mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)


def check_received(fd: int, size: int) -> None:
    """ValueError unless ``fd`` is a sealed memfd of at least ``size`` bytes."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise ValueError("the file passed is not a memfd")
    try:
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
    except OSError:
        raise ValueError("the file passed is not a sealable memfd") from None
    if seals & SEALS != SEALS:
        raise ValueError("the memfd passed is not sealed against resizing")
    if size < 0 or info.st_size < max(size, 1):
        raise ValueError(f"the memfd passed has {info.st_size} bytes, the message says {size}")


def map_received(fd: int, size: int, *, writable: bool = True) -> mmap.mmap:
    """Map a memfd that the peer sent: checked first (ValueError), see the module docstring."""
    check_received(fd, size)
    prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
    return mmap.mmap(fd, max(size, 1), mmap.MAP_SHARED, prot)
