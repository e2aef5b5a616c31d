"""gRPC frontend: Triton's ``inference.GRPCInferenceService`` (KServe v2 + Triton extensions)
and ``grpc.health.v1.Health``.

Two layers:
- ``GrpcHandlers``: transport-independent handlers, request bytes in, response bytes out
  (``unary``) or a stream of them (``stream``). Every RPC's semantics live here: tensors from
  raw contents, typed contents or shared memory, Triton's request parameters, classification,
  decoupled streams, and Triton's status codes and messages.
- ``start_grpc``: serves the handlers with grpcio's asyncio server (used for TLS, and wherever
  the native transport is not available).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from .. import _core, sizes
from .._proto import grpc_service_pb2 as pb
from .._proto import health_pb2
from ..datatypes import DATATYPES, element_size
from ..errors import INTERNAL, INVALID_ARG, UNSUPPORTED, TritonError
from ..server import Server
from ..tracing import CallTrace, now_ns, setting_from_grpc
from . import request_parameters
from .classification import classify
from .input_errors import bytes_count_error, input_size_error, unknown_datatype_error

_log = logging.getLogger(__name__)
Tensor = _core.Tensor

SERVICE = "inference.GRPCInferenceService"
HEALTH_SERVICE = "grpc.health.v1.Health"

#: Triton status kind -> gRPC status code (as Triton maps them).
GRPC_CODES = {
    "UNKNOWN": grpc.StatusCode.UNKNOWN,
    "INTERNAL": grpc.StatusCode.INTERNAL,
    "NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "INVALID_ARG": grpc.StatusCode.INVALID_ARGUMENT,
    "UNAVAILABLE": grpc.StatusCode.UNAVAILABLE,
    "UNSUPPORTED": grpc.StatusCode.UNIMPLEMENTED,
    "ALREADY_EXISTS": grpc.StatusCode.ALREADY_EXISTS,
    "CANCELLED": grpc.StatusCode.CANCELLED,
}

#: Triton's restricted-protocol groups and the RPCs each covers.
PROTOCOL_GROUPS = {
    "health": ("ServerLive", "ServerReady", "ModelReady", "Check"),
    "metadata": ("ServerMetadata", "ModelMetadata"),
    "inference": ("ModelInfer", "ModelStreamInfer"),
    "shared-memory": (
        "SystemSharedMemoryStatus", "SystemSharedMemoryRegister", "SystemSharedMemoryUnregister",
        "CudaSharedMemoryStatus", "CudaSharedMemoryRegister", "CudaSharedMemoryUnregister",
    ),
    "model-config": ("ModelConfig",),
    "model-repository": ("RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload"),
    "statistics": ("ModelStatistics",),
    "trace": ("TraceSetting",),
    "logging": ("LogSettings",),
}  # fmt: skip

_TYPED_CONTENTS = {
    "BOOL": ("bool_contents", np.bool_),
    "INT8": ("int_contents", np.int8),
    "INT16": ("int_contents", np.int16),
    "INT32": ("int_contents", np.int32),
    "INT64": ("int64_contents", np.int64),
    "UINT8": ("uint_contents", np.uint8),
    "UINT16": ("uint_contents", np.uint16),
    "UINT32": ("uint_contents", np.uint32),
    "UINT64": ("uint64_contents", np.uint64),
    "FP32": ("fp32_contents", np.float32),
    "FP64": ("fp64_contents", np.float64),
    "BYTES": ("bytes_contents", np.object_),
}

#: The datatype Triton names for data found in each typed contents field.
_CONTENTS_TYPE = {
    "bool_contents": "BOOL",
    "int_contents": "INT32",
    "int64_contents": "INT64",
    "uint_contents": "UINT32",
    "uint64_contents": "UINT64",
    "fp32_contents": "FP32",
    "fp64_contents": "FP64",
    "bytes_contents": "BYTES",
}

SEQUENCE_START = 1
SEQUENCE_END = 2
#: ModelStreamInfer reads no more requests of a stream while this many are running or answered
#: but not yet sent (the transport then stops granting the client credit).
MAX_STREAM_PENDING = 256


@dataclass
class Restriction:
    """A restricted protocol group: its RPCs need header ``key`` with ``value``."""

    key: str
    value: str
    methods: set[str] = field(default_factory=set)


def parse_restricted_protocols(specs: Sequence[str]) -> dict[str, Restriction]:
    """Triton's ``--grpc-restricted-protocol=<group>[,<group>...]:<key>=<value>`` flags, as
    method name -> restriction."""
    out: dict[str, Restriction] = {}
    for spec in specs:
        groups, sep, header = spec.partition(":")
        key, eq, value = header.partition("=")
        if not sep or not eq or not key:
            raise TritonError(
                f"invalid restricted protocol '{spec}': expected "
                "'<protocol>[,<protocol>...]:<header key>=<header value>'",
                INVALID_ARG,
            )
        restriction = Restriction(key.strip().lower(), value.strip())
        for group in groups.split(","):
            group = group.strip()
            if group not in PROTOCOL_GROUPS:
                raise TritonError(
                    f"invalid restricted protocol group '{group}': expected one of "
                    + ", ".join(PROTOCOL_GROUPS),
                    INVALID_ARG,
                )
            for method in PROTOCOL_GROUPS[group]:
                if method in out:
                    raise TritonError(f"protocol group '{group}' is restricted twice", INVALID_ARG)
                out[method] = restriction
                restriction.methods.add(method)
    return out


def _param(params: Any, name: str) -> Any:
    """The value of a request parameter (InferParameter oneof), or None."""
    if name not in params:
        return None
    p = params[name]
    kind = p.WhichOneof("parameter_choice")
    return getattr(p, kind) if kind else None


def _typed_param(params: Any, name: str, kinds: tuple[str, ...], expected: str = "") -> Any:
    """A reserved parameter's value (None when absent), refused with Triton's text when it has
    another type than ``kinds``."""
    if name not in params:
        return None
    kind = params[name].WhichOneof("parameter_choice")
    if kind not in kinds:
        raise TritonError(
            f"invalid value type for '{name}' parameter, expected "
            f"{expected or ' or '.join(kinds)}.",
            INVALID_ARG,
        )
    return getattr(params[name], kind)


def _scheduling_parameters(params: Any) -> dict[str, Any]:
    """Server.submit arguments from the parameters Triton consumes, checked as Triton checks
    them (types; a negative priority); out-of-range values are clamped or wrapped as in C++."""
    flags = 0
    if _typed_param(params, "sequence_start", ("bool_param",)):
        flags |= SEQUENCE_START
    if _typed_param(params, "sequence_end", ("bool_param",)):
        flags |= SEQUENCE_END
    seq = _typed_param(params, "sequence_id", ("int64_param", "string_param", "uint64_param"),
                       "int64_param or string_param")  # fmt: skip
    if isinstance(seq, str):
        corr_id, corr_str = 0, seq
    else:
        corr_id, corr_str = (seq or 0) % 2**64, ""  # a negative int64 as Triton's uint64 cast
    priority = _typed_param(params, "priority", ("int64_param", "uint64_param")) or 0
    if priority < 0:
        raise TritonError("invalid value for 'priority', expected value >= 0.", INVALID_ARG)
    timeout = _typed_param(params, "timeout", ("int64_param",)) or 0
    _typed_param(params, "triton_enable_empty_final_response", ("bool_param",))  # checked
    return {
        "priority": min(priority, 2**64 - 1),
        "timeout_us": max(timeout, 0),
        "correlation_id": corr_id,
        "correlation_id_str": corr_str,
        "flags": flags,
    }


def _custom_parameters(params: Any) -> dict[str, Any]:
    """A ModelInferRequest's own parameters for the model, refused as Triton refuses them."""
    out: dict[str, Any] = {}
    for key in params:
        if not request_parameters.is_custom(key):
            continue
        kind = params[key].WhichOneof("parameter_choice")
        if kind not in ("bool_param", "int64_param", "string_param", "double_param"):
            raise TritonError(
                f"invalid value type for '{key}' parameter, expected int64_param, bool_param, "
                "or string_param.",
                INVALID_ARG,
            )
        out[key] = getattr(params[key], kind)
    return out


def _version(text: str) -> int | None:
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise TritonError(
            f"failed to get model version from specified version string '{text}' (details: "
            "stol), version should be an integral value > 0",
            INVALID_ARG,
        ) from None


def _check_byte_size(config: Any, request_id: str, tensor: Any, shape: list[int], got: int) -> None:
    """Triton's size-mismatch error unless ``got`` bytes are exactly a fixed-size tensor's size
    (computed exactly: [2**62] FP32 is 2**64 bytes, not 0). BYTES are checked by the core."""
    size = element_size(tensor.datatype) if tensor.datatype in DATATYPES else 0
    if size and all(d >= 0 for d in shape):
        try:
            expected = sizes.byte_size(tensor.datatype, shape)
        except TritonError as e:  # [0, 2**62]: no elements, and still no array can have it
            raise TritonError(
                f"input '{tensor.name}' for model '{config.name}': {e.message}", e.status
            ) from None
        if got != expected:
            raise input_size_error(
                config, request_id, tensor.name, tensor.datatype, shape, expected, got
            )


def _raw_tensor(config: Any, request_id: str, tensor: Any, shape: list[int], raw: bytes) -> Any:
    """A Tensor over raw input bytes, with Triton's error texts naming the input and model."""
    model = config.name
    _check_byte_size(config, request_id, tensor, shape, len(raw))
    try:
        return Tensor.from_buffer(tensor.datatype, shape, raw)
    except TritonError as e:
        if tensor.datatype == "BYTES":
            counted = bytes_count_error(config, request_id, tensor.name, shape, raw)
            if counted is not None:
                raise counted from None
        raise TritonError(f"input '{tensor.name}' for model '{model}': {e.message}", e.status) from e


class GrpcHandlers:
    """Every RPC of the service, transport-independent: bytes in, bytes out."""

    def __init__(
        self,
        server: Server,
        restricted: dict[str, Restriction] | None = None,
        header_forward_pattern: str | None = None,
    ) -> None:
        self.server = server
        self.restricted = restricted or {}
        # --grpc-header-forward-pattern: matching call metadata becomes request parameters of
        # ModelInfer / ModelStreamInfer requests (the native transport then forwards every
        # ModelInfer here: see start_native_grpc).
        self.header_forward = request_parameters.header_pattern(
            header_forward_pattern, "--grpc-header-forward-pattern"
        )
        self._unary: dict[str, tuple[type[Message], Callable[[Any], Awaitable[Message]]]] = {
            "ServerLive": (pb.ServerLiveRequest, self.server_live),
            "ServerReady": (pb.ServerReadyRequest, self.server_ready),
            "ModelReady": (pb.ModelReadyRequest, self.model_ready),
            "ServerMetadata": (pb.ServerMetadataRequest, self.server_metadata),
            "ModelMetadata": (pb.ModelMetadataRequest, self.model_metadata),
            "ModelInfer": (pb.ModelInferRequest, self.model_infer),
            "ModelConfig": (pb.ModelConfigRequest, self.model_config),
            "ModelStatistics": (pb.ModelStatisticsRequest, self.model_statistics),
            "RepositoryIndex": (pb.RepositoryIndexRequest, self.repository_index),
            "RepositoryModelLoad": (pb.RepositoryModelLoadRequest, self.repository_model_load),
            "RepositoryModelUnload": (pb.RepositoryModelUnloadRequest, self.repository_model_unload),
            "SystemSharedMemoryStatus": (pb.SystemSharedMemoryStatusRequest, self.shm_status),
            "SystemSharedMemoryRegister": (pb.SystemSharedMemoryRegisterRequest, self.shm_register),
            "SystemSharedMemoryUnregister": (pb.SystemSharedMemoryUnregisterRequest, self.shm_unregister),
            "CudaSharedMemoryStatus": (pb.CudaSharedMemoryStatusRequest, self.cuda_shm_status),
            "CudaSharedMemoryRegister": (pb.CudaSharedMemoryRegisterRequest, self.cuda_shm_register),
            "CudaSharedMemoryUnregister": (pb.CudaSharedMemoryUnregisterRequest, self.cuda_shm_unregister),
            "TraceSetting": (pb.TraceSettingRequest, self.trace_setting),
            "LogSettings": (pb.LogSettingsRequest, self.log_settings_rpc),
            "Check": (health_pb2.HealthCheckRequest, self.health_check),
        }  # fmt: skip

    # ---- transport entry points ----------------------------------------------------------------

    def methods(self) -> list[str]:
        return [*self._unary, "ModelStreamInfer"]

    def check_access(self, method: str, metadata: Sequence[tuple[str, Any]]) -> None:
        """UNAVAILABLE unless a restricted method carries its header."""
        restriction = self.restricted.get(method)
        if restriction is None:
            return
        for key, value in metadata:
            if key.lower() == restriction.key and str(value) == restriction.value:
                return
        raise TritonError(
            f"This protocol is restricted, expecting header '{restriction.key}'", "UNAVAILABLE"
        )

    async def unary(
        self,
        method: str,
        request: bytes,
        metadata: Sequence[tuple[str, Any]],
        call_trace: CallTrace | None = None,
    ) -> bytes:
        """One unary call. ``call_trace``: the transport's part in tracing a ModelInfer call
        (when it arrived; it records the send and releases the trace the handler sets on it)."""
        self.check_access(method, metadata)
        entry = self._unary.get(method)
        if entry is None:
            raise TritonError(f"unknown method '{method}'", UNSUPPORTED)
        message_type, handler = entry
        try:
            message = message_type.FromString(request)
        except DecodeError as e:
            raise TritonError(f"malformed {message_type.__name__}: {e}", INVALID_ARG) from e
        if method == "ModelInfer":
            response = await self.model_infer(message, metadata, call_trace)
        else:
            response = await handler(message)
        return response.SerializeToString()  # type: ignore[no-any-return]

    def _forwarded(self, metadata: Sequence[tuple[str, Any]]) -> dict[str, str]:
        """The call's metadata that --grpc-header-forward-pattern forwards to the model."""
        return request_parameters.forwarded_headers(self.header_forward, metadata, grpc=True)

    async def stream(
        self, method: str, requests: AsyncIterator[bytes], metadata: Sequence[tuple[str, Any]]
    ) -> AsyncIterator[bytes]:
        """ModelStreamInfer: responses (or per-response errors) as they complete. With the
        ``triton_grpc_error: true`` header, the first error ends the stream with its status
        instead (Triton's behaviour for that header)."""
        self.check_access(method, metadata)
        if method != "ModelStreamInfer":
            raise TritonError(f"unknown streaming method '{method}'", UNSUPPORTED)
        forwarded = self._forwarded(metadata)  # the stream's headers, for each of its requests
        grpc_error = _grpc_error_header(metadata)
        # (response, its request's trace or None); (None, trace): that request is done, its
        # trace can be released once what was queued before it is sent; (error, trace): with
        # triton_grpc_error, the error that ends the stream.
        out: asyncio.Queue[tuple[bytes | TritonError | None, Any] | None] = asyncio.Queue()
        pending = 0
        reading = True
        closed = False
        tasks: set[asyncio.Task[None]] = set()  # referenced until done
        room = asyncio.Event()  # set when a request finished or a response was sent
        tracing = self.server.tracing

        def put_error(
            message: str, request: Any = None, trace: Any = None, status: str = INTERNAL
        ) -> None:
            if grpc_error:
                out.put_nowait((TritonError(message, status), trace))
                return
            resp = pb.ModelStreamInferResponse(error_message=message)
            if request is not None:
                resp.infer_response.model_name = request.model_name
                resp.infer_response.model_version = request.model_version
                resp.infer_response.id = request.id
            out.put_nowait((resp.SerializeToString(), trace))

        def finished() -> None:
            nonlocal pending
            pending -= 1
            room.set()
            if not reading and pending == 0:
                out.put_nowait(None)

        async def one(request: Any, received_ns: int) -> None:
            trace = tracing.sample(request.model_name, metadata)
            if trace is not None:
                trace.capture("GRPC_WAITREAD_START", received_ns)
                trace.capture("GRPC_WAITREAD_END")
            try:
                async for resp in self._infer_responses(request, trace, forwarded):
                    message = pb.ModelStreamInferResponse(infer_response=resp).SerializeToString()
                    out.put_nowait((message, trace))
            except TritonError as e:
                put_error(e.message, request, trace, e.status)
            except Exception as e:  # noqa: BLE001 - a bug must not leave a request unanswered
                _log.exception("ModelStreamInfer request failed")
                put_error(f"{type(e).__name__}: {e}", request, trace)
            finally:
                if trace is not None:
                    if closed:
                        trace.release()
                    else:
                        out.put_nowait((None, trace))
                finished()

        async def read() -> None:
            nonlocal reading, pending
            try:
                async for raw in requests:
                    # Backpressure: with MAX_STREAM_PENDING requests running or answered but
                    # not yet sent, read no more (the transport then stops granting credit).
                    while pending + out.qsize() >= MAX_STREAM_PENDING:
                        room.clear()
                        await room.wait()
                    try:
                        request = pb.ModelInferRequest.FromString(raw)
                    except DecodeError as e:
                        put_error(f"malformed ModelInferRequest: {e}", status=INVALID_ARG)
                        continue
                    pending += 1
                    # Tasks start in creation order and queue their request before their first
                    # await, so requests reach the scheduler in arrival order (sequences need it).
                    task = asyncio.ensure_future(one(request, now_ns()))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
            finally:
                reading = False
                if pending == 0:
                    out.put_nowait(None)

        reader = asyncio.ensure_future(read())
        try:
            while (item := await out.get()) is not None:
                room.set()
                message, trace = item
                if message is None:  # its request is done and its responses were sent
                    trace.release()
                    continue
                if isinstance(message, TritonError):  # triton_grpc_error: the stream ends
                    raise message
                if trace is None:
                    yield message
                    continue
                start = now_ns()
                yield message
                trace.capture("GRPC_SEND_START", start)
                trace.capture("GRPC_SEND_END")
        finally:
            closed = True
            reader.cancel()
            for task in list(tasks):  # the stream is gone: its requests are cancelled
                task.cancel()
            while not out.empty():  # the traces of requests whose release was still queued
                item = out.get_nowait()
                if item is not None and item[0] is None:
                    item[1].release()

    # ---- health and metadata ---------------------------------------------------------------

    async def server_live(self, request: Any) -> Message:
        return pb.ServerLiveResponse(live=self.server.is_live())

    async def server_ready(self, request: Any) -> Message:
        return pb.ServerReadyResponse(ready=self.server.is_ready())

    async def model_ready(self, request: Any) -> Message:
        return pb.ModelReadyResponse(
            ready=self.server.model_ready(request.name, _version(request.version))
        )

    async def health_check(self, request: Any) -> Message:
        status = health_pb2.HealthCheckResponse.SERVING if self.server.is_ready() else (
            health_pb2.HealthCheckResponse.NOT_SERVING
        )
        return health_pb2.HealthCheckResponse(status=status)

    async def server_metadata(self, request: Any) -> Message:
        return json_format.ParseDict(self.server.metadata(), pb.ServerMetadataResponse())

    async def model_metadata(self, request: Any) -> Message:
        meta = self.server.model_metadata(request.name, _version(request.version))
        return json_format.ParseDict(meta, pb.ModelMetadataResponse())

    async def model_config(self, request: Any) -> Message:
        config = self.server.model_config(request.name, _version(request.version))
        return pb.ModelConfigResponse(config=config)

    async def model_statistics(self, request: Any) -> Message:
        stats = self.server.statistics(request.name, _version(request.version))
        response = pb.ModelStatisticsResponse()
        for s in stats:
            json_format.ParseDict(s, response.model_stats.add(), ignore_unknown_fields=True)
        return response

    # ---- repository --------------------------------------------------------------------------

    async def repository_index(self, request: Any) -> Message:
        response = pb.RepositoryIndexResponse()
        loop = asyncio.get_running_loop()  # the index scans the repository: off the loop
        for m in await loop.run_in_executor(None, self.server.repository_index, request.ready):
            response.models.add(**m)
        return response

    async def repository_model_load(self, request: Any) -> Message:
        config = None
        files: dict[str, bytes] = {}
        for key, p in request.parameters.items():
            if key == "config":
                config = p.string_param
            elif key.startswith("file:"):
                files[key] = p.bytes_param
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(
            None, self.server.load_model, request.model_name, config, files or None
        )
        return pb.RepositoryModelLoadResponse()

    async def repository_model_unload(self, request: Any) -> Message:
        dependents = False
        for key, p in request.parameters.items():
            if key == "unload_dependents":
                if p.WhichOneof("parameter_choice") != "bool_param":
                    raise TritonError(
                        "Unable to parse 'unload_dependents': expected a boolean", INVALID_ARG
                    )
                dependents = p.bool_param
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(
            None,
            functools.partial(
                self.server.unload_model, request.model_name, unload_dependents=dependents
            ),
        )
        return pb.RepositoryModelUnloadResponse()

    # ---- shared memory -----------------------------------------------------------------------

    def _shm(self) -> Any:
        registry = getattr(self.server, "system_shared_memory", None)
        if registry is None:
            raise TritonError("system shared memory is not available in this server", UNSUPPORTED)
        return registry

    async def shm_status(self, request: Any) -> Message:
        response = pb.SystemSharedMemoryStatusResponse()
        for region in self._shm().status(request.name or None):
            response.regions[region["name"]].CopyFrom(
                pb.SystemSharedMemoryStatusResponse.RegionStatus(**region)
            )
        return response

    async def shm_register(self, request: Any) -> Message:
        self._shm().register(request.name, request.key, request.offset, request.byte_size)
        return pb.SystemSharedMemoryRegisterResponse()

    async def shm_unregister(self, request: Any) -> Message:
        self._shm().unregister(request.name or None)
        return pb.SystemSharedMemoryUnregisterResponse()

    async def cuda_shm_status(self, request: Any) -> Message:
        response = pb.CudaSharedMemoryStatusResponse()
        for region in self.server.cuda_shared_memory.status(request.name or None):
            response.regions[region["name"]].CopyFrom(
                pb.CudaSharedMemoryStatusResponse.RegionStatus(**region)
            )
        return response

    async def cuda_shm_register(self, request: Any) -> Message:
        self.server.cuda_shared_memory.register(
            request.name, request.raw_handle, request.device_id, request.byte_size
        )
        return pb.CudaSharedMemoryRegisterResponse()

    async def cuda_shm_unregister(self, request: Any) -> Message:
        self.server.cuda_shared_memory.unregister(request.name or None)
        return pb.CudaSharedMemoryUnregisterResponse()

    # ---- trace and logging (shared with the other frontends) -------------------------------

    async def trace_setting(self, request: Any) -> Message:
        tracing = self.server.tracing
        model = request.model_name or None
        if model is not None and not self.server.model_ready(model, None):
            raise TritonError(f"Request for unknown model : {model}", INVALID_ARG)
        changes = {key: list(value.value) for key, value in request.settings.items()}
        if changes:
            current = tracing.update(setting_from_grpc(changes), model)
        else:
            current = tracing.settings(model)
        response = pb.TraceSettingResponse()
        for key, v in current.items():
            response.settings[key].value.extend([str(x) for x in v] if isinstance(v, list) else [str(v)])
        return response

    async def log_settings_rpc(self, request: Any) -> Message:
        settings = self.server.protocol_settings
        changes = {}
        for key, value in request.settings.items():
            kind = value.WhichOneof("parameter_choice")
            if kind is not None:
                changes[key] = getattr(value, kind)
        current = settings.update_log(changes) if changes else settings.log()
        response = pb.LogSettingsResponse()
        for key, v in current.items():
            setting = response.settings[key]
            if isinstance(v, bool):
                setting.bool_param = v
            elif isinstance(v, int):
                setting.uint32_param = v
            else:
                setting.string_param = str(v)
        return response

    # ---- inference ---------------------------------------------------------------------------

    async def model_infer(
        self,
        request: Any,
        metadata: Sequence[tuple[str, Any]] = (),
        call_trace: CallTrace | None = None,
    ) -> Message:
        forwarded = self._forwarded(metadata)  # --grpc-header-forward-pattern
        loaded = self.server.get_model(request.model_name, _version(request.model_version))
        if loaded.config.model_transaction_policy.decoupled:  # as Triton: streams only
            raise TritonError(
                "ModelInfer RPC doesn't support models with decoupled transaction policy",
                UNSUPPORTED,
            )
        trace = self.server.tracing.sample(request.model_name, metadata)
        if trace is not None:
            trace.capture("GRPC_WAITREAD_START", call_trace.received_ns if call_trace else None)
            trace.capture("GRPC_WAITREAD_END")
            if call_trace is not None:  # the transport records the send, then releases it
                call_trace.group = trace
        try:
            response = None
            async for response in self._infer_responses(request, trace, forwarded):
                pass
            assert response is not None  # a model that is not decoupled answers once
            return response
        finally:
            if trace is not None and call_trace is None:
                trace.release()

    async def _infer_responses(
        self, request: Any, trace: Any = None, forwarded: dict[str, str] | None = None
    ) -> AsyncIterator[Any]:
        """The responses to one request: one, or many for a decoupled model. ``trace``: the
        request's trace (INFER_RESPONSE_COMPLETE is recorded for each response). ``forwarded``:
        the call's headers that become request parameters (--grpc-header-forward-pattern)."""
        server = self.server
        version = _version(request.model_version)
        loaded = server.get_model(request.model_name, version)
        inputs = self._input_tensors(request, loaded.config)
        regions = _shm_regions(request)
        registry = self._shm() if regions else None
        if registry is not None:  # in use (not unregistered) until the responses are written
            registry.acquire(regions)
        responses = self._infer_submit(request, loaded, inputs, trace, forwarded)
        try:
            async for response in responses:
                yield response
        finally:
            await responses.aclose()  # now, so that a request the caller left is cancelled now
            if registry is not None:
                registry.release(regions)

    async def _infer_submit(
        self, request: Any, loaded: Any, inputs: list[tuple[str, Any]], trace: Any,
        forwarded: dict[str, str] | None,
    ) -> AsyncIterator[Any]:
        server = self.server
        version = _version(request.model_version)
        params = request.parameters
        outputs = [o.name for o in request.outputs] or None
        kwargs = dict(request_id=request.id, **_scheduling_parameters(params))
        kwargs["parameters"] = request_parameters.with_forwarded(
            _custom_parameters(params), forwarded or {}
        )
        decoupled = loaded.config.model_transaction_policy.decoupled
        if not decoupled:
            tensors = await server.submit(
                request.model_name, inputs, outputs, version, trace=trace, **kwargs
            )
            if trace is not None:
                trace.capture("INFER_RESPONSE_COMPLETE")
            yield self._response(request, loaded, tensors)
            return
        queue: asyncio.Queue[tuple[Any, Any, bool]] = asyncio.Queue()
        handle = server.submit_stream(
            request.model_name, inputs, lambda e, o, f: queue.put_nowait((e, o, f)),
            outputs, version, trace=trace, **kwargs,
        )  # fmt: skip
        enable_final = bool(
            _typed_param(params, "triton_enable_empty_final_response", ("bool_param",))
        )
        final = False
        try:
            async for resp in self._decoupled_responses(request, loaded, queue, enable_final):
                if trace is not None:
                    trace.capture("INFER_RESPONSE_COMPLETE")
                yield resp
            final = True
        finally:
            if not final:  # the call ended first (cancelled, client gone): so does the request
                handle.cancel()

    async def _decoupled_responses(
        self, request: Any, loaded: Any, queue: asyncio.Queue[tuple[Any, Any, bool]],
        enable_final: bool,
    ) -> AsyncIterator[Any]:
        while True:
            error, tensors, final = await queue.get()
            if error is not None:
                raise error
            if tensors or not final:
                resp = self._response(request, loaded, tensors)
                if enable_final:
                    resp.parameters["triton_final_response"].bool_param = final
                yield resp
            elif enable_final:
                resp = pb.ModelInferResponse(
                    model_name=request.model_name, model_version=str(loaded.version), id=request.id
                )
                resp.parameters["triton_final_response"].bool_param = True
                yield resp
            if final:
                return

    def _input_tensors(self, request: Any, config: Any) -> list[tuple[str, Any]]:
        raw = request.raw_input_contents
        if raw and any(i.HasField("contents") for i in request.inputs):
            named = next(i.name for i in request.inputs if i.HasField("contents"))
            raise TritonError(
                "contents field must not be specified when using raw_input_contents for "
                f"'{named}' for model '{request.model_name}'",
                INVALID_ARG,
            )
        tensors: list[tuple[str, Any]] = []
        next_raw = 0
        for tensor in request.inputs:
            shape = list(tensor.shape)
            if tensor.datatype not in DATATYPES:
                raise unknown_datatype_error(config, request.id, tensor.name)
            region = _param(tensor.parameters, "shared_memory_region")
            if region is not None:
                offset = int(_param(tensor.parameters, "shared_memory_offset") or 0)
                size = _param(tensor.parameters, "shared_memory_byte_size")
                if size is not None:  # the window first, then its size against the shape
                    self._shm().check_window(region, offset, size)
                    _check_byte_size(config, request.id, tensor, shape, int(size))
                value = self._shm().input_tensor(region, offset, size, tensor.datatype, shape)
            elif raw:
                if next_raw >= len(raw):
                    raise TritonError(
                        f"unable to find data for input tensor '{tensor.name}' for model "
                        f"'{request.model_name}' in request.",
                        INVALID_ARG,
                    )
                value = _raw_tensor(config, request.id, tensor, shape, raw[next_raw])
                next_raw += 1
            else:
                value = self._typed_contents(config, request.id, tensor, shape)
            tensors.append((tensor.name, value))
        if raw and next_raw != len(raw):
            raise TritonError(
                f"got {len(raw)} raw input contents but only {next_raw} inputs use them for "
                f"model '{request.model_name}'",
                INVALID_ARG,
            )
        return tensors

    @staticmethod
    def _typed_contents(config: Any, request_id: str, tensor: Any, shape: list[int]) -> Any:
        model = config.name
        entry = _TYPED_CONTENTS.get(tensor.datatype)
        if entry is None:
            raise TritonError(
                f"unable to find typed contents for datatype '{tensor.datatype}' of input "
                f"'{tensor.name}' for model '{model}': send {tensor.datatype} tensors as raw "
                "contents",
                INVALID_ARG,
            )
        field_name, dtype = entry
        try:
            count = sizes.element_count(shape)  # exact: [2**32, 2**32] is not 0 elements
        except TritonError as e:
            raise TritonError(
                f"input '{tensor.name}' for model '{model}': {e.message}", e.status
            ) from None
        values = list(getattr(tensor.contents, field_name))
        if not values and count:
            for other, given in _CONTENTS_TYPE.items():
                if other != field_name and getattr(tensor.contents, other):
                    raise TritonError(
                        f"unexpected explicit tensor data for input tensor '{tensor.name}' for "
                        f"model '{model}' of type '{given}', expected datatype "
                        f"'{tensor.datatype}'",
                        INVALID_ARG,
                    )
        if len(values) != count and tensor.datatype != "BYTES":
            size = element_size(tensor.datatype)
            raise input_size_error(
                config, request_id, tensor.name, tensor.datatype, shape, count * size,
                len(values) * size,
            )  # fmt: skip
        if len(values) != count:
            raise TritonError(
                f"unexpected number of elements in contents of input '{tensor.name}' for model "
                f"'{model}': expected {count} for shape {shape}, got {len(values)}",
                INVALID_ARG,
            )
        return np.array(values, dtype=dtype).reshape(shape)

    def _response(self, request: Any, loaded: Any, tensors: Sequence[tuple[str, Any]]) -> Any:
        resp = pb.ModelInferResponse(
            model_name=request.model_name, model_version=str(loaded.version), id=request.id
        )
        wanted = {o.name: o for o in request.outputs}
        batched = loaded.config.max_batch_size > 0
        for name, t in tensors:
            spec = wanted.get(name)
            datatype, shape = t.datatype, list(t.shape)
            k = _param(spec.parameters, "classification") if spec is not None else None
            if k:
                labels = classify(t.numpy(), t.datatype, int(k), batched, loaded.labels(name))
                t = Tensor.from_numpy(labels)
                datatype, shape = "BYTES", list(labels.shape)
            resp.outputs.add(name=name, datatype=datatype, shape=shape)
            region = _param(spec.parameters, "shared_memory_region") if spec is not None else None
            if region is not None:
                offset = int(_param(spec.parameters, "shared_memory_offset") or 0)
                size = int(_param(spec.parameters, "shared_memory_byte_size") or 0)
                self._shm().write_output(region, offset, size, t, output=name)
                # As Triton: an empty entry keeps raw_output_contents[i] aligned with outputs[i]
                # (clients, perf_analyzer among them, index one by the other).
                resp.raw_output_contents.append(b"")
            else:
                resp.raw_output_contents.append(t.tobytes())
        return resp


def _shm_regions(request: Any) -> list[str]:
    """The shared-memory regions a ModelInferRequest names, inputs and outputs."""
    regions: list[str] = []
    for entry in (*request.inputs, *request.outputs):
        region = _param(entry.parameters, "shared_memory_region")
        if region is not None:
            regions.append(region)
    return regions


# ---- grpcio transport ----------------------------------------------------------------------


def _grpc_error_header(metadata: Sequence[tuple[str, Any]]) -> bool:
    """Whether a stream's metadata asks for model errors as the stream's status
    (``triton_grpc_error: true``, as Triton reads it)."""
    for key, value in metadata:
        if key.lower() == "triton_grpc_error":
            text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
            return text == "true"
    return False


def _abort_code(error: TritonError) -> grpc.StatusCode:
    return GRPC_CODES.get(error.status, grpc.StatusCode.UNKNOWN)


def _unary_handler(
    handlers: GrpcHandlers, method: str, compressed: bool = False
) -> grpc.RpcMethodHandler:
    async def call(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        if not compressed:  # the server's compression is for inference responses only
            context.disable_next_message_compression()
        metadata = context.invocation_metadata() or ()
        try:
            if method == "ModelInfer" and handlers.server.tracing.any_enabled:
                call_trace = CallTrace()
                try:
                    response = await handlers.unary(method, request, metadata, call_trace)
                except BaseException:
                    call_trace.release()
                    raise
                call_trace.sent(now_ns())  # handed to grpcio, which sends it after we return
                return response
            return await handlers.unary(method, request, metadata)
        except TritonError as e:
            code, message = _abort_code(e), e.message
        except Exception as e:  # noqa: BLE001 - a handler bug: answered as the native transport does
            _log.exception("gRPC handler for %s failed", method)
            code, message = grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}"
        await context.abort(code, message)
        raise AssertionError("unreachable: abort raises")

    return grpc.unary_unary_rpc_method_handler(call)


def _stream_handler(handlers: GrpcHandlers, method: str) -> grpc.RpcMethodHandler:
    async def call(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> Any:
        try:
            async for item in handlers.stream(method, requests, context.invocation_metadata() or ()):
                yield item
        except TritonError as e:
            await context.abort(_abort_code(e), e.message)

    return grpc.stream_stream_rpc_method_handler(call)


#: --grpc-infer-response-compression-level -> the algorithm gRPC core picks at that level for a
#: client that accepts gzip and deflate (as tritonclient does): of [gzip, deflate], low takes the
#: first, medium the middle, high the last. The native transport applies the rule per call to
#: what the client accepts; on grpcio's, ModelInfer/ModelStreamInfer calls get this algorithm.
RESPONSE_COMPRESSION = {"none": "identity", "low": "gzip", "medium": "deflate", "high": "deflate"}


@dataclass
class GrpcOptions:
    """Triton's --grpc-* flags, honoured by both transports (grpcio's and the native one)."""

    keepalive_time_ms: int = 7_200_000
    keepalive_timeout_ms: int = 20_000
    keepalive_permit_without_calls: bool = False
    http2_max_pings_without_data: int = 2
    http2_min_recv_ping_interval_without_data_ms: int = 300_000
    http2_max_ping_strikes: int = 2
    max_connection_age_ms: int | None = None
    max_connection_age_grace_ms: int | None = None
    infer_response_compression_level: str = "none"
    # Transport budgets (native transport; max_connection_idle_ms also for grpcio's). 0: none.
    max_connections: int = 4096
    http2_preface_timeout_ms: int = 10_000
    max_connection_idle_ms: int | None = 600_000
    max_connection_memory: int = 256 << 20
    http2_max_control_frames_per_second: int = 1000
    http2_max_resets_per_second: int = 500
    use_ssl: bool = False
    use_ssl_mutual: bool = False
    server_cert: str = ""
    server_key: str = ""
    root_cert: str = ""

    def channel_options(self) -> list[tuple[str, Any]]:
        opts: list[tuple[str, Any]] = [
            ("grpc.max_send_message_length", 2**31 - 1),
            ("grpc.max_receive_message_length", 2**31 - 1),
            ("grpc.keepalive_time_ms", self.keepalive_time_ms),
            ("grpc.keepalive_timeout_ms", self.keepalive_timeout_ms),
            ("grpc.keepalive_permit_without_calls", int(self.keepalive_permit_without_calls)),
            ("grpc.http2.max_pings_without_data", self.http2_max_pings_without_data),
            (
                "grpc.http2.min_ping_interval_without_data_ms",
                self.http2_min_recv_ping_interval_without_data_ms,
            ),
            ("grpc.http2.max_ping_strikes", self.http2_max_ping_strikes),
        ]
        if self.max_connection_age_ms is not None:
            opts.append(("grpc.max_connection_age_ms", self.max_connection_age_ms))
        if self.max_connection_age_grace_ms is not None:
            opts.append(("grpc.max_connection_age_grace_ms", self.max_connection_age_grace_ms))
        if self.max_connection_idle_ms:
            opts.append(("grpc.max_connection_idle_ms", self.max_connection_idle_ms))
        return opts

    def credentials(self) -> grpc.ServerCredentials | None:
        if not self.use_ssl:
            return None

        def read(path: str, what: str) -> bytes:
            try:
                with open(path, "rb") as f:
                    return f.read()
            except OSError as e:
                raise TritonError(f"unable to read the gRPC {what} '{path}': {e}", INVALID_ARG)

        key = read(self.server_key, "server key (--grpc-server-key)")
        cert = read(self.server_cert, "server certificate (--grpc-server-cert)")
        root = read(self.root_cert, "root certificate (--grpc-root-cert)") if self.root_cert else None
        return grpc.ssl_server_credentials(
            [(key, cert)], root_certificates=root, require_client_auth=self.use_ssl_mutual
        )


class GrpcFrontend:
    """A running gRPC endpoint."""

    def __init__(self, server: grpc.aio.Server, port: int) -> None:
        self._server = server
        self.port = port

    async def stop(self, grace_s: float | None = 5.0) -> None:
        await self._server.stop(grace_s)


async def start_grpc(
    server: Server,
    host: str = "0.0.0.0",
    port: int = 8001,
    *,
    options: GrpcOptions | None = None,
    restricted_protocols: Sequence[str] = (),
    header_forward_pattern: str | None = None,
) -> GrpcFrontend:
    """Serve ``server`` over gRPC on the running event loop (grpcio asyncio transport).
    ``header_forward_pattern``: Triton's --grpc-header-forward-pattern."""
    options = options or GrpcOptions()
    handlers = GrpcHandlers(
        server, parse_restricted_protocols(restricted_protocols), header_forward_pattern
    )
    # As Triton, only inference responses are compressed: grpcio's aio server ignores a call's
    # set_compression(), so the server compresses and the other methods' messages opt out.
    compression = {
        "identity": grpc.Compression.NoCompression,
        "deflate": grpc.Compression.Deflate,
        "gzip": grpc.Compression.Gzip,
    }[RESPONSE_COMPRESSION.get(options.infer_response_compression_level, "identity")]
    grpc_server = grpc.aio.server(options=options.channel_options(), compression=compression)
    methods = {
        m: _unary_handler(handlers, m, compressed=m == "ModelInfer")
        for m in handlers.methods()
        if m != "Check"
    }
    methods["ModelStreamInfer"] = _stream_handler(handlers, "ModelStreamInfer")
    grpc_server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(SERVICE, methods),
            grpc.method_handlers_generic_handler(
                HEALTH_SERVICE, {"Check": _unary_handler(handlers, "Check")}
            ),
        )
    )
    address = f"{host}:{port}"
    credentials = options.credentials()
    bound = (
        grpc_server.add_secure_port(address, credentials)
        if credentials is not None
        else grpc_server.add_insecure_port(address)
    )
    if bound == 0:
        raise TritonError(f"unable to bind the gRPC endpoint to {address}", "UNAVAILABLE")
    await grpc_server.start()
    return GrpcFrontend(grpc_server, bound)


__all__ = [
    "GRPC_CODES",
    "RESPONSE_COMPRESSION",
    "GrpcFrontend",
    "GrpcHandlers",
    "GrpcOptions",
    "start_grpc",
]
