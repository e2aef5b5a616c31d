"""Triton's server-side AutoCompleteBackendFields: the backend, platform and default model file
name, from what the config gives and the files of one version directory (done also when
backend auto-complete is disabled, as in Triton)."""

from __future__ import annotations

from pathlib import Path

from ...errors import INVALID_ARG, TritonError
from ..constants import (
    _KNOWN_MODEL_FILES,
    _ONNX_BACKEND,
    _ONNX_FILE,
    _ONNX_PLATFORM,
    _OPENVINO_BACKEND,
    _OPENVINO_FILE,
    _PYTHON_BACKEND,
    _PYTHON_FILE,
    _TF_BACKEND,
    _TF_GRAPHDEF_FILE,
    _TF_GRAPHDEF_PLATFORM,
    _TF_SAVEDMODEL_FILE,
    _TF_SAVEDMODEL_PLATFORM,
    _TORCH_BACKEND,
    _TORCH_FILE,
    _TORCH_PLATFORM,
    _TRT_BACKEND,
    _TRT_FILE,
    _TRT_PLATFORM,
    ModelConfig,
)
from ..versions import version_dirs


#: Backends told by their platform, default file name or model file, in Triton's order:
#: (backend, platform or "" for none, default model file, whether that file must be a
#: directory: None either (model.onnx may be a directory), False a plain file).
_FILE_BACKENDS: tuple[tuple[str, str, str, bool | None], ...] = (
    (_TRT_BACKEND, _TRT_PLATFORM, _TRT_FILE, False),
    (_ONNX_BACKEND, _ONNX_PLATFORM, _ONNX_FILE, None),
    (_OPENVINO_BACKEND, "", _OPENVINO_FILE, None),
    (_TORCH_BACKEND, _TORCH_PLATFORM, _TORCH_FILE, False),
    (_PYTHON_BACKEND, "", _PYTHON_FILE, None),
)


def _inspected_version_dir(model_dir: Path) -> tuple[Path | None, set[str]]:
    """The version directory whose files decide the backend, and its entries.

    Triton looks at one version directory; we take the highest one holding a known model
    file, else the lowest one.
    """
    versions = version_dirs(model_dir)
    for version in sorted(versions, reverse=True):
        entries = {p.name for p in versions[version].iterdir()}
        if entries & _KNOWN_MODEL_FILES:
            return versions[version], entries
    if versions:
        first = versions[min(versions)]
        return first, {p.name for p in first.iterdir()}
    return None, set()


def autofill_backend_fields(config: ModelConfig, model_dir: Path) -> None:
    """Triton's AutoCompleteBackendFields: backend, platform, default_model_filename."""
    version_path, content = _inspected_version_dir(model_dir)
    has_version = version_path is not None

    def present(filename: str, *, want_dir: bool | None = None) -> bool:
        if version_path is None or filename not in content:
            return False
        return want_dir is None or (version_path / filename).is_dir() == want_dir

    # TensorFlow: the platform decides.
    if not config.platform and config.backend in ("", _TF_BACKEND):
        if config.default_model_filename == _TF_SAVEDMODEL_FILE:
            config.platform = _TF_SAVEDMODEL_PLATFORM
        elif config.default_model_filename == _TF_GRAPHDEF_FILE:
            config.platform = _TF_GRAPHDEF_PLATFORM
        elif not config.default_model_filename and has_version:
            if present(_TF_SAVEDMODEL_FILE, want_dir=True):
                config.platform = _TF_SAVEDMODEL_PLATFORM
            if present(_TF_GRAPHDEF_FILE, want_dir=False):
                config.platform = _TF_GRAPHDEF_PLATFORM
    if config.platform in (_TF_SAVEDMODEL_PLATFORM, _TF_GRAPHDEF_PLATFORM):
        config.backend = config.backend or _TF_BACKEND
        if not config.default_model_filename:
            config.default_model_filename = (
                _TF_SAVEDMODEL_FILE
                if config.platform == _TF_SAVEDMODEL_PLATFORM
                else _TF_GRAPHDEF_FILE
            )
        return

    unspecified = not config.platform and not config.default_model_filename and has_version

    for backend, platform, filename, want_dir in _FILE_BACKENDS:
        if not config.backend and (
            (platform and config.platform == platform)
            or config.default_model_filename == filename
            or (unspecified and present(filename, want_dir=want_dir))
        ):
            config.backend = backend
        if config.backend == backend:
            if platform:
                config.platform = config.platform or platform
            config.default_model_filename = config.default_model_filename or filename
            return

    # Custom backend: only when nothing at all is given, from a 'model.<backend>' name.
    if not config.backend and not config.platform and not config.default_model_filename:
        _, dot, backend = config.name.partition(".")
        if not dot:
            raise TritonError(
                f"Invalid model name: Could not determine backend for model '{config.name}' "
                "with no backend in model configuration. Expected model name of the form "
                "'model.<backend_name>'.",
                INVALID_ARG,
            )
        config.backend = backend
        config.default_model_filename = f"model.{backend}"
