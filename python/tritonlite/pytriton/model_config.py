"""PyTriton's ``model_config``: ``Tensor``, ``ModelConfig``, ``DynamicBatcher``, ``QueuePolicy``,
``TimeoutAction``, and their translation to a Triton ``ModelConfig`` protobuf (``to_proto``).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._proto import model_config_pb2 as mc
from .exceptions import PyTritonValidationError


class TimeoutAction(enum.Enum):
    REJECT = "REJECT"
    DELAY = "DELAY"


@dataclasses.dataclass
class QueuePolicy:
    timeout_action: TimeoutAction = TimeoutAction.REJECT
    default_timeout_microseconds: int = 0
    allow_timeout_override: bool = False
    max_queue_size: int = 0


@dataclasses.dataclass
class DynamicBatcher:
    max_queue_delay_microseconds: int = 0
    preferred_batch_size: list[int] | None = None
    preserve_ordering: bool = False
    priority_levels: int = 0
    default_priority_level: int = 0
    default_queue_policy: QueuePolicy | None = None
    priority_queue_policy: dict[int, QueuePolicy] | None = None


@dataclasses.dataclass
class ModelConfig:
    batching: bool = True
    max_batch_size: int = 4
    batcher: DynamicBatcher = dataclasses.field(default_factory=DynamicBatcher)
    response_cache: bool = False
    decoupled: bool = False
    #: tritonlite's extension: run each instance of the function in its own process (the
    #: python backend's stub machinery); the function must be importable (isolated.py).
    isolated: bool = False


@dataclasses.dataclass(frozen=True)
class Tensor:
    """A model input or output: ``shape`` without the batch dim (-1: any size)."""

    shape: tuple[int, ...]
    dtype: Any = np.float32
    name: str | None = None
    optional: bool = False


_NUMPY_TO_TRITON = {
    np.dtype(np.bool_): mc.TYPE_BOOL,
    np.dtype(np.uint8): mc.TYPE_UINT8,
    np.dtype(np.uint16): mc.TYPE_UINT16,
    np.dtype(np.uint32): mc.TYPE_UINT32,
    np.dtype(np.uint64): mc.TYPE_UINT64,
    np.dtype(np.int8): mc.TYPE_INT8,
    np.dtype(np.int16): mc.TYPE_INT16,
    np.dtype(np.int32): mc.TYPE_INT32,
    np.dtype(np.int64): mc.TYPE_INT64,
    np.dtype(np.float16): mc.TYPE_FP16,
    np.dtype(np.float32): mc.TYPE_FP32,
    np.dtype(np.float64): mc.TYPE_FP64,
}


def triton_data_type(dtype: Any, what: str) -> int:
    """The config data type of a numpy dtype (``bytes``/``object``: TYPE_STRING)."""
    if dtype in (bytes, object, np.bytes_, np.object_):
        return mc.TYPE_STRING
    try:
        npdtype = np.dtype(dtype)
    except TypeError:
        raise PyTritonValidationError(f"{what}: unsupported dtype {dtype!r}") from None
    if npdtype.kind in "OSU":
        return mc.TYPE_STRING
    if npdtype not in _NUMPY_TO_TRITON:
        raise PyTritonValidationError(f"{what}: unsupported dtype {npdtype}")
    return _NUMPY_TO_TRITON[npdtype]


def _tensors(
    tensors: Sequence[Tensor], kind: str, model: str, batched: bool
) -> list[tuple[str, int, list[int], bool]]:
    out = []
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor):
            raise PyTritonValidationError(
                f"model '{model}': {kind}s must be Tensor objects, got {type(t).__name__}"
            )
        name = t.name or f"{kind.upper()}_{i + 1}"
        dims = [int(d) for d in t.shape]
        if batched and dims[:1] == [-1] and len(dims) > 1:
            pass  # as PyTriton: a leading -1 is a per-sample dim, kept
        if not dims:
            dims = [1]
        out.append((name, triton_data_type(t.dtype, f"model '{model}' {kind} '{name}'"), dims,
                    t.optional))  # fmt: skip
    names = [n for n, *_ in out]
    if len(set(names)) != len(names):
        raise PyTritonValidationError(f"model '{model}': {kind} names must be unique: {names}")
    return out


def _queue_policy(target: Any, policy: QueuePolicy) -> None:
    target.timeout_action = (
        mc.ModelQueuePolicy.DELAY
        if policy.timeout_action == TimeoutAction.DELAY
        else mc.ModelQueuePolicy.REJECT
    )
    target.default_timeout_microseconds = policy.default_timeout_microseconds
    target.allow_timeout_override = policy.allow_timeout_override
    target.max_queue_size = policy.max_queue_size


def to_proto(
    model: str,
    inputs: Sequence[Tensor],
    outputs: Sequence[Tensor],
    config: ModelConfig,
    instance_count: int,
) -> mc.ModelConfig:
    """The Triton config PyTriton would generate for ``bind(model, ..., config)``."""
    if config.response_cache:
        raise PyTritonValidationError(
            f"model '{model}': ModelConfig(response_cache=True) needs a server cache, which "
            "Triton(config=TritonConfig(cache_config=...)) does not offer in tritonlite"
        )
    batched = bool(config.batching) and config.max_batch_size > 0
    proto = mc.ModelConfig(name=model, backend="python")
    proto.max_batch_size = config.max_batch_size if batched else 0
    for name, dtype, dims, optional in _tensors(inputs, "input", model, batched):
        proto.input.add(name=name, data_type=dtype, dims=dims, optional=optional)
    for name, dtype, dims, _ in _tensors(outputs, "output", model, batched):
        proto.output.add(name=name, data_type=dtype, dims=dims)
    if batched and config.batcher is not None:
        b, d = config.batcher, proto.dynamic_batching
        d.SetInParent()
        d.max_queue_delay_microseconds = b.max_queue_delay_microseconds
        d.preferred_batch_size.extend(b.preferred_batch_size or [])
        d.preserve_ordering = b.preserve_ordering
        d.priority_levels = b.priority_levels
        d.default_priority_level = b.default_priority_level
        if b.default_queue_policy is not None:
            _queue_policy(d.default_queue_policy, b.default_queue_policy)
        for level, policy in (b.priority_queue_policy or {}).items():
            _queue_policy(d.priority_queue_policy[level], policy)
    proto.model_transaction_policy.decoupled = bool(config.decoupled)
    proto.instance_group.add(count=instance_count, kind=mc.ModelInstanceGroup.KIND_CPU)
    return proto


@dataclasses.dataclass
class TensorSpec:
    """A bound model's input or output as the decorators see it (PyTriton's TensorSpec)."""

    name: str
    shape: tuple[int, ...]
    dtype: Any
    optional: bool | None = False


@dataclasses.dataclass
class TritonModelConfig:
    """What ``@triton_context`` and ``@pad_batch`` read about a bound model (PyTriton's
    ``TritonModelConfig``, the fields a decorator or function uses)."""

    model_name: str
    model_version: int = 1
    max_batch_size: int = 4
    batching: bool = True
    batcher: DynamicBatcher | None = None
    instance_group: dict[str, int | None] = dataclasses.field(default_factory=dict)
    decoupled: bool = False
    backend_parameters: dict[str, str] = dataclasses.field(default_factory=dict)
    inputs: Sequence[TensorSpec] | None = None
    outputs: Sequence[TensorSpec] | None = None
    response_cache: Any = None
    model_warmup: Any = None

    @property
    def backend(self) -> str:
        return "python"


def triton_model_config(
    proto: mc.ModelConfig, config: ModelConfig, inputs: Sequence[Tensor],
    outputs: Sequence[Tensor], instance_count: int,
) -> TritonModelConfig:  # fmt: skip
    """The TritonModelConfig of a bound model (``proto``: its validated Triton config)."""

    def specs(tensors: Sequence[Tensor], protos: Any) -> list[TensorSpec]:
        return [
            TensorSpec(name=p.name, shape=tuple(t.shape), dtype=t.dtype, optional=t.optional)
            for t, p in zip(tensors, protos, strict=True)
        ]

    batching = proto.max_batch_size > 0
    return TritonModelConfig(
        model_name=proto.name,
        max_batch_size=int(proto.max_batch_size),
        batching=batching,
        batcher=config.batcher if batching else None,
        instance_group={"KIND_CPU": instance_count},
        decoupled=bool(config.decoupled),
        inputs=specs(inputs, proto.input),
        outputs=specs(outputs, proto.output),
    )
