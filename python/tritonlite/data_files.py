"""Data files that a model's config names (``model_warmup``'s ``input_data_file`` under
``<model>/warmup``, ``initial_state``'s ``data_file`` under ``<model>/initial_state``), treated
as hostile: the name must stay inside that directory (no absolute path, ``..``, or link
leading out), the file is opened without following a link or waiting on a FIFO, and read up
to a bound. The callers check the file is regular and give each error its status."""

from __future__ import annotations

import os
from pathlib import Path

class DataFileError(Exception):
    """A data file name that cannot be used; ``missing``: the file does not exist (Triton's
    "failed to open text file for read" text)."""

    def __init__(self, message: str, missing: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.missing = missing


def resolve_data_file(model_dir: Path, subdir: str, file_name: str, named: str) -> Path:
    """The real path of ``file_name`` inside ``<model_dir>/<subdir>``; ``named``: how messages
    name the file (e.g. "input 'x': input_data_file 'a.bin'"). Raises DataFileError."""
    parts = file_name.replace("\\", "/").split("/")
    if (
        not file_name
        or "\x00" in file_name
        or file_name.startswith(("/", "\\", "~"))
        or Path(file_name).is_absolute()
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise DataFileError(f"{named} must name a file inside the model's '{subdir}' directory")
    base = Path(model_dir) / subdir
    try:
        real_model = Path(model_dir).resolve(strict=True)
        real_base = base.resolve(strict=True)
        target = (base / file_name).resolve(strict=True)
    except FileNotFoundError:
        raise DataFileError(
            f"failed to open text file for read {base / file_name}: No such file or directory",
            missing=True,
        ) from None
    except (OSError, RuntimeError) as e:  # a symlink loop, a name too long
        raise DataFileError(f"{named}: {getattr(e, 'strerror', None) or e}") from None
    if (real_base != real_model and real_model not in real_base.parents) or (
        real_base not in target.parents
    ):
        raise DataFileError(f"{named} resolves outside the model's '{subdir}' directory")
    return target


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
