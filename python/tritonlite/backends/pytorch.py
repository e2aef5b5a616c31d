"""The PyTorch backend (platform ``pytorch_libtorch``, backend ``pytorch``): TorchScript models,
and (beyond Triton 2.51) ``torch.export`` programs and AOTInductor packages.

This module owns loading ``<version>/<default_model_filename or model.pt>`` on each instance's
device, mapping config inputs to ``forward()`` arguments and returned values to config outputs
(Triton's naming conventions), and running one batch under ``torch.inference_mode()``. ``torch``
is imported only when a model is loaded, so this module imports without it; loading then fails
with UNAVAILABLE and the install hint.

The model file: a TorchScript archive (``torch.jit.load``); a ``torch.export.save`` archive
(``torch.export.load(...).module()``, called positionally: an exported program takes no keyword
arguments); or an AOTInductor package (``torch._inductor.aoti_load_package``, on the device it
was compiled for; positional inputs only). When the model file is the default ``model.pt`` and
the version directory has ``model.pt2`` instead, ``model.pt2`` is loaded.

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

Parameters, as Triton's PyTorch backend (24.10) reads them: ``INFERENCE_MODE`` (default true;
false runs under ``no_grad``), ``DISABLE_OPTIMIZED_EXECUTION``, ``DISABLE_CUDNN``,
``ENABLE_WEIGHT_SHARING`` (instances on one device share one loaded module),
``ENABLE_CACHE_CLEANING`` (``torch.cuda.empty_cache()`` after each GPU execution),
``ENABLE_TENSOR_FUSER`` / ``ENABLE_JIT_PROFILING`` / ``ENABLE_JIT_EXECUTOR`` (TorchScript's
process-wide switches, set before each execution as Triton does) and the process-wide
``INTRA_OP_THREAD_COUNT`` / ``INTER_OP_THREAD_COUNT``. Any other key is ignored as Triton ignores
it, with a warning naming it (and what to use instead, for keys of Triton's other PyTorch
runtime or of older releases).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import re
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import datatypes
from .._proto import model_config_pb2
from .._proto.model_config_pb2 import ModelConfig
from ..errors import INTERNAL, INVALID_ARG, UNAVAILABLE, TritonError
from .base import warn_unknown_parameters

if TYPE_CHECKING:
    import torch

__all__ = ["PyTorchBackend", "PyTorchInstance", "create_backend"]

DEFAULT_MODEL_FILENAME = "model.pt"
EXPORTED_MODEL_FILENAME = "model.pt2"

_log = logging.getLogger("tritonlite.backends.pytorch")
_INDEXED_NAME = re.compile(r"^.*__(\d+)$")

#: The model ``parameters`` Triton's PyTorch (libtorch) backend reads, all honoured here.
PARAMETERS = frozenset({
    "DISABLE_OPTIMIZED_EXECUTION", "INFERENCE_MODE", "DISABLE_CUDNN", "ENABLE_WEIGHT_SHARING",
    "ENABLE_CACHE_CLEANING", "ENABLE_TENSOR_FUSER", "ENABLE_JIT_PROFILING", "ENABLE_JIT_EXECUTOR",
    "INTRA_OP_THREAD_COUNT", "INTER_OP_THREAD_COUNT",
})  # fmt: skip
_PARAMETER_HINTS = {
    "NUM_THREADS": "it belongs to Triton's PyTorch 2.0 Python runtime; this backend's is "
    "INTRA_OP_THREAD_COUNT",
    "NUM_INTEROP_THREADS": "it belongs to Triton's PyTorch 2.0 Python runtime; this backend's is "
    "INTER_OP_THREAD_COUNT",
    "TORCH_COMPILE_OPTIONAL_PARAMETERS": "it belongs to Triton's PyTorch 2.0 Python runtime "
    "(torch.compile), which tritonlite does not run",
    "ENABLE_NVFUSER": "NVFuser left PyTorch, and Triton's PyTorch backend dropped the parameter "
    "in 24.01",
}
#: TorchScript-only switches: no effect on exported programs and AOTInductor packages.
_TORCHSCRIPT_PARAMETERS = (
    "DISABLE_OPTIMIZED_EXECUTION", "ENABLE_TENSOR_FUSER", "ENABLE_JIT_PROFILING",
    "ENABLE_JIT_EXECUTOR",
)  # fmt: skip
#: Parameter -> the torch._C setter of TorchScript's process-wide switch it sets.
_JIT_SWITCHES = {
    "ENABLE_TENSOR_FUSER": "_jit_set_texpr_fuser_enabled",
    "ENABLE_JIT_PROFILING": "_jit_set_profiling_mode",
    "ENABLE_JIT_EXECUTOR": "_jit_set_profiling_executor",
}

TORCHSCRIPT, EXPORTED, AOTI = "torchscript", "torch.export", "AOTInductor"


def model_format(path: Path) -> str:
    """TORCHSCRIPT, EXPORTED (a torch.export.save archive) or AOTI (an AOTInductor package),
    from the archive's entries (all three are zip files; anything else is left to
    torch.jit.load to refuse)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile, ValueError):
        return TORCHSCRIPT
    if any("/data/aotinductor/" in n for n in names):
        return AOTI
    if any(n.endswith(("/models/model.json", "serialized_exported_program.json")) for n in names):
        return EXPORTED
    return TORCHSCRIPT


@dataclass
class _Signature:
    """What a loaded module's forward() takes."""

    names: list[str] = field(default_factory=list)  # argument names, [] when unknown
    required: list[str] = field(default_factory=list)  # names without a default
    dict_input: bool = False  # forward(self, d: Dict[str, Tensor])
    keywords: bool = True  # whether arguments may be passed by name


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
    """BackendFactory for PyTorch models (see ``backends.base``)."""
    torch = _import_torch(config.name)
    model_path = Path(version_dir) / (config.default_model_filename or DEFAULT_MODEL_FILENAME)
    exported = Path(version_dir) / EXPORTED_MODEL_FILENAME
    default_absent = model_path.name == DEFAULT_MODEL_FILENAME and not model_path.is_file()
    if default_absent and exported.is_file():
        model_path = exported  # the default name (which auto-complete fills in) is absent
    if not model_path.is_file():
        raise TritonError(f"unable to find '{model_path}' for model '{config.name}'", UNAVAILABLE)
    return PyTorchBackend(torch, config, model_path)


class PyTorchBackend:
    """One loaded version of a PyTorch model; each instance loads its own copy (one per device
    with ENABLE_WEIGHT_SHARING)."""

    def __init__(self, torch: Any, config: ModelConfig, model_path: Path) -> None:
        self.torch = torch
        self.config = config
        self.name = config.name
        self.model_path = model_path
        self.format = model_format(model_path)
        self.inference_mode = _bool_param(config, "INFERENCE_MODE", True)
        self.optimized_execution = not _bool_param(config, "DISABLE_OPTIMIZED_EXECUTION", False)
        self.cudnn = not _bool_param(config, "DISABLE_CUDNN", False)
        self.weight_sharing = _bool_param(config, "ENABLE_WEIGHT_SHARING", False)
        self.cache_cleaning = _bool_param(config, "ENABLE_CACHE_CLEANING", False)
        # TorchScript's process-wide switches the config sets: (setter, value), applied before
        # each execution (Triton's backend does the same; another model may change them).
        self.jit_switches: list[tuple[Any, bool]] = []
        for key, setter in _JIT_SWITCHES.items():
            if key in config.parameters:
                value = _bool_param(config, key, False)
                function = getattr(torch._C, setter, None)
                if function is None:
                    raise TritonError(
                        f"model '{self.name}': parameter '{key}' needs torch._C.{setter}, which "
                        f"this PyTorch ({torch.__version__}) lacks",
                        UNAVAILABLE,
                    )
                self.jit_switches.append((function, value))
        warn_unknown_parameters(config, "pytorch", PARAMETERS, hints=_PARAMETER_HINTS, log=_log)
        if self.format != TORCHSCRIPT:
            for key in _TORCHSCRIPT_PARAMETERS:
                if key in config.parameters:
                    _log.warning(
                        "model '%s': parameter '%s' applies to TorchScript models only: no effect "
                        "on this %s model",
                        self.name, key, self.format,
                    )  # fmt: skip
            self.jit_switches = []
        self._shared: dict[tuple[str, int | None], tuple[Any, _Signature]] = {}
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
        key = (device.type, device.index)
        loaded = self._shared.get(key) if self.weight_sharing else None
        if loaded is None:
            loaded = self._load(device)
            if self.weight_sharing:
                self._shared[key] = loaded
        module, signature = loaded
        return PyTorchInstance(self, module, device, signature)

    def _load(self, device: Any) -> tuple[Any, _Signature]:
        torch = self.torch
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load, torch >= 2.9
                warnings.simplefilter("ignore", FutureWarning)  # torch.export's pytree notices
                if self.format == AOTI:
                    index = device.index if device.type == "cuda" else -1
                    runner = torch._inductor.aoti_load_package(
                        str(self.model_path), device_index=index if index is not None else -1
                    )
                    compiled_for = runner.get_metadata().get("AOTI_DEVICE_KEY", "cpu")
                    if compiled_for != device.type:
                        raise TritonError(
                            f"model '{self.name}': the AOTInductor package '{self.model_path}' "
                            f"was compiled for {compiled_for}, but the instance runs on "
                            f"{device.type} (set the instance_group kind to match)",
                            INVALID_ARG,
                        )
                    return runner, _Signature(keywords=False)
                if self.format == EXPORTED:
                    program = torch.export.load(str(self.model_path))
                    module = program.module().to(device)
                    return module, _exported_signature(program, module)
                module = torch.jit.load(str(self.model_path), map_location=device)
        except TritonError:
            raise
        except Exception as exc:
            raise TritonError(
                f"failed to load model '{self.name}' from '{self.model_path}': {exc}", INVALID_ARG
            ) from exc
        module.eval()
        return module, _torchscript_signature(module)

    def close(self) -> None:
        self._shared.clear()


def _torchscript_signature(module: Any) -> _Signature:
    schema = getattr(getattr(module, "forward", None), "schema", None)
    args = list(schema.arguments[1:]) if schema is not None else []  # [0] is self
    return _Signature(
        names=[a.name for a in args],
        required=[a.name for a in args if a.default_value is None],
        dict_input=len(args) == 1 and args[0].type.kind() == "DictType",
    )


def _exported_signature(program: Any, module: Any) -> _Signature:
    names = list(inspect.signature(module.forward).parameters)
    spec = program.call_spec.in_spec  # ((args...), {kwargs})
    args_spec = spec.children_specs[0] if spec is not None and spec.children_specs else None
    dict_input = (
        args_spec is not None
        and len(args_spec.children_specs) == 1
        and args_spec.children_specs[0].type is dict
    )
    return _Signature(names=names, required=list(names), dict_input=dict_input, keywords=False)


class PyTorchInstance:
    """One loaded module on one device; ``execute`` runs one batch."""

    def __init__(
        self,
        backend: PyTorchBackend,
        module: Any,
        device: torch.device,
        signature: _Signature | None = None,
    ) -> None:
        self.backend = backend
        self.name = backend.name
        self.module: Any = module
        self.device = device
        self.torch = backend.torch
        config = backend.config
        input_names = [io.name for io in config.input]
        sig = signature if signature is not None else _torchscript_signature(module)
        arg_names = sig.names

        self._dict_input = sig.dict_input
        self._by_name = (
            not self._dict_input
            and bool(input_names)
            and all(name in arg_names for name in input_names)
        )
        self._positions: dict[str, int] = {}
        if self._by_name:
            required = [a for a in sig.required if a not in input_names]
            if required:
                raise TritonError(
                    f"model '{self.name}': forward() argument(s) {', '.join(required)} have no "
                    f"configured input (configured: {', '.join(input_names)})",
                    INVALID_ARG,
                )
            if not sig.keywords:  # matched by name, passed by position
                self._positions = {name: arg_names.index(name) for name in input_names}
                self._by_name = False
        elif not self._dict_input:
            indexed = _index_names(input_names)
            self._positions = indexed or {name: i for i, name in enumerate(input_names)}
            self._check_positions(sig)
        self._n_positional = max(self._positions.values(), default=-1) + 1

        output_names = [io.name for io in config.output]
        self._output_index = _index_names(output_names) or {
            name: i for i, name in enumerate(output_names)
        }

    def _check_positions(self, sig: _Signature) -> None:
        positions = sorted(self._positions.values())
        args = sig.names
        if len(set(positions)) != len(positions) or positions != list(range(len(positions))):
            raise TritonError(
                f"model '{self.name}': input indices {positions} must be 0..N-1 without gaps "
                f"(inputs {', '.join(self._positions)})",
                INVALID_ARG,
            )
        if args and len(positions) > len(args):
            raise TritonError(
                f"model '{self.name}': {len(positions)} inputs are configured but forward() takes "
                f"{len(args)} argument(s) ({', '.join(args)})",
                INVALID_ARG,
            )
        if args:
            required = [a for a in args[len(positions) :] if a in sig.required]
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
                if self.backend.cache_cleaning:  # ENABLE_CACHE_CLEANING
                    self.torch.cuda.empty_cache()
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
        backend = self.backend
        for setter, value in backend.jit_switches:  # process-wide, as in Triton's backend
            setter(value)
        if self.device.type == "cuda":  # DISABLE_CUDNN: process-wide, set per execution
            torch.backends.cudnn.enabled = backend.cudnn
        grad = torch.inference_mode() if backend.inference_mode else torch.no_grad()
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
