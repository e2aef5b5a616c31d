"""Process isolation for a bound function: ``ModelConfig(isolated=True)`` (tritonlite's
extension; PyTriton always runs the function in the user's process).

Owns both halves:

- in the server (``isolated_backend``): checks that every function can be imported by its module
  and qualified name (lambdas, closures, bound methods, objects and functions of the ``__main__``
  script are refused with a message that says what to do), writes a python_backend model
  directory (private: ``mkdtemp``) whose ``model.py`` is ``isolated_stub`` and whose ``pytriton.pkl``
  holds the functions' ``module:qualname``, the server's ``sys.path`` and the model's
  ``TritonModelConfig`` (kept out of the served config, which clients can read), and loads it
  with the python backend's stub machinery: one stub process per instance, restarted by the
  server if it dies (a crash fails that instance's requests, never the server);
- in each stub (``isolated_stub.TritonPythonModel``, its own module so that the server side
  imports nothing of the stub side): imports the instance's function (``sys.path`` as the
  server had it), gives its decorator chain the model's ``TritonContext`` (``@triton_context``,
  ``@pad_batch``) and serves it as ``function_backend`` does in-process: a non-decoupled
  function whose outermost decorator is ``@batch`` gets the batch's inputs concatenated, any
  other gets ``list[Request]``; a decoupled (generator) function streams one response per yield.
"""

from __future__ import annotations

import importlib
import pickle
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .._proto import model_config_pb2 as mc
from .exceptions import PyTritonValidationError
from .model_config import TritonModelConfig

__all__ = ["IsolatedModel", "function_target"]

#: In the model directory: what the stubs need (written by the server for its own stubs).
SETTINGS = "pytriton.pkl"


# ---- the server side ---------------------------------------------------------------------------


def function_target(func: Any, model: str) -> str:
    """``module:qualname`` of ``func``, checked to import back to the very same object."""
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", None)
    what = f"model '{model}': ModelConfig(isolated=True) runs the function in another process"
    if not module or not qualname or getattr(func, "__self__", None) is not None:
        raise PyTritonValidationError(
            f"{what}, which imports it by module and name: bind a module-level function "
            f"(got {type(func).__name__} {func!r})"
        )
    if "<lambda>" in qualname or "<locals>" in qualname:
        raise PyTritonValidationError(
            f"{what}, which imports it by module and name: '{qualname}' is a lambda or a "
            "function defined inside another function; define it at module level"
        )
    if module == "__main__":
        raise PyTritonValidationError(
            f"{what}, which imports it by module and name: '{qualname}' is defined in the "
            "script being run (__main__), which the other process cannot import without "
            "running the script again; move it to a module and import it from there"
        )
    try:
        found: Any = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as e:
        raise PyTritonValidationError(
            f"{what}, which imports it by module and name: {module}:{qualname} cannot be "
            f"imported ({e})"
        ) from None
    if found is not func:
        raise PyTritonValidationError(
            f"{what}, which imports it by module and name: {module}:{qualname} is another "
            "object than the one bound (bind the module-level name itself)"
        )
    return f"{module}:{qualname}"


class IsolatedModel:
    """A bound model whose instances run in stub processes: its model directory and the
    python backend made for the server that serves it."""

    def __init__(
        self, proto: mc.ModelConfig, funcs: Sequence[Callable[..., Any]],
        config: TritonModelConfig,
    ) -> None:  # fmt: skip
        self.settings = {
            "functions": [function_target(f, proto.name) for f in funcs],
            "sys_path": [p for p in sys.path if isinstance(p, str)],
            "config": config,
        }
        self.proto = proto
        self.proto.parameters["EXECUTION_MODE"].string_value = "stub"
        self.dir: Path | None = None

    def backend(self, server: Any) -> Any:
        """The python backend serving the model for ``server`` (its directory made first: a
        restarted stub reads model.py again, so it stays until ``close``)."""
        from ..backends.python import create_backend

        if self.dir is None:
            self.dir = Path(tempfile.mkdtemp(prefix=f"tritonlite-pytriton-{self.proto.name}-"))
            (self.dir / "1").mkdir()
            (self.dir / SETTINGS).write_bytes(pickle.dumps(self.settings))
            (self.dir / "1" / "model.py").write_text(
                "# Generated by tritonlite.pytriton: serves the bound function in this stub.\n"
                "from tritonlite.pytriton.isolated_stub import TritonPythonModel  # noqa: F401\n"
            )
        return create_backend(self.proto, self.dir, self.dir / "1", server=server)

    def close(self) -> None:
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


# ---- the stub side -----------------------------------------------------------------------------
