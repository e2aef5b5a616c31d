"""Process isolation for a bound function: ``ModelConfig(isolated=True)`` (tritonlite's
extension; PyTriton always runs the function in the user's process).

Owns both halves:

- in the server (``isolated_backend``): checks that every function can be imported by its module
  and qualified name (lambdas, closures, bound methods, objects and functions of the ``__main__``
  script are refused with a message that says what to do), writes a python_backend model
  directory (private: ``mkdtemp``) whose ``model.py`` is this module and whose ``pytriton.pkl``
  holds the functions' ``module:qualname``, the server's ``sys.path`` and the model's
  ``TritonModelConfig`` (kept out of the served config, which clients can read), and loads it
  with the python backend's stub machinery: one stub process per instance, restarted by the
  server if it dies (a crash fails that instance's requests, never the server);
- in each stub (``TritonPythonModel``): imports the instance's function (``sys.path`` as the
  server had it), gives its decorator chain the model's ``TritonContext`` (``@triton_context``,
  ``@pad_batch``) and serves it as ``function_backend`` does in-process: a non-decoupled
  function whose outermost decorator is ``@batch`` gets the batch's inputs concatenated, any
  other gets ``list[Request]``; a decoupled (generator) function streams one response per yield.
"""

from __future__ import annotations

import importlib
import json
import pickle
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .._proto import model_config_pb2 as mc
from .exceptions import PyTritonValidationError
from .model_config import TritonModelConfig

__all__ = ["IsolatedModel", "TritonPythonModel", "function_target"]

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
                "from tritonlite.pytriton.isolated import TritonPythonModel  # noqa: F401\n"
            )
        return create_backend(self.proto, self.dir, self.dir / "1", server=server)

    def close(self) -> None:
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


# ---- the stub side -----------------------------------------------------------------------------


def _resolve(target: str) -> Any:
    module, _, qualname = target.partition(":")
    found: Any = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found


class TritonPythonModel:
    """The python_backend model each stub runs: calls the instance's bound function."""

    def initialize(self, args: dict[str, str]) -> None:
        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils
        config = json.loads(args["model_config"])
        # written by the server that started this stub, in its private model directory
        settings = pickle.loads((Path(args["model_repository"]) / SETTINGS).read_bytes())
        for entry in reversed(settings["sys_path"]):
            if entry not in sys.path:
                sys.path.insert(0, entry)
        # a stub's ``tritonlite`` is the bare package (stub.BOOTSTRAP, its __init__ not run):
        # give it ``tritonlite.function`` so that a module decorating with it imports here too
        import tritonlite

        if not hasattr(tritonlite, "function"):
            from .typed_function import function

            tritonlite.function = function  # type: ignore[attr-defined]
        from .decorators import TritonContext, inject_triton_context

        index = int(args["model_instance_name"].rsplit("_", 1)[1])
        self.func = _resolve(settings["functions"][index])
        inject_triton_context(TritonContext(), [self.func], settings["config"])
        self.decoupled = bool(config.get("model_transaction_policy", {}).get("decoupled"))
        self.batched = None if self.decoupled else getattr(self.func, "__tritonlite_batched__",
                                                           None)  # fmt: skip
        self.outputs = [o["name"] for o in config.get("output", [])]
        self.batching = int(config.get("max_batch_size", 0)) > 0

    def _error(self, e: BaseException) -> Any:
        from .exceptions import PyTritonUserError

        if isinstance(e, PyTritonUserError):
            return self.pb.TritonError(str(e), self.pb.TritonError.INVALID_ARG)
        return self.pb.TritonError(f"{type(e).__name__}: {e}")

    def _response(self, request: Any, result: Any) -> Any:
        if isinstance(result, (list, tuple)) and len(result) == len(self.outputs):
            result = dict(zip(self.outputs, result, strict=True))
        if not isinstance(result, Mapping):
            return self.pb.InferenceResponse(error=self.pb.TritonError(
                f"the inference function must return a dict of numpy arrays, got "
                f"{type(result).__name__}"))  # fmt: skip
        wanted = request.requested_output_names() or self.outputs
        import numpy as np

        return self.pb.InferenceResponse(
            [self.pb.Tensor(n, np.asarray(result[n])) for n in wanted if n in result]
        )

    def execute(self, requests: list[Any]) -> Any:
        from .decorators import Request

        inputs = [{t.name(): t.as_numpy() for t in r.inputs()} for r in requests]
        if self.batched is not None:
            return self._execute_gathered(requests, inputs)
        batch = [Request(data, json.loads(r.parameters() or "{}")) for r, data in
                 zip(requests, inputs, strict=True)]  # fmt: skip
        try:
            result = self.func(batch)
            if self.decoupled:
                senders = [r.get_response_sender() for r in requests]
                for step in result:
                    for r, sender, out in zip(requests, senders, step, strict=True):
                        sender.send(self._response(r, out))
                for sender in senders:
                    sender.send(flags=self.pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
                return None
            if not isinstance(result, Sequence) or len(result) != len(requests):
                raise TypeError(
                    f"the inference function must return a list of {len(requests)} dicts "
                    "(one per request)"
                )
            return [self._response(r, out) for r, out in zip(requests, result, strict=True)]
        except Exception as e:
            error = self._error(e)
            if self.decoupled:
                for r in requests:
                    sender = r.get_response_sender()
                    sender.send(self.pb.InferenceResponse(error=error),
                                flags=self.pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL)  # fmt: skip
                return None
            return [self.pb.InferenceResponse(error=error) for _ in requests]

    def _execute_gathered(self, requests: list[Any], inputs: list[dict[str, Any]]) -> Any:
        import numpy as np

        names = list(inputs[0])
        if any(list(i) != names for i in inputs[1:]):
            error = self.pb.TritonError(
                "@batch: requests in one batch have different inputs; use @group_by_keys",
                self.pb.TritonError.INVALID_ARG,
            )
            return [self.pb.InferenceResponse(error=error) for _ in requests]
        sizes = [len(next(iter(i.values()))) if i and self.batching else 1 for i in inputs]
        gathered = inputs[0] if len(inputs) == 1 else {
            n: np.concatenate([i[n] for i in inputs]) for n in names}  # fmt: skip
        try:
            result = self.batched(**gathered)
            if isinstance(result, (list, tuple)) and len(result) == len(self.outputs):
                result = dict(zip(self.outputs, result, strict=True))
            if not isinstance(result, Mapping):
                raise TypeError(
                    f"the inference function must return a dict of numpy arrays, got "
                    f"{type(result).__name__}"
                )
        except Exception as e:
            error = self._error(e)
            return [self.pb.InferenceResponse(error=error) for _ in requests]
        total = sum(sizes)
        wrong = {n: np.shape(v) for n, v in result.items() if np.shape(v)[:1] != (total,)}
        if self.batching and wrong:
            error = self.pb.TritonError(
                f"outputs {wrong}: @batch expects their first dim to be the batch size {total}"
            )
            return [self.pb.InferenceResponse(error=error) for _ in requests]
        responses, row = [], 0
        for r, size in zip(requests, sizes, strict=True):
            part = {n: v[row : row + size] for n, v in result.items()} if self.batching else result
            responses.append(self._response(r, part))
            row += size
        return responses
