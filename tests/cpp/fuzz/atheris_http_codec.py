"""Atheris target: the HTTP frontend's request decoders (python/tritonlite/frontends/http/infer.py and
http_codec.py): JSON tensor data, the binary tensor data extension
(Inference-Header-Content-Length + binary_data_size), raw binary requests, shared-memory
inputs and outputs (offset and size checks against a registered region), and compressed
request bodies.

Input: bytes 0-1 are the Inference-Header-Content-Length (big-endian; 0xffff: the header is the
whole body), byte 2 picks the model (batched FP32 / BYTES / non-batched INT32) and the
Content-Encoding; the rest is the request body. Anything but a TritonError is a bug (the
frontend would answer 500 or fail the connection instead of 400).
"""

from __future__ import annotations

import atexit
import os
from types import SimpleNamespace

from atheris_main import fuzz
from tritonlite.config import parse_config_text
from tritonlite.errors import TritonError
from tritonlite.frontends.http import infer as http_infer
from tritonlite.frontends import http_codec as codec
from tritonlite.shared_memory import SystemSharedMemoryRegistry

CONFIGS = [
    (
        'name: "m" max_batch_size: 8 input { name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] }'
        ' input { name: "INPUT1" data_type: TYPE_FP32 dims: [ 4 ] optional: true }'
        ' output { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] }'
    ),
    (
        'name: "m" max_batch_size: 0 input { name: "INPUT0" data_type: TYPE_STRING dims: [ -1 ] }'
        ' output { name: "OUTPUT0" data_type: TYPE_STRING dims: [ -1 ] }'
    ),
    (
        'name: "m" input { name: "INPUT0" data_type: TYPE_INT32 dims: [ 2, -1 ] }'
        ' output { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 2, -1 ] }'
    ),
]
MODELS = [SimpleNamespace(config=parse_config_text(c, "m"), version=1) for c in CONFIGS]

# One 4 KiB shared-memory region, "r0", registered at offset 1000 of its object.
SHM_KEY = f"/tritonlite-fuzz-{os.getpid()}"
with open(f"/dev/shm{SHM_KEY}", "wb") as f:
    f.write(b"\0" * 8192)
atexit.register(lambda: os.unlink(f"/dev/shm{SHM_KEY}"))
REGISTRY = SystemSharedMemoryRegistry()
REGISTRY.register("r0", SHM_KEY, 1000, 4096)


def test_one_input(data: bytes) -> None:
    if len(data) < 3:
        return
    length_field = int.from_bytes(data[:2], "big")
    loaded = MODELS[data[2] % len(MODELS)]
    encoding = (None, "gzip", "deflate")[data[2] // 3 % 3]
    body = data[3:]
    if encoding is not None:
        try:
            body = codec.decode_body(body, encoding, 1 << 20)
        except TritonError:
            return
    header_length = len(body) if length_field == 0xFFFF else min(length_field, len(body))
    try:
        if header_length == 0:
            request = http_infer.raw_request(loaded, body)
        else:
            header = codec.loads(memoryview(body)[:header_length])
            request = http_infer.parse_infer(REGISTRY, "m", loaded, header, body, header_length)
    except TritonError:
        return
    for _, value in request.inputs:
        if hasattr(value, "numpy"):
            value.numpy()
    # Outputs written where the request asked: each input as an output of the same name.
    for name, value in request.inputs:
        spec = (request.outputs or {}).get(name)
        if spec is not None and spec.region:
            try:
                REGISTRY.write_output(spec.region, spec.offset, spec.byte_size, value, output=name)
            except TritonError:
                pass


def main() -> None:
    fuzz(test_one_input)


if __name__ == "__main__":
    main()
