"""Read-only views of a loaded config in the terms the server and backends use (wire
datatype names, tensor specs), so that no caller re-derives them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import datatypes
from .._proto import model_config_pb2 as _pb
from .constants import ModelConfig


@dataclass(frozen=True)
class TensorSpec:
    """One configured input or output, in the terms the server and backends need.

    ``datatype`` is the wire name ("INT32", "BYTES"); ``dims`` exclude the batch dimension
    when the model batches (``max_batch_size > 0``), -1 marks a variable dimension;
    ``reshape`` is the shape the backend sees, or None when the config has no reshape.
    """

    name: str
    datatype: str
    dims: list[int]
    optional: bool = False
    reshape: list[int] | None = None


def input_specs(config: ModelConfig) -> list[TensorSpec]:
    """The configured inputs, in config order."""
    return [_spec(io, io.optional) for io in config.input]


def output_specs(config: ModelConfig) -> list[TensorSpec]:
    """The configured outputs, in config order."""
    return [_spec(io) for io in config.output]


def _spec(io: Any, optional: bool = False) -> TensorSpec:
    """A ``ModelInput`` or ``ModelOutput`` as a ``TensorSpec``."""
    return TensorSpec(
        name=io.name,
        datatype=_wire_datatype(io.data_type),
        dims=list(io.dims),
        optional=optional,
        reshape=list(io.reshape.shape) if io.HasField("reshape") else None,
    )


def has_dynamic_batching(config: ModelConfig) -> bool:
    """Whether the config enables the dynamic batcher (``dynamic_batching`` present)."""
    return bool(config.HasField("dynamic_batching"))


def _wire_datatype(data_type: int) -> str:
    if data_type not in _pb.DataType.values():
        return "INVALID"
    return datatypes.to_wire_name(_pb.DataType.Name(data_type))
