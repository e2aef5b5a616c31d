"""Triton's rate limiter settings: ``--rate-limit`` (``execution_count`` or ``off``, Triton's
default), ``--rate-limit-resource <name>:<count>[:<device>]``, and each instance's
``instance_group { rate_limiter { resources [...] priority } }``. The limiter itself is the
core's ``RateLimiter`` (csrc/scheduling/rate_limiter.h), one per server, shared by every model."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ._proto import model_config_pb2 as mc

RATE_LIMIT_MODES = ("execution_count", "off")
_INT_MAX = 2**31 - 1  # Triton parses the count and device as int


def parse_rate_limit_mode(text: str) -> str:
    """``--rate-limit``'s value (case-insensitive, as Triton). Raises ValueError."""
    mode = text.strip().lower()
    if mode not in RATE_LIMIT_MODES:
        raise ValueError(
            f"invalid argument for --rate-limit: '{text}' (expected execution_count or off)"
        )
    return mode


def parse_rate_limit_resource(text: str) -> tuple[str, int, int]:
    """``--rate-limit-resource <name>:<count>[:<device>]`` as (name, count, device); device -1:
    every device (also the default). Raises ValueError with Triton's format text."""
    form = (
        "--rate-limit-resource option format is '<resource_name>:<count>:<device>' or "
        f"'<resource_name>:<count>'. Got {text}"
    )
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise ValueError(form)
    name, numbers = parts[0], parts[1:]
    values = []
    for number in numbers:
        stripped = number.strip()
        body = stripped[1:] if stripped[:1] in "+-" else stripped
        if not body.isdigit() or not body.isascii():
            raise ValueError(f"{form}: '{number}' is not an integer")
        value = int(stripped)
        if abs(value) > _INT_MAX:
            raise ValueError(f"{form}: {number} is out of range")
        values.append(value)
    count, device = values[0], values[1] if len(values) == 2 else -1
    if count < 0:
        raise ValueError(f"{form}: the count must not be negative")
    if device < -1:
        raise ValueError(f"{form}: the device must be a device id, or -1 for every device")
    return name, count, device


def parse_rate_limit_resources(values: Iterable[str | Sequence[Any]]) -> list[tuple[str, int, int]]:
    """Flag strings (or ready (name, count[, device]) tuples) as (name, count, device)."""
    out = []
    for value in values:
        if isinstance(value, str):
            out.append(parse_rate_limit_resource(value))
        else:
            name, count, *rest = value
            out.append(parse_rate_limit_resource(f"{name}:{count}:{rest[0] if rest else -1}"))
    return out


def uses_rate_limiter(config: mc.ModelConfig) -> bool:
    """Whether any instance group of the config sets a rate_limiter."""
    return any(group.HasField("rate_limiter") for group in config.instance_group)


def instance_rate_limit(group: mc.ModelInstanceGroup, device: int) -> dict[str, Any]:
    """One instance's entry for ``RateLimiter.register`` (see csrc/scheduling/rate_limiter.h)."""
    limiter = group.rate_limiter
    return {
        "resources": [
            {"name": r.name, "global": getattr(r, "global"), "count": r.count}
            for r in limiter.resources
        ],
        "priority": limiter.priority,
        "device": device,
    }
