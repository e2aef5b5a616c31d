"""Backend plugins: what runs a model's batches (onnxruntime, pytorch, python).

``get_backend_factory(name)`` maps a config's backend name to the factory that loads a model
version (see base.py for the contract). Backends are imported on first use, so a missing
optional framework only matters to the models that need it.
"""

from __future__ import annotations

import importlib
from typing import cast

from ..errors import INVALID_ARG, TritonError
from .base import BackendFactory

_MODULES = {
    "onnxruntime": "tritonlite.backends.onnxruntime",
    "pytorch": "tritonlite.backends.pytorch",
    "python": "tritonlite.backends.python",
    "ensemble": "tritonlite.backends.ensemble",
}


def backend_names() -> list[str]:
    return sorted(_MODULES)


def get_backend_factory(name: str, model: str) -> BackendFactory:
    """The factory for backend ``name``; INVALID_ARG naming the model if there is none."""
    module = _MODULES.get(name)
    if module is None:
        raise TritonError(
            f"unable to find backend '{name}' for model '{model}': available backends are "
            + ", ".join(repr(n) for n in backend_names()),
            INVALID_ARG,
        )
    return cast(BackendFactory, importlib.import_module(module).create_backend)
