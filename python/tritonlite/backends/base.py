"""The contract between the C++ instance workers and a backend.

A *Backend* is created once per loaded model version; it creates one *BackendInstance* per
instance of the model's ``instance_group``. Each instance is driven by its own C++ worker thread,
which holds the GIL only while it calls ``execute``; a backend should release the GIL while it
computes (onnxruntime and torch do).

``execute`` receives one gathered batch: every input as a numpy array whose first dim is the
batch dim when the model batches (a zero-copy view of the request's buffer when the batch is a
single request), BYTES inputs as numpy object arrays of ``bytes``. It returns a dict with (at
least) the outputs named in ``output_names`` as numpy arrays, or any DLPack-capable array (torch,
cupy), BYTES outputs as numpy object/bytes arrays. Raising ``TritonError`` fails the batch with
that status; any other exception fails it as INTERNAL with the exception's message.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..config.constants import ModelConfig


#: Model ``parameters`` the server itself reads, whatever the backend.
CORE_PARAMETERS = frozenset({"sequence_backlog_limit"})


def warn_unknown_parameters(
    config: ModelConfig,
    backend: str,
    known: Iterable[str],
    *,
    known_prefixes: Iterable[str] = (),
    hints: Mapping[str, str] | None = None,
    log: logging.Logger | None = None,
) -> list[str]:
    """Triton's backends ignore ``parameters`` they do not know; tritonlite ignores them too but
    says so: one warning per unknown key, naming the model and the key (``hints`` adds a line for
    keys a user may expect to work). Returns the unknown keys."""
    known_set = set(known) | CORE_PARAMETERS
    prefixes = tuple(known_prefixes)
    unknown = [
        key
        for key in sorted(config.parameters)
        if key not in known_set and not (prefixes and key.startswith(prefixes))
    ]
    logger = log or logging.getLogger("tritonlite")
    for key in unknown:
        hint = (hints or {}).get(key, "")
        logger.warning(
            "model '%s': parameter '%s' is not one the %s backend reads: ignored (as Triton "
            "does)%s",
            config.name,
            key,
            backend,
            f"; {hint}" if hint else "",
        )
    return unknown


class BackendInstance(Protocol):
    """One instance of a batching backend. An instance may set ``runs_on_any_thread = True``
    when ``execute`` may be called from a thread other than the instance's own (one call at a
    time): on a one-CPU budget the native gRPC I/O thread then runs ready batches itself
    instead of handing them to the instance's thread (README "One CPU"). Left out: False. (A
    ``RequestBackendInstance`` may set it for ``execute_requests`` too: its short batches then
    run there on any budget, as the python backend's stub mode does.)"""

    def execute(self, inputs: dict[str, np.ndarray], output_names: list[str]) -> dict[str, Any]:
        """Run one batch; return the requested outputs."""
        ...

    def close(self) -> None:
        """Release the instance's resources (sessions, device memory)."""
        ...


class RequestBackendInstance(Protocol):
    """An instance of a backend with ``per_request_execution = True`` (the python backend):
    it gets the batch as ``tritonlite._core.Request`` objects and answers each one itself
    with ``request.respond(outputs, error, final)`` — any number of responses, exactly one
    final, now or later from any thread."""

    def execute_requests(self, requests: list[Any]) -> None: ...

    def close(self) -> None: ...


class Backend(Protocol):
    def create_instance(self, index: int, kind: str, device_id: int) -> BackendInstance:
        """Instance number ``index`` of kind 'KIND_CPU' or 'KIND_GPU' on ``device_id``."""
        ...

    def close(self) -> None:
        """Called once after every instance has been closed (model unload)."""
        ...


class BackendFactory(Protocol):
    def __call__(
        self, config: ModelConfig, model_dir: Path, version_dir: Path, *, server: Any = None
    ) -> Backend:
        """Load the model for one version. ``config`` is complete (auto-completed, defaults
        filled); ``server`` is the Server that will serve it (for backends that call other
        models: ensembles, BLS). Raise TritonError (INVALID_ARG / UNAVAILABLE) with a clear
        message on failure."""
        ...
