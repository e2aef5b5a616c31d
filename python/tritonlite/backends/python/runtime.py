"""The host side of ``pb_utils``: what a model's BLS calls, log records and custom metrics go to.

``pb_utils`` is the same module in the stub process and in the server (in-process models); what
differs is the *runtime* behind it. The stub installs one process-wide runtime that forwards to
the server over IPC (``stub.StubRuntime``); an in-process instance sets its runtime in a context
variable around every call into model code (``inprocess.InProcessRuntime``). Threads a model
starts itself do not inherit context variables: for them, in the server process, the runtime of
the in-process model loaded last is used (the server behind every in-process runtime is the
same in any real deployment).
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol

# pb_utils' request and response types (pb_utils imports this module, not the other way).
InferenceRequest = Any
InferenceResponse = Any

__all__ = ["MetricHandle", "Runtime", "current", "emit_model_log", "set_process_runtime"]

#: pb_utils.LogLevel (INFO 0, WARNING 1, ERROR 2, VERBOSE 3) -> logging levels.
_LOG_LEVELS = {0: logging.INFO, 1: logging.WARNING, 2: logging.ERROR, 3: logging.DEBUG}
_model_log = logging.getLogger("tritonlite.python")


def emit_model_log(level: int, message: str, filename: str, lineno: int) -> None:
    """A model's ``pb_utils.Logger`` line, in the server's log as Triton writes it: the model's
    file and line (``model.py:12] "message"``), not the server's."""
    py_level = _LOG_LEVELS.get(level, logging.INFO)
    if not _model_log.isEnabledFor(py_level):
        return
    record = _model_log.makeRecord(
        _model_log.name, py_level, filename, max(0, int(lineno)), "%s", (message,), None
    )
    _model_log.handle(record)


class MetricHandle(Protocol):
    def increment(self, value: float) -> None: ...
    def set(self, value: float) -> None: ...
    def observe(self, value: float) -> None: ...
    def value(self) -> float: ...


class Runtime(Protocol):
    """What pb_utils needs from its host."""

    version_dir: str  # what pb_utils.get_model_dir() returns, as in Triton

    def bls(
        self, request: InferenceRequest, decoupled: bool
    ) -> InferenceResponse | Iterator[InferenceResponse]: ...

    async def bls_async(
        self, request: InferenceRequest, decoupled: bool
    ) -> InferenceResponse | Iterator[InferenceResponse] | AsyncIterator[InferenceResponse]: ...

    def log(self, level: int, message: str, where: tuple[str, int]) -> None: ...

    def metric_family(self, name: str, description: str, kind: int) -> Any: ...

    def metric(
        self, family: Any, labels: dict[str, str], buckets: list[float] | None
    ) -> MetricHandle: ...

    def metric_family_delete(self, family: Any) -> None: ...

    def metric_delete(self, metric: MetricHandle) -> None: ...

    def model_control(self, op: str, **kwargs: Any) -> Any: ...


_current: contextvars.ContextVar[Runtime | None] = contextvars.ContextVar(
    "tritonlite_python_runtime", default=None
)
_process_runtime: Runtime | None = None
_fallbacks: list[Runtime] = []


def current() -> Runtime | None:
    """The runtime of the model code running now (None outside a served model)."""
    return _current.get() or _process_runtime or (_fallbacks[-1] if _fallbacks else None)


def set_process_runtime(runtime: Runtime | None) -> None:
    """The stub's one runtime, used by every thread of the process."""
    global _process_runtime
    _process_runtime = runtime


def activate(runtime: Runtime) -> contextvars.Token[Runtime | None]:
    return _current.set(runtime)


def deactivate(token: contextvars.Token[Runtime | None]) -> None:
    _current.reset(token)


def add_fallback(runtime: Runtime) -> None:
    _fallbacks.append(runtime)


def remove_fallback(runtime: Runtime) -> None:
    try:
        _fallbacks.remove(runtime)
    except ValueError:
        pass
