"""Which request parameters Triton keeps for itself, and which reach the model.

A request's own parameters (KServe v2's ``parameters``) go to the model, where a python_backend
model reads them as JSON from ``request.parameters()``. Triton consumes the scheduling and
protocol ones below, and refuses other keys that start with ``triton_``; both frontends use this.

Request headers whose names match ``--http-header-forward-pattern`` (HTTP infer) or
``--grpc-header-forward-pattern`` (gRPC ModelInfer and ModelStreamInfer) are added as string
parameters too, as Triton 2.51 forwards them (checked against it): any header, reserved names
and ``triton_`` ones included, with the name as received.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from typing import Any

from ..errors import INVALID_ARG, TritonError

#: Consumed by Triton (scheduling, sequences, decoupled streams); over HTTP also
#: binary_data_output (the binary tensor extension), which gRPC hands to the model.
RESERVED = frozenset(
    {"sequence_id", "sequence_start", "sequence_end", "priority", "timeout",
     "triton_enable_empty_final_response"}
)  # fmt: skip
RESERVED_HTTP = RESERVED | {"binary_data_output"}


def is_custom(key: str, http: bool = False) -> bool:
    """Whether ``key`` is the request's own parameter; raises Triton's error (its gRPC or HTTP
    wording) for a key in the reserved ``triton_`` namespace."""
    if key in (RESERVED_HTTP if http else RESERVED):
        return False
    if key.startswith("triton_"):
        raise TritonError(
            "parameter keys starting with 'triton_' are reserved for Triton usage and should not "
            "be specified."
            if http
            else "parameter keys starting with 'triton_' are reserved for Triton usage. Only the "
            "following keys starting with 'triton_' are allowed: "
            "triton_enable_empty_final_response",
            INVALID_ARG,
        )
    return True


def check_json_value(key: str, value: object, context: str = "") -> None:
    """Triton's HTTP check of a JSON parameter value (string, number or boolean)."""
    if not isinstance(value, (str, int, float, bool)):
        raise TritonError(
            f"{context}parameter '{key}' has invalid type. It should be either 'int', 'bool', or "
            "'string'.",
            INVALID_ARG,
        )


# ---- forwarded headers (--http-header-forward-pattern, --grpc-header-forward-pattern) -----------

#: gRPC metadata that gRPC core keeps for itself: Triton (a gRPC core server) never sees it, so
#: it is never forwarded, whatever the pattern. (Pseudo-headers and grpc-* are dropped too, but
#: for the two grpc-* names gRPC core does hand to servers.)
_GRPC_HIDDEN = frozenset(
    {"content-type", "te", "lb-cost-bin", "endpoint-load-metrics-bin", "x-envoy-peer-metadata"}
)
_GRPC_VISIBLE_GRPC = frozenset({"grpc-previous-rpc-attempts", "grpc-retry-pushback-ms"})


def header_pattern(pattern: str | None, flag: str) -> re.Pattern[str] | None:
    """A header-forward pattern as Triton applies it: case-insensitive unless it starts with
    ``(?-i)``, and searched for anywhere in a header's name (RE2's PartialMatch). None: none.
    An invalid pattern is an INVALID_ARG naming the flag."""
    if pattern is None:
        return None
    flags = re.IGNORECASE
    if pattern.startswith("(?-i)"):
        pattern, flags = pattern[len("(?-i)") :], 0
    try:
        return re.compile(pattern, flags)
    except re.error as e:
        message = f"{flag}: invalid regular expression '{pattern}': {e}"
        raise TritonError(message, INVALID_ARG) from None


def forwarded_headers(
    pattern: re.Pattern[str] | None, headers: Iterable[tuple[str, Any]], grpc: bool = False
) -> dict[str, str]:
    """The request headers whose names match ``pattern``, as string request parameters named
    as the client sent them (gRPC names are lower case on the wire). A later header of the same
    name wins. gRPC ``-bin`` values (bytes, or base64 text from the native transport) become
    text up to their first NUL, as Triton passes them on as C strings."""
    out: dict[str, str] = {}
    if pattern is None:
        return out
    for key, value in headers:
        if grpc and (
            key.startswith(":")
            or key in _GRPC_HIDDEN
            or (key.startswith("grpc-") and key not in _GRPC_VISIBLE_GRPC)
        ):
            continue
        if pattern.search(key) is None:
            continue
        if grpc and key.endswith("-bin"):
            raw = value if isinstance(value, bytes) else _base64(str(value))
            value = raw.split(b"\x00", 1)[0].decode("utf-8", "replace")
        elif isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        out[str(key)] = str(value)
    return out


def _base64(text: str) -> bytes:
    """A -bin metadata value as the native transport passes it (base64, padded or not)."""
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return b""


def with_forwarded(parameters: dict[str, Any] | None, forwarded: dict[str, str]) -> Any:
    """The request's own parameters with the forwarded headers added (a header wins over a
    parameter of the same name, as the model's json.loads of Triton's JSON makes it win)."""
    if not forwarded:
        return parameters
    return {**(parameters or {}), **forwarded}
