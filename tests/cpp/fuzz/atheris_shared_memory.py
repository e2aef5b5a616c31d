"""Atheris target: the shared-memory window checks (python/tritonlite/shared_memory.py), the only
place offsets and sizes of client-registered memory are checked (there is no C++ for them).

Input: consumed as integers by atheris.FuzzedDataProvider: region registration (offset and
byte size inside a 16 KiB object), then requests of input tensors (offset, byte size or None,
datatype, shape) and output writes (offset, room, data length). Checks: a successful window
lies inside the registered region (the tensor's bytes are readable and equal the object's bytes
there); an output write changes only bytes inside the window; anything but TritonError is a
bug.
"""

from __future__ import annotations

import atexit
import mmap
import os

import atheris
import numpy as np
from atheris_main import fuzz
from tritonlite.errors import TritonError
from tritonlite.shared_memory import SystemSharedMemoryRegistry

OBJECT_SIZE = 16384
KEY = f"/tritonlite-fuzz-shm-{os.getpid()}"
PATH = f"/dev/shm{KEY}"
with open(PATH, "wb") as f:
    f.write(bytes(i % 251 for i in range(OBJECT_SIZE)))
atexit.register(lambda: os.unlink(PATH))
with open(PATH, "r+b") as f:
    OBJECT = mmap.mmap(f.fileno(), OBJECT_SIZE)

DATATYPES = ["BOOL", "UINT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"]


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    registry = SystemSharedMemoryRegistry()
    offset = fdp.ConsumeIntInRange(0, OBJECT_SIZE + 8)
    byte_size = fdp.ConsumeIntInRange(0, OBJECT_SIZE + 8)
    try:
        registry.register("r", KEY, offset, byte_size)
    except TritonError:
        return
    try:
        for _ in range(fdp.ConsumeIntInRange(1, 4)):
            window = fdp.ConsumeIntInRange(-2, byte_size + 8)
            size = None if fdp.ConsumeBool() else fdp.ConsumeIntInRange(-2, byte_size + 8)
            if fdp.ConsumeBool():
                datatype = DATATYPES[fdp.ConsumeIntInRange(0, len(DATATYPES) - 1)]
                shape = [fdp.ConsumeIntInRange(-1, 64) for _ in range(fdp.ConsumeIntInRange(0, 3))]
                try:
                    tensor = registry.input_tensor("r", window, size, datatype, shape)
                except TritonError:
                    continue
                raw = tensor.numpy().tobytes() if datatype != "BYTES" else b""
                start = offset + window
                assert 0 <= window and start + len(raw) <= offset + byte_size
                assert raw == OBJECT[start : start + len(raw)]
            else:
                length = fdp.ConsumeIntInRange(0, byte_size + 8)
                before = OBJECT[:]
                try:
                    written = registry.write_output(
                        "r", window, size, np.full(length, 7, dtype=np.uint8)
                    )
                except TritonError:
                    assert OBJECT[:] == before
                    continue
                start = offset + window
                assert written == length and start + length <= offset + byte_size
                assert OBJECT[:start] == before[:start]
                assert OBJECT[start + length :] == before[start + length :]
                OBJECT[start : start + length] = before[start : start + length]
    finally:
        registry.close()


def main() -> None:
    fuzz(test_one_input)


if __name__ == "__main__":
    main()
