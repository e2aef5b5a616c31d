"""Calling a ``TritonPythonModel``'s methods as Triton's python backend does, in either host.

This module owns the rules of ``initialize``/``execute``/``finalize``: plain or ``async def``
execute (non-decoupled coroutines run to completion on the instance's own event loop; decoupled
ones are scheduled on a background loop and ``execute`` returns at once, as Triton 24.04+ does),
checking what ``execute`` returned (a list of one ``InferenceResponse`` per request, or None
when the requests are answered, now or later from another thread, through their response
senders, as Triton allows; None in decoupled mode), pruning
outputs to the requested ones, and Triton's error texts. The host (stub process or in-process
instance) builds the requests and sends the responses.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import pb_utils
from .loader import format_exception
from .pb_utils import InferenceRequest, InferenceResponse, TritonError

__all__ = ["ExecuteError", "ModelCaller", "error_status", "response_tensors"]


class ExecuteError(Exception):
    """Fails every request of the batch that has no final response yet (INTERNAL)."""


def error_status(error: TritonError) -> tuple[str, str]:
    """(status kind, message) for the core."""
    return pb_utils.ERROR_STATUS.get(error.code(), "INTERNAL"), error.message()


def response_tensors(
    response: InferenceResponse, allowed: Sequence[str]
) -> list[tuple[str, str, tuple[int, ...], Any]]:
    """(name, datatype, shape, numpy array | DLPack tensor) of the outputs the request asked
    for (Triton prunes the others)."""
    out = []
    for t in response._output_tensors:
        name = t._name
        if name in allowed:
            payload = t._array  # a numpy array, or None for a tensor in GPU memory
            if payload is None:
                payload = t._device
            elif not payload.flags.c_contiguous:
                payload = np.ascontiguousarray(payload)
            out.append((name, t._datatype, tuple(payload.shape), payload))
    return out


class _BackgroundLoop:
    """An event loop on its own thread (decoupled ``async def execute``)."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        if not self.thread.is_alive():
            self.loop.close()


class ModelCaller:
    """One model instance's ``TritonPythonModel`` object and the loops its coroutines run on."""

    def __init__(self, instance_name: str, model: Any, decoupled: bool) -> None:
        self.instance_name = instance_name
        self.model = model
        self.decoupled = decoupled
        self._loop: asyncio.AbstractEventLoop | None = None
        self._background: _BackgroundLoop | None = None
        self._execute = getattr(model, "execute", None)

    # ---- lifecycle --------------------------------------------------------------------------

    def initialize(self, args: dict[str, str]) -> None:
        init = getattr(self.model, "initialize", None)
        if init is not None:
            result = init(args)
            if asyncio.iscoroutine(result):
                self.loop().run_until_complete(result)

    def finalize(self) -> None:
        try:
            fin = getattr(self.model, "finalize", None)
            if fin is not None:
                result = fin()
                if asyncio.iscoroutine(result):
                    self.loop().run_until_complete(result)
        finally:
            if self._background is not None:
                self._background.close()
            if self._loop is not None and not self._loop.is_closed():
                self._loop.close()

    def loop(self) -> asyncio.AbstractEventLoop:
        """The instance's event loop for non-decoupled coroutines (run on the calling thread)."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop

    def background_loop(self) -> asyncio.AbstractEventLoop:
        if self._background is None:
            self._background = _BackgroundLoop(f"tritonlite-python-{self.instance_name}-async")
        return self._background.loop

    # ---- execute ----------------------------------------------------------------------------

    def failure(self, message: str) -> str:
        return (
            f"Failed to process the request(s) for model '{self.instance_name}', message: {message}"
        )

    def execute(self, requests: list[InferenceRequest]) -> list[InferenceResponse | None] | None:
        """Run ``execute``. Returns the response for each request still to be answered (None
        where it was answered through its sender), or None for decoupled models. Raises
        ExecuteError with Triton's message when execute fails or returns something wrong."""
        if self._execute is None:
            raise ExecuteError(
                self.failure(
                    f"Python model '{self.instance_name}' does not implement `execute` method."
                )
            )
        try:
            result = self._execute(requests)
            if asyncio.iscoroutine(result):
                if self.decoupled:
                    self._schedule(result, requests)
                    return None
                result = self.loop().run_until_complete(result)
        except (Exception, SystemExit) as e:  # sys.exit() in a model fails the batch only
            raise ExecuteError(self.failure(format_exception(e))) from None
        if self.decoupled:
            if result is not None:
                raise ExecuteError(
                    self.failure(
                        f"Python model '{self.instance_name}' is using the decoupled mode and the "
                        "execute function must return None."
                    )
                )
            return None
        return self._check_responses(result, requests)

    def _check_responses(
        self, result: Any, requests: list[InferenceRequest]
    ) -> list[InferenceResponse | None]:
        answered = [r._sender is not None and r._sender._sent for r in requests]
        if result is None:  # answered, or to be answered later, through the response senders
            return [None] * len(requests)
        if not isinstance(result, list):
            raise ExecuteError(
                self.failure(f"Expected a list in the execute return, found type '{type(result)}'.")
            )
        if len(result) != len(requests):
            raise ExecuteError(
                self.failure(
                    "Number of InferenceResponse objects do not match the number of "
                    f"InferenceRequest objects. InferenceRequest(s) size is:{len(requests)}, and "
                    f"InferenceResponse(s) size is:{len(result)}\n"
                )
            )
        for response, done in zip(result, answered, strict=True):
            if not isinstance(response, InferenceResponse) and not (response is None and done):
                raise ExecuteError(
                    self.failure(
                        "Expected an 'InferenceResponse' object in the execute function return "
                        f"list, found type '{type(response)}'."
                    )
                )
        return [None if done else response for response, done in zip(result, answered, strict=True)]

    def _schedule(self, coroutine: Any, requests: list[InferenceRequest]) -> None:
        future = asyncio.run_coroutine_threadsafe(coroutine, self.background_loop())

        def done(f: Any) -> None:
            error = f.exception()
            if error is not None:
                fail_open_requests(requests, self.failure(format_exception(error)))
            elif f.result() is not None:
                fail_open_requests(
                    requests,
                    self.failure(
                        f"Python model '{self.instance_name}' is using the decoupled mode and the "
                        "execute function must return None."
                    ),
                )

        future.add_done_callback(done)


def fail_open_requests(requests: Sequence[InferenceRequest], message: str) -> None:
    """Fail every request whose sender is still open (a failure in the statistics, not an
    error response of the model's)."""
    error = InferenceResponse(error=TritonError(message, TritonError.INTERNAL))
    for r in requests:
        sender = r._sender
        if sender is not None and not sender._closed:
            sender._closed = True
            sender._sent = True
            try:
                if sender._host_fail is not None:
                    sender._host_fail(message)
                else:
                    sender._host_send(error, True)
            except OSError:  # the server is gone (stub): nobody to tell
                pass
