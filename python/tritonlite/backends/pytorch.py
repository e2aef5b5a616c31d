"""The PyTorch backend (platform ``pytorch_libtorch``, backend ``pytorch``): TorchScript models.

This module owns loading ``<version>/<default_model_filename or model.pt>`` with
``torch.jit.load`` on each instance's device, mapping config inputs to ``forward()`` arguments and
returned values to config outputs (Triton's naming conventions), and running one batch under
``torch.inference_mode()``. ``torch`` is imported only when a model is loaded, so this module
imports without it; loading then fails with UNAVAILABLE and the install hint.

Input naming, as in Triton's PyTorch backend, first match wins:

* ``forward(self, d: Dict[str, Tensor])`` -> every input goes into that dict by config name;
* every config input name is a ``forward()`` argument name -> passed by keyword;
* every name is ``<anything>__<index>`` (``INPUT__0``) -> passed positionally at ``index``;
* otherwise inputs are passed positionally in config order.

Outputs: a returned dict maps by key; a returned tensor or tuple/list maps ``<anything>__<index>``
names (``OUTPUT__0``) by index when every config output is named that way, else by config order.

numpy inputs become tensors without copies (read-only arrays through DLPack, so torch does not
warn; BF16 via a uint16 view). BYTES inputs become ``List[str]`` (UTF-8, flattened) and
``List[str]`` outputs come back as 1-D object arrays of bytes. Tensor outputs are returned as
contiguous torch tensors on the instance's device; callers take them by DLPack (zero-copy).

Parameters: ``INFERENCE_MODE`` (default true; false runs under ``no_grad``),
``DISABLE_OPTIMIZED_EXECUTION``, and the process-wide ``INTRA_OP_THREAD_COUNT`` /
``INTER_OP_THREAD_COUNT``; Triton's other PyTorch parameters are accepted and ignored.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import datatypes
from .._proto import model_config_pb2
from .._proto.model_config_pb2 import ModelConfig
from ..errors import INTERNAL, INVALID_ARG, UNAVAILABLE, TritonError

if TYPE_CHECKING:
    import torch

__all__ = ["PyTorchBackend", "PyTorchInstance", "create_backend"]

DEFAULT_MODEL_FILENAME = "model.pt"

_log = logging.getLogger("tritonlite.backends.pytorch")
_INDEXED_NAME = re.compile(r"^.*__(\d+)$")


def _import_torch(model: str) -> Any:
    try:
        import torch
    except ImportError as exc:
        raise TritonError(
            f"model '{model}' (platform pytorch_libtorch) requires PyTorch: "
            "pip install 'tritonlite[torch]'",
            UNAVAILABLE,
        ) from exc
    return torch


def _bool_param(config: ModelConfig, key: str, default: bool) -> bool:
    if key not in config.parameters:
        return default
    value = config.parameters[key].string_value.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise TritonError(
        f"model '{config.name}': parameter '{key}' must be a boolean, got '{value}'", INVALID_ARG
    )


def _int_param(config: ModelConfig, key: str) -> int | None:
    if key not in config.parameters:
        return None
    value = config.parameters[key].string_value.strip()
    try:
        return int(value)
    except ValueError:
        raise TritonError(
            f"model '{config.name}': parameter '{key}' must be an integer, got '{value}'",
            INVALID_ARG,
        ) from None


def _index_names(names: list[str]) -> dict[str, int] | None:
    """{name: index} when every name is ``<anything>__<index>``, else None."""
    if not names:
        return None
    matches = [_INDEXED_NAME.match(name) for name in names]
    if not all(matches):
        return None
    return {name: int(m.group(1)) for name, m in zip(names, matches, strict=True) if m}


def create_backend(
    config: ModelConfig, model_dir: Path, version_dir: Path, *, server: Any = None
) -> PyTorchBackend:
    """BackendFactory for TorchScript models (see ``backends.base``)."""
    torch = _import_torch(config.name)
    model_path = Path(version_dir) / (config.default_model_filename or DEFAULT_MODEL_FILENAME)
    if not model_path.is_file():
        raise TritonError(f"unable to find '{model_path}' for model '{config.name}'", UNAVAILABLE)
    return PyTorchBackend(torch, config, model_path)


class PyTorchBackend:
    """One loaded version of a TorchScript model; each instance loads its own copy."""

    def __init__(self, torch: Any, config: ModelConfig, model_path: Path) -> None:
        self.torch = torch
        self.config = config
        self.name = config.name
        self.model_path = model_path
        self.inference_mode = _bool_param(config, "INFERENCE_MODE", True)
        self.optimized_execution = not _bool_param(config, "DISABLE_OPTIMIZED_EXECUTION", False)
        intra = _int_param(config, "INTRA_OP_THREAD_COUNT")
        if intra is not None and intra > 0:
            torch.set_num_threads(intra)
        inter = _int_param(config, "INTER_OP_THREAD_COUNT")
        if inter is not None and inter > 0 and torch.get_num_interop_threads() != inter:
            try:
                torch.set_num_interop_threads(inter)
            except RuntimeError as exc:  # only settable before torch's first inter-op work
                _log.warning("model '%s': INTER_OP_THREAD_COUNT not applied: %s", self.name, exc)
        torch_dtypes = {
            "BOOL": "bool", "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32",
            "UINT64": "uint64", "INT8": "int8", "INT16": "int16", "INT32": "int32",
            "INT64": "int64", "FP16": "float16", "BF16": "bfloat16", "FP32": "float32",
            "FP64": "float64",
        }  # fmt: skip
        self.output_dtypes: dict[str, Any] = {}
        for output in config.output:
            wire = datatypes.to_wire_name(model_config_pb2.DataType.Name(output.data_type))
            if hasattr(torch, torch_dtypes.get(wire, "")):
                self.output_dtypes[output.name] = getattr(torch, torch_dtypes[wire])

    def create_instance(self, index: int, kind: str, device_id: int) -> PyTorchInstance:
        torch = self.torch
        if kind == "KIND_GPU":
            if not torch.cuda.is_available():
                raise TritonError(
                    f"model '{self.name}' instance {index} needs GPU {device_id} (KIND_GPU) but "
                    f"this PyTorch ({torch.__version__}) has no CUDA device",
                    UNAVAILABLE,
                )
            if device_id >= torch.cuda.device_count():
                raise TritonError(
                    f"model '{self.name}' instance {index} needs GPU {device_id} but PyTorch "
                    f"sees {torch.cuda.device_count()} GPU(s)",
                    UNAVAILABLE,
                )
            device = torch.device("cuda", device_id)
        elif kind == "KIND_CPU":
            device = torch.device("cpu")
        else:
            raise TritonError(
                f"model '{self.name}': instance kind {kind} is not supported by PyTorch "
                "(use KIND_CPU or KIND_GPU)",
                INVALID_ARG,
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load, torch >= 2.9
                module = torch.jit.load(str(self.model_path), map_location=device)
        except Exception as exc:
            raise TritonError(
                f"failed to load model '{self.name}' from '{self.model_path}': {exc}", INVALID_ARG
            ) from exc
        module.eval()
        return PyTorchInstance(self, module, device)

    def close(self) -> None:
        pass


class PyTorchInstance:
    """One TorchScript module on one device; ``execute`` runs one batch."""

    def __init__(self, backend: PyTorchBackend, module: Any, device: torch.device) -> None:
        self.backend = backend
        self.name = backend.name
        self.module: Any = module
        self.device = device
        self.torch = backend.torch
        config = backend.config
        input_names = [io.name for io in config.input]
        schema = getattr(getattr(module, "forward", None), "schema", None)
        args = list(schema.arguments[1:]) if schema is not None else []  # [0] is self
        arg_names = [arg.name for arg in args]

        self._dict_input = len(args) == 1 and args[0].type.kind() == "DictType"
        self._by_name = (
            not self._dict_input
            and bool(input_names)
            and all(name in arg_names for name in input_names)
        )
        self._positions: dict[str, int] = {}
        if not self._dict_input and not self._by_name:
            indexed = _index_names(input_names)
            self._positions = indexed or {name: i for i, name in enumerate(input_names)}
            self._check_positions(args)
        elif self._by_name:
            required = [
                a.name for a in args if a.default_value is None and a.name not in input_names
            ]
            if required:
                raise TritonError(
                    f"model '{self.name}': forward() argument(s) {', '.join(required)} have no "
                    f"configured input (configured: {', '.join(input_names)})",
                    INVALID_ARG,
                )
        self._n_positional = max(self._positions.values(), default=-1) + 1

        output_names = [io.name for io in config.output]
        self._output_index = _index_names(output_names) or {
            name: i for i, name in enumerate(output_names)
        }

    def _check_positions(self, args: list[Any]) -> None:
        positions = sorted(self._positions.values())
        if len(set(positions)) != len(positions) or positions != list(range(len(positions))):
            raise TritonError(
                f"model '{self.name}': input indices {positions} must be 0..N-1 without gaps "
                f"(inputs {', '.join(self._positions)})",
                INVALID_ARG,
            )
        if args and len(positions) > len(args):
            raise TritonError(
                f"model '{self.name}': {len(positions)} inputs are configured but forward() takes "
                f"{len(args)} argument(s) ({', '.join(a.name for a in args)})",
                INVALID_ARG,
            )
        if args:
            required = [a.name for a in args[len(positions) :] if a.default_value is None]
            if required:
                raise TritonError(
                    f"model '{self.name}': forward() argument(s) {', '.join(required)} have no "
                    f"configured input",
                    INVALID_ARG,
                )

    def execute(self, inputs: dict[str, np.ndarray], output_names: list[str]) -> dict[str, Any]:
        module = self.module
        if module is None:
            raise TritonError(f"model '{self.name}' instance is closed", UNAVAILABLE)
        values = {name: self._to_torch(name, array) for name, array in inputs.items()}
        try:
            with self._context():
                if self._dict_input:
                    result = module(values)
                elif self._by_name:
                    result = module(**values)
                else:
                    args: list[Any] = [None] * self._n_positional
                    for name, value in values.items():
                        position = self._positions.get(name)
                        if position is None:
                            raise TritonError(
                                f"unexpected input '{name}' for model '{self.name}'", INVALID_ARG
                            )
                        args[position] = value
                    if any(arg is None for arg in args):
                        missing = [n for n, p in self._positions.items() if args[p] is None]
                        raise TritonError(
                            f"model '{self.name}' needs input(s) {', '.join(missing)}",
                            INVALID_ARG,
                        )
                    result = module(*args)
            names = list(output_names) if output_names else list(self._output_index)
            outputs = {name: self._output(result, name) for name in names}
            if self.device.type == "cuda":
                self.torch.cuda.current_stream(self.device).synchronize()
        except TritonError:
            raise
        except Exception as exc:
            raise TritonError(
                f"PyTorch execute failure for model '{self.name}': {exc}", INTERNAL
            ) from exc
        return outputs

    def close(self) -> None:
        self.module = None

    # -- helpers ----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _context(self) -> Iterator[None]:
        torch = self.torch
        grad = torch.inference_mode() if self.backend.inference_mode else torch.no_grad()
        if self.backend.optimized_execution:  # TorchScript's default; the switch is thread-local
            with grad:
                yield
        else:
            with grad, torch.jit.optimized_execution(False):
                yield

    def _to_torch(self, name: str, array: np.ndarray) -> Any:
        torch = self.torch
        if array.dtype == object:
            try:
                return [
                    item.decode("utf-8") if isinstance(item, bytes | bytearray) else str(item)
                    for item in array.ravel()
                ]
            except UnicodeDecodeError as exc:
                raise TritonError(
                    f"input '{name}' of model '{self.name}' is not valid UTF-8, which PyTorch "
                    "List[str] inputs need",
                    INVALID_ARG,
                ) from exc
        bf16 = array.dtype.name == "bfloat16"
        base = array.view(np.uint16) if bf16 else array
        try:
            # from_numpy warns on read-only arrays; DLPack carries the read-only flag instead.
            tensor = torch.from_numpy(base) if base.flags.writeable else torch.from_dlpack(base)
        except (BufferError, TypeError, ValueError, RuntimeError):
            tensor = torch.from_numpy(np.array(base))  # e.g. negative strides: copy
        if bf16:
            tensor = tensor.view(torch.bfloat16)
        if self.device.type != "cpu":
            tensor = tensor.to(self.device)
        return tensor

    def _output(self, result: Any, name: str) -> Any:
        torch = self.torch
        if isinstance(result, dict):
            if name not in result:
                raise TritonError(
                    f"model '{self.name}' returned no output '{name}' (its dict has "
                    f"{', '.join(map(str, result))})",
                    INTERNAL,
                )
            value = result[name]
        else:
            index = self._output_index.get(name)
            if index is None:
                match = _INDEXED_NAME.match(name)
                if match is None:
                    raise TritonError(
                        f"unexpected output '{name}' requested from model '{self.name}'",
                        INVALID_ARG,
                    )
                index = int(match.group(1))
            several = isinstance(result, tuple) or (
                isinstance(result, list) and not _is_strings(result)
            )
            results = list(result) if several else [result]
            if index >= len(results):
                raise TritonError(
                    f"model '{self.name}' returned {len(results)} output(s) but output '{name}' "
                    f"is number {index}",
                    INTERNAL,
                )
            value = results[index]
        if isinstance(value, torch.Tensor):
            expected = self.backend.output_dtypes.get(name)
            if expected is not None and value.dtype != expected:
                raise TritonError(
                    f"model '{self.name}' output '{name}' is {value.dtype} but its configuration "
                    f"says {expected}",
                    INTERNAL,
                )
            return value.contiguous()
        if _is_strings(value):
            encoded = np.empty(len(value), dtype=object)
            encoded[:] = [s.encode("utf-8") for s in value]
            return encoded
        raise TritonError(
            f"model '{self.name}' output '{name}' is a {type(value).__name__}, not a Tensor or "
            "List[str]",
            INTERNAL,
        )


def _is_strings(value: Any) -> bool:
    """A TorchScript List[str] (an empty list counts as one)."""
    return isinstance(value, list) and all(isinstance(v, str) for v in value)
