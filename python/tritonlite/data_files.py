"""Reading a data file that a model's config names (``model_warmup``'s ``input_data_file``,
``initial_state``'s ``data_file``) as hostile input: opened without following a link or waiting
on a FIFO, and read up to a bound. The callers check the file is regular and say what went
wrong in their own (Triton's) words."""

from __future__ import annotations

import os
from pathlib import Path

#: Bytes read at a time: a big file never needs one allocation of its whole size at once.
_CHUNK_BYTES = 1 << 24


def open_data_file(path: Path) -> int:
    """A read-only descriptor for ``path``, not following a final symlink, not blocking on a
    FIFO (the caller refuses one after ``os.fstat``). Raises OSError."""
    return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)


def read_at_most(fd: int, size: int) -> bytes:
    """Up to ``size`` bytes from ``fd`` (fewer at end of file). Raises OSError."""
    chunks = []
    left = size
    while left > 0:
        chunk = os.read(fd, min(left, _CHUNK_BYTES))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
