"""In-process execution (``parameters { key: "EXECUTION_MODE" value { string_value:
"in_process" } }``): the model runs on its instance's C++ worker thread, in the server's
interpreter, with no copies and no IPC.

This module owns that host: one ``TritonPythonModel`` per instance (``model.py`` imported once
per instance, so module state is per instance as in Triton), pb_utils requests over zero-copy
numpy views of the core's input tensors, responses answered straight on the core's requests,
and the in-process runtime behind pb_utils (BLS on the server, the ``tritonlite.python``
logger, the custom-metrics registry). A request's ``is_cancelled()`` reads the core request's
cancel flag. The batch's core requests are ``bls.PARENTS`` while execute runs (a context
variable: an ``async def execute``'s tasks keep it), so the BLS calls it makes are cancelled
with them (``bls.py``).

The price of the speed: a model that crashes takes the server with it, one that holds the GIL
stalls every other Python thread, and every in-process model shares ``sys.path`` and
``sys.modules``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ...errors import INTERNAL, TritonError
from . import bls, custom_metrics, loader, runtime
from .executor import ExecuteError, ModelCaller, error_status, response_tensors
from .pb_utils import (
    InferenceRequest,
    InferenceResponse,
    InferenceResponseSender,
    InferenceTrace,
    Tensor,
)

__all__ = ["InProcessBackend", "InProcessInstance"]

_log = logging.getLogger("tritonlite.python")



def _trace_of(server: Any, trace_id: int) -> InferenceTrace | None:
    """``request.trace()`` of a traced core request: its BLS calls pass the trace id."""
    trace = server.tracing.live(trace_id) if server is not None else None
    return InferenceTrace(trace_id, trace.context()) if trace is not None else None

class InProcessRuntime:
    """pb_utils' host for one in-process instance."""

    def __init__(self, backend: InProcessBackend, instance_name: str) -> None:
        self.backend = backend
        self.instance_name = instance_name
        self.version_dir = str(backend.version_dir)

    def bls(self, request: InferenceRequest, decoupled: bool) -> Any:
        return bls.exec_sync(self.backend.server, request, decoupled)

    def bls_async(self, request: InferenceRequest, decoupled: bool) -> Any:
        return bls.exec_async(self.backend.server, request, decoupled)

    def log(self, level: int, message: str, where: tuple[str, int]) -> None:
        runtime.emit_model_log(level, message, *where)

    def metric_family(self, name: str, description: str, kind: int) -> Any:
        return custom_metrics.registry().family(name, description, kind, self.backend)

    def metric(self, family: Any, labels: dict[str, str], buckets: list[float] | None) -> Any:
        return custom_metrics.registry().metric(
            family, labels, buckets, self.backend, self.instance_name
        )

    def metric_family_delete(self, family: Any) -> None:
        custom_metrics.registry().drop_family(family, self.backend)

    def metric_delete(self, metric: Any) -> None:
        custom_metrics.registry().drop_metric(metric, self.backend)

    def model_control(self, op: str, **kwargs: Any) -> Any:
        return model_control(self.backend.server, op, kwargs)


def model_control(server: Any, op: str, kwargs: dict[str, Any]) -> Any:
    """pb_utils.is_model_ready / load_model / unload_model on the server."""
    from .pb_utils import TritonModelException

    if server is None:
        raise TritonModelException(f"{op}: this python backend was created without a server")
    try:
        if op == "is_model_ready":
            version = kwargs.get("model_version") or None
            return server.model_ready(kwargs["model_name"], int(version) if version else None)
        if op == "load_model":
            server.load_model(
                kwargs["model_name"], kwargs.get("config") or None, kwargs.get("files") or None
            )
            return None
        if op == "unload_model":
            server.unload_model(
                kwargs["model_name"], unload_dependents=bool(kwargs.get("unload_dependents"))
            )
            return None
    except TritonError as e:
        raise TritonModelException(e.message) from None
    raise TritonModelException(f"unknown model control operation '{op}'")


class InProcessInstance:
    """One model instance running in the server's interpreter."""

    def __init__(self, backend: InProcessBackend, index: int, kind: str, device_id: int) -> None:
        self.backend = backend
        self.name = backend.instance_name(index)
        self.runtime = InProcessRuntime(backend, self.name)
        cls = loader.import_model_class(backend.model_path, backend.model_name, backend.paths)
        token = runtime.activate(self.runtime)
        try:
            self.caller = ModelCaller(self.name, cls(), backend.decoupled)
            args = backend.initialize_args(kind, device_id, self.name)
            self.caller.initialize(args)
        except Exception as e:
            raise TritonError(
                f"Failed to initialize model instance '{self.name}': {loader.format_exception(e)}",
                INTERNAL,
            ) from None
        finally:
            runtime.deactivate(token)

    def execute_requests(self, requests: list[Any]) -> None:
        backend = self.backend
        decoupled = backend.decoupled
        pb_requests = []
        for r in requests:
            inputs = [
                Tensor._wrap(name, t.numpy(), t.datatype)
                if t.is_cpu
                else Tensor._wrap(name, None, t.datatype, t)
                for name, t in r.inputs()
            ]
            # A sequence batcher's filler (Triton's null request) requests no outputs.
            requested = [] if r.null_request else list(r.requested_outputs) or backend.output_names
            correlation = r.correlation_id_str or r.correlation_id
            responder = _CoreResponder(r, requested)
            sender = InferenceResponseSender(
                responder.send, decoupled, responder.cancelled, responder.fail
            )
            pb_requests.append(
                InferenceRequest._incoming(
                    inputs,
                    requested,
                    r.id,
                    correlation,
                    r.flags,
                    r.timeout_us,
                    backend.model_name,
                    backend.version_number,
                    sender,
                    r.parameters,
                    _trace_of(backend.server, r.trace_id) if r.trace_id else None,
                )
            )
        token = runtime.activate(self.runtime)
        parents = bls.PARENTS.set(tuple(requests))  # BLS calls made here are cancelled with them
        try:
            responses = self.caller.execute(pb_requests)
        except ExecuteError as e:
            raise TritonError(str(e), INTERNAL) from None
        finally:
            bls.PARENTS.reset(parents)
            runtime.deactivate(token)
        if responses is None:
            return
        for r, pb_request, response in zip(requests, pb_requests, responses, strict=True):
            if response is not None:
                pb_request._sender._closed = True  # type: ignore[union-attr]
                _respond(r, response, pb_request._requested)

    def close(self) -> None:
        token = runtime.activate(self.runtime)
        try:
            self.caller.finalize()
        except Exception as e:
            _log.error(
                "model instance '%s': finalize failed: %s", self.name, loader.format_exception(e)
            )
        finally:
            runtime.deactivate(token)


class _CoreResponder:
    """A response sender's way to one core request, and to its cancel flag (what
    ``is_cancelled()`` reads: a lock-free load in the core). The stub process's counterpart is
    ``stub._StubResponder``; pb_utils' response sender calls either through ``send``,
    ``cancelled`` and ``fail``."""

    __slots__ = ("request", "requested")

    def __init__(self, request: Any, requested: list[str]) -> None:
        self.request = request
        self.requested = requested

    def send(self, response: InferenceResponse | None, final: bool) -> None:
        if response is None:
            self.request.respond(None, None, final)
        else:
            _respond(self.request, response, self.requested, final)

    def fail(self, message: str) -> None:
        """The request fails without the model's answer (BACKEND in the statistics)."""
        try:
            self.request.respond(None, ("INTERNAL", message), True)
        except TritonError:  # it had its final response already
            pass

    def cancelled(self) -> bool:
        return bool(self.request.cancelled)


def _respond(
    request: Any, response: InferenceResponse, requested: list[str], final: bool = True
) -> None:
    error = response._error
    if error is not None:  # the model's answer: Triton counts the request a success
        request.respond(None, error_status(error), final, model_error=True)
        return
    outputs = {name: payload for name, _, _, payload in response_tensors(response, requested)}
    request.respond(outputs, None, final)


class InProcessBackend(loader.ModelInfo):
    """A python model version whose instances run in the server process."""

    per_request_execution = True

    def __init__(self, config: Any, model_dir: Path, version_dir: Path, server: Any = None) -> None:
        super().__init__(config, model_dir, version_dir)
        self.server = server
        self._runtime = InProcessRuntime(self, self.model_name)
        runtime.add_fallback(self._runtime)

    def create_instance(self, index: int, kind: str, device_id: int) -> InProcessInstance:
        return InProcessInstance(self, index, kind, device_id)

    @property
    def healthy(self) -> bool:
        return True

    def close(self) -> None:
        runtime.remove_fallback(self._runtime)
        custom_metrics.registry().release(self)
