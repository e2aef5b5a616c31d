"""The initial implicit state of a sequence model (``sequence_batching.state[].initial_state``).

Owns: the bytes the sequence batcher gives a state input on the first request of a sequence
(and on every request for a backend that never updates its state: the python backend, as in
Triton), read from the config and the model's ``initial_state/`` directory, with every size
from the config and every file treated as hostile.

Triton 2.51's rules (checked against it, tests/parity/cases/seqstate.py):

- The state input's shape is the state's ``dims`` with every -1 as 1 (plus the batch dim of 1
  when the model batches), whatever ``initial_state.dims`` says; the data is the initial
  state's, from its start (so ``dims: [-1]`` with ``initial_state { dims: [3] ... }`` gives the
  model one element, the first).
- ``zero_data``: zeros (BYTES: empty strings). No ``initial_state``: Triton leaves the data
  uninitialized; tritonlite gives zeros.
- ``data_file``: ``<model dir>/initial_state/<data_file>``, raw bytes in row-major order. A
  fixed-size datatype needs at least the initial state's bytes (Triton's error otherwise; a
  longer file is used from its start); BYTES: the elements serialized as 4-byte little-endian
  lengths each followed by the bytes (Triton's python backend reads the elements the shape
  asks for from the start of the file).
- The load-time checks on the fields (datatypes, dims, name) are config_support's.

tritonlite's own bounds: the file must stay inside the model's ``initial_state/`` directory (no
absolute path, no ``..``, no symlink out) and be a regular file; a state may take at most
``MAX_STATE_BYTES``; a BYTES file must hold at least the elements the state's shape asks for
and be a valid serialization (Triton would hand the model whatever memory follows).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from . import _core, sizes
from .data_files import DataFileError, open_data_file, read_at_most, resolve_data_file
from ._proto import model_config_pb2 as mc
from .datatypes import to_wire_name
from .errors import INTERNAL, INVALID_ARG, TritonError

#: Triton's folder for initial state files, inside the model's directory.
INITIAL_STATE_DIR = "initial_state"

#: The most bytes one state's initial data (and its file) may take.
MAX_STATE_BYTES = 1 << 30


def state_shape(state: mc.ModelSequenceBatching.State) -> list[int]:
    """The state input's shape on a sequence's first request (without the batch dim)."""
    return [1 if d == -1 else int(d) for d in state.dims]


def initial_states(config: mc.ModelConfig, model_dir: Path | None) -> list[bytes]:
    """The initial data of each of ``config``'s states, in order: one row of
    ``state_shape(state)`` (BYTES: serialized elements). Raises TritonError with Triton's text
    where Triton refuses the model, INVALID_ARG with a clear one for tritonlite's bounds."""
    return [_initial(config, state, model_dir) for state in config.sequence_batching.state]


def _initial(
    config: mc.ModelConfig, state: mc.ModelSequenceBatching.State, model_dir: Path | None
) -> bytes:
    datatype = to_wire_name(mc.DataType.Name(state.data_type))
    shape = state_shape(state)
    where = f"model '{config.name}': implicit state '{state.input_name}'"
    try:
        elements = sizes.element_count(shape)
    except TritonError as e:
        raise TritonError(f"{where}: {e.message}", INVALID_ARG) from None
    if len(state.initial_state) > 1:
        raise TritonError(
            f"State input name '{state.input_name}' specified more than once.", INVALID_ARG
        )
    initial = state.initial_state[0] if state.initial_state else None
    if datatype == "BYTES":
        _bound(where, elements * sizes.BYTES_PREFIX)
        if initial is None or initial.WhichOneof("state_data") != "data_file":
            return bytes(elements * sizes.BYTES_PREFIX)  # empty strings
        data = _read(where, model_dir, initial.data_file, None)
        return _first_elements(where, initial.data_file, data, elements)
    row = elements * _core.datatype_size(datatype)
    _bound(where, row)
    if initial is None or initial.WhichOneof("state_data") != "data_file":
        return bytes(row)
    try:
        expected = sizes.byte_size(datatype, initial.dims)
    except TritonError as e:
        raise TritonError(f"{where}: initial_state dims: {e.message}", INVALID_ARG) from None
    _bound(where, expected)
    data = _read(where, model_dir, initial.data_file, expected)
    return data[:row] + bytes(max(0, row - len(data)))


def _bound(where: str, size: int) -> None:
    if size > MAX_STATE_BYTES:
        raise TritonError(
            f"{where} takes {size} bytes, more than the {MAX_STATE_BYTES} a state may take",
            INVALID_ARG,
        )


def _path(where: str, model_dir: Path | None, file_name: str) -> Path:
    """The data_file's path inside ``<model_dir>/initial_state``, or INVALID_ARG when the name
    could reach anything else."""
    if model_dir is None:
        raise TritonError(
            f"{where}: initial_state data_file '{file_name}' needs the model's directory (the "
            "model was not loaded from a repository)",
            INVALID_ARG,
        )
    named = f"{where}: initial_state data_file '{file_name}'"
    try:
        return resolve_data_file(model_dir, INITIAL_STATE_DIR, file_name, named)
    except DataFileError as e:  # a missing file: Triton's text and status
        raise TritonError(e.message, INTERNAL if e.missing else INVALID_ARG) from None


def _read(where: str, model_dir: Path | None, file_name: str, expected: int | None) -> bytes:
    """``expected`` bytes from the start of the file (all of it when None, for BYTES), from a
    regular file only, never more than MAX_STATE_BYTES."""
    path = _path(where, model_dir, file_name)
    try:
        fd = open_data_file(path)  # a FIFO is refused just below
    except OSError as e:
        raise TritonError(
            f"failed to open text file for read {path}: {e.strerror}", INTERNAL
        ) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise TritonError(
                f"{where}: initial_state data_file '{file_name}' is not a regular file",
                INVALID_ARG,
            )
        if expected is not None and st.st_size < expected:
            raise TritonError(  # Triton's text, its missing space included
                f"initial_state setting expects {expected} bytes, but the data provided from "
                f"{file_name}only has {st.st_size} bytes.",
                INVALID_ARG,
            )
        want = expected if expected is not None else st.st_size
        _bound(where, want)
        data = read_at_most(fd, want)
    except OSError as e:
        raise TritonError(f"failed to read {path}: {e.strerror}", INTERNAL) from None
    finally:
        os.close(fd)
    if len(data) != want:
        raise TritonError(
            f"{where}: initial_state data_file '{file_name}' changed while the model loaded",
            INVALID_ARG,
        )
    return data


def _first_elements(where: str, file_name: str, data: bytes, elements: int) -> bytes:
    """The serialization of the first ``elements`` BYTES elements of ``data``."""
    offset = 0
    for _ in range(elements):
        if offset + sizes.BYTES_PREFIX > len(data):
            break
        length = int.from_bytes(data[offset : offset + sizes.BYTES_PREFIX], "little")
        if offset + sizes.BYTES_PREFIX + length > len(data):
            break
        offset += sizes.BYTES_PREFIX + length
    else:
        return data[:offset]
    found = _count_elements(data)
    what = (
        f"holds {found} BYTES elements, the state's shape asks for {elements}"
        if found is not None
        else "is not a BYTES serialization"
    )
    raise TritonError(f"{where}: initial_state data_file '{file_name}' {what}", INVALID_ARG)


def _count_elements(data: bytes) -> int | None:
    """How many elements a whole BYTES serialization holds (None: it is malformed)."""
    offset, count = 0, 0
    while offset < len(data):
        if offset + sizes.BYTES_PREFIX > len(data):
            return None
        length = int.from_bytes(data[offset : offset + sizes.BYTES_PREFIX], "little")
        offset += sizes.BYTES_PREFIX + length
        if offset > len(data):
            return None
        count += 1
    return count
