"""Business Logic Scripting: a python model's ``InferenceRequest.exec()`` / ``async_exec()``,
run on the tritonlite ``Server`` that serves the model.

This module owns turning a pb_utils request into a server call and the server's responses back
into ``pb_utils.InferenceResponse`` objects:

* ``exec_sync``: blocking, for in-process models (the GIL is released while waiting); a
  non-decoupled call is queued straight on the callee's core runner from the model's thread and
  waited for there (a completion queue of its own, no loop hop); a decoupled call streams
  responses through an iterator fed from the BLS loop;
* ``exec_async``: awaitable from the caller's running loop (in-process ``async def execute``);
* ``BlsLoop``/``start``: the process-wide event loop thread that runs calls coming from stub
  processes and decoupled in-process calls, with ``Server.submit_stream`` so every response
  (one, or a decoupled callee's many) is delivered as it comes.

A BLS call is cancelled with the requests that made it (its *parents*: the batch whose
``execute()`` was running when the model called ``exec()``/``async_exec()``): once every parent
is cancelled (a parent already answered, and not cancelled, does not hold it back, but at least
one must be cancelled), the call's core request is cancelled too, so a queued callee never runs
and a running python callee sees ``request.is_cancelled()``. The core does not tell Python when
a request is cancelled, so ``CancelWatch`` polls: one timer on the BLS loop, every
``CANCEL_POLL_S`` while some call with parents is in flight and not at all otherwise, reads the
parents' lock-free cancel flags; a call is watched from its start to its final response. A call
made when its parents are cancelled already is answered CANCELLED ("Request was cancelled", as
the core answers a request cancelled in its queue) without being made. The hosts find the
parents: in process, ``PARENTS`` (a context variable ``inprocess.py`` sets around execute, so
``async def execute`` tasks keep theirs); in a stub, the batch's request keys travel with the
BLS message and ``process.py`` maps them to the core requests it holds. A call made outside
execute (``initialize``, a thread the model started itself, which does not inherit context
variables) has no parents and is never cancelled this way.

Responses carry errors instead of raising, as in Triton (``response.has_error()``).
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
import queue
import select
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from ...errors import CANCELLED, INTERNAL, TritonError
from .pb_utils import (
    STATUS_ERROR,
    InferenceRequest,
    InferenceResponse,
    Tensor,
)
from .pb_utils import TritonError as PbError

_log = logging.getLogger("tritonlite.python")

__all__ = [
    "CANCEL_POLL_S",
    "PARENTS",
    "BlsLoop",
    "BlsSpec",
    "CancelWatch",
    "exec_async",
    "exec_sync",
    "spec_of",
    "start",
]

#: What a BLS call needs besides its inputs: (model, version|None, requested outputs|None,
#: request_id, correlation_id, flags, timeout_us, parameters as JSON text, trace reference:
#: the traced request's trace id in the server, its key in a stub (process.py maps it), -1 for
#: a call not traced).
BlsSpec = tuple[str, int | None, list[str] | None, str, int | str, int, int, str, int]
#: on_response(error: TritonError | None, outputs: list[(name, core Tensor)] | None, final)
OnResponse = Callable[[Any, Any, bool], None]

#: How often the parents of in-flight BLS calls are checked for cancellation (seconds).
CANCEL_POLL_S = 0.05
#: In the server: the core requests whose ``execute()`` runs in this context (set by the
#: in-process host around execute); the parents of the BLS calls made here.
PARENTS: contextvars.ContextVar[tuple[Any, ...]] = contextvars.ContextVar(
    "tritonlite_bls_parents", default=()
)


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
        request._trace._ref if request._trace is not None else -1,
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


def start(
    server: Any,
    spec: BlsSpec,
    inputs: Any,
    on_response: OnResponse,
    parents: Sequence[Any] = (),
) -> None:
    """Start a call on the running loop (the BLS loop); every response goes to
    ``on_response``. ``parents``: the core requests it is cancelled with (see the module
    docstring), watched until its final response."""
    model, version, outputs, request_id, correlation, flags, timeout_us, parameters, trace = spec
    correlation_id, correlation_id_str = _correlation(correlation)
    callback = on_response
    watch = BlsLoop.get().watch if parents else None
    watched = watch.watch(parents) if watch is not None else None
    if watched is not None and watched.doomed:  # made after its parents were cancelled
        on_response(cancelled_error(), None, True)
        return
    if watch is not None:

        def respond(error: Any, outputs: Any, final: bool) -> None:
            if final:
                watch.unwatch(watched)
            on_response(error, outputs, final)

        callback = respond
    try:
        handle = server.submit_stream(
            model,
            inputs,
            callback,
            outputs,
            version,
            request_id=request_id,
            timeout_us=timeout_us,
            correlation_id=correlation_id,
            correlation_id_str=correlation_id_str,
            flags=flags,
            parameters=parameters,
            trace=server.tracing.live(trace) if trace > 0 else None,
        )
    except Exception as e:  # noqa: BLE001 - unknown model, bad inputs: an error response
        if watch is not None:
            watch.unwatch(watched)
        on_response(e if isinstance(e, TritonError) else TritonError(str(e), INTERNAL), None, True)
        return
    if watch is not None:
        watch.attach(watched, handle)


def cancelled_error() -> TritonError:
    """What a BLS call made after its parents were cancelled gets (the core's text for a
    request cancelled before it ran)."""
    return TritonError("Request was cancelled", CANCELLED)


def parents_cancelled(parents: Sequence[Any]) -> bool:
    """Whether a BLS call with these parents (core requests) is to be cancelled: at least one
    is cancelled, and every other one is cancelled too or already answered. The lock-free flags
    are read first; ``finished`` (a lock in the core) is asked only once a parent is
    cancelled."""
    for r in parents:  # a loop: cheaper than any() for the one parent of most calls
        if r.cancelled:
            break
    else:
        return False
    return all(r.cancelled or r.finished for r in parents)


class _Watched:
    """One BLS call with parents: its core request's cancel handle (None until the request is
    made) and whether it is to be cancelled. ``attach`` and ``_check`` each store their field
    and then read the other's (under the GIL), so at least one of them cancels the call, maybe
    both (cancelling is idempotent)."""

    __slots__ = ("doomed", "handle", "parents")

    def __init__(self, parents: tuple[Any, ...]) -> None:
        self.parents = parents
        self.handle: Any = None
        self.doomed = False


class CancelWatch:
    """The BLS calls in flight that have parents, checked every ``CANCEL_POLL_S`` on ``loop``
    while there are any (no timer otherwise). A call is cancelled once (``parents_cancelled``),
    then no longer watched. Any thread may call ``watch``, ``attach`` and ``unwatch``.

    A call is watched before its request is made and its cancel handle attached after: so the
    caller does no more than a store between queueing the request and letting go of the GIL
    (the callee's worker, which wants the GIL at once, finds it free)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._calls: set[_Watched] = set()
        self._lock = threading.Lock()  # guards _calls and _armed
        self._armed = False  # a check is scheduled (or running and about to decide)

    def __len__(self) -> int:
        """Calls watched now."""
        with self._lock:
            return len(self._calls)

    def watch(self, parents: Sequence[Any]) -> _Watched | None:
        """Watch a call about to be made for ``parents``: ``attach`` its cancel handle once it
        is made, ``unwatch`` at its final response (or if it is never made). None: no parents,
        nothing to watch. Parents cancelled already: the entry is ``doomed`` and not watched
        (the hosts then answer the call CANCELLED without making it; one attached anyway is
        cancelled at once)."""
        if not parents:
            return None
        entry = _Watched(tuple(parents))
        if parents_cancelled(parents):
            entry.doomed = True
            return entry
        with self._lock:
            self._calls.add(entry)
            arm = not self._armed
            self._armed = True
        if arm:
            self.loop.call_soon_threadsafe(self._arm)
        return entry

    def attach(self, entry: _Watched | None, handle: Any) -> None:
        """The call's core request is made: ``handle`` cancels it."""
        if entry is None:
            return
        entry.handle = handle
        if entry.doomed:
            handle.cancel()

    def unwatch(self, entry: _Watched | None) -> None:
        if entry is not None:
            with self._lock:
                self._calls.discard(entry)

    def _arm(self) -> None:
        self.loop.call_later(CANCEL_POLL_S, self._check)

    def _check(self) -> None:
        with self._lock:
            calls = list(self._calls)
        for entry in calls:
            try:
                if not parents_cancelled(entry.parents):
                    continue
                entry.doomed = True  # attach() cancels it if it has no handle yet
                handle = entry.handle
                if handle is not None:
                    handle.cancel()
                self.unwatch(entry)
            except Exception:  # noqa: BLE001 - a bug must not stop the watch of the others
                _log.exception("checking a BLS call's parents for cancellation failed")
                self.unwatch(entry)
        with self._lock:
            self._armed = bool(self._calls)
            rearm = self._armed
        if rearm:
            self._arm()


class BlsLoop:
    """The process-wide event loop thread BLS calls without a loop of their own run on, and
    the ``CancelWatch`` of every BLS call with parents."""

    _instance: BlsLoop | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.watch = CancelWatch(self.loop)
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
        instance = cls._instance
        if instance is not None:
            return instance
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
    """Blocking, from an in-process model's thread: one response, or with ``decoupled`` an
    iterator over every response. Cancelled with ``PARENTS`` (see the module docstring)."""
    spec = spec_of(request)
    if server is None:
        response = InferenceResponse(error=no_server_error(spec[0]))
        return iter([response]) if decoupled else response
    inputs = inputs_of(request)
    parents = PARENTS.get()
    if decoupled or spec[8] > 0:  # a traced call goes through Server.submit_stream too
        stream = _Stream()
        BlsLoop.get().call(lambda: start(server, spec, inputs, stream.on_response, parents))
        if decoupled:
            return iter(stream)
        got: list[tuple[Any, Any]] = []
        final = False
        while not final:
            error, outputs, final = stream.queue.get()
            got.append((error, outputs))
        return _single(got)
    return _run_here(server, spec, inputs, parents)


class _CallQueue:
    """A completion queue that one blocking call at a time waits on, and a poller of its fd."""

    __slots__ = ("poller", "queue")

    def __init__(self) -> None:
        from ... import _core

        self.queue = _core.CompletionQueue()
        self.poller = select.poll()
        self.poller.register(self.queue.fd(), select.POLLIN)


#: Completion queues of finished blocking calls, for the next ones (pop/append: atomic).
_free_queues: list[_CallQueue] = []
_tokens = itertools.count(1)


def _run_here(server: Any, spec: BlsSpec, inputs: Any, parents: Sequence[Any]) -> InferenceResponse:
    """A non-decoupled call queued on the callee's core runner from this thread, its responses
    waited for here (without the GIL), its cancel handle watched while it runs."""
    model, version, outputs, request_id, correlation, flags, timeout_us, parameters, _ = spec
    correlation_id, correlation_id_str = _correlation(correlation)
    call = _free_queues.pop() if _free_queues else _CallQueue()
    token = next(_tokens)
    watch = BlsLoop.get().watch if parents else None
    watched = watch.watch(parents) if watch is not None else None
    if watched is not None and watched.doomed:  # made after its parents were cancelled
        _free_queues.append(call)
        return InferenceResponse(error=to_pb_error(cancelled_error()))
    try:
        runner = server.get_model(model, version).runner
        handle = runner.enqueue(
            call.queue,
            token,
            inputs,
            outputs,
            request_id,
            0,
            timeout_us,
            correlation_id,
            correlation_id_str,
            flags,
            "" if parameters == "{}" else parameters,
        )
    except Exception as e:  # noqa: BLE001 - unknown model, bad inputs: an error response
        if watch is not None:
            watch.unwatch(watched)
        _free_queues.append(call)
        return InferenceResponse(error=to_pb_error(e))
    if watch is not None:
        watch.attach(watched, handle)
    got: list[tuple[Any, Any]] = []
    final = False
    try:
        while not final:
            call.poller.poll()  # the GIL is released while it waits
            for got_token, error, outs, last in call.queue.drain():
                if got_token == token:  # (a queue is reused only after its call's final)
                    got.append((TritonError(error[1], error[0]) if error else None, outs))
                    final = final or last
    finally:
        if watch is not None:
            watch.unwatch(watched)
    _free_queues.append(call)  # not on an exception: a queue holding a live call is dropped
    return _single(got)


def _single(responses: list[tuple[Any, Any]]) -> InferenceResponse:
    """The one response of a non-decoupled call (the first with outputs or an error)."""
    for error, outputs in responses:
        if error is not None or outputs:
            return to_pb_response(error, outputs)
    return InferenceResponse([])


async def exec_async(server: Any, request: InferenceRequest, decoupled: bool) -> Any:
    """Awaitable from any running loop (the call itself runs on the BLS loop, so short-lived
    loops such as ``asyncio.run`` inside execute leave nothing behind in the server). A
    decoupled call resolves when its final response came, to an iterator over every response.
    Cancelled with ``PARENTS`` (see the module docstring)."""
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
    parents = PARENTS.get()
    BlsLoop.get().call(lambda: start(server, spec, inputs, on_response, parents))
    await done
    if decoupled:
        return iter([to_pb_response(e, o) for e, o in got])
    return _single(got)
