"""The ONNX Runtime backend (platform ``onnxruntime_onnx``, backend ``onnxruntime``).

This module owns everything between a model config and an ``onnxruntime.InferenceSession``:
finding the model file, session options from the config (Triton's onnxruntime backend
conventions), execution providers from the instance kind and ``execution_accelerators``, checking
the config against the model's inputs and outputs, running one gathered batch, and the datatype
mapping between ONNX tensor types and Triton datatypes. (Config auto-completion for ONNX models
lives in ``config/autocomplete/onnxruntime.py``.)

Conventions matched from Triton's onnxruntime backend:

* model file ``<version>/<default_model_filename or model.onnx>``; a directory there means
  ``<that dir>/model.onnx``;
* ``optimization.graph.level``: absent/0 -> ORT_ENABLE_ALL, -1 -> ORT_ENABLE_BASIC,
  1 -> ORT_ENABLE_EXTENDED, 2 -> ORT_DISABLE_ALL;
* ``parameters``: ``intra_op_thread_count``, ``inter_op_thread_count``, ``execution_mode`` (0
  sequential, 1 parallel), ``enable_mem_arena``, ``enable_mem_pattern``, the CUDA options
  ``cudnn_conv_algo_search``, ``gpu_mem_limit``, ``arena_extend_strategy``,
  ``do_copy_in_default_stream``, ``memory.enable_memory_arena_shrinkage`` (a run config entry:
  ``cpu:0``, ``gpu:<id>``, ``;``-separated, checked against each instance at load), any
  ``session.*`` key as an ORT session config entry, and ``share_session_between_instances``
  (from Triton's later onnxruntime backend: instances on the same device share one session).
  Any other key is ignored as Triton ignores it, with a warning naming it;
* KIND_GPU adds the CUDA provider on the instance's device; ``gpu_execution_accelerator``
  ``tensorrt`` (GPU instances only) and ``cuda``; ``cpu_execution_accelerator`` ``openvino``.

Unlike Triton, intra-op threads default to the machine's cores divided by the model's instance
count (not all cores per instance), and a requested provider that onnxruntime lacks, or that a
session did not take, fails the load instead of falling back to CPU.

ONNX string tensors: BYTES inputs are decoded as UTF-8 for onnxruntime's Python API and string
outputs are encoded back; bytes that are not UTF-8 cannot cross it (INVALID_ARG / INTERNAL).
BF16 tensors (numpy ``ml_dtypes.bfloat16``) go through ``OrtValue`` since onnxruntime's numpy path
has no bfloat16; a model with both string inputs and BF16 outputs is not supported.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import onnxruntime as ort

from .. import datatypes
from .._proto import model_config_pb2
from .._proto.model_config_pb2 import ModelConfig
from ..errors import INTERNAL, INVALID_ARG, UNAVAILABLE, UNSUPPORTED, TritonError
from . import ort_threads
from .base import warn_unknown_parameters

__all__ = ["IOSpec", "OnnxRuntimeBackend", "OnnxRuntimeInstance", "create_backend"]

DEFAULT_MODEL_FILENAME = "model.onnx"

#: onnxruntime's type strings -> Triton wire datatypes (every type Triton maps for ONNX).
ORT_TO_TRITON: dict[str, str] = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(bfloat16)": "BF16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}
_ONNX_BFLOAT16 = 16  # onnx.TensorProto.BFLOAT16

_GRAPH_LEVELS = {
    -1: ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    0: ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    1: ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    2: ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
}

CPU_EP = "CPUExecutionProvider"
CUDA_EP = "CUDAExecutionProvider"
TRT_EP = "TensorrtExecutionProvider"
OPENVINO_EP = "OpenVINOExecutionProvider"

# TensorRT accelerator parameters Triton renames; other "trt_*" keys pass through as they are.
_TRT_RENAMED = {
    "max_workspace_size_bytes": "trt_max_workspace_size",
    "int8_calibration_table_name": "trt_int8_calibration_table_name",
    "int8_use_native_calibration_table": "trt_int8_use_native_calibration_table",
}
_CUDNN_CONV_ALGO_SEARCH = {"0": "EXHAUSTIVE", "1": "HEURISTIC", "2": "DEFAULT"}
_ARENA_EXTEND_STRATEGY = {"0": "kNextPowerOfTwo", "1": "kSameAsRequested"}

_ORT_MESSAGE = re.compile(r"^\[ONNXRuntimeError\] : (\d+) : \w+ : ")

_log = logging.getLogger("tritonlite.backends.onnxruntime")

#: The model ``parameters`` this backend reads (plus ``session.*`` keys).
PARAMETERS = frozenset({
    "intra_op_thread_count", "inter_op_thread_count", "execution_mode", "enable_mem_arena",
    "enable_mem_pattern", "memory.enable_memory_arena_shrinkage", "cudnn_conv_algo_search",
    "gpu_mem_limit", "arena_extend_strategy", "do_copy_in_default_stream",
    "share_session_between_instances",
})  # fmt: skip
_PARAMETER_HINTS = {
    "enable_cuda_graph": "CUDA graphs are an option of the CUDA execution accelerator: "
    'optimization { execution_accelerators { gpu_execution_accelerator [{ name: "cuda" '
    'parameters { key: "enable_cuda_graph" value: "1" } }] } }',
    "enable-global-threadpool": "a --backend-config setting, not a model parameter",
}
ARENA_SHRINKAGE = "memory.enable_memory_arena_shrinkage"
_ARENA_DEVICE = re.compile(r"^(cpu|gpu):(\d+)$")


class IOSpec(NamedTuple):
    """One model input or output: Triton wire datatype ('FP32', 'BYTES') and the model's full
    dims, batch dim included, -1 where a dim is dynamic."""

    name: str
    datatype: str
    dims: list[int]


def _io_spec(arg: Any, kind: str, model: str) -> IOSpec:
    datatype = ORT_TO_TRITON.get(arg.type)
    if datatype is None:
        raise TritonError(
            f"{kind} '{arg.name}' of '{model}' has type {arg.type}, which Triton does not support",
            INVALID_ARG,
        )
    shape = arg.shape if isinstance(arg.shape, list) else []
    return IOSpec(arg.name, datatype, [d if isinstance(d, int) and d >= 0 else -1 for d in shape])


# -------------------------------------------------------------------------------------------------
# Backend


def create_backend(
    config: ModelConfig, model_dir: Path, version_dir: Path, *, server: Any = None
) -> OnnxRuntimeBackend:
    """BackendFactory for ONNX models (see ``backends.base``)."""
    filename = config.default_model_filename or DEFAULT_MODEL_FILENAME
    model_path = Path(version_dir) / filename
    if model_path.is_dir():
        model_path = model_path / DEFAULT_MODEL_FILENAME
    if not model_path.is_file():
        raise TritonError(f"unable to find '{model_path}' for model '{config.name}'", UNAVAILABLE)
    setting = getattr(server, "backend_setting", None)
    pools = (
        ort_threads.parse(lambda key: setting("onnxruntime", key))
        if setting is not None
        else ort_threads.PoolSettings()
    )
    return OnnxRuntimeBackend(config, model_path, pools)


class OnnxRuntimeBackend:
    """One loaded version of an ONNX model; each instance gets its own InferenceSession.
    ``pools``: the server's onnxruntime thread pool settings (see ``ort_threads``)."""

    def __init__(
        self,
        config: ModelConfig,
        model_path: Path,
        pools: ort_threads.PoolSettings | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.model_path = model_path
        self.pools = pools or ort_threads.PoolSettings()
        _check_session_parameters(config)  # fail the load early on bad parameters
        _providers(config, "KIND_CPU", 0)  # ... and on unknown accelerators
        self.arena_shrinkage = _arena_shrinkage(config)
        self.share_session = bool(_bool_param(config, "share_session_between_instances"))
        self._sessions: dict[tuple[str, int], ort.InferenceSession] = {}
        self._sessions_lock = threading.Lock()
        warn_unknown_parameters(
            config, "onnxruntime", PARAMETERS, known_prefixes=("session.",),
            hints=_PARAMETER_HINTS, log=_log,
        )  # fmt: skip

    def create_instance(self, index: int, kind: str, device_id: int) -> OnnxRuntimeInstance:
        run_options = self._run_options(index, kind, device_id)
        if not self.share_session:
            return OnnxRuntimeInstance(
                self.config, self._session(index, kind, device_id), run_options
            )
        # share_session_between_instances: one session per device, whose run() onnxruntime
        # allows from several threads at once.
        with self._sessions_lock:
            session = self._sessions.get((kind, device_id))
            if session is None:
                session = self._sessions[(kind, device_id)] = self._session(index, kind, device_id)
        return OnnxRuntimeInstance(self.config, session, run_options)

    def _run_options(self, index: int, kind: str, device_id: int) -> ort.RunOptions | None:
        if not self.arena_shrinkage:
            return None
        arena = _bool_param(self.config, "enable_mem_arena")
        for device, number in self.arena_shrinkage:
            problem = ""
            if device == "cpu" and number != 0:
                problem = "the CPU is device 0"
            elif device == "cpu" and arena is False:
                problem = "enable_mem_arena is off, so there is no CPU arena to shrink"
            elif device == "gpu" and (kind != "KIND_GPU" or number != device_id):
                where = f"GPU {device_id}" if kind == "KIND_GPU" else "the CPU"
                problem = f"instance {index} runs on {where}"
            if problem:
                raise TritonError(
                    f"model '{self.name}': parameter '{ARENA_SHRINKAGE}' names {device}:{number}, "
                    f"which has no memory arena: {problem}",
                    INVALID_ARG,
                )
        options = ort.RunOptions()
        value = ";".join(f"{d}:{n}" for d, n in self.arena_shrinkage)
        options.add_run_config_entry(ARENA_SHRINKAGE, value)
        return options

    def _session(self, index: int, kind: str, device_id: int) -> ort.InferenceSession:
        providers = _providers(self.config, kind, device_id)
        requested = [p if isinstance(p, str) else p[0] for p in providers]
        available = ort.get_available_providers()
        for provider in requested:
            if provider not in available:
                raise TritonError(
                    f"model '{self.name}' instance {index} ({kind}, device {device_id}) needs "
                    f"onnxruntime's {provider}, which this onnxruntime does not provide "
                    f"(available: {', '.join(available)})"
                    + ("; install onnxruntime-gpu" if provider in (CUDA_EP, TRT_EP) else ""),
                    UNAVAILABLE,
                )
        try:
            try:
                session = ort.InferenceSession(
                    str(self.model_path), _session_options(self.config, self.pools),
                    providers=providers,
                )  # fmt: skip
            except Exception as exc:
                if not ort_threads.follow_environment(exc):
                    raise
                session = ort.InferenceSession(  # with options that match the environment
                    str(self.model_path), _session_options(self.config, self.pools),
                    providers=providers,
                )  # fmt: skip
        except Exception as exc:
            status = UNAVAILABLE if type(exc).__name__ == "EPFail" else INVALID_ARG
            raise TritonError(
                f"failed to load model '{self.name}' from '{self.model_path}': {_ort_message(exc)}",
                status,
            ) from exc
        taken = session.get_providers()
        missing = [p for p in requested if p not in taken]
        if missing:  # onnxruntime falls back to CPU with only a log line; Triton users expect GPU
            raise TritonError(
                f"model '{self.name}' instance {index}: onnxruntime could not create "
                f"{', '.join(missing)} (the session got {', '.join(taken)}); see onnxruntime's "
                "log for why (e.g. missing CUDA/cuDNN/TensorRT libraries)",
                UNAVAILABLE,
            )
        return session

    def close(self) -> None:
        with self._sessions_lock:
            self._sessions.clear()


class _OrtValueArray:
    """Exposes an OrtValue's CPU buffer to numpy (zero-copy) and keeps the OrtValue alive."""

    def __init__(self, value: Any, typestr: str) -> None:
        self._value = value
        self.__array_interface__ = {
            "shape": tuple(value.shape()),
            "typestr": typestr,
            "data": (value.data_ptr(), False),
            "version": 3,
        }


class OnnxRuntimeInstance:
    """One InferenceSession; ``execute`` runs one batch."""

    #: InferenceSession.run may be called from any thread (see base.BackendInstance).
    runs_on_any_thread = True

    def __init__(
        self,
        config: ModelConfig,
        session: ort.InferenceSession,
        run_options: ort.RunOptions | None = None,
    ) -> None:
        self.name = config.name
        self.session: ort.InferenceSession | None = session
        self.run_options = run_options  # memory.enable_memory_arena_shrinkage
        model_inputs = {a.name: _io_spec(a, "input", config.name) for a in session.get_inputs()}
        model_outputs = {a.name: _io_spec(a, "output", config.name) for a in session.get_outputs()}
        _check_config(config, model_inputs, model_outputs)
        self._string_inputs = {n for n, s in model_inputs.items() if s.datatype == "BYTES"}
        self._bf16_inputs = {n for n, s in model_inputs.items() if s.datatype == "BF16"}
        self._string_outputs = {n for n, s in model_outputs.items() if s.datatype == "BYTES"}
        self._bf16_outputs = {n for n, s in model_outputs.items() if s.datatype == "BF16"}
        self._all_outputs = [io.name for io in config.output] or list(model_outputs)
        self._bfloat16: Any = None
        if self._bf16_inputs or self._bf16_outputs:
            try:
                import ml_dtypes
            except ImportError as exc:
                raise TritonError(
                    f"model '{self.name}' has BF16 inputs or outputs, which need ml_dtypes: "
                    "pip install ml_dtypes",
                    UNAVAILABLE,
                ) from exc
            self._bfloat16 = np.dtype(ml_dtypes.bfloat16)
        #: Nothing to convert either way: execute hands the inputs to onnxruntime as they are and
        #: its results back (the common case; a per-batch cost on the serving path).
        self._plain = not (self._string_inputs or self._bf16_inputs or self._string_outputs
                           or self._bf16_outputs)  # fmt: skip
        #: The plain case on a CPU-only session: onnxruntime's own run (its C++ binding), not
        #: InferenceSession.run's Python wrapper, whose checks cannot fail here (the core checked
        #: every input's name, datatype and shape; numpy arrays only, no OrtValues) and whose
        #: provider fallback a CPU-only session has no use for: ~1.2 µs less per batch.
        self._direct_run: Any = None
        if self._plain and list(session.get_providers()) == ["CPUExecutionProvider"]:
            self._direct_run = getattr(getattr(session, "_sess", None), "run", None)
        if self._string_inputs and self._bf16_outputs:
            raise TritonError(
                f"model '{self.name}' has both string inputs and BF16 outputs, which onnxruntime's "
                "Python API cannot run together",
                UNSUPPORTED,
            )

    def execute(self, inputs: dict[str, np.ndarray], output_names: list[str]) -> dict[str, Any]:
        session = self.session
        if session is None:
            raise TritonError(f"model '{self.name}' instance is closed", UNAVAILABLE)
        names = output_names or self._all_outputs
        if self._plain:
            run = self._direct_run or session.run
            try:
                return dict(zip(names, run(names, inputs, self.run_options), strict=True))
            except TritonError:
                raise
            except Exception as exc:
                raise self._run_error(exc) from exc
        feeds: dict[str, Any] = {}
        try:
            for name, array in inputs.items():
                if name in self._string_inputs:
                    feeds[name] = self._to_str(name, array)
                elif name in self._bf16_inputs:
                    feeds[name] = self._to_bf16_value(name, array)
                else:
                    feeds[name] = array
            if self._bf16_outputs.intersection(names):
                return self._run_ort_values(session, feeds, names)
            results = session.run(names, feeds, self.run_options)
        except TritonError:
            raise
        except Exception as exc:
            raise self._run_error(exc) from exc
        out: dict[str, Any] = {}
        for name, result in zip(names, results, strict=True):
            out[name] = _to_bytes(result) if name in self._string_outputs else result
        return out

    def close(self) -> None:
        self.session = None
        self._direct_run = None

    # -- helpers ----------------------------------------------------------------------------------

    def _run_ort_values(
        self, session: ort.InferenceSession, feeds: dict[str, Any], names: list[str]
    ) -> dict[str, Any]:
        values = {
            name: feed
            if isinstance(feed, ort.OrtValue)
            else ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(feed))
            for name, feed in feeds.items()
        }
        results = session.run_with_ort_values(names, values, self.run_options)
        out: dict[str, Any] = {}
        for name, value in zip(names, results, strict=True):
            if name in self._bf16_outputs:
                if int(np.prod(value.shape())) == 0:
                    out[name] = np.empty(value.shape(), dtype=self._bfloat16)
                else:
                    raw = np.asarray(_OrtValueArray(value, "<u2"))
                    out[name] = raw.view(self._bfloat16)
            elif name in self._string_outputs:
                out[name] = _to_bytes(value.numpy())
            else:
                out[name] = value.numpy()
        return out

    def _to_str(self, name: str, array: np.ndarray) -> np.ndarray:
        if array.dtype.kind == "U":
            return array
        flat = array.ravel()
        decoded = np.empty(flat.shape, dtype=object)
        try:
            for i, item in enumerate(flat):
                decoded[i] = item.decode("utf-8") if isinstance(item, bytes | bytearray) else item
        except UnicodeDecodeError as exc:
            raise TritonError(
                f"input '{name}' of model '{self.name}': element {i} is not valid UTF-8, which "
                "onnxruntime string tensors need",
                INVALID_ARG,
            ) from exc
        return decoded.reshape(array.shape)

    def _to_bf16_value(self, name: str, array: np.ndarray) -> Any:
        if array.dtype != self._bfloat16 and array.dtype != np.uint16:
            raise TritonError(
                f"input '{name}' of model '{self.name}' is BF16 but got a {array.dtype} array",
                INVALID_ARG,
            )
        raw = np.ascontiguousarray(array).view(np.uint16)
        return ort.OrtValue.ortvalue_from_numpy_with_onnx_type(raw, _ONNX_BFLOAT16)

    def _run_error(self, exc: Exception) -> TritonError:
        text = str(exc)
        match = _ORT_MESSAGE.match(text)
        code = f" {match.group(1)}" if match else ""
        body = text[match.end() :] if match else text
        return TritonError(f"onnx runtime error{code} for model '{self.name}': {body}", INTERNAL)


def _to_bytes(array: np.ndarray) -> np.ndarray:
    flat = array.ravel()
    encoded = np.empty(flat.shape, dtype=object)
    for i, item in enumerate(flat):
        encoded[i] = item.encode("utf-8") if isinstance(item, str) else item
    return encoded.reshape(array.shape)


def _ort_message(exc: BaseException) -> str:
    text = str(exc)
    match = _ORT_MESSAGE.match(text)
    if match:
        return f"onnx runtime error {match.group(1)}: {text[match.end() :]}"
    return text


# -------------------------------------------------------------------------------------------------
# Config -> session options and providers


def _param(config: ModelConfig, key: str) -> str | None:
    if key in config.parameters:
        return str(config.parameters[key].string_value)
    return None


def _int_param(config: ModelConfig, key: str) -> int | None:
    value = _param(config, key)
    if value is None or value.strip() == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise TritonError(
            f"model '{config.name}': parameter '{key}' must be an integer, got '{value}'",
            INVALID_ARG,
        ) from None


def _bool_param(config: ModelConfig, key: str) -> bool | None:
    value = _param(config, key)
    if value is None:
        return None
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise TritonError(
        f"model '{config.name}': parameter '{key}' must be a boolean, got '{value}'", INVALID_ARG
    )


def _cpu_count() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _check_session_parameters(config: ModelConfig) -> None:
    """The session parameters' checks of ``_session_options``, without touching onnxruntime's
    environment."""
    _session_options(config, None)


def _session_options(
    config: ModelConfig, pools: ort_threads.PoolSettings | None
) -> ort.SessionOptions:
    """The model's session options; ``pools`` None: only check them (no thread pool choice)."""
    options = ort.SessionOptions()
    level = config.optimization.graph.level if config.optimization.HasField("graph") else 0
    if level not in _GRAPH_LEVELS:
        raise TritonError(
            f"model '{config.name}': optimization.graph.level must be -1, 0, 1 or 2, got {level}",
            INVALID_ARG,
        )
    options.graph_optimization_level = _GRAPH_LEVELS[level]

    mode = _int_param(config, "execution_mode")
    if mode not in (None, 0, 1):
        raise TritonError(
            f"model '{config.name}': execution_mode must be 0 (sequential) or 1 (parallel), "
            f"got {mode}",
            INVALID_ARG,
        )
    options.execution_mode = (
        ort.ExecutionMode.ORT_PARALLEL if mode == 1 else ort.ExecutionMode.ORT_SEQUENTIAL
    )

    intra = _int_param(config, "intra_op_thread_count")
    inter = _int_param(config, "inter_op_thread_count")
    # Threads of its own only when the model asks for them; else the process's shared pools
    # when they are on (see ort_threads), whose sizes the session options must not set.
    asked = mode == 1 or (intra is not None and intra > 0) or (inter is not None and inter > 0)
    if pools is None or not ort_threads.configure(options, pools, config.name, asked):
        if intra is None or intra <= 0:
            instances = sum(max(group.count, 1) for group in config.instance_group) or 1
            intra = max(1, _cpu_count() // instances)
        options.intra_op_num_threads = intra
        if inter is not None and inter > 0:
            options.inter_op_num_threads = inter

    arena = _bool_param(config, "enable_mem_arena")
    if arena is not None:
        options.enable_cpu_mem_arena = arena
    pattern = _bool_param(config, "enable_mem_pattern")
    if pattern is not None:
        options.enable_mem_pattern = pattern
    for key in config.parameters:
        if key.startswith("session."):
            try:
                options.add_session_config_entry(key, config.parameters[key].string_value)
            except Exception as exc:
                raise TritonError(
                    f"model '{config.name}': bad session parameter '{key}': {_ort_message(exc)}",
                    INVALID_ARG,
                ) from exc
    return options


def _arena_shrinkage(config: ModelConfig) -> list[tuple[str, int]]:
    """``memory.enable_memory_arena_shrinkage``: ``<cpu|gpu>:<id>`` entries separated by ``;``."""
    value = _param(config, ARENA_SHRINKAGE)
    if value is None or not value.strip():
        return []
    entries = []
    for entry in value.split(";"):
        match = _ARENA_DEVICE.match(entry.strip())
        if match is None:
            raise TritonError(
                f"model '{config.name}': parameter '{ARENA_SHRINKAGE}' must list devices as "
                f"'cpu:0' or 'gpu:<id>' separated by ';', got '{value}'",
                INVALID_ARG,
            )
        entries.append((match.group(1), int(match.group(2))))
    return entries


ProviderSpec = str | tuple[str, dict[str, str]]


def _accelerator_params(accelerator: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in accelerator.parameters.items()}


def _providers(config: ModelConfig, kind: str, device_id: int) -> list[ProviderSpec]:
    accelerators = config.optimization.execution_accelerators
    providers: list[ProviderSpec] = []
    if kind == "KIND_GPU":
        cuda: dict[str, str] = {}
        for accelerator in accelerators.gpu_execution_accelerator:
            if accelerator.name == "tensorrt":
                providers.append((TRT_EP, _tensorrt_options(config, accelerator, device_id)))
            elif accelerator.name == "cuda":
                cuda.update(_accelerator_params(accelerator))
            else:
                raise TritonError(
                    f"model '{config.name}': unknown GPU execution accelerator "
                    f"'{accelerator.name}' (known: tensorrt, cuda)",
                    INVALID_ARG,
                )
        cuda.update(_cuda_config_params(config))
        cuda["device_id"] = str(device_id)
        providers.append((CUDA_EP, cuda))
    elif kind != "KIND_CPU":
        raise TritonError(
            f"model '{config.name}': instance kind {kind} is not supported by onnxruntime "
            "(use KIND_CPU or KIND_GPU)",
            INVALID_ARG,
        )
    for accelerator in accelerators.cpu_execution_accelerator:
        if accelerator.name == "openvino":
            providers.append(
                (OPENVINO_EP, {"device_type": "CPU", **_accelerator_params(accelerator)})
            )
        else:
            raise TritonError(
                f"model '{config.name}': unknown CPU execution accelerator '{accelerator.name}' "
                "(known: openvino)",
                INVALID_ARG,
            )
    providers.append(CPU_EP)
    return providers


def _tensorrt_options(config: ModelConfig, accelerator: Any, device_id: int) -> dict[str, str]:
    options: dict[str, str] = {}
    for key, value in _accelerator_params(accelerator).items():
        if key == "precision_mode":
            if value == "FP16":
                options["trt_fp16_enable"] = "1"
            elif value == "INT8":
                options["trt_int8_enable"] = "1"
            elif value != "FP32":
                raise TritonError(
                    f"model '{config.name}': unsupported TensorRT precision_mode '{value}' "
                    "(FP32, FP16 or INT8)",
                    INVALID_ARG,
                )
        elif key in _TRT_RENAMED:
            options[_TRT_RENAMED[key]] = value
        elif key.startswith("trt_"):
            options[key] = value
        else:
            raise TritonError(
                f"model '{config.name}': unknown parameter '{key}' for the TensorRT execution "
                "accelerator",
                INVALID_ARG,
            )
    options["device_id"] = str(device_id)
    return options


def _cuda_config_params(config: ModelConfig) -> dict[str, str]:
    options: dict[str, str] = {}
    for key, table in (
        ("cudnn_conv_algo_search", _CUDNN_CONV_ALGO_SEARCH),
        ("arena_extend_strategy", _ARENA_EXTEND_STRATEGY),
    ):
        value = _param(config, key)
        if value is not None:
            if value.strip() not in table:
                raise TritonError(
                    f"model '{config.name}': unsupported {key} value '{value}' "
                    f"(one of {', '.join(table)})",
                    INVALID_ARG,
                )
            options[key] = table[value.strip()]
    for key in ("gpu_mem_limit", "do_copy_in_default_stream"):
        value = _param(config, key)
        if value is not None:
            options[key] = value
    return options


# -------------------------------------------------------------------------------------------------
# Config <-> model checks


def _check_config(
    config: ModelConfig, model_inputs: dict[str, IOSpec], model_outputs: dict[str, IOSpec]
) -> None:
    """The config's inputs/outputs must exist in the model with the same datatype and compatible
    dims (Triton fails such a load too); every model input must be in the config."""
    ragged = [io for io in config.input if io.allow_ragged_batch]
    for io in ragged:
        _check_ragged_input(config, io, model_inputs)
    _check_ios(config, "input", [io for io in config.input if not io.allow_ragged_batch],
               model_inputs)  # fmt: skip
    # A batch output's shape in the model is its batch's, not the config's dims (as in Triton).
    scattered = {name for b in config.batch_output for name in b.target_name}
    _check_ios(config, "output", config.output, model_outputs, skip_dims=scattered)
    configured = {io.name for io in config.input}
    sequence = config.sequence_batching  # inputs the sequence batcher fills in
    configured |= {c.name for c in sequence.control_input} | {s.input_name for s in sequence.state}
    for batch_input in config.batch_input:  # made by the core for every batch
        for name in batch_input.target_name:
            configured.add(name)
            _model_tensor(config, model_inputs, "input", name, batch_input.data_type, batch=True)
    for name in model_inputs:
        if name not in configured:
            raise TritonError(
                f"model '{config.name}': the model's input '{name}' is not in its configuration "
                f"(configured: {', '.join(sorted(configured)) or 'none'})",
                INVALID_ARG,
            )


def _check_ragged_input(config: ModelConfig, io: Any, model: dict[str, IOSpec]) -> None:
    """A ragged input reaches the model flattened: the model must take it as [-1] (Triton's
    onnxruntime backend check and text)."""
    _check_ios(config, "input", [io], model, skip_dims={io.name})
    if io.optional:
        raise TritonError(
            f"unable to load model '{config.name}', configuration expects model provides input "
            f"with shape [-1] for ragged input '{io.name}', which is not supported for optional "
            "input",
            INVALID_ARG,
        )
    dims = model[io.name].dims
    if dims != [-1]:
        raise TritonError(
            f"unable to load model '{config.name}', configuration expects model provides input "
            f"with shape [-1]  for ragged input '{io.name}', model provides "
            f"[{','.join(str(d) for d in dims)}]",
            INVALID_ARG,
        )


def _model_tensor(
    config: ModelConfig,
    model: dict[str, IOSpec],
    kind: str,
    name: str,
    data_type: int,
    batch: bool = False,
) -> IOSpec:
    """The model's ``kind`` ("input" or "output") ``name``, which must have the datatype the
    configuration gives it; ``batch``: the configuration names it as a batch input."""
    spec = model.get(name)
    if spec is None:
        named = "batch input" if batch else f"configuration {kind}"
        raise TritonError(
            f"model '{config.name}': {named} '{name}' is not a model {kind} "
            f"(the model's {kind}s: {', '.join(model) or 'none'})",
            INVALID_ARG,
        )
    datatype = datatypes.to_wire_name(model_config_pb2.DataType.Name(data_type))
    if datatype != spec.datatype:
        raise TritonError(
            f"model '{config.name}': {'batch input' if batch else kind} '{name}' is "
            f"{spec.datatype} in the model but {datatypes.to_config_name(datatype)} in the "
            "configuration",
            INVALID_ARG,
        )
    return spec


def _check_ios(
    config: ModelConfig,
    kind: str,
    ios: Iterable[Any],
    model: dict[str, IOSpec],
    skip_dims: set[str] | frozenset[str] = frozenset(),
) -> None:
    for io in ios:
        spec = _model_tensor(config, model, kind, io.name, io.data_type)
        if io.name in skip_dims:
            continue
        model_dims = spec.dims
        if config.max_batch_size > 0:
            if not model_dims or model_dims[0] != -1:
                raise TritonError(
                    f"model '{config.name}': max_batch_size is {config.max_batch_size} but "
                    f"{kind} '{io.name}' has no dynamic first (batch) dim in the model "
                    f"(dims {model_dims}); set max_batch_size to 0",
                    INVALID_ARG,
                )
            model_dims = model_dims[1:]
        dims = list(io.reshape.shape) if io.HasField("reshape") else list(io.dims)
        compatible = len(dims) == len(model_dims) and all(
            a == b or a == -1 or b == -1 for a, b in zip(dims, model_dims, strict=True)
        )
        if not compatible:
            which = "reshape" if io.HasField("reshape") else "dims"
            raise TritonError(
                f"model '{config.name}': {kind} '{io.name}' has {which} {dims} in the "
                f"configuration but {model_dims} in the model"
                + (" (after the batch dim)" if config.max_batch_size > 0 else ""),
                INVALID_ARG,
            )
