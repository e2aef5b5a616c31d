"""The load pipeline: read, auto-complete, normalize and validate one model's config, in
Triton's order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import INVALID_ARG, TritonError
from .autocomplete.backend_fields import autofill_backend_fields
from .autocomplete.onnxruntime import onnx_auto_complete
from .autocomplete.python import PythonAutoComplete, merge_auto_completed
from .constants import _ONNX_BACKEND, _PYTHON_BACKEND, ModelConfig
from .normalize import normalize, normalize_instance_groups
from .parse import read_config
from .support import check_config_support
from .validate import validate_instance_groups, validate_io, validate_model


def load_model_config(
    model_dir: Path | str,
    *,
    model_name: str | None = None,
    config_name: str = "",
    auto_complete: bool = True,
    override: str | None = None,
    backend_hints: Mapping[str, Mapping[str, str]] | None = None,
    python_auto_complete: PythonAutoComplete | None = None,
    gpus: Sequence[int] = (),
) -> ModelConfig:
    """Read, complete, fill in and validate the config of the model in ``model_dir``.

    - ``model_name`` defaults to the directory name; a config ``name`` that differs is an
      error, as in Triton.
    - ``config_name`` (``--model-config-name``) reads ``configs/<config_name>.pbtxt`` instead of
      ``config.pbtxt`` where the model has it.
    - ``override`` is a JSON ModelConfig (the load API's ``config`` parameter); it replaces
      config.pbtxt entirely. Enum names match case-insensitively, as in Triton.
    - ``auto_complete`` enables backend auto-complete (ONNX inputs/outputs/max_batch_size;
      ``python_auto_complete`` for python models). Without it config.pbtxt must exist.
      Backend/platform/default_model_filename are resolved either way, as Triton does.
    - ``backend_hints`` are Triton ``--backend-config`` settings per backend name (``""``
      applies to every backend); ``default-max-batch-size`` (default 4) is used.
    - ``gpus`` are the device ids available; with none, KIND_AUTO groups become KIND_CPU
      and KIND_GPU groups are an error.

    Raises TritonError(INVALID_ARG) with Triton's message for anything invalid.
    """
    model_dir = Path(model_dir)
    name = model_name or model_dir.name
    config = read_config(model_dir, name, override, auto_complete, config_name)
    if config.name and config.name != name:
        raise TritonError(
            f"unexpected directory name '{name}' for model '{config.name}', "
            "directory name must equal model name",
            INVALID_ARG,
        )
    config.name = name

    autofill_backend_fields(config, model_dir)
    normalize(config)
    validate_model(config)
    if auto_complete:
        if config.backend == _ONNX_BACKEND:
            onnx_auto_complete(config, model_dir, backend_hints)
        elif config.backend == _PYTHON_BACKEND and python_auto_complete is not None:
            merge_auto_completed(config, python_auto_complete(_copy(config)))
        normalize(config)
        validate_model(config)
    normalize_instance_groups(config, gpus)
    validate_instance_groups(config, gpus)
    validate_io(config)
    check_config_support(config)  # what tritonlite refuses or warns about, by field
    return config


def _copy(config: ModelConfig) -> ModelConfig:
    clone = ModelConfig()
    clone.CopyFrom(config)
    return clone
