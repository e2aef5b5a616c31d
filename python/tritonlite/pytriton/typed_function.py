"""The short path: ``@tritonlite.function`` on a typed function, config inferred from its hints.

    @tritonlite.function(max_batch_size=64)
    def add(a: NDArray[np.int32], b: NDArray[np.int32]) -> NDArray[np.int32]:
        return a + b

    add.serve()   # or: tritonlite.pytriton.typed_function.serve([add], ...)

Each parameter is an input named after it; its dtype comes from ``numpy.typing.NDArray[dtype]``
(a plain ``np.ndarray`` hint is refused: the dtype is needed); shapes are ``(-1,)`` unless given
in ``shapes={"a": (16,)}``. The return hint is one ``NDArray[dtype]`` (output ``output``) or a
``TypedDict`` of them (one output per key). The function gets the batch the core gathered (as
``@batch``) and is bound with ``Triton.bind``: the same in-process backend as the PyTriton API.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .decorators import batch
from .exceptions import PyTritonValidationError
from .model_config import ModelConfig, Tensor
from .triton import Triton, TritonConfig

__all__ = ["function", "serve", "TypedFunction"]


def _dtype(hint: Any, what: str) -> Any:
    args = typing.get_args(hint)
    # NDArray[np.int32] is ndarray[Any, dtype[np.int32]]
    if typing.get_origin(hint) is np.ndarray and len(args) == 2:
        inner = typing.get_args(args[1])
        if inner and inner[0] is not Any:
            return inner[0]
    raise PyTritonValidationError(
        f"{what}: annotate it as numpy.typing.NDArray[<dtype>] (e.g. NDArray[np.float32]), got "
        f"{hint!r}"
    )


class TypedFunction:
    """A function with the model config its type hints describe; call it as the function."""

    def __init__(
        self, func: Callable[..., Any], name: str | None, max_batch_size: int,
        shapes: Mapping[str, Sequence[int]], instances: int, isolated: bool = False,
    ) -> None:  # fmt: skip
        self.func = func
        self.name = name or func.__name__
        self.max_batch_size = max_batch_size
        self.instances = instances
        self.isolated = isolated
        hints = typing.get_type_hints(func)
        params = inspect.signature(func).parameters
        self.inputs = [
            Tensor(
                name=p,
                dtype=_dtype(hints.get(p), f"input '{p}' of '{self.name}'"),
                shape=tuple(shapes.get(p, (-1,))),
            )  # fmt: skip
            for p in params
        ]
        ret = hints.get("return")
        if typing.is_typeddict(ret):
            fields = typing.get_type_hints(ret)
            self.outputs = [
                Tensor(
                    name=k,
                    dtype=_dtype(h, f"output '{k}' of '{self.name}'"),
                    shape=tuple(shapes.get(k, (-1,))),
                )  # fmt: skip
                for k, h in fields.items()
            ]
            self._single = False
        else:
            dtype = _dtype(ret, f"the return value of '{self.name}'")
            self.outputs = [
                Tensor(name="output", dtype=dtype, shape=tuple(shapes.get("output", (-1,))))
            ]
            self._single = True

        single = self._single

        @batch
        def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
            result = func(**inputs)
            return {"output": result} if single else result

        # importable as <module>:<name>.infer_func when the decorated name is module-level, so
        # that ModelConfig(isolated=True) can import it in the stub process
        infer.__module__ = func.__module__
        infer.__qualname__ = f"{func.__qualname__}.infer_func"
        self.infer_func = infer

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)

    def bind(self, triton: Triton) -> None:
        triton.bind(
            self.name, [self.infer_func] * self.instances, self.inputs, self.outputs,
            ModelConfig(batching=self.max_batch_size > 0, max_batch_size=self.max_batch_size,
                        isolated=self.isolated),
        )  # fmt: skip

    def serve(self, **config: Any) -> None:
        """Serve this function alone until SIGINT/SIGTERM; ``config``: TritonConfig settings."""
        serve([self], **config)


def function(
    func: Callable[..., Any] | None = None, *, name: str | None = None,
    max_batch_size: int = 64, shapes: Mapping[str, Sequence[int]] | None = None,
    instances: int = 1, isolated: bool = False,
) -> Any:  # fmt: skip
    """``@function`` or ``@function(max_batch_size=..., shapes=..., instances=...,
    isolated=...)`` (``isolated``: each instance in its own process, as
    ``ModelConfig(isolated=True)``)."""

    def wrap(f: Callable[..., Any]) -> TypedFunction:
        return TypedFunction(f, name, max_batch_size, shapes or {}, instances, isolated)

    return wrap(func) if func is not None else wrap


def serve(functions: Sequence[TypedFunction], **config: Any) -> None:
    """Serve ``functions`` (one model each) until SIGINT/SIGTERM."""
    with Triton(config=TritonConfig(**config)) as triton:
        for f in functions:
            f.bind(triton)
        triton.serve()
