"""tritonlite: a Triton-compatible inference server you can pip install and import."""

from __future__ import annotations

from . import _core
from .errors import TritonError

_core.set_error_class(TritonError)

Tensor = _core.Tensor

from .server import Server, __version__  # noqa: E402, F401 (tritonlite.__version__)


def function(*args: object, **kwargs: object) -> object:
    """``@tritonlite.function``: serve a typed Python function (see pytriton/typed_function.py)."""
    from .pytriton.typed_function import function as _function

    return _function(*args, **kwargs)  # type: ignore[arg-type]


__all__ = ["Server", "Tensor", "TritonError", "function"]
