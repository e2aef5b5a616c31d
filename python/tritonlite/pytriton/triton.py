"""PyTriton's ``triton``: ``Triton`` (bind functions, serve them) and ``TritonConfig``.

``Triton`` owns an in-process ``tritonlite.server.Server`` and its gRPC (native transport),
HTTP and metrics frontends, run on an event loop in a background thread. ``bind`` turns
PyTriton's ``Tensor``/``ModelConfig`` into a Triton config and serves the function with the
``function`` backend (function_backend.py). ``TritonConfig`` accepts the settings that map onto
tritonlite's server; any other PyTriton setting is refused by name.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable, Sequence
from typing import Any

from .. import config as _config
from ..config.support import check_config_support
from ..errors import TritonError
from .exceptions import PyTritonInvalidOperationError, PyTritonValidationError
from .function_backend import FunctionBackend
from .isolated import IsolatedModel
from .decorators import TritonContext, inject_triton_context
from .model_config import ModelConfig, Tensor, to_proto, triton_model_config

__all__ = ["Triton", "TritonConfig"]

_log = logging.getLogger("tritonlite.pytriton")

#: PyTriton's TritonConfig fields tritonlite honours, and their defaults.
_SUPPORTED = {
    "id": "triton",
    "allow_http": True,
    "http_address": "0.0.0.0",
    "http_port": 8000,
    "allow_grpc": True,
    "grpc_address": "0.0.0.0",
    "grpc_port": 8001,
    "allow_metrics": True,
    "metrics_address": None,
    "metrics_port": 8002,
    "metrics_interval_ms": 2000,
    "allow_cpu_metrics": True,
    "allow_gpu_metrics": False,
    "exit_timeout_secs": 30,
    "strict_readiness": True,
    "log_verbose": None,
    "http_header_forward_pattern": None,
    "grpc_header_forward_pattern": None,
}


def _new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when it is installed (as ``tritonlite-server`` uses), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class TritonConfig:
    """The server's settings, by PyTriton's names. A PyTriton setting tritonlite does not
    implement (TLS, SageMaker/Vertex, cache, rate limiting, ...) raises PyTritonValidationError."""

    def __init__(self, **settings: Any) -> None:
        unsupported = sorted(
            k for k, v in settings.items() if k not in _SUPPORTED and v is not None
        )
        if unsupported:
            raise PyTritonValidationError(
                "TritonConfig settings not supported by tritonlite: "
                + ", ".join(unsupported)
                + "; supported: "
                + ", ".join(sorted(_SUPPORTED))
            )
        for key, default in _SUPPORTED.items():
            value = settings.get(key)
            setattr(self, key, default if value is None else value)

    def __repr__(self) -> str:
        return "TritonConfig(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in _SUPPORTED) + ")"


class Triton:
    """``with Triton() as triton: triton.bind(...); triton.serve()`` (or ``run()`` to serve in
    the background until ``stop()``)."""

    def __init__(
        self,
        *,
        config: TritonConfig | None = None,
        workspace: Any = None,
        triton_lifecycle_policy: Any = None,
    ) -> None:
        if triton_lifecycle_policy is not None:
            raise PyTritonValidationError(
                "Triton(triton_lifecycle_policy=...) is not supported by tritonlite: the server "
                "runs in-process and starts on run()/serve()"
            )
        if workspace is not None:
            _log.info("Triton(workspace=...): tritonlite needs no workspace; %s is not used",
                      workspace)  # fmt: skip
        self.config = config or TritonConfig()
        self._models: list[tuple[Any, Any]] = []
        self._context = TritonContext()  # what @triton_context passes to the bound functions
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: Any = None
        self._frontends: list[Any] = []
        self._stopped = threading.Event()
        self._running = False
        #: The ports the frontends listen on (0 in the config: a free port, known after run).
        self.grpc_port: int | None = None
        self.http_port: int | None = None

    # ---- binding -----------------------------------------------------------------------------

    def bind(
        self,
        model_name: str,
        infer_func: Callable[..., Any] | Sequence[Callable[..., Any]],
        inputs: Sequence[Tensor],
        outputs: Sequence[Tensor],
        config: ModelConfig | None = None,
        strict: bool = False,
        trace_config: Any = None,
    ) -> None:
        """Serve ``infer_func`` (a list: one instance per function) as model ``model_name``."""
        if strict:
            raise PyTritonValidationError(
                "bind(strict=True) is not supported by tritonlite: outputs are checked against "
                "the model config by the server in any case"
            )
        if trace_config is not None:
            raise PyTritonValidationError(
                "bind(trace_config=...) is not supported by tritonlite: use the server's trace "
                "extension"
            )
        funcs = list(infer_func) if isinstance(infer_func, (list, tuple)) else [infer_func]
        if not funcs or not all(callable(f) for f in funcs):
            raise PyTritonValidationError(
                f"model '{model_name}': infer_func must be a callable or a list of callables"
            )
        if any(name == model_name for name, _ in self._models):
            raise PyTritonValidationError(f"model '{model_name}' is already bound")
        config = config or ModelConfig()
        proto = to_proto(model_name, inputs, outputs, config, len(funcs))
        try:
            _config._normalize(proto)
            _config._validate_model(proto)
            _config._normalize_instance_groups(proto, ())
            _config._validate_io(proto)
            check_config_support(proto)
        except TritonError as e:
            raise PyTritonValidationError(f"model '{model_name}': {e.message}") from None
        model_config = triton_model_config(proto, config, inputs, outputs, len(funcs))
        inject_triton_context(self._context, funcs, model_config)
        backend: Any = IsolatedModel(proto, funcs, model_config) if config.isolated else (
            FunctionBackend(proto, funcs))  # fmt: skip
        self._models.append((model_name, (proto, backend)))
        if self._server is not None:
            self._add(proto, backend)

    def _add(self, proto: Any, backend: Any) -> None:
        if isinstance(backend, IsolatedModel):  # stubs are started for the server serving it
            backend = backend.backend(self._server)
        self._server.add_model(proto, backend)

    # ---- lifecycle ---------------------------------------------------------------------------

    def run(self) -> None:
        """Start serving in background threads; returns when the frontends listen."""
        if self._running:
            raise PyTritonInvalidOperationError("Triton is already running")
        from ..server import Server

        c = self.config
        self._server = Server(server_id=c.id, strict_readiness=c.strict_readiness)
        try:
            for _, (proto, backend) in self._models:
                self._add(proto, backend)
            self._loop = _new_event_loop()
            started: list[BaseException | None] = []
            ready = threading.Event()

            def main() -> None:
                assert self._loop is not None
                asyncio.set_event_loop(self._loop)
                try:
                    self._loop.run_until_complete(self._start())
                    started.append(None)
                except BaseException as e:  # reported to run()'s caller
                    started.append(e)
                    ready.set()
                    return
                ready.set()
                self._loop.run_forever()

            self._thread = threading.Thread(target=main, name="tritonlite-pytriton", daemon=True)
            self._thread.start()
            ready.wait()
            if started[0] is not None:
                raise started[0]
        except BaseException:
            self._shutdown()
            raise
        self._running = True
        self._stopped.clear()

    async def _start(self) -> None:
        c = self.config
        # Every frontend module is imported before the first one listens: a client that sees
        # gRPC ready must find HTTP listening too (importing frontends.http takes a while).
        from ..frontends.grpc import GrpcHandlers
        from ..frontends.grpc_native import start_native_grpc
        from ..frontends.http import start_http

        if c.allow_grpc:
            handlers = GrpcHandlers(self._server, {}, c.grpc_header_forward_pattern)
            g = await start_native_grpc(
                self._server, c.grpc_address, c.grpc_port, handlers=handlers
            )
            self._frontends.append(g)
            self.grpc_port = g.port
        if c.allow_http:
            h = await start_http(self._server, c.http_address, c.http_port,
                                 header_forward_pattern=c.http_header_forward_pattern)  # fmt: skip
            self._frontends.append(h)
            self.http_port = h.port
        if c.allow_metrics:
            from ..metrics import start_metrics

            m = await start_metrics(self._server, c.metrics_address or c.http_address,
                                    c.metrics_port, interval_ms=c.metrics_interval_ms,
                                    cpu_metrics=c.allow_cpu_metrics,
                                    gpu_metrics=c.allow_gpu_metrics)  # fmt: skip
            self._frontends.append(m)

    def serve(self, monitoring_period_s: float | None = None) -> None:
        """Run and block until ``stop()`` or SIGINT/SIGTERM (then stop)."""
        if not self._running:
            self.run()
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, lambda *_: self._stopped.set())
        try:
            while not self._stopped.wait(monitoring_period_s or 1.0):
                pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.stop()

    def is_alive(self) -> bool:
        return self._running and self._thread is not None and self._thread.is_alive()

    def stop(self) -> bool:
        """Stop the frontends (finishing in-flight requests) and the server."""
        was_running = self._running
        self._running = False
        self._stopped.set()
        self._shutdown()
        self._remove_model_dirs()
        return was_running

    def _shutdown(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            grace = float(self.config.exit_timeout_secs)

            async def stop_all() -> None:
                await asyncio.gather(*(f.stop(grace) for f in self._frontends),
                                     return_exceptions=True)  # fmt: skip

            asyncio.run_coroutine_threadsafe(stop_all(), loop).result()
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
        if loop is not None:
            loop.close()
        self._frontends.clear()
        self._loop = self._thread = None
        if self._server is not None:
            self._server.close()
            self._server = None

    def _remove_model_dirs(self) -> None:
        for _, (_, backend) in self._models:
            if isinstance(backend, IsolatedModel):
                backend.close()

    def __enter__(self) -> Triton:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
