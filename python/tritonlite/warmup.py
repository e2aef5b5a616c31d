"""Model warmup (``model_warmup`` in config.pbtxt): the samples every instance runs before a
model version becomes READY.

Owns: turning each ``ModelWarmup`` sample into the core's warmup sample (tensors built from
``zero_data``, ``random_data`` or an ``input_data_file`` in the model's ``warmup/`` directory),
with every size from the config and every file treated as hostile. The core runs the samples
(``ModelRunner(spec, instances, warmup)``): each instance worker runs them on its own backend
instance, ``count`` times (at least once), before taking any request; the load waits for all of
them, and a failing sample fails it.

Triton's rules, as Triton 2.51 applies them (checked against it):

- A sample is ``batch_size`` requests executed together (one backend call); each request has
  every input with shape ``[1] + dims`` when the model batches, ``dims`` when it does not. A
  sample with ``batch_size: 0`` is skipped. ``count: 0`` runs once.
- ``zero_data``: zeros (BYTES: empty strings). ``random_data``: random bytes (BYTES: empty
  strings, as Triton; BOOL: random 0/1 here, where Triton's random bytes are not valid booleans).
- ``input_data_file``: ``<model dir>/warmup/<file>``, raw bytes: for a fixed-size datatype at
  least the tensor's byte size (a longer file is used from its start, as Triton, with a warning);
  for BYTES, 4-byte little-endian lengths each followed by the bytes, exactly ``dims``' element
  count of them.
- Warmup requests are counted in the model's statistics, as Triton counts them.

tritonlite's own bounds: a file name must stay inside the model's ``warmup/`` directory (no
absolute path, no ``..``, no symlink out) and be a regular file; a sample's data may take at
most ``MAX_SAMPLE_BYTES`` in all; ``batch_size`` is at most ``max_batch_size`` (1 for a model
that does not batch), as the backends would insist when the sample runs.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Any

import numpy as np

from . import _core, sizes
from .data_files import DataFileError, open_data_file, read_at_most, resolve_data_file
from ._proto import model_config_pb2 as mc
from .datatypes import to_wire_name
from .errors import INVALID_ARG, TritonError

_log = logging.getLogger("tritonlite.warmup")

#: Triton's folder for warmup data files, inside the model's directory.
WARMUP_DIR = "warmup"

#: The most bytes one warmup sample's inputs may take, all requests of its batch together.
MAX_SAMPLE_BYTES = 1 << 30


def warmup_samples(config: mc.ModelConfig, model_dir: Path | None) -> list[dict[str, Any]]:
    """The core's warmup samples for ``config``'s ``model_warmup`` (``[]`` when it has none):
    ``{"name", "count", "batch_size", "inputs": {name: Tensor}}``. Raises TritonError
    (INVALID_ARG) naming the sample and the input when one cannot be built."""
    samples = []
    for setting in config.model_warmup:
        if setting.batch_size == 0:
            _log.debug("model '%s': skipping batch 0 warmup sample '%s'", config.name, setting.name)
            continue
        samples.append(_sample(config, setting, model_dir))
    return samples


def _fail(sample: str, message: str) -> TritonError:
    return TritonError(f"warmup sample '{sample}': {message}", INVALID_ARG)


def _sample(config: mc.ModelConfig, setting: Any, model_dir: Path | None) -> dict[str, Any]:
    name = setting.name
    batching = config.max_batch_size > 0
    allowed = config.max_batch_size if batching else 1
    if setting.batch_size > allowed:
        raise _fail(
            name,
            f"batch size {setting.batch_size} for model '{config.name}', max allowed is "
            f"{config.max_batch_size}",
        )
    # First every size, then any allocation or read: nothing is built for a sample too large.
    plans = []
    total = 0
    for input_name in sorted(setting.inputs):
        spec = setting.inputs[input_name]
        source = spec.WhichOneof("input_data_type")
        if source is None:
            raise _fail(name, f"warmup setting expects input '{input_name}' to have "
                        "input_data_type set")  # fmt: skip
        if spec.data_type == mc.TYPE_INVALID:
            raise _fail(name, f"warmup setting expects input '{input_name}' to have a data_type")
        datatype = to_wire_name(mc.DataType.Name(spec.data_type))
        dims = [int(d) for d in spec.dims]
        if any(d < 0 for d in dims):
            raise _fail(name, "warmup setting expects all variable-size dimensions are "
                        f"specified for input '{input_name}'")  # fmt: skip
        try:
            elements = sizes.element_count(dims)
        except TritonError as e:
            raise _fail(name, f"input '{input_name}': {e.message}") from None
        per_request = elements * (sizes.BYTES_PREFIX if datatype == "BYTES" else
                                  _core.datatype_size(datatype))  # fmt: skip
        path = None
        if source == "input_data_file":
            path = _data_file(name, input_name, model_dir, spec.input_data_file)
            if datatype == "BYTES":  # the file is the serialized tensor, all of it
                per_request = _file_size(name, path)
        total += per_request * setting.batch_size
        if total > MAX_SAMPLE_BYTES:
            raise _fail(
                name,
                f"input '{input_name}' makes the sample's data more than {MAX_SAMPLE_BYTES} "
                f"bytes ({setting.batch_size} x {per_request} bytes for this input): "
                "tritonlite's bound on one warmup sample",
            )
        shape = ([1] if batching else []) + dims
        plans.append((input_name, datatype, shape, elements, per_request, source, path, spec))
    inputs = {}
    for input_name, datatype, shape, elements, size, source, path, spec in plans:
        if source == "input_data_file":
            data = _read_data_file(name, input_name, path, spec.input_data_file, datatype,
                                   elements, size)  # fmt: skip
        elif source == "random_data" and datatype != "BYTES":
            data = np.random.default_rng().bytes(size)
            if datatype == "BOOL":
                data = (np.frombuffer(data, np.uint8) & 1).tobytes()
        else:  # zero_data; random BYTES are empty strings too, as Triton's
            data = bytes(size)
        inputs[input_name] = _core.Tensor.from_buffer(datatype, shape, data)
    return {"name": name, "count": setting.count, "batch_size": setting.batch_size,
            "inputs": inputs}  # fmt: skip


def _data_file(sample: str, input_name: str, model_dir: Path | None, file_name: str) -> Path:
    """The input_data_file's path inside ``<model_dir>/warmup``, or INVALID_ARG when the name
    could reach anything else."""
    where = f"input '{input_name}': input_data_file '{file_name}'"
    if model_dir is None:
        raise _fail(sample, f"{where} needs the model's directory (the model was not loaded "
                    "from a repository)")  # fmt: skip
    try:
        return resolve_data_file(model_dir, WARMUP_DIR, file_name, where)
    except DataFileError as e:
        raise _fail(sample, e.message) from None


def _file_size(sample: str, path: Path) -> int:
    try:
        st = path.stat()
    except OSError as e:
        raise _fail(sample, f"failed to open text file for read {path}: {e.strerror}") from None
    return st.st_size


def _read_data_file(
    sample: str, input_name: str, path: Path, file_name: str, datatype: str, elements: int,
    size: int,
) -> bytes:  # fmt: skip
    """``size`` bytes of the file (all of it for BYTES), never more, from a regular file only."""
    try:
        fd = open_data_file(path)  # a FIFO is refused just below
    except OSError as e:
        raise _fail(sample, f"failed to open text file for read {path}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _fail(sample, f"input '{input_name}': input_data_file '{file_name}' is not a "
                        "regular file")  # fmt: skip
        if datatype == "BYTES":
            if st.st_size != size:  # changed since it was measured
                raise _fail(sample, f"input '{input_name}': input_data_file '{file_name}' "
                            "changed while the model loaded")  # fmt: skip
        elif st.st_size < size:
            raise _fail(sample, f"warmup setting expects {size} bytes, but the data provided "
                        f"from {file_name} only has {st.st_size} bytes")  # fmt: skip
        elif st.st_size > size:
            _log.warning(
                "warmup sample '%s': input '%s' uses the first %d bytes of %s (%d bytes)",
                sample, input_name, size, file_name, st.st_size,
            )  # fmt: skip
        data = read_at_most(fd, size)
    except OSError as e:
        raise _fail(sample, f"failed to read {path}: {e.strerror}") from None
    finally:
        os.close(fd)
    if len(data) != size:
        raise _fail(sample, f"input '{input_name}': input_data_file '{file_name}' changed while "
                    "the model loaded")  # fmt: skip
    if datatype == "BYTES":
        try:
            found = _core.bytes_element_count(data)
        except Exception as e:  # noqa: BLE001 - a malformed serialization, any core error
            raise _fail(sample, f"input '{input_name}': input_data_file '{file_name}' is not "
                        f"a BYTES serialization: {e}") from None  # fmt: skip
        if found != elements:
            raise _fail(sample, f"input '{input_name}': input_data_file '{file_name}' holds "
                        f"{found} BYTES elements, dims ask for {elements}")  # fmt: skip
    return data
