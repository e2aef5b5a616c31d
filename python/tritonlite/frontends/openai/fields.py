"""Reading an OpenAI request body: every field is checked for its type and range before use
(bodies are hostile), and fields that tritonlite does not implement are refused by name."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any

import orjson

from .errors import OpenAIError, bad_request

#: Longest JSON nesting accepted (orjson's own limit is 1024).
_MAX_DEPTH = 64


def parse_body(body: bytes) -> dict[str, Any]:
    """The request's JSON object; anything else is a 400."""
    if not body:
        raise bad_request("We could not parse the JSON body of your request: the body is empty")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise bad_request(f"We could not parse the JSON body of your request: {e}") from None
    if not isinstance(doc, dict):
        raise bad_request("The request body must be a JSON object")
    if _depth(doc) > _MAX_DEPTH:
        raise bad_request(f"The request body is nested deeper than {_MAX_DEPTH} levels")
    return doc


def _depth(value: Any) -> int:
    """How deep JSON containers nest in ``value`` (iterative: no recursion to exhaust)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            items: Any = item.values()
        elif isinstance(item, list):
            items = item
        else:
            continue
        deepest = max(deepest, depth)
        if depth > _MAX_DEPTH:
            return depth
        stack.extend((v, depth + 1) for v in items if isinstance(v, (dict, list)))
    return deepest


def refuse_unknown(doc: Mapping[str, Any], known: Collection[str]) -> None:
    """OpenAI's answer to a field it does not know (the same text)."""
    for key in doc:
        if key not in known:
            raise bad_request(f"Unrecognized request argument supplied: {key}", param=key)


def string(doc: Mapping[str, Any], key: str, *, required: bool = False,
           max_chars: int = 1 << 20) -> str | None:  # fmt: skip
    value = doc.get(key)
    if value is None:
        if required:
            raise bad_request(f"you must provide a '{key}' parameter", param=key)
        return None
    if not isinstance(value, str):
        raise bad_request(f"'{key}' must be a string, got {_kind(value)}", param=key)
    if len(value) > max_chars:
        raise bad_request(f"'{key}' is longer than {max_chars} characters", param=key)
    return value


def boolean(doc: Mapping[str, Any], key: str, default: bool = False) -> bool:
    value = doc.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise bad_request(f"'{key}' must be a boolean, got {_kind(value)}", param=key)
    return value


def integer(doc: Mapping[str, Any], key: str, lo: int, hi: int) -> int | None:
    value = doc.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"'{key}' must be an integer, got {_kind(value)}", param=key)
    if not lo <= value <= hi:
        raise bad_request(f"'{key}' must be between {lo} and {hi}, got {value}", param=key)
    return value


def number(doc: Mapping[str, Any], key: str, lo: float, hi: float) -> float | None:
    value = doc.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise bad_request(f"'{key}' must be a number, got {_kind(value)}", param=key)
    if not lo <= value <= hi:
        raise bad_request(f"'{key}' must be between {lo} and {hi}, got {value}", param=key)
    return float(value)


def mapping(doc: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise bad_request(f"'{key}' must be an object, got {_kind(value)}", param=key)
    return value


def unsupported(doc: Mapping[str, Any], key: str, why: str = "") -> None:
    """Refuse a field OpenAI has that tritonlite does not implement, when it asks for more than
    the default (``None``/absent, or a default value the caller already checked)."""
    if doc.get(key) is not None:
        raise OpenAIError(
            f"'{key}' is not supported by tritonlite's OpenAI frontend{why}", 400, param=key,
            code="unsupported_parameter",
        )  # fmt: skip


def _kind(value: Any) -> str:
    return {
        dict: "an object", list: "an array", str: "a string", bool: "a boolean",
        int: "an integer", float: "a number", type(None): "null",
    }.get(type(value), type(value).__name__)  # fmt: skip
