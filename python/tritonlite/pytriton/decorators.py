"""PyTriton's ``decorators``: how an inference function sees its requests.

An undecorated function gets ``list[Request]`` (one per request in the batch, each a mapping of
input name to numpy array) and returns one output dict per request. ``@batch`` concatenates the
requests' inputs along the batch dim and splits the outputs back. A function whose outermost
decorator is ``@batch`` is called by the backend straight with the batch the C++ core gathered
(no Python concatenation: ``__tritonlite_batched__`` marks it).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from .exceptions import PyTritonBadParameterError, PyTritonValidationError

InferFunc = Callable[..., Any]


class Request(Mapping[str, np.ndarray]):
    """One request: its inputs (``request["INPUT_1"]``), ``data`` and ``parameters``."""

    __slots__ = ("data", "parameters")

    def __init__(self, data: dict[str, np.ndarray], parameters: dict[str, Any] | None = None):
        self.data = data
        self.parameters = parameters or {}

    def __getitem__(self, name: str) -> np.ndarray:
        return self.data[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


def _split(outputs: Any, sizes: list[int]) -> list[dict[str, np.ndarray]]:
    if not isinstance(outputs, Mapping):
        raise PyTritonValidationError(
            f"the inference function must return a dict of numpy arrays, got {type(outputs)}"
        )
    total = sum(sizes)
    for name, value in outputs.items():
        if not hasattr(value, "shape") or not value.shape or value.shape[0] != total:
            raise PyTritonValidationError(
                f"output '{name}' has shape {getattr(value, 'shape', None)}: @batch expects its "
                f"first dim to be the batch size {total}"
            )
    bounds = np.cumsum([0, *sizes])
    return [
        {name: value[bounds[i] : bounds[i + 1]] for name, value in outputs.items()}
        for i in range(len(sizes))
    ]


def _concatenate(requests: list[Request]) -> tuple[dict[str, np.ndarray], list[int]]:
    names = list(requests[0].keys())
    for r in requests[1:]:
        if set(r.keys()) != set(names):
            raise PyTritonValidationError(
                "@batch: requests in one batch have different inputs "
                f"({sorted(names)} and {sorted(r.keys())}); use @group_by_keys"
            )
    sizes = [len(next(iter(r.values()))) if len(r) else 1 for r in requests]
    if len(requests) == 1:
        return dict(requests[0].data), sizes
    return {n: np.concatenate([r[n] for r in requests]) for n in names}, sizes


def batch(wrapped: InferFunc) -> InferFunc:
    """Call ``wrapped(**inputs)`` once with every request's inputs concatenated along the
    batch dim; split its output dict (or each one it yields) back per request."""
    if inspect.isgeneratorfunction(wrapped):

        @functools.wraps(wrapped)
        def generator(requests: list[Request]) -> Iterator[list[dict[str, np.ndarray]]]:
            inputs, sizes = _concatenate(requests)
            for outputs in wrapped(**inputs):
                yield _split(outputs, sizes)

        generator.__tritonlite_batched__ = wrapped  # type: ignore[attr-defined]
        return generator

    @functools.wraps(wrapped)
    def wrapper(requests: list[Request]) -> list[dict[str, np.ndarray]]:
        inputs, sizes = _concatenate(requests)
        return _split(wrapped(**inputs), sizes)

    wrapper.__tritonlite_batched__ = wrapped  # type: ignore[attr-defined]
    return wrapper


def sample(wrapped: InferFunc) -> InferFunc:
    """Call ``wrapped(**request)`` once per request (each request is one sample)."""

    @functools.wraps(wrapped)
    def wrapper(requests: list[Request]) -> list[Any]:
        return [wrapped(**r.data) for r in requests]

    return wrapper


def first_value(*keys: str, squeeze_single_values: bool = True, strict: bool = True) -> Any:
    """Inside ``@batch``: pass the first value of the named inputs (they must be equal along
    the batch dim when ``strict``) instead of the whole batch."""
    if any(not isinstance(k, str) for k in keys):
        raise PyTritonBadParameterError("first_value: keys must be input names (str)")

    def decorator(wrapped: InferFunc) -> InferFunc:
        @functools.wraps(wrapped)
        def wrapper(*args: Any, **inputs: Any) -> Any:
            for key in keys:
                if key not in inputs:
                    continue
                value = np.asarray(inputs[key])
                if strict and value.size and not (value == value[0]).all():
                    raise PyTritonBadParameterError(
                        f"The values on the {key!r} input are not equal. To proceed, either "
                        "disable strict mode in @first_value decorator or ensure that the "
                        "values always are consistent. The current values of "
                        f"{key!r} are {value.tolist()!r}."
                    )
                first = value[0]
                if squeeze_single_values and getattr(first, "size", 1) == 1:
                    first = first.reshape(()).item() if hasattr(first, "reshape") else first
                inputs[key] = first
            return wrapped(*args, **inputs)

        return wrapper

    return decorator


def fill_optionals(**defaults: Any) -> Any:
    """Fill inputs a request left out with ``defaults[name]`` (repeated along the batch)."""
    values = {k: np.asarray(v) for k, v in defaults.items()}

    def decorator(wrapped: InferFunc) -> InferFunc:
        @functools.wraps(wrapped)
        def wrapper(requests: list[Request]) -> Any:
            filled = []
            for r in requests:
                data = dict(r.data)
                size = len(next(iter(data.values()))) if data else 1
                for name, value in values.items():
                    if name not in data:
                        data[name] = np.repeat(value[np.newaxis], size, axis=0)
                filled.append(Request(data, r.parameters))
            return wrapped(filled)

        return wrapper

    return decorator


def group_by_keys(wrapped: InferFunc) -> InferFunc:
    """Call ``wrapped`` once per group of requests that have the same input names."""

    @functools.wraps(wrapped)
    def wrapper(requests: list[Request]) -> list[Any]:
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(tuple(sorted(r.keys())), []).append(i)
        results: list[Any] = [None] * len(requests)
        for indices in groups.values():
            for i, out in zip(indices, wrapped([requests[i] for i in indices]), strict=True):
                results[i] = out
        return results

    return wrapper
