"""Native gRPC transport: HTTP/2 and gRPC framing in C++ (``_core.GrpcServer``), with the
``ModelInfer`` fast path served there too and every other call forwarded to Python handlers.

- ``ModelInfer`` for a model registered with the core (every non-decoupled model the Server
  serves, kept in step through the Server's model listeners) is decoded in C++ into zero-copy
  tensor views, queued on the model's scheduler and answered from C++: no Python, no GIL.
  Requests that use what the fast path leaves out (typed ``contents``, shared memory,
  classification, unusual parameters, models it does not hold) are forwarded unchanged, so
  Python answers them exactly as the grpcio transport does.
- Every other RPC (and ``grpc.health.v1.Health/Check``) is forwarded: the core posts call events
  that this module drains on the event loop (one wakeup and one GIL acquisition per batch of
  events) and hands to a handlers object with the interface of ``frontends.grpc.GrpcHandlers``::

      async def unary(method: str, request: bytes, metadata) -> bytes   # raises TritonError
      def stream(method: str, requests: AsyncIterator[bytes], metadata) -> AsyncIterator[bytes]

  While tracing is on for some model (``Server.tracing``), ModelInfer calls also get
  ``call_trace=`` (a ``tracing.CallTrace``: when the call arrived; the transport records the
  send on the trace the handler sets there, then releases it). A model is served by the fast
  path only while tracing is off for it: traced requests always reach Python.

Triton's ``--grpc-*`` transport flags (``frontends.grpc.GrpcOptions``) are honoured in C++ with
gRPC core's server semantics: keepalive pings (and closing connections that leave them
unanswered), policing of the client's pings (GOAWAY ``too_many_pings``), the maximum connection
age with its grace period, and response compression of ModelInfer / ModelStreamInfer for
clients that accept it (gzip and deflate need zlib at build time; requests compressed with them
are accepted too). ``--grpc-http2-max-pings-without-data`` is accepted and, as in gRPC core's
servers (and so Triton), does not throttle the server's keepalive pings.

Budgets against hostile clients (README "The server command"): ``--grpc-max-connections``,
``--grpc-http2-preface-timeout``, ``--grpc-max-connection-idle``,
``--grpc-max-connection-memory``, ``--grpc-http2-max-control-frames-per-second`` and
``--grpc-http2-max-resets-per-second``; floods end with GOAWAY ``ENHANCE_YOUR_CALM``.

Plain TCP only: there is no TLS here. Use ``frontends.grpc.start_grpc`` (grpcio) when TLS is
requested.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from .. import _core
from ..errors import TritonError
from ..tracing import CallTrace, now_ns

if TYPE_CHECKING:
    from .grpc import GrpcOptions

logger = logging.getLogger(__name__)

_Core = _core.GrpcServer
_codec = _core.grpc_codec

#: Triton status kind -> gRPC status code, as the core maps them (Triton's mapping).
GRPC_STATUS = {
    kind: _codec.grpc_status_for(kind)
    for kind in (
        "UNKNOWN", "INTERNAL", "NOT_FOUND", "INVALID_ARG", "UNAVAILABLE", "UNSUPPORTED",
        "ALREADY_EXISTS", "CANCELLED",
    )
}  # fmt: skip
GRPC_OK = 0
GRPC_CANCELLED = 1
GRPC_UNKNOWN = 2
GRPC_INTERNAL = 13

_HEALTH_PREFIX = "grpc.health.v1.Health/"


class Handlers(Protocol):
    async def unary(
        self, method: str, request: bytes, metadata: Sequence[tuple[str, Any]]
    ) -> bytes: ...

    def stream(
        self, method: str, requests: AsyncIterator[bytes], metadata: Sequence[tuple[str, Any]]
    ) -> AsyncIterator[bytes]: ...


def handler_method(call_method: str) -> str:
    """The handlers' name for a call: the RPC name for the inference service ('ModelInfer'),
    'Check' for grpc.health.v1.Health/Check, the full 'package.Service/Method' otherwise."""
    if call_method.startswith(_HEALTH_PREFIX):
        return call_method[len(_HEALTH_PREFIX) :]
    return call_method


def fast_path_eligible(loaded: Any) -> bool:
    """Whether a loaded model version may be served by the C++ ModelInfer fast path."""
    config = getattr(loaded, "config", None)
    return config is None or not config.model_transaction_policy.decoupled


async def _requests_from(call: Any, queue: asyncio.Queue[bytes | None]) -> AsyncIterator[bytes]:
    """The stream's request messages as the handler takes them; each one taken gives its
    flow-control credit back to the client (a handler that stops reading stops the client)."""
    while (item := await queue.get()) is not None:
        call.consumed()
        yield item


class NativeGrpcFrontend:
    """A running native gRPC endpoint: the C++ transport, its event-loop bridge and the model
    registry it shares with a Server."""

    def __init__(
        self, server: Any, handlers: Handlers, core: Any, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._server = server
        self._handlers = handlers
        self._core = core
        self._loop = loop
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._streams: dict[int, asyncio.Queue[bytes | None]] = {}
        self._detach: Callable[[], None] | None = None
        self._stopped = False
        loop.add_reader(core.fd(), self._on_calls)

    @property
    def port(self) -> int:
        return int(self._core.port)

    @property
    def core(self) -> Any:
        """The ``_core.GrpcServer``."""
        return self._core

    # ---- the model registry ------------------------------------------------------------------

    def model_changed(self, name: str, versions: Mapping[int, Any]) -> None:
        """The Server's model-listener hook: ``versions`` ({version: LoadedModel}, empty when the
        model is gone) is what the Server serves for ``name`` from now on. Called before retired
        versions are stopped, so the fast path never queues on a stopped runner."""
        if (
            versions
            and all(fast_path_eligible(m) for m in versions.values())
            and not self._server.tracing.enabled_for(name)  # traced requests go to Python
        ):
            self._core.set_model(name, {int(v): m.runner for v, m in versions.items()})
        else:
            self._core.remove_model(name)

    def _attach(self, fast_infer: bool) -> None:
        if not fast_infer:
            return
        self._server.add_model_listener(self.model_changed)  # also reports the models served now
        self._detach = lambda: self._server.remove_model_listener(self.model_changed)

    # ---- forwarded calls ---------------------------------------------------------------------

    def _on_calls(self) -> None:
        """Every waiting call event, in one drain (runs on the event loop)."""
        for kind, call, payload in self._core.drain_calls():
            if kind == _Core.UNARY:
                self._spawn(call, self._unary(call, payload))
            elif kind == _Core.START:
                queue: asyncio.Queue[bytes | None] = asyncio.Queue()
                self._streams[call.id] = queue
                self._spawn(call, self._stream(call, queue))
            elif kind == _Core.MESSAGE:
                stream = self._streams.get(call.id)
                if stream is not None:
                    stream.put_nowait(payload)
            elif kind == _Core.HALF_CLOSE:
                stream = self._streams.pop(call.id, None)
                if stream is not None:
                    stream.put_nowait(None)
            elif kind == _Core.CANCEL:
                self._streams.pop(call.id, None)
                task = self._tasks.get(call.id)
                if task is not None:
                    task.cancel()

    def _spawn(self, call: Any, coro: Any) -> None:
        task = self._loop.create_task(coro)
        call_id = call.id
        self._tasks[call_id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(call_id, None))

    async def _unary(self, call: Any, request: bytes) -> None:
        method = handler_method(call.method)
        call_trace = None
        try:
            if method == "ModelInfer" and self._server.tracing.any_enabled:
                call_trace = CallTrace(call.received_ns)
                response = await self._handlers.unary(
                    method, request, call.metadata, call_trace=call_trace
                )
            else:
                response = await self._handlers.unary(method, request, call.metadata)
        except asyncio.CancelledError:
            call.finish(GRPC_CANCELLED, "Cancelled")  # a no-op when the client is gone
        except TritonError as e:
            call.finish(GRPC_STATUS.get(e.status, GRPC_UNKNOWN), e.message)
        except Exception as e:  # a handler bug: the client still gets an answer
            logger.exception("gRPC handler for %s failed", call.method)
            call.finish(GRPC_INTERNAL, f"{type(e).__name__}: {e}")
        else:
            if call_trace is None:
                call.reply(response)
                return
            start = now_ns()
            call.reply(response)
            call_trace.sent(start)
            return
        if call_trace is not None:
            call_trace.release()

    async def _stream(self, call: Any, queue: asyncio.Queue[bytes | None]) -> None:
        method = handler_method(call.method)
        try:
            responses = self._handlers.stream(method, _requests_from(call, queue), call.metadata)
            async with contextlib.aclosing(responses):  # type: ignore[type-var]
                async for response in responses:
                    if not call.send(response):
                        return  # the call is over (cancelled, expired, disconnected)
        except asyncio.CancelledError:
            call.finish(GRPC_CANCELLED, "Cancelled")
        except TritonError as e:
            call.finish(GRPC_STATUS.get(e.status, GRPC_UNKNOWN), e.message)
        except Exception as e:
            logger.exception("gRPC stream handler for %s failed", call.method)
            call.finish(GRPC_INTERNAL, f"{type(e).__name__}: {e}")
        else:
            call.finish(GRPC_OK, "")
        finally:
            self._streams.pop(call.id, None)

    # ---- lifecycle ---------------------------------------------------------------------------

    async def stop(self, grace_s: float | None = 5.0) -> None:
        """Graceful: no new connections, GOAWAY; calls in flight get up to ``grace_s`` seconds
        (None: no limit) to finish, then every connection closes and open calls are cancelled."""
        if self._stopped:
            return
        self._stopped = True
        if self._detach is not None:
            self._detach()
            self._detach = None
        self._core.shutdown()
        deadline = None if grace_s is None else self._loop.time() + grace_s
        while self._core.connection_count() > 0 and (
            deadline is None or self._loop.time() < deadline
        ):
            await asyncio.sleep(0.005)
        self._core.stop()
        self._on_calls()  # the last cancel events
        self._loop.remove_reader(self._core.fd())
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._core.clear_models()


def response_compression(level: str) -> str:
    """A checked --grpc-infer-response-compression-level (none, low, medium, high): refused
    (TritonError) when unknown, or when this build cannot compress at all. The transport picks
    each call's algorithm from the level and the client's grpc-accept-encoding, as gRPC core."""
    from .grpc import RESPONSE_COMPRESSION

    flag = "--grpc-infer-response-compression-level"
    if level not in RESPONSE_COMPRESSION:
        raise TritonError(
            f"{flag} must be one of {', '.join(RESPONSE_COMPRESSION)}, got '{level}'", "INVALID_ARG"
        )
    if level != "none" and not _codec.can_compress("gzip"):
        raise TritonError(
            f"{flag}={level} needs gzip/deflate compression, but this build of tritonlite was "
            "made without zlib: rebuild with zlib (e.g. zlib1g-dev) or use 'none'",
            "INVALID_ARG",
        )
    return level


#: GrpcOptions fields that are durations or counts -> Triton's flag.
_FLAGS = {
    "keepalive_time_ms": "--grpc-keepalive-time",
    "keepalive_timeout_ms": "--grpc-keepalive-timeout",
    "http2_max_pings_without_data": "--grpc-http2-max-pings-without-data",
    "http2_min_recv_ping_interval_without_data_ms": (
        "--grpc-http2-min-recv-ping-interval-without-data"
    ),
    "http2_max_ping_strikes": "--grpc-http2-max-ping-strikes",
    "max_connection_age_ms": "--grpc-max-connection-age",
    "max_connection_age_grace_ms": "--grpc-max-connection-age-grace",
    "max_connections": "--grpc-max-connections",
    "http2_preface_timeout_ms": "--grpc-http2-preface-timeout",
    "max_connection_idle_ms": "--grpc-max-connection-idle",
    "max_connection_memory": "--grpc-max-connection-memory",
    "http2_max_control_frames_per_second": "--grpc-http2-max-control-frames-per-second",
    "http2_max_resets_per_second": "--grpc-http2-max-resets-per-second",
}


def transport_options(options: GrpcOptions) -> dict[str, Any]:
    """``_core.GrpcServer`` keyword arguments for Triton's --grpc-* transport flags; a
    TritonError(INVALID_ARG) naming the flag for values that cannot be honoured."""
    if options.use_ssl:
        raise TritonError(
            "the native gRPC transport has no TLS: use frontends.grpc.start_grpc", "INVALID_ARG"
        )
    for field, flag in _FLAGS.items():
        value = getattr(options, field)
        if value is not None and value < 0:
            raise TritonError(f"{flag} must be >= 0, got {value}", "INVALID_ARG")
    return {
        "keepalive_time_ms": options.keepalive_time_ms,
        "keepalive_timeout_ms": options.keepalive_timeout_ms,
        "keepalive_permit_without_calls": options.keepalive_permit_without_calls,
        "http2_max_pings_without_data": options.http2_max_pings_without_data,
        "http2_min_recv_ping_interval_without_data_ms": (
            options.http2_min_recv_ping_interval_without_data_ms
        ),
        "http2_max_ping_strikes": options.http2_max_ping_strikes,
        "max_connection_age_ms": options.max_connection_age_ms,
        "max_connection_age_grace_ms": options.max_connection_age_grace_ms,
        "response_compression": response_compression(options.infer_response_compression_level),
        "max_connections": options.max_connections,
        "preface_timeout_ms": options.http2_preface_timeout_ms,
        "max_connection_idle_ms": options.max_connection_idle_ms,
        "max_connection_memory": options.max_connection_memory,
        "control_frames_per_second": options.http2_max_control_frames_per_second,
        "resets_per_second": options.http2_max_resets_per_second,
    }


async def start_native_grpc(
    server: Any,
    host: str = "0.0.0.0",
    port: int = 8001,
    *,
    handlers: Handlers | None = None,
    options: GrpcOptions | None = None,
    io_threads: int = 1,
    max_message_bytes: int = 2**31 - 1,
    fast_infer: bool = True,
    streaming_methods: Sequence[str] = ("ModelStreamInfer",),
    **http2_options: int,
) -> NativeGrpcFrontend:
    """Serve ``server`` with the native transport on the running event loop.

    ``handlers`` defaults to ``frontends.grpc.GrpcHandlers(server)``. Handlers with a header
    forward pattern (Triton's --grpc-header-forward-pattern) get every ModelInfer call: the fast
    path is off, so that each call's metadata reaches the model. When the handlers restrict
    ModelInfer (Triton's restricted "inference" group), only calls carrying its header take the
    C++ fast path; the others go to the handlers, which refuse them. ``options``: Triton's --grpc-* flags (keepalive, ping policing,
    connection age, response compression; not TLS). ``http2_options``:
    ``max_concurrent_streams``, ``initial_stream_window``, ``connection_window``,
    ``max_frame_size``, ``max_header_list_size``.
    Raises TritonError(UNAVAILABLE) when the address cannot be bound, TritonError(INVALID_ARG)
    for options this build cannot honour.
    """
    if handlers is None:
        from .grpc import GrpcHandlers

        handlers = GrpcHandlers(server)
    if getattr(handlers, "header_forward", None) is not None:
        # --grpc-header-forward-pattern: a call's metadata must reach its request's parameters,
        # which the handlers do; the C++ fast path would not.
        fast_infer = False
    restricted = getattr(handlers, "restricted", None) or {}
    infer_restriction = restricted.get("ModelInfer")  # then only calls with its header go fast
    infer_header = (infer_restriction.key, infer_restriction.value) if infer_restriction else None
    if options is None:
        from .grpc import GrpcOptions as Defaults

        options = Defaults()
    core_options = transport_options(options)
    loop = asyncio.get_running_loop()
    core = _core.GrpcServer(
        host, port, io_threads, max_message_bytes, list(streaming_methods), fast_infer,
        fast_infer_header=infer_header, **core_options, **http2_options,
    )  # fmt: skip
    frontend = NativeGrpcFrontend(server, handlers, core, loop)
    frontend._attach(fast_infer)
    core.start()
    return frontend


__all__ = [
    "GRPC_STATUS",
    "Handlers",
    "NativeGrpcFrontend",
    "fast_path_eligible",
    "handler_method",
    "response_compression",
    "start_native_grpc",
    "transport_options",
]
