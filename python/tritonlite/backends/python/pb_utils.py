"""Triton's python_backend API: what ``import triton_python_backend_utils as pb_utils`` gives a
``model.py``.

This module owns the classes and helpers a Triton python model uses: ``Tensor``,
``InferenceRequest`` (incoming requests and BLS requests), ``InferenceResponse``, the response
sender, ``TritonError``/``TritonModelException``, ``Logger``, ``MetricFamily``/``Metric``,
``ModelConfig`` (for ``auto_complete_config``), the datatype helpers and Triton's constants,
with Triton's names, signatures and error texts. It knows nothing of processes or servers:
BLS, logging and metrics go to ``runtime.current()``, which the stub process or the in-process
instance provides.

``InferenceRequest.is_cancelled()`` and its response sender's ``is_cancelled()`` call a probe
that the host passes in (``cancelled=``): the core request's flag in process, the stub's cancel
board in a stub (``cancel.py``); a BLS request a model builds has none (its ``is_cancelled()``
is always False; the call it makes is cancelled with the request whose execute() made it, which
is the host's business: see ``bls.py``).

Differences from Triton, all documented in the package docstring: response parameters and
``preferred_memory`` are accepted and ignored; request rescheduling is not supported.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import runtime as _runtime

# ---- constants ------------------------------------------------------------------------------

TRITONSERVER_REQUEST_FLAG_SEQUENCE_START = 1
TRITONSERVER_REQUEST_FLAG_SEQUENCE_END = 2
TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1
TRITONSERVER_REQUEST_RELEASE_ALL = 1
TRITONSERVER_REQUEST_RELEASE_RESCHEDULE = 2
TRITONSERVER_MEMORY_CPU = 0
TRITONSERVER_MEMORY_CPU_PINNED = 1
TRITONSERVER_MEMORY_GPU = 2

TRITON_STRING_TO_NUMPY: dict[str, Any] = {
    "TYPE_BOOL": bool,
    "TYPE_UINT8": np.uint8,
    "TYPE_UINT16": np.uint16,
    "TYPE_UINT32": np.uint32,
    "TYPE_UINT64": np.uint64,
    "TYPE_INT8": np.int8,
    "TYPE_INT16": np.int16,
    "TYPE_INT32": np.int32,
    "TYPE_INT64": np.int64,
    "TYPE_FP16": np.float16,
    "TYPE_FP32": np.float32,
    "TYPE_FP64": np.float64,
    "TYPE_STRING": np.object_,
}

# TRITONSERVER_DataType values, by wire name.
_TYPE_CODES = {
    "BOOL": 1, "UINT8": 2, "UINT16": 3, "UINT32": 4, "UINT64": 5, "INT8": 6, "INT16": 7,
    "INT32": 8, "INT64": 9, "FP16": 10, "FP32": 11, "FP64": 12, "BYTES": 13, "BF16": 14,
}  # fmt: skip
_CODE_TO_NUMPY: dict[int, Any] = {
    1: np.bool_, 2: np.uint8, 3: np.uint16, 4: np.uint32, 5: np.uint64, 6: np.int8,
    7: np.int16, 8: np.int32, 9: np.int64, 10: np.float16, 11: np.float32, 12: np.float64,
    13: np.object_,
}  # fmt: skip
_NUMPY_TO_NAME: dict[Any, str] = {
    np.dtype(np.bool_): "BOOL", np.dtype(np.uint8): "UINT8", np.dtype(np.uint16): "UINT16",
    np.dtype(np.uint32): "UINT32", np.dtype(np.uint64): "UINT64", np.dtype(np.int8): "INT8",
    np.dtype(np.int16): "INT16", np.dtype(np.int32): "INT32", np.dtype(np.int64): "INT64",
    np.dtype(np.float16): "FP16", np.dtype(np.float32): "FP32", np.dtype(np.float64): "FP64",
}  # fmt: skip


# ---- datatype helpers -----------------------------------------------------------------------


def triton_to_numpy_type(data_type: int) -> Any:
    """numpy type for a TRITONSERVER_DataType value (None if there is none)."""
    return _CODE_TO_NUMPY.get(data_type)


def numpy_to_triton_type(data_type: Any) -> int | None:
    """TRITONSERVER_DataType value for a numpy dtype or type (object and bytes_ are BYTES)."""
    try:
        dtype = np.dtype(data_type)
    except TypeError:
        return None
    if dtype == np.object_ or dtype.type == np.bytes_:
        return 13
    name = _NUMPY_TO_NAME.get(dtype)
    return _TYPE_CODES[name] if name else None


def triton_string_to_numpy(triton_type_string: str) -> Any:
    return TRITON_STRING_TO_NUMPY[triton_type_string]


def serialize_byte_tensor(input_tensor: np.ndarray) -> bytes | tuple[()] | None:
    """Triton's BYTES serialization (4-byte little-endian length, then the bytes, C order).
    Items that are not bytes are serialized as their UTF-8 ``str``. Empty input gives ``()``;
    a tensor that is neither object nor bytes gives None."""
    if input_tensor.size == 0:
        return ()
    if input_tensor.dtype != np.object_ and input_tensor.dtype.type != np.bytes_:
        return None
    parts: list[bytes] = []
    for item in input_tensor.flat:  # C order whatever the memory layout
        data = item if isinstance(item, bytes) else str(item).encode("utf-8")
        parts.append(struct.pack("<I", len(data)))
        parts.append(data)
    return b"".join(parts)


def deserialize_bytes_tensor(encoded_tensor: bytes) -> np.ndarray:
    """A 1-D object array of the bytes items in a serialized BYTES tensor."""
    items: list[bytes] = []
    view = memoryview(encoded_tensor)
    offset = 0
    while offset < len(view):
        (length,) = struct.unpack_from("<I", view, offset)
        offset += 4
        items.append(bytes(view[offset : offset + length]))
        offset += length
    out = np.empty(len(items), dtype=np.object_)
    out[:] = items
    return out


def get_input_tensor_by_name(inference_request: InferenceRequest, name: str) -> Tensor | None:
    if type(inference_request) is InferenceRequest:  # the fields directly: one call per input
        for tensor in inference_request._inputs:
            if tensor._name == name:
                return tensor
        return None
    for tensor in inference_request.inputs():
        if tensor.name() == name:
            return tensor
    return None


def get_output_tensor_by_name(inference_response: InferenceResponse, name: str) -> Tensor | None:
    for tensor in inference_response.output_tensors():
        if tensor.name() == name:
            return tensor
    return None


def get_input_config_by_name(model_config: dict[str, Any], name: str) -> dict[str, Any] | None:
    for tensor in model_config.get("input", ()):
        if tensor["name"] == name:
            return tensor  # type: ignore[no-any-return]
    return None


def get_output_config_by_name(model_config: dict[str, Any], name: str) -> dict[str, Any] | None:
    for tensor in model_config.get("output", ()):
        if tensor["name"] == name:
            return tensor  # type: ignore[no-any-return]
    return None


def using_decoupled_model_transaction_policy(model_config: dict[str, Any]) -> bool:
    policy = model_config.get("model_transaction_policy")
    return bool(policy and policy.get("decoupled", False))


# ---- errors ---------------------------------------------------------------------------------


class TritonError(Exception):
    """An error to put in an ``InferenceResponse``: a message and one of Triton's codes."""

    UNKNOWN = 0
    INTERNAL = 1
    NOT_FOUND = 2
    INVALID_ARG = 3
    UNAVAILABLE = 4
    UNSUPPORTED = 5
    ALREADY_EXISTS = 6
    CANCELLED = 7

    def __init__(self, message: str, code: int = INTERNAL) -> None:
        super().__init__(message)
        self._message = message
        self._code = int(code)

    def message(self) -> str:
        return self._message

    def code(self) -> int:
        return self._code

    def __str__(self) -> str:
        return self._message


#: TritonError code -> tritonlite status kind, and back.
ERROR_STATUS = {
    TritonError.UNKNOWN: "UNKNOWN",
    TritonError.INTERNAL: "INTERNAL",
    TritonError.NOT_FOUND: "NOT_FOUND",
    TritonError.INVALID_ARG: "INVALID_ARG",
    TritonError.UNAVAILABLE: "UNAVAILABLE",
    TritonError.UNSUPPORTED: "UNSUPPORTED",
    TritonError.ALREADY_EXISTS: "ALREADY_EXISTS",
    TritonError.CANCELLED: "CANCELLED",
}
STATUS_ERROR = {status: code for code, status in ERROR_STATUS.items()}


def _current_runtime() -> _runtime.Runtime:
    runtime = _runtime.current()
    if runtime is None:
        raise TritonModelException(
            "triton_python_backend_utils: this call needs a running model (BLS, logging and "
            "metrics work inside a model served by tritonlite)"
        )
    return runtime


class TritonModelException(Exception):
    """Raised by a model (or by this module) to fail ``initialize``/``execute``/``finalize``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self._message = message

    def message(self) -> str:
        return self._message

    def __str__(self) -> str:
        return self._message


# ---- tensors --------------------------------------------------------------------------------


class Tensor:
    """A named input or output tensor: a numpy array, or (in-process) any DLPack tensor."""

    __slots__ = ("_array", "_datatype", "_device", "_name")

    def __init__(self, name: str, numpy_array: Any) -> None:
        if not isinstance(name, str):
            raise TritonModelException(f"Tensor name must be a str, got {type(name).__name__}")
        array = numpy_array if isinstance(numpy_array, np.ndarray) else np.asarray(numpy_array)
        self._name = name
        self._array: np.ndarray | None = array
        self._device: Any = None
        self._datatype = _datatype_of(array, name)

    @classmethod
    def _wrap(
        cls, name: str, array: np.ndarray | None, datatype: str, device: Any = None
    ) -> Tensor:
        """Internal fast path: a tensor the backend built from known-good data."""
        tensor = object.__new__(cls)
        tensor._name = name
        tensor._array = array
        tensor._datatype = datatype
        tensor._device = device
        return tensor

    @staticmethod
    def from_dlpack(name: str, dlpack: Any) -> Tensor:
        """A tensor over a DLPack capsule or an object with ``__dlpack__`` (zero-copy)."""
        from ... import _core

        if not (hasattr(dlpack, "__dlpack__") or type(dlpack).__name__ == "PyCapsule"):
            raise TritonModelException(
                "Provided tensor is not supported. Tensor must be a DLPack capsule or have "
                "`__dlpack__` and `__dlpack_device__` attributes"
            )
        core = _core.Tensor.from_dlpack(dlpack)
        if core.is_cpu:
            return Tensor._wrap(name, core.numpy(), core.datatype)
        return Tensor._wrap(name, None, core.datatype, core)

    def name(self) -> str:
        return self._name

    def is_cpu(self) -> bool:
        return self._device is None

    def as_numpy(self) -> np.ndarray:
        if self._array is None:
            raise TritonModelException("Tensor is stored in GPU and cannot be converted to NumPy.")
        return self._array

    def to_dlpack(self) -> Any:
        """A DLPack capsule of the tensor (zero-copy; not for BYTES tensors)."""
        if self._device is not None:
            return self._device.__dlpack__()
        assert self._array is not None
        if self._array.dtype == np.object_:
            raise TritonModelException(
                f"tensor '{self._name}': BYTES tensors cannot be exported with DLPack"
            )
        return self._array.__dlpack__()

    def __dlpack__(self, **kwargs: Any) -> Any:
        source: Any = self._device if self._device is not None else self._array
        return source.__dlpack__(**kwargs)

    def __dlpack_device__(self) -> Any:
        source: Any = self._device if self._device is not None else self._array
        return source.__dlpack_device__()

    def shape(self) -> list[int]:
        source = self._array if self._array is not None else self._device
        return [int(d) for d in source.shape]

    def triton_dtype(self) -> int:
        return _TYPE_CODES[self._datatype]

    def __repr__(self) -> str:
        return f"Tensor({self._name!r}, {self._datatype}, shape={self.shape()})"

    # For the backend: (datatype, shape, payload) where payload is a numpy array or a core Tensor.
    def _payload(self) -> Any:
        return self._array if self._array is not None else self._device


def _datatype_of(array: np.ndarray, name: str) -> str:
    dtype = array.dtype
    known = _NUMPY_TO_NAME.get(dtype)  # the numeric types: first, one dict lookup
    if known is not None:
        return known
    if dtype == np.object_ or dtype.type == np.bytes_:
        return "BYTES"
    if dtype.kind == "U" or dtype.kind == "V":
        raise TritonModelException(
            "Tensor dtype used for numpy_array is not support by Python backend. "
            "Please use np.object_ instead."
        )
    if dtype.name == "bfloat16":
        return "BF16"
    raise TritonModelException(f"tensor '{name}': numpy dtype {dtype} has no Triton datatype")


# ---- responses ------------------------------------------------------------------------------


class InferenceResponse:
    """The response to one request: output tensors, or an error."""

    __slots__ = ("_error", "_output_tensors", "_parameters")

    def __init__(
        self,
        output_tensors: Sequence[Tensor] | None = None,
        error: TritonError | None = None,
        parameters: Any = None,
    ) -> None:
        tensors = list(output_tensors) if output_tensors is not None else []
        for t in tensors:
            if not isinstance(t, Tensor):
                raise TritonModelException(
                    "InferenceResponse output_tensors must be pb_utils.Tensor objects, got "
                    f"{type(t).__name__}"
                )
        if error is not None and not isinstance(error, TritonError):
            raise TritonModelException(
                f"InferenceResponse error must be a pb_utils.TritonError, got {type(error).__name__}"
            )
        self._output_tensors = tensors
        self._error = error
        self._parameters = parameters

    def output_tensors(self) -> list[Tensor]:
        return self._output_tensors

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> TritonError | None:
        return self._error

    def parameters(self) -> str:
        parameters = self._parameters
        if parameters is None:
            return "{}"
        return parameters if isinstance(parameters, str) else json.dumps(parameters)


class InferenceResponseSender:
    """Sends the responses of one request (decoupled models, or one response otherwise)."""

    __slots__ = ("_cancelled", "_closed", "_decoupled", "_host_fail", "_host_send", "_sent")

    def __init__(
        self,
        host_send: Any,
        decoupled: bool,
        cancelled: Callable[[], bool] | None = None,
        host_fail: Callable[[str], None] | None = None,
    ) -> None:
        self._host_send = host_send  # (response | None, final: bool) -> None
        # (message) -> None: the request fails without the model's answer (its execute failed)
        self._host_fail = host_fail
        self._decoupled = decoupled
        self._cancelled = cancelled  # whether the request was cancelled (None: it cannot be)
        self._closed = False
        self._sent = False

    def send(self, response: InferenceResponse | None = None, flags: int = 0) -> None:
        final = bool(flags & TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        if self._closed:
            raise TritonModelException("Unable to send response. Response sender has been closed.")
        if response is None and not final:
            raise TritonModelException(
                "Inference Response object must be provided when the response flags is set to zero."
            )
        if response is not None and not isinstance(response, InferenceResponse):
            raise TritonModelException(
                f"send() expects a pb_utils.InferenceResponse, got {type(response).__name__}"
            )
        if not self._decoupled:
            if response is not None and self._sent:
                raise TritonModelException(
                    "Unable to send response. Non-decoupled model cannot send more than one "
                    "response."
                )
            if response is None and not self._sent:
                raise TritonModelException(
                    "Unable to send response. Non-decoupled model cannot send complete final "
                    "before sending a response."
                )
            if response is None:  # the one response already went out as the final one
                self._closed = True
                return
            final = True  # one response per request: it is the final one
        if final:
            self._closed = True
        self._sent = True
        self._host_send(response, final)

    def is_cancelled(self) -> bool:
        """Whether the request was cancelled (by its client, a deadline, the server)."""
        cancelled = self._cancelled
        return cancelled is not None and bool(cancelled())

    def _is_closed(self) -> bool:
        return self._closed


# ---- requests -------------------------------------------------------------------------------


class PreferredMemory:
    """Where BLS outputs should be placed (accepted; outputs are on the CPU here)."""

    def __init__(self, preferred_memory_type: int = 0, preferred_device_id: int = 0) -> None:
        self.preferred_memory_type = preferred_memory_type
        self.preferred_device_id = preferred_device_id


class InferenceTrace:
    """A request's trace, as ``request.trace()`` returns it. Passed to a BLS call
    (``InferenceRequest(..., trace=request.trace())``) it makes the call a child of the request's
    trace (its ``parent_id``, its span's parent), as in Triton; without it a BLS call is not
    traced. ``get_context()``: the OpenTelemetry context (JSON with ``traceparent``) of the
    request's span in opentelemetry mode, else None."""

    __slots__ = ("_context", "_ref")

    def __init__(self, ref: int = -1, context: str = "") -> None:
        self._ref = ref  # the host's reference to the traced request (-1: not traced)
        self._context = context

    def get_context(self) -> str | None:
        return self._context or None


class InferenceRequest:
    """A request given to ``execute``, or one a model builds to call another model (BLS)."""

    __slots__ = (
        "_correlation_id",
        "_flags",
        "_inputs",
        "_model_name",
        "_model_version",
        "_parameters",
        "_preferred_memory",
        "_release_flags",
        "_request_id",
        "_requested",
        "_sender",
        "_timeout",
        "_trace",
    )

    def __init__(
        self,
        request_id: str = "",
        correlation_id: int | str = 0,
        inputs: Sequence[Tensor] | None = None,
        requested_output_names: Sequence[str] | None = None,
        model_name: str | None = None,
        model_version: int = -1,
        flags: int = 0,
        timeout: int = 0,
        preferred_memory: PreferredMemory | None = None,
        trace: Any = None,
        parameters: dict[str, bool | int | str] | str | None = None,
    ) -> None:
        if inputs is None or requested_output_names is None or model_name is None:
            raise TritonModelException(
                "InferenceRequest needs 'model_name', 'inputs' and 'requested_output_names'"
            )
        if not isinstance(correlation_id, (int, str)) or isinstance(correlation_id, bool):
            raise TritonModelException("Correlation ID must be integer or string")
        for t in inputs:
            if not isinstance(t, Tensor):
                raise TritonModelException(
                    f"InferenceRequest inputs must be pb_utils.Tensor objects, got {type(t).__name__}"
                )
        if parameters is None:
            params = "{}"
        elif isinstance(parameters, str):
            try:
                is_object = isinstance(json.loads(parameters), dict)
            except ValueError:
                is_object = False
            if not is_object:
                raise TritonModelException("Expected the parameters to be a JSON object")
            params = parameters
        elif isinstance(parameters, dict):
            for key, value in parameters.items():
                if not isinstance(key, str) or not isinstance(value, (bool, int, str)):
                    raise TritonModelException(
                        "Expected the parameters to be a dictionary of string keys and bool, "
                        "int or string values"
                    )
            params = json.dumps(parameters, separators=(",", ":"))  # compact, as Triton's
        else:
            raise TritonModelException("Expected the parameters to be a dictionary")
        if trace is not None and not isinstance(trace, InferenceTrace):
            raise TritonModelException(
                f"InferenceRequest trace must be a pb_utils.InferenceTrace (request.trace()), got "
                f"{type(trace).__name__}"
            )
        self._trace = trace
        self._request_id = request_id
        self._correlation_id = correlation_id
        self._inputs = list(inputs)
        self._requested = list(requested_output_names)
        self._model_name = model_name
        self._model_version = int(model_version)
        self._flags = int(flags)
        self._timeout = int(timeout)
        self._preferred_memory = preferred_memory
        self._parameters = params
        self._sender: InferenceResponseSender | None = None
        self._release_flags = TRITONSERVER_REQUEST_RELEASE_ALL

    @classmethod
    def _incoming(
        cls,
        inputs: list[Tensor],
        requested: list[str],
        request_id: str,
        correlation_id: int | str,
        flags: int,
        timeout: int,
        model_name: str,
        model_version: int,
        sender: InferenceResponseSender,
        parameters: str = "{}",
        trace: InferenceTrace | None = None,
    ) -> InferenceRequest:
        request = object.__new__(cls)
        request._trace = trace
        request._inputs = inputs
        request._requested = requested
        request._request_id = request_id
        request._correlation_id = correlation_id
        request._flags = flags
        request._timeout = timeout
        request._model_name = model_name
        request._model_version = model_version
        request._parameters = parameters
        request._preferred_memory = None
        request._sender = sender
        request._release_flags = TRITONSERVER_REQUEST_RELEASE_ALL
        return request

    def inputs(self) -> list[Tensor]:
        return self._inputs

    def request_id(self) -> str:
        return self._request_id

    def correlation_id(self) -> int | str:
        return self._correlation_id

    def flags(self) -> int:
        return self._flags

    def set_flags(self, flags: int) -> None:
        self._flags = int(flags)

    def requested_output_names(self) -> list[str]:
        return self._requested

    def model_name(self) -> str:
        return self._model_name

    def timeout(self) -> int:
        return self._timeout

    def parameters(self) -> str:
        return self._parameters

    def trace(self) -> InferenceTrace:
        """This request's trace (an untraced one when tracing did not pick the request)."""
        return self._trace if self._trace is not None else InferenceTrace()

    def is_cancelled(self) -> bool:
        """Whether the request was cancelled; always False for a BLS request built here."""
        sender = self._sender
        return sender is not None and sender.is_cancelled()

    def set_release_flags(self, flags: int) -> None:
        if flags & TRITONSERVER_REQUEST_RELEASE_RESCHEDULE:
            raise TritonModelException(
                "request rescheduling (TRITONSERVER_REQUEST_RELEASE_RESCHEDULE) is not supported "
                "by tritonlite"
            )
        self._release_flags = flags

    def get_response_sender(self) -> InferenceResponseSender:
        if self._sender is None:
            raise TritonModelException(
                "get_response_sender() is only available on requests given to execute()"
            )
        return self._sender

    def exec(self, decoupled: bool = False) -> Any:
        """Run this request on ``model_name`` and wait: one InferenceResponse, or with
        ``decoupled`` an iterator over every response of a decoupled model."""
        return _current_runtime().bls(self, decoupled)

    def async_exec(self, decoupled: bool = False) -> Any:
        """Like ``exec``, as an awaitable (use it from ``async def execute``)."""
        return _current_runtime().bls_async(self, decoupled)


# ---- logging --------------------------------------------------------------------------------


class LogLevel:
    INFO = 0
    WARNING = 1
    ERROR = 2
    VERBOSE = 3


class Logger:
    """Writes to the server's log, as ``pb_utils.Logger.log_info("...")``."""

    INFO = LogLevel.INFO
    WARNING = LogLevel.WARNING
    ERROR = LogLevel.ERROR
    VERBOSE = LogLevel.VERBOSE

    @staticmethod
    def log(message: str, level: int = LogLevel.INFO) -> None:
        where = _caller()
        try:
            runtime = _current_runtime()
        except TritonModelException:
            _runtime.emit_model_log(int(level), str(message), *where)
            return
        runtime.log(int(level), str(message), where)

    @staticmethod
    def log_info(message: str) -> None:
        Logger.log(message, LogLevel.INFO)

    @staticmethod
    def log_warn(message: str) -> None:
        Logger.log(message, LogLevel.WARNING)

    @staticmethod
    def log_error(message: str) -> None:
        Logger.log(message, LogLevel.ERROR)

    @staticmethod
    def log_verbose(message: str) -> None:
        Logger.log(message, LogLevel.VERBOSE)


#: pb_utils log level -> Python logging level.
def _caller() -> tuple[str, int]:
    """The file (base name) and line of the model code that called ``Logger``: Triton's log
    lines name them."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename == __file__:
        frame = frame.f_back
    if frame is None:
        return ("model.py", 0)
    return (os.path.basename(frame.f_code.co_filename), frame.f_lineno)


# ---- custom metrics -------------------------------------------------------------------------

_FAMILY_DELETED = (
    "Invalid metric operation as the corresponding 'MetricFamily' has been deleted. The "
    "'MetricFamily' object should be deleted AFTER its corresponding 'Metric' objects have been "
    "deleted."
)


class _FamilyState:
    __slots__ = ("alive",)

    def __init__(self) -> None:
        self.alive = True


class Metric:
    """One labelled time series of a MetricFamily; it is removed when this object is deleted."""

    __slots__ = ("_family", "_handle", "_runtime")

    def __init__(self, runtime: Any, handle: Any, family: _FamilyState) -> None:
        self._runtime = runtime
        self._handle = handle
        self._family = family

    def _check(self, verb: str) -> None:
        if not self._family.alive:
            raise TritonModelException(f"Failed to {verb} metric value: {_FAMILY_DELETED}")

    def increment(self, value: float) -> None:
        self._check("increment")
        self._handle.increment(float(value))

    def set(self, value: float) -> None:
        self._check("set")
        self._handle.set(float(value))

    def observe(self, value: float) -> None:
        self._check("observe")
        self._handle.observe(float(value))

    def value(self) -> float:
        self._check("get")
        return self._handle.value()  # type: ignore[no-any-return]

    def __del__(self) -> None:
        try:
            self._runtime.metric_delete(self._handle)
        except Exception:  # interpreter or server going away: nothing left to remove
            pass


class MetricFamily:
    """A custom metric family served with the server's metrics (Triton's Custom Metrics API).
    Deleting this object deletes the family; its Metric objects then refuse to work."""

    COUNTER = 0
    GAUGE = 1
    HISTOGRAM = 2

    def __init__(self, name: str, description: str, kind: int) -> None:
        self._handle: Any = None
        if kind not in (self.COUNTER, self.GAUGE, self.HISTOGRAM):
            raise TritonModelException(
                "Failed to create metric family: kind must be MetricFamily.COUNTER, GAUGE or "
                "HISTOGRAM"
            )
        self._runtime = _current_runtime()
        self._handle = self._runtime.metric_family(str(name), str(description), int(kind))
        self._state = _FamilyState()
        self.name = name
        self.kind = kind

    def Metric(  # Triton's name
        self, labels: dict[str, str] | None = None, buckets: list[float] | None = None
    ) -> Metric:
        if labels is None:
            labels = {}
        if not isinstance(labels, dict):
            raise TritonModelException("Failed to create metric. Labels must be a dictionary.")
        if buckets is not None and not isinstance(buckets, (list, tuple)):
            raise TritonModelException("Failed to create metric. Buckets must be a list.")
        if self.kind == self.HISTOGRAM and buckets is None:
            raise TritonModelException("Failed to create metric. Missing required buckets.")
        if self.kind != self.HISTOGRAM and buckets is not None:
            raise TritonModelException("Failed to create metric. Unexpected buckets found.")
        clean = {str(k): str(v) for k, v in labels.items()}
        bucket_list = [float(b) for b in buckets] if buckets is not None else None
        handle = self._runtime.metric(self._handle, clean, bucket_list)
        return Metric(self._runtime, handle, self._state)

    def __del__(self) -> None:
        if self._handle is None:
            return
        self._state.alive = False
        try:
            self._runtime.metric_family_delete(self._handle)
        except Exception:  # interpreter or server going away: nothing left to remove
            pass


# ---- model repository helpers ---------------------------------------------------------------


def get_model_dir() -> str:
    """The directory of the model version being served (Triton returns the version directory,
    e.g. ``<repository>/<model>/1``)."""
    return _current_runtime().version_dir


def is_model_ready(model_name: str, model_version: str = "") -> bool:
    return bool(
        _current_runtime().model_control(
            "is_model_ready", model_name=model_name, model_version=model_version
        )
    )


def load_model(model_name: str, config: str = "", files: dict[str, bytes] | None = None) -> None:
    _current_runtime().model_control(
        "load_model", model_name=model_name, config=config, files=files or {}
    )


def unload_model(model_name: str, unload_dependents: bool = False) -> None:
    _current_runtime().model_control(
        "unload_model", model_name=model_name, unload_dependents=unload_dependents
    )


# ---- auto-complete --------------------------------------------------------------------------


class ModelConfig:
    """The model configuration given to ``auto_complete_config``: read it with ``as_dict``,
    change it with ``set_max_batch_size``, ``set_dynamic_batching``, ``add_input``,
    ``add_output`` and ``set_model_transaction_policy``."""

    def __init__(self, model_config: str | dict[str, Any]) -> None:
        self._model_config: dict[str, Any] = (
            json.loads(model_config) if isinstance(model_config, str) else model_config
        )
        self._model_config.setdefault("input", [])
        self._model_config.setdefault("output", [])
        self._model_config.setdefault("max_batch_size", 0)

    def as_dict(self) -> dict[str, Any]:
        return self._model_config

    def _name(self) -> str:
        return str(self._model_config.get("name", ""))

    def set_max_batch_size(self, max_batch_size: int) -> None:
        current = int(self._model_config.get("max_batch_size", 0))
        if current > max_batch_size:
            raise ValueError(
                f"configuration specified max_batch_size {current}, but in auto-complete-config "
                f"function for model '{self._name()}' specified max_batch_size {max_batch_size}"
            )
        self._model_config["max_batch_size"] = max_batch_size

    def set_dynamic_batching(self) -> None:
        for other in ("sequence_batching", "ensemble_scheduling"):
            if other in self._model_config:
                raise ValueError(
                    f"Configuration specified scheduling_choice as '{other}', but "
                    f"auto-complete-config function for model '{self._name()}' tries to set "
                    "scheduling_choice as 'dynamic_batching'"
                )
        self._model_config.setdefault("dynamic_batching", {})

    def add_input(self, input: dict[str, Any]) -> None:  # Triton's parameter name
        self._add_tensor("input", input, ("name", "data_type", "dims", "optional"))

    def add_output(self, output: dict[str, Any]) -> None:
        self._add_tensor("output", output, ("name", "data_type", "dims"))

    def _add_tensor(self, kind: str, tensor: dict[str, Any], allowed: tuple[str, ...]) -> None:
        model = self._name()
        label = f"{kind} '{tensor.get('name', '')}'"
        for key in tensor:
            if key not in allowed:
                listed = ", ".join(f"'{a}'" for a in allowed[:-1]) + f" and '{allowed[-1]}'"
                raise ValueError(
                    f"{label} in auto-complete-config function for model '{model}' contains "
                    f"property other than {listed}."
                )
        if "name" not in tensor:
            raise ValueError(
                f"{kind} in auto-complete-config function for model '{model}' is missing "
                "'name' property."
            )
        for key in ("data_type", "dims"):
            if key not in tensor:
                raise ValueError(
                    f"{label} in auto-complete-config function for model '{model}' is missing "
                    f"'{key}' property."
                )
        for existing in self._model_config[kind]:
            if existing.get("name") != tensor["name"]:
                continue
            have_type = existing.get("data_type", "TYPE_INVALID")
            if have_type != "TYPE_INVALID" and have_type != tensor["data_type"]:
                raise ValueError(
                    f"unable to load model '{model}', configuration expects datatype {have_type} "
                    f"for {kind} '{tensor['name']}', model provides {tensor['data_type']}"
                )
            have_dims = [int(d) for d in existing.get("dims", [])]
            if have_dims and have_dims != [int(d) for d in tensor["dims"]]:
                raise ValueError(
                    f"model '{model}', tensor '{tensor['name']}': the model expects dims "
                    f"{list(tensor['dims'])} but the model configuration specifies dims "
                    f"{have_dims}"
                )
            if (
                "optional" in existing
                and "optional" in tensor
                and existing["optional"] != tensor["optional"]
            ):
                raise ValueError(
                    f"model '{model}', tensor '{tensor['name']}': the model expects optional "
                    f"{tensor['optional']} but the model configuration specifies optional "
                    f"{existing['optional']}"
                )
            existing["data_type"] = tensor["data_type"]
            existing["dims"] = list(tensor["dims"])
            if "optional" in tensor:
                existing["optional"] = tensor["optional"]
            return
        self._model_config[kind].append(dict(tensor))

    def set_model_transaction_policy(self, transaction_policy_dict: dict[str, Any]) -> None:
        model = self._name()
        for key in transaction_policy_dict:
            if key != "decoupled":
                raise ValueError(
                    "model transaction property in auto-complete-config function for model "
                    f"'{model}' contains property other than 'decoupled'."
                )
        policy = self._model_config.setdefault("model_transaction_policy", {})
        if "decoupled" in transaction_policy_dict:
            wanted = transaction_policy_dict["decoupled"]
            if "decoupled" in policy and policy["decoupled"] != wanted:
                raise ValueError(
                    "trying to change decoupled property in auto-complete-config for model "
                    f"'{model}', which is already set to '{policy['decoupled']}'."
                )
            policy["decoupled"] = wanted
