"""The python backend: Triton python_backend ``model.py`` files, served unchanged.

A model is ``<model>/<version>/model.py`` (or ``default_model_filename``) defining
``class TritonPythonModel`` with optional ``auto_complete_config`` (staticmethod),
``initialize(args)``, ``execute(requests)`` (plain or ``async def``) and ``finalize()``, using
``import triton_python_backend_utils as pb_utils`` (this package's ``pb_utils`` module, put in
``sys.modules`` under that name before a model is imported).

Where instances run, chosen per model with a config parameter:

* ``EXECUTION_MODE: "stub"`` (default): each instance in its own process, as Triton does; a
  crash fails only the requests that instance held, and the instance restarts. Tensors cross in
  shared memory (``SHM_ARENA_BYTE_SIZE``, default 32 MiB per direction per instance; larger
  messages use a dedicated segment). See ``process.py``.
* ``EXECUTION_MODE: "in_process"``: on the instance's worker thread in the server, zero-copy,
  lowest latency, no isolation. See ``inprocess.py``.

    parameters { key: "EXECUTION_MODE" value { string_value: "in_process" } }

Public surface: ``create_backend`` (the backend factory; ``server=`` is where BLS calls go),
``python_auto_complete`` (for the config layer) and, on a backend, ``healthy`` (every instance
has a live model; False from a stub's crash until its replacement is initialized). Metrics that
models create with ``pb_utils.MetricFamily`` go to ``tritonlite.metrics``' custom registry
(``custom_metrics.py``), so every metrics endpoint exports them.

Modules: ``pb_utils`` (the model-facing API), ``loader`` (model files, args, names),
``executor`` (calling a model's methods by Triton's rules), ``inprocess`` and ``process``
(the two hosts; ``stub`` is the stub process' main), ``ipc``, ``shm`` and ``memfd`` (the wire,
with its schema, the shared memory between server and stub, and the sealed memfds behind it;
a stub is untrusted: see ``ipc``), ``cancel`` (the cancel board behind ``is_cancelled()`` in a
stub), ``bls``, ``custom_metrics``, ``runtime`` (what pb_utils calls back into).

Request cancellation is visible to models in both modes: ``request.is_cancelled()`` and
``response_sender.is_cancelled()`` turn True once the core request is cancelled (its client
went away or cancelled it, ...), without a round trip (in process it reads the core request's
flag; in a stub, the request's slot of a shared cancel board: see ``cancel.py``). A model may
poll it and stop early; what it answers then is its own choice.

BLS requests made by a cancelled request are cancelled with it (Triton's rule): a BLS call
(``exec()``, ``exec(decoupled=True)``, ``async_exec()``) made while ``execute()`` runs is
cancelled once every request of that batch is cancelled (requests of the batch already
answered, and not cancelled, are left out), so a queued callee is answered CANCELLED without
running and a running python callee sees ``is_cancelled()``; one made after that is answered
CANCELLED without being made. The server polls the parents' flags every 50 ms while such calls
are in flight (``bls.CancelWatch``); a stub names the batch in its BLS message and the server
maps it to the requests that instance holds. Calls made outside execute (``initialize``,
``finalize``, threads the model starts itself, which do not inherit the context variable that
names the batch) are not tied to any request and are never cancelled. A built BLS request's
own ``is_cancelled()`` is always False.

Not supported (and how it fails): request rescheduling (``set_release_flags(RESCHEDULE)``
raises), response parameters (ignored; request parameters, also of BLS requests, are passed),
GPU tensors in stub mode (UNSUPPORTED; in-process models get and return DLPack tensors on any
device), ``EXECUTION_ENV_PATH`` (a warning; the server's Python runs the model).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from ..._proto import model_config_pb2 as mc
from ...errors import INVALID_ARG, TritonError
from . import loader

__all__ = ["EXECUTION_MODE", "IN_PROCESS", "STUB", "create_backend", "python_auto_complete"]

EXECUTION_MODE = loader.EXECUTION_MODE
STUB = loader.STUB
IN_PROCESS = loader.IN_PROCESS

_log = logging.getLogger("tritonlite.python")


def create_backend(
    config: mc.ModelConfig, model_dir: Path, version_dir: Path, *, server: Any = None
) -> Any:
    """Load one version of a python model: start its instances' stubs (or, in process, import
    it) when the core creates the instances. ``server`` is the Server that serves the model:
    BLS calls, ``pb_utils.is_model_ready``/``load_model``/``unload_model`` go to it."""
    if loader.parameter(config, "EXECUTION_ENV_PATH"):
        _log.warning(
            "model '%s': EXECUTION_ENV_PATH is not supported; the model runs with the server's "
            "Python environment",
            config.name,
        )
    if loader.execution_mode(config) == IN_PROCESS:
        from .inprocess import InProcessBackend

        return InProcessBackend(config, Path(model_dir), Path(version_dir), server)
    from .process import StubBackend

    return StubBackend(config, Path(model_dir), Path(version_dir), server)


def python_auto_complete(config: mc.ModelConfig, model_dir: Path | str) -> mc.ModelConfig:
    """Run the model's ``TritonPythonModel.auto_complete_config`` (if it has one) on a copy of
    ``config`` and return the completed config. The model file is that of the highest numbered
    version. In stub mode it runs in a short-lived process (Triton runs it in a separate
    interpreter too); in process mode, here. A model file that never mentions
    ``auto_complete_config`` is not run at all. Raises TritonError(INVALID_ARG) naming the model
    if auto-complete fails."""
    model_dir = Path(model_dir)
    versions = sorted(
        (int(p.name), p) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()
    )
    filename = config.default_model_filename or loader.DEFAULT_MODEL_FILENAME
    candidates = [p / filename for _, p in reversed(versions) if (p / filename).is_file()]
    if not candidates:
        return config
    model_path = candidates[0]
    if "auto_complete_config" not in model_path.read_text(errors="replace"):
        return config  # nothing to run (and no process to start)
    document = _config_to_dict(config)
    paths = loader.model_paths(model_dir, model_path.parent)
    try:
        if loader.execution_mode(config) == IN_PROCESS:
            from .stub import run_auto_complete

            completed = run_auto_complete(str(model_path), paths, document)
        else:
            completed = _auto_complete_in_subprocess(str(model_path), paths, document)
    except TritonError:
        raise
    except Exception as e:
        raise TritonError(
            f"unable to auto-complete config for model '{config.name}': "
            f"{loader.format_exception(e)}",
            INVALID_ARG,
        ) from None
    out = mc.ModelConfig()
    try:
        json_format.ParseDict(completed, out)
    except json_format.ParseError as e:
        raise TritonError(
            f"auto_complete_config of model '{config.name}' produced an invalid config: {e}",
            INVALID_ARG,
        ) from None
    return out


def _config_to_dict(config: mc.ModelConfig) -> dict[str, Any]:
    from ...config import config_to_json

    document = config_to_json(config)
    document.setdefault("name", config.name)
    for key in ("input", "output"):
        document.setdefault(key, [])
    document.setdefault("max_batch_size", config.max_batch_size)
    return document


def _auto_complete_in_subprocess(
    model_path: str, paths: list[str], document: dict[str, Any]
) -> dict[str, Any]:
    request = json.dumps({"model_path": model_path, "paths": paths, "config": document})
    from .stub import command

    done = subprocess.run(
        command("--auto-complete"),
        input=request,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.stderr:
        sys.stderr.write(done.stderr)
    try:
        reply = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else None
    except json.JSONDecodeError:
        reply = None
    if reply is None:
        raise TritonError(
            f"unable to auto-complete config for model at '{model_path}': the auto-complete "
            f"process exited with code {done.returncode}",
            INVALID_ARG,
        )
    if "error" in reply:
        name = document.get("name", "")
        raise TritonError(
            f"unable to auto-complete config for model '{name}': {reply['error']}", INVALID_ARG
        )
    return reply["config"]  # type: ignore[no-any-return]
