"""The stub half of process isolation (``isolated.py`` is the server half): in each
python-backend stub process, ``TritonPythonModel`` imports the instance's bound function by
``module:qualname`` (with ``sys.path`` as the server had it), gives its decorator chain the
model's ``TritonContext`` and serves it as ``function_backend`` does in-process."""

from __future__ import annotations

import importlib
import json
import pickle
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .isolated import SETTINGS

__all__ = ["TritonPythonModel"]


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
        # (the package is already in sys.modules, as this module's parent: no import, no cycle)
        tritonlite = sys.modules[__name__.split(".", 1)[0]]
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
