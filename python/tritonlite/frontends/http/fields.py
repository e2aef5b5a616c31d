"""Readers of the JSON members of a request, with Triton's error texts (RapidJSON's words)."""

from __future__ import annotations

import re
from typing import Any

from .. import http_codec as codec
from .reply import bad


def as_object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad(f"Unable to parse '{what}': attempt to access JSON non-object as object")
    return value


def named_object(value: Any, what: str) -> tuple[dict[str, Any], str]:
    """An ``inputs`` / ``outputs`` entry: a JSON object with a string ``name``."""
    obj = as_object(value, what)
    if "name" not in obj:
        raise bad("Unable to parse 'name': attempt to access non-existing object member 'name'")
    return obj, as_string(obj["name"], "name")


def as_uint(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**64:
        raise bad(
            f"Unable to parse '{what}': attempt to access JSON non-unsigned-integer as "
            "unsigned-integer"
        )
    return value


def as_string(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise bad(f"Unable to parse '{what}': attempt to access JSON non-string as string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise bad(f"Unable to parse '{what}': the string is not valid UTF-8") from None
    return value


def as_bool(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise bad(f"Unable to parse '{what}': attempt to access JSON non-boolean as boolean")
    return value


def as_shape(value: Any) -> list[int]:
    if not isinstance(value, list):
        raise bad("Unable to parse 'shape': attempt to access JSON non-array as array")
    shape = [as_uint(d, "shape") for d in value]
    if any(d >= 2**63 for d in shape):
        raise bad(f"Unable to parse 'shape': dimension out of range in {shape}")
    return shape


def parse_version(text: str | None) -> int | None:
    if not text:
        return None
    version = int(text)
    if version >= 2**63:
        raise bad(
            f"failed to get model version from specified version string '{text}' (details: "
            "stol), version should be an integral value > 0"
        )
    return version


def optional_json(body: bytes) -> dict[str, Any]:
    """A control request's JSON body: absent, or an object (anything else counts as empty, as
    Triton treats it). White space alone is not absent: Triton parses it ("The document is
    empty.")."""
    if not body:
        return {}
    parsed = codec.loads(body)
    return parsed if isinstance(parsed, dict) else {}


def atol(text: str) -> int:
    """C's atol: the leading integer of ``text`` (0 when there is none)."""
    m = re.match(r"\s*([+-]?\d+)", text)
    return int(m.group(1)) if m else 0
