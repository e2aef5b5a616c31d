"""tritonlite: a Triton-compatible inference server you can pip install and import."""

from __future__ import annotations

from . import _core
from .errors import TritonError

_core.set_error_class(TritonError)

Tensor = _core.Tensor

from .server import Server, __version__  # noqa: E402

__all__ = ["Server", "Tensor", "TritonError"]
