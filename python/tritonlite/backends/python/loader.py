"""Finding, importing and describing a Triton python model, the same way in both execution modes.

This module owns what Triton derives from a python model's config and files: the model file's
path, the ``sys.path`` entries a model gets (its version directory, then its model directory,
appended as Triton does), installing ``pb_utils`` as ``triton_python_backend_utils``, importing
``model.py`` into a fresh module, the ``args`` dict given to ``initialize``, instance names
(``<group>_<n>``), the backend's own config parameters, and Triton's way of formatting a
Python exception (``Type: message`` then ``At:`` and the model's frames).
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import sys
import traceback
from pathlib import Path

from ... import _core
from ..._proto import model_config_pb2 as mc
from ...config.instances import instance_placements
from ...errors import INVALID_ARG, UNAVAILABLE, TritonError
from . import pb_utils

DEFAULT_MODEL_FILENAME = "model.py"

#: Config parameter choosing where instances run: "stub" (default) or "in_process".
EXECUTION_MODE = "EXECUTION_MODE"
STUB = "stub"
IN_PROCESS = "in_process"
#: Config parameter: bytes of each stub's shared-memory arena per direction (default 32 MiB).
SHM_ARENA_BYTE_SIZE = "SHM_ARENA_BYTE_SIZE"
DEFAULT_ARENA_BYTES = 32 << 20

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_module_ids = itertools.count()


def parameter(config: mc.ModelConfig, key: str) -> str | None:
    if key in config.parameters:
        return str(config.parameters[key].string_value)
    return None


def execution_mode(config: mc.ModelConfig) -> str:
    mode = (parameter(config, EXECUTION_MODE) or STUB).strip().lower()
    if mode not in (STUB, IN_PROCESS):
        raise TritonError(
            f"model '{config.name}': parameter {EXECUTION_MODE} must be '{STUB}' or "
            f"'{IN_PROCESS}', got '{mode}'",
            INVALID_ARG,
        )
    return mode


def arena_bytes(config: mc.ModelConfig, default: int | None = None) -> int:
    """The stub's shared-memory arena size (each direction): the model's SHM_ARENA_BYTE_SIZE,
    else ``default`` (--backend-config python,shm-default-byte-size), else 32 MiB."""
    value = parameter(config, SHM_ARENA_BYTE_SIZE)
    if value is None:
        return default or DEFAULT_ARENA_BYTES
    try:
        size = int(value)
    except ValueError:
        size = 0
    if size < 4096:
        raise TritonError(
            f"model '{config.name}': parameter {SHM_ARENA_BYTE_SIZE} must be an integer >= 4096, "
            f"got '{value}'",
            INVALID_ARG,
        )
    return size


def is_decoupled(config: mc.ModelConfig) -> bool:
    return bool(config.model_transaction_policy.decoupled)


def model_file(config: mc.ModelConfig, version_dir: Path) -> Path:
    path = Path(version_dir) / (config.default_model_filename or DEFAULT_MODEL_FILENAME)
    if not path.is_file():
        raise TritonError(
            f"unable to load model '{config.name}': python model file '{path}' does not exist",
            UNAVAILABLE,
        )
    return path


def model_paths(model_dir: Path, version_dir: Path) -> list[str]:
    """What Triton appends to a model's ``sys.path``, in order."""
    return [str(version_dir), str(model_dir)]


def install_pb_utils() -> None:
    """Make ``import triton_python_backend_utils`` give this backend's pb_utils."""
    sys.modules["triton_python_backend_utils"] = pb_utils


def import_model_class(path: Path, model_name: str, paths: list[str]) -> type:
    """Import ``path`` as a fresh module (module-level state is per instance, as in Triton's
    one-interpreter-per-instance) and return its ``TritonPythonModel``."""
    install_pb_utils()
    for p in paths:
        if p not in sys.path:
            sys.path.append(p)
    module_name = f"tritonlite_python_model_{next(_module_ids)}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise TritonError(f"model '{model_name}': cannot import '{path}'", INVALID_ARG)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    cls = getattr(module, "TritonPythonModel", None)
    if not isinstance(cls, type):
        sys.modules.pop(module_name, None)
        raise TritonError(
            f"model '{model_name}': '{path}' does not define a class named TritonPythonModel",
            INVALID_ARG,
        )
    return cls


def instance_names(config: mc.ModelConfig) -> list[str]:
    """Triton's instance names (``<group name>_<n>``), in the order the core creates them."""
    return [p.name for p in instance_placements(config, _core.cuda_device_count())]


def initialize_args(
    config_json: str,
    model_name: str,
    version: str,
    kind: str,
    device_id: int,
    instance_name: str,
    model_dir: Path,
) -> dict[str, str]:
    """The ``args`` Triton passes to ``initialize`` (every value a string)."""
    return {
        "model_config": config_json,
        "model_instance_kind": kind.removeprefix("KIND_"),
        "model_instance_name": instance_name,
        "model_instance_device_id": str(device_id),
        "model_repository": str(model_dir),
        "model_version": version,
        "model_name": model_name,
    }


def config_json(config: mc.ModelConfig) -> str:
    """The config as the JSON string Triton gives models (``args['model_config']``)."""
    from ...config import config_to_json

    return json.dumps(config_to_json(config), separators=(",", ":"))


def format_exception(exc: BaseException) -> str:
    """pybind11's rendering, as Triton's python backend reports errors: ``Type: message``,
    then ``At:`` and the model's own frames, innermost first."""
    text = f"{type(exc).__name__}: {exc}"
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if not os.path.abspath(f.filename).startswith(_PACKAGE_DIR)
    ]
    if frames:
        text += "\n\nAt:\n" + "".join(
            f"  {f.filename}({f.lineno}): {f.name}\n" for f in reversed(frames)
        )
    return text


class ModelInfo:
    """What both hosts need to know about one python model version."""

    def __init__(self, config: mc.ModelConfig, model_dir: Path, version_dir: Path) -> None:
        self.config = config
        self.model_name = str(config.name)
        self.model_dir = Path(model_dir)
        self.version_dir = Path(version_dir)
        self.version = self.version_dir.name
        self.version_number = int(self.version) if self.version.isdigit() else -1
        self.model_path = model_file(config, self.version_dir)
        self.paths = model_paths(self.model_dir, self.version_dir)
        self.decoupled = is_decoupled(config)
        self.config_json = config_json(config)
        self.output_names = [o.name for o in config.output]
        self._names: list[str] = []

    def initialize_args(self, kind: str, device_id: int, instance_name: str) -> dict[str, str]:
        """The ``args`` of one instance's ``initialize``."""
        return initialize_args(
            self.config_json, self.model_name, self.version, kind, device_id, instance_name,
            self.model_dir,
        )  # fmt: skip

    def instance_name(self, index: int) -> str:
        if not self._names:
            self._names = instance_names(self.config)
        return self._names[index] if index < len(self._names) else f"{self.model_name}_{index}"
