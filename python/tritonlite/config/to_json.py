"""The one config-to-JSON printer: a ``ModelConfig`` as Triton's ``ModelConfigToJson`` writes it
(HTTP ``/v2/models/<m>/config`` and the python backend's ``args['model_config']``)."""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor as _descriptor
from google.protobuf import json_format

from .constants import ModelConfig


def config_to_json(config: ModelConfig) -> dict[str, Any]:
    """The config as Triton's HTTP ``/v2/models/<m>/config`` returns it.

    Proto field names, every field without presence printed (Triton's
    always_print_primitive_fields), fields in declaration order, and the same 64-bit
    fields Triton turns from strings back into numbers (others stay strings, as there).
    """
    if config.ByteSize() == 0:
        return {}
    raw = json_format.MessageToDict(
        config,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )
    _fix_int64_fields(raw)
    return _ordered(raw, config.DESCRIPTOR)


def _as_ints(values: list[Any]) -> list[Any]:
    return [int(v) if isinstance(v, str) else v for v in values]


def _fix_int(obj: dict[str, Any], key: str) -> None:
    if isinstance(obj.get(key), str):
        obj[key] = int(obj[key])


def _fix_int_list(obj: dict[str, Any], key: str) -> None:
    if isinstance(obj.get(key), list):
        obj[key] = _as_ints(obj[key])


def _fix_int64_fields(raw: dict[str, Any]) -> None:
    """The 64-bit fields Triton's ModelConfigToJson prints as numbers (the rest stay strings)."""
    for io in (*raw.get("input", []), *raw.get("output", [])):
        _fix_int_list(io, "dims")
        if "reshape" in io:
            _fix_int_list(io["reshape"], "shape")
    specific = raw.get("version_policy", {}).get("specific")
    if specific is not None:
        _fix_int_list(specific, "versions")
    batching = raw.get("dynamic_batching")
    if batching is not None:
        for key in ("max_queue_delay_microseconds", "priority_levels", "default_priority_level"):
            _fix_int(batching, key)
        if "default_queue_policy" in batching:
            _fix_int(batching["default_queue_policy"], "default_timeout_microseconds")
        for policy in batching.get("priority_queue_policy", {}).values():
            _fix_int(policy, "default_timeout_microseconds")
    sequence = raw.get("sequence_batching")
    if sequence is not None:
        _fix_int(sequence, "max_sequence_idle_microseconds")
        for strategy in ("oldest", "direct"):
            if strategy in sequence:
                _fix_int(sequence[strategy], "max_queue_delay_microseconds")
        for state in sequence.get("state", []):
            _fix_int_list(state, "dims")
    for step in raw.get("ensemble_scheduling", {}).get("step", []):
        _fix_int(step, "model_version")
    for warmup in raw.get("model_warmup", []):
        for warmup_input in warmup.get("inputs", {}).values():
            _fix_int_list(warmup_input, "dims")


def _ordered(raw: dict[str, Any], desc: _descriptor.Descriptor) -> dict[str, Any]:
    """Keys in declaration order, as Triton's (C++) JSON printer writes them."""
    result: dict[str, Any] = {}
    for field in desc.fields:
        if field.name not in raw:
            continue
        value = raw[field.name]
        msg = field.message_type
        if msg is not None:
            if msg.GetOptions().map_entry:
                value_msg = msg.fields_by_name["value"].message_type
                if value_msg is not None:
                    value = {k: _ordered(v, value_msg) for k, v in value.items()}
            elif isinstance(value, list):
                value = [_ordered(v, msg) for v in value]
            elif isinstance(value, dict):
                value = _ordered(value, msg)
        result[field.name] = value
    return result
