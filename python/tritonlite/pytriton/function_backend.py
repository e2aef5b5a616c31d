"""The ``function`` backend: a Python callable bound with ``Triton.bind`` served as a model.

Owns: calling the bound function on the model's C++ instance worker threads, in-process (one
callable per instance: a list of functions in ``bind`` is one instance each). Two ways in:

- gathered: a non-decoupled function whose outermost decorator is ``@batch`` is called with the
  batch the C++ dynamic batcher gathered, as keyword numpy arrays (zero-copy views), and its
  output dict goes back to the core, which scatters it per request;
- per request: any other function gets ``list[Request]`` as in PyTriton and returns one dict per
  request, or (decoupled) is a generator yielding such lists, each sent as a response as soon as
  it is yielded, the final flag last.

``PyTritonUserError`` raised by the function fails the batch as INVALID_ARG with its message;
any other exception as INTERNAL.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .._proto import model_config_pb2 as mc
from ..errors import INTERNAL, INVALID_ARG, TritonError
from .decorators import Request
from .exceptions import PyTritonUserError

__all__ = ["FunctionBackend"]


def _failure(e: BaseException) -> TritonError:
    if isinstance(e, TritonError):
        return e
    if isinstance(e, PyTritonUserError):
        return TritonError(str(e), INVALID_ARG)
    return TritonError(f"{type(e).__name__}: {e}", INTERNAL)


def _parameters(raw: Any) -> dict[str, Any]:
    """A request's parameters as a dict (the core hands them over as JSON text)."""
    if not raw:
        return {}
    if isinstance(raw, str):
        value = json.loads(raw)
        return value if isinstance(value, dict) else {}
    return dict(raw)


class _GatheredInstance:
    def __init__(self, batched: Callable[..., Any], outputs: list[str]) -> None:
        self.batched = batched
        self.outputs = outputs

    def execute(self, inputs: dict[str, Any], output_names: list[str]) -> dict[str, Any]:
        try:
            result = self.batched(**inputs)
        except BaseException as e:
            raise _failure(e) from None
        if isinstance(result, (list, tuple)) and len(result) == len(self.outputs):
            result = dict(zip(self.outputs, result, strict=True))  # PyTriton allows a list
        elif not isinstance(result, Mapping):
            raise TritonError(
                f"the inference function must return a dict of numpy arrays, got "
                f"{type(result).__name__}",
                INTERNAL,
            )
        missing = [n for n in output_names if n not in result]
        if missing:
            raise TritonError(f"the inference function did not return outputs {missing}", INTERNAL)
        return result if type(result) is dict else dict(result)

    def close(self) -> None:
        pass


class _RequestInstance:
    def __init__(self, func: Callable[..., Any], decoupled: bool, outputs: list[str]) -> None:
        self.func = func
        self.decoupled = decoupled
        self.outputs = outputs

    def _answer(self, request: Any, result: Any, final: bool) -> None:
        if not isinstance(result, Mapping):
            request.respond(
                None,
                ("INTERNAL", f"the inference function must return a dict per request, got "
                             f"{type(result).__name__}"),
                True,
            )  # fmt: skip
            return
        wanted = list(request.requested_outputs) or self.outputs
        request.respond({n: result[n] for n in wanted if n in result}, None, final)

    def execute_requests(self, requests: list[Any]) -> None:
        batch = [
            Request({name: t.numpy() for name, t in r.inputs()}, _parameters(r.parameters))
            for r in requests
        ]
        try:
            result = self.func(batch)
            if self.decoupled:
                for step in result:
                    for r, out in zip(requests, step, strict=True):
                        self._answer(r, out, False)
                for r in requests:
                    r.respond(None, None, True)
                return
            if not isinstance(result, Sequence) or len(result) != len(requests):
                raise TritonError(
                    f"the inference function must return a list of {len(requests)} dicts "
                    "(one per request)",
                    INTERNAL,
                )
            for r, out in zip(requests, result, strict=True):
                self._answer(r, out, True)
        except BaseException as e:
            err = _failure(e)
            for r in requests:
                try:
                    r.respond(None, (err.status, str(err)), True)
                except TritonError:  # answered already
                    pass

    def close(self) -> None:
        pass


def _batched(func: Any) -> Any:
    """What the gathered path calls: @batch's function (bound to the object for a method)."""
    inner = getattr(func, "__tritonlite_batched__", None)
    owner = getattr(func, "__self__", None)
    return inner.__get__(owner) if inner is not None and owner is not None else inner


class FunctionBackend:
    """One model version whose instances call ``funcs[i]``."""

    def __init__(self, config: mc.ModelConfig, funcs: Sequence[Callable[..., Any]]) -> None:
        self.funcs = list(funcs)
        self.decoupled = config.model_transaction_policy.decoupled
        self.outputs = [t.name for t in config.output]
        batched = [_batched(f) for f in self.funcs]
        self.gathered = not self.decoupled and all(b is not None for b in batched)
        self.per_request_execution = not self.gathered
        self._batched = batched

    def create_instance(self, index: int, kind: str, device_id: int) -> Any:
        if self.gathered:
            return _GatheredInstance(self._batched[index], self.outputs)
        return _RequestInstance(self.funcs[index], self.decoupled, self.outputs)

    def close(self) -> None:
        pass
