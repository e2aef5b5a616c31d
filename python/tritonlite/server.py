"""The in-process Server: the one object that frontends and library users talk to.

It owns the loaded models and the path of a request into the core: ``infer`` blocks (without the
GIL) until the response arrives; ``infer_async`` resolves an asyncio future. Completions for
an event loop arrive on one core CompletionQueue whose file descriptor the loop watches: one
wakeup drains every response that is ready.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from . import _core
from .backends.base import Backend
from .errors import NOT_FOUND, UNAVAILABLE, TritonError
from .model import LoadedModel, ModelConfig

Inputs = Mapping[str, Any] | Sequence[tuple[str, Any]]


class _LoopCompletions:
    """Futures of one event loop, resolved from one completion queue."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue = _core.CompletionQueue()
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.unmatched = 0  # responses for no pending request: must stay 0
        loop.add_reader(self.queue.fd(), self._drain)

    def _drain(self) -> None:
        pending = self.pending
        for token, error, outputs, _final in self.queue.drain():
            future = pending.pop(token, None)
            if future is None:
                self.unmatched += 1
                continue
            if future.done():  # cancelled by its awaiter
                continue
            if error is None:
                future.set_result(outputs)
            else:
                future.set_exception(TritonError(error[1], error[0]))

    def close(self) -> None:
        if not self.loop.is_closed():
            self.loop.remove_reader(self.queue.fd())


class Server:
    """A Triton-compatible inference server, in-process."""

    def __init__(self) -> None:
        self._models: dict[str, dict[int, LoadedModel]] = {}
        self._loops: dict[asyncio.AbstractEventLoop, _LoopCompletions] = {}
        self._tokens = itertools.count(1)
        self._closed = False

    # ---- models ------------------------------------------------------------------------------

    def add_model(self, config: ModelConfig, backend: Backend, version: int = 1) -> None:
        """Serve ``backend`` as ``version`` of the model described by a complete ``config``."""
        loaded = LoadedModel(config, version, backend)
        previous = self._models.setdefault(config.name, {}).get(version)
        self._models[config.name][version] = loaded
        if previous is not None:
            previous.stop()

    def remove_model(self, name: str, version: int | None = None) -> None:
        """Stop serving a model (all versions by default); waits for in-flight requests."""
        versions = self._models.get(name, {})
        for v in [version] if version is not None else list(versions):
            loaded = versions.pop(v, None)
            if loaded is not None:
                loaded.stop()
        if not versions:
            self._models.pop(name, None)

    def model_names(self) -> list[str]:
        return sorted(self._models)

    def get_model(self, name: str, version: int | None = None) -> LoadedModel:
        """The loaded model version (the latest when ``version`` is None)."""
        versions = self._models.get(name)
        if not versions:
            raise TritonError(f"Request for unknown model: '{name}' is not found", NOT_FOUND)
        if version is None or version == 0:
            return versions[max(versions)]
        loaded = versions.get(version)
        if loaded is None:
            raise TritonError(
                f"Request for unknown model: '{name}' version {version} is not found", NOT_FOUND
            )
        return loaded

    # ---- inference ---------------------------------------------------------------------------

    def infer(
        self,
        model: str,
        inputs: Inputs,
        outputs: Sequence[str] | None = None,
        version: int | None = None,
        *,
        priority: int = 0,
        timeout_us: int = 0,
        request_id: str = "",
    ) -> dict[str, np.ndarray]:
        """Run one request and wait for its outputs (numpy arrays, zero-copy where possible)."""
        runner = self._runner(model, version)
        responses = runner.infer(
            inputs, outputs, request_id=request_id, priority=priority, timeout_us=timeout_us
        )
        _token, error, tensors, _final = responses[-1]
        if error is not None:
            raise TritonError(error[1], error[0])
        return {name: t.numpy() for name, t in tensors}

    async def infer_async(
        self,
        model: str,
        inputs: Inputs,
        outputs: Sequence[str] | None = None,
        version: int | None = None,
        *,
        priority: int = 0,
        timeout_us: int = 0,
        request_id: str = "",
    ) -> dict[str, np.ndarray]:
        """Like ``infer``, awaited on the running event loop."""
        tensors = await self.submit(
            model, inputs, outputs, version,
            priority=priority, timeout_us=timeout_us, request_id=request_id,
        )  # fmt: skip
        return {name: t.numpy() for name, t in tensors}

    def submit(
        self,
        model: str,
        inputs: Inputs,
        outputs: Sequence[str] | None = None,
        version: int | None = None,
        *,
        priority: int = 0,
        timeout_us: int = 0,
        request_id: str = "",
        correlation_id: int = 0,
        correlation_id_str: str = "",
        flags: int = 0,
    ) -> asyncio.Future[list[tuple[str, Any]]]:
        """Queue a request from the running event loop; the future resolves to its outputs as
        (name, Tensor) pairs. Bad requests raise here, before anything is queued."""
        runner = self._runner(model, version)
        completions = self._completions()
        future: asyncio.Future[Any] = completions.loop.create_future()
        token = next(self._tokens)
        completions.pending[token] = future
        try:
            runner.enqueue(
                completions.queue, token, inputs, outputs, request_id, priority, timeout_us,
                correlation_id, correlation_id_str, flags,
            )  # fmt: skip
        except BaseException:
            del completions.pending[token]
            raise
        return future

    def statistics(self, model: str = "", version: int | None = None) -> list[dict[str, Any]]:
        """Triton's ModelStatistics for one model (or all) as dicts."""
        names = [model] if model else self.model_names()
        out = []
        for name in names:
            versions = self._models.get(name)
            if not versions:
                raise TritonError(f"Request for unknown model: '{name}' is not found", NOT_FOUND)
            for v, loaded in sorted(versions.items()):
                if version not in (None, 0) and v != version:
                    continue
                stats = loaded.runner.statistics()
                out.append({"name": name, "version": str(v), **stats})
        return out

    # ---- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Stop every model (finishing in-flight requests) and release event-loop hooks."""
        if self._closed:
            return
        self._closed = True
        for name in list(self._models):
            self.remove_model(name)
        for completions in self._loops.values():
            completions.close()
        self._loops.clear()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _runner(self, model: str, version: int | None) -> Any:
        if self._closed:
            raise TritonError("Server is shutting down", UNAVAILABLE)
        return self.get_model(model, version).runner

    def _completions(self) -> _LoopCompletions:
        loop = asyncio.get_running_loop()
        completions = self._loops.get(loop)
        if completions is None or completions.loop.is_closed():
            completions = self._loops[loop] = _LoopCompletions(loop)
        return completions
