"""Triton's ``reshape`` for backends that take gathered batches (onnxruntime, pytorch).

Owns: the shape a model sees versus the shape clients use. A config input with ``reshape``
reaches the model in the reshape's shape (its -1 dims take the request's variable-size dims, in
order, as Triton's InferenceRequest::Normalize does); a config output with ``reshape`` is
produced by the model in the reshape's shape and answered in the config's ``dims`` (Triton's
InferenceResponse::AddOutput). The batch dimension, when the model batches, is kept as is.
Reshaping is a view (numpy ``reshape`` of contiguous memory, ``torch.Tensor.reshape``): no copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._proto import model_config_pb2 as mc
from ..errors import INTERNAL, TritonError


def _map_dims(
    shape: Sequence[int], source: Sequence[int], target: Sequence[int], batched: bool
) -> tuple[int, ...]:
    """``shape`` laid out by ``source`` dims, re-laid by ``target`` dims: the variable (-1)
    dims of ``source`` fill those of ``target`` in order."""
    lead = tuple(shape[:1]) if batched else ()
    rest = tuple(shape[1:]) if batched else tuple(shape)
    if len(rest) != len(source):
        raise ValueError(f"shape {list(shape)} does not have the {len(source)} dims {list(source)}")
    variable = [n for n, d in zip(rest, source, strict=True) if d == -1]
    out = []
    for d in target:
        if d == -1:
            if not variable:
                raise ValueError(f"shape {list(shape)} has too few variable-size dims")
            out.append(variable.pop(0))
        else:
            out.append(d)
    return lead + tuple(out)


def _reshaped(value: Any, shape: tuple[int, ...]) -> Any:
    if not hasattr(value, "reshape"):
        value = np.asarray(value)
    return value.reshape(shape)


class ReshapingInstance:
    """An instance of a batching backend, seen through the config's reshapes."""

    def __init__(self, inner: Any, config: mc.ModelConfig) -> None:
        self.inner = inner
        self.model = config.name
        self.batched = config.max_batch_size > 0
        # A ragged input reaches the model flattened, and a batch_output target is split by
        # its source input's shapes (csrc/scheduling/ragged.h): no reshape applies to either.
        scattered = {name for b in config.batch_output for name in b.target_name}
        self.inputs = {
            t.name: (list(t.dims), list(t.reshape.shape))
            for t in config.input
            if t.HasField("reshape") and not t.allow_ragged_batch
        }
        self.outputs = {
            t.name: (list(t.reshape.shape), list(t.dims))
            for t in config.output
            if t.HasField("reshape") and t.name not in scattered
        }

    def execute(self, inputs: dict[str, Any], output_names: list[str]) -> dict[str, Any]:
        feeds = dict(inputs)
        for name, (dims, reshape) in self.inputs.items():
            if name in feeds:
                value = feeds[name]
                feeds[name] = _reshaped(value, self._shape(value, dims, reshape, "input", name))
        outputs = self.inner.execute(feeds, output_names)
        for name, (reshape, dims) in self.outputs.items():
            if name in outputs:
                value = outputs[name]
                outputs[name] = _reshaped(value, self._shape(value, reshape, dims, "output", name))
        return outputs

    def _shape(
        self, value: Any, source: list[int], target: list[int], kind: str, name: str
    ) -> tuple[int, ...]:
        shape = tuple(int(n) for n in value.shape)
        try:
            return _map_dims(shape, source, target, self.batched)
        except ValueError as e:
            raise TritonError(
                f"model '{self.model}': cannot reshape {kind} '{name}': {e}", INTERNAL
            ) from None

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def with_reshape(instance: Any, config: mc.ModelConfig) -> Any:
    """``instance`` wrapped when the config reshapes any of its tensors, else itself."""
    if any(t.HasField("reshape") for t in (*config.input, *config.output)):
        return ReshapingInstance(instance, config)
    return instance
