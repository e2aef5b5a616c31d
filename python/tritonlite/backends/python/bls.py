"""Business Logic Scripting: a python model's ``InferenceRequest.exec()`` / ``async_exec()``,
run on the tritonlite ``Server`` that serves the model.

This module owns turning a pb_utils request into a server call and the server's responses back
into ``pb_utils.InferenceResponse`` objects:

* ``exec_sync``: blocking, for in-process models (the GIL is released while waiting); a
  non-decoupled call runs straight through the callee's core runner, a decoupled call streams
  responses through an iterator fed from the BLS loop;
* ``exec_async``: awaitable from the caller's running loop (in-process ``async def execute``);
* ``BlsLoop``/``start``: the process-wide event loop thread that runs calls coming from stub
  processes and decoupled in-process calls, with ``Server.submit_stream`` so every response
  (one, or a decoupled callee's many) is delivered as it comes.

Responses carry errors instead of raising, as in Triton (``response.has_error()``).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from ...errors import INTERNAL, TritonError
from .pb_utils import (
    STATUS_ERROR,
    InferenceRequest,
    InferenceResponse,
    Tensor,
)
from .pb_utils import TritonError as PbError

__all__ = ["BlsLoop", "BlsSpec", "exec_async", "exec_sync", "spec_of", "start"]

#: What a BLS call needs besides its inputs: (model, version|None, requested outputs|None,
#: request_id, correlation_id, flags, timeout_us, parameters as JSON text).
BlsSpec = tuple[str, int | None, list[str] | None, str, int | str, int, int, str]
#: on_response(error: TritonError | None, outputs: list[(name, core Tensor)] | None, final)
OnResponse = Callable[[Any, Any, bool], None]


def spec_of(request: InferenceRequest) -> BlsSpec:
    version = request._model_version if request._model_version > 0 else None
    return (
        request._model_name,
        version,
        list(request._requested) or None,
        request._request_id,
        request._correlation_id,
        request._flags,
        request._timeout,
        request._parameters,
    )


def inputs_of(request: InferenceRequest) -> list[tuple[str, Any]]:
    out = []
    for t in request._inputs:
        payload = t._payload()
        if isinstance(payload, np.ndarray) and not payload.flags.c_contiguous:
            payload = np.ascontiguousarray(payload)
        out.append((t._name, payload))
    return out


def no_server_error(model: str) -> PbError:
    return PbError(
        f"BLS call to model '{model}' failed: this python backend was created without a server",
        PbError.UNAVAILABLE,
    )


def to_pb_error(error: Any) -> PbError:
    if isinstance(error, TritonError):
        return PbError(error.message, STATUS_ERROR.get(error.status, PbError.INTERNAL))
    return PbError(str(error), PbError.INTERNAL)


def to_pb_response(error: Any, outputs: Sequence[tuple[str, Any]] | None) -> InferenceResponse:
    if error is not None:
        return InferenceResponse(error=to_pb_error(error))
    tensors = []
    for name, t in outputs or ():
        if t.is_cpu:
            tensors.append(Tensor._wrap(name, t.numpy(), t.datatype))
        else:
            tensors.append(Tensor._wrap(name, None, t.datatype, t))
    return InferenceResponse(tensors)


def _correlation(value: int | str) -> tuple[int, str]:
    return (0, value) if isinstance(value, str) else (int(value), "")


def start(server: Any, spec: BlsSpec, inputs: Any, on_response: OnResponse) -> None:
    """Start a call on the running loop; every response goes to ``on_response``."""
    model, version, outputs, request_id, correlation, flags, timeout_us, parameters = spec
    correlation_id, correlation_id_str = _correlation(correlation)
    try:
        server.submit_stream(
            model,
            inputs,
            on_response,
            outputs,
            version,
            request_id=request_id,
            timeout_us=timeout_us,
            correlation_id=correlation_id,
            correlation_id_str=correlation_id_str,
            flags=flags,
            parameters=parameters,
        )
    except Exception as e:  # unknown model, bad inputs: the caller gets an error response
        on_response(e if isinstance(e, TritonError) else TritonError(str(e), INTERNAL), None, True)


class BlsLoop:
    """The process-wide event loop thread BLS calls without a loop of their own run on."""

    _instance: BlsLoop | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.call_soon(ready.set)
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, name="tritonlite-python-bls", daemon=True)
        self.thread.start()
        ready.wait()

    @classmethod
    def get(cls) -> BlsLoop:
        with cls._lock:
            if cls._instance is None:
                cls._instance = BlsLoop()
            return cls._instance

    def call(self, fn: Callable[[], None]) -> None:
        self.loop.call_soon_threadsafe(fn)


class _Stream:
    """Responses of one decoupled call, consumed by a blocking iterator."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[tuple[Any, Any, bool]] = queue.SimpleQueue()

    def on_response(self, error: Any, outputs: Any, final: bool) -> None:
        self.queue.put((error, outputs, final))

    def __iter__(self) -> Iterator[InferenceResponse]:
        while True:
            error, outputs, final = self.queue.get()
            yield to_pb_response(error, outputs)
            if final:
                return


def exec_sync(server: Any, request: InferenceRequest, decoupled: bool) -> Any:
    spec = spec_of(request)
    if server is None:
        response = InferenceResponse(error=no_server_error(spec[0]))
        return iter([response]) if decoupled else response
    inputs = inputs_of(request)
    if decoupled:
        stream = _Stream()
        BlsLoop.get().call(lambda: start(server, spec, inputs, stream.on_response))
        return iter(stream)
    model, version, outputs, request_id, correlation, flags, timeout_us, parameters = spec
    correlation_id, correlation_id_str = _correlation(correlation)
    try:
        runner = server.get_model(model, version).runner
        responses = runner.infer(
            inputs,
            outputs,
            request_id=request_id,
            timeout_us=timeout_us,
            correlation_id=correlation_id,
            correlation_id_str=correlation_id_str,
            flags=flags,
            parameters="" if parameters == "{}" else parameters,
        )
    except TritonError as e:
        return InferenceResponse(error=to_pb_error(e))
    return _single(
        [(TritonError(e[1], e[0]) if e is not None else None, out) for _, e, out, _ in responses]
    )


def _single(responses: list[tuple[Any, Any]]) -> InferenceResponse:
    """The one response of a non-decoupled call (the first with outputs or an error)."""
    for error, outputs in responses:
        if error is not None or outputs:
            return to_pb_response(error, outputs)
    return InferenceResponse([])


async def exec_async(server: Any, request: InferenceRequest, decoupled: bool) -> Any:
    """Awaitable from any running loop (the call itself runs on the BLS loop, so short-lived
    loops such as ``asyncio.run`` inside execute leave nothing behind in the server). A
    decoupled call resolves when its final response came, to an iterator over every response."""
    spec = spec_of(request)
    if server is None:
        response = InferenceResponse(error=no_server_error(spec[0]))
        return iter([response]) if decoupled else response
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    got: list[tuple[Any, Any]] = []

    def finish() -> None:
        if not done.done():
            done.set_result(None)

    def on_response(error: Any, outputs: Any, final: bool) -> None:
        got.append((error, outputs))
        if final:
            loop.call_soon_threadsafe(finish)

    inputs = inputs_of(request)
    BlsLoop.get().call(lambda: start(server, spec, inputs, on_response))
    await done
    if decoupled:
        return iter([to_pb_response(e, o) for e, o in got])
    return _single(got)
