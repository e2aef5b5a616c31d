"""HTTP replies in Triton's format: ``Reply`` (a body or a stream of chunks), ``{"error": ...}``
bodies, and Triton's mapping of status kinds to HTTP status codes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from ...errors import INVALID_ARG, TritonError
from .. import http_codec as codec

#: Triton status kind -> HTTP status code (Triton's HttpCodeFromError).
HTTP_CODES = {
    "INVALID_ARG": 400,
    "ALREADY_EXISTS": 400,
    "CANCELLED": 400,
    "UNKNOWN": 400,
    "NOT_FOUND": 404,
    "INTERNAL": 500,
    "UNSUPPORTED": 501,
    "UNAVAILABLE": 503,
}

JSON = "application/json"
BINARY = "application/octet-stream"
HEADER_LENGTH = "Inference-Header-Content-Length"


@dataclass
class Reply:
    """An HTTP response: a complete ``body``, or ``stream`` chunks sent as they come."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    stream: AsyncIterator[bytes] | None = None
    #: A traced inference's trace (tracing.TraceGroup): the transport records HTTP_SEND_START /
    #: HTTP_SEND_END around sending the reply, then releases it.
    trace: Any = None


def error_reply(status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    out = {"Content-Type": JSON}
    if headers:
        out.update(headers)
    return Reply(status, codec.dumps({"error": message}), out)


def json_reply(obj: Any, status: int = 200) -> Reply:
    return Reply(status, codec.dumps(obj), {"Content-Type": JSON})


def empty_json_reply() -> Reply:
    """200 with an empty body, typed JSON (what Triton answers to a control request)."""
    return Reply(200, b"", {"Content-Type": JSON})


OK = Reply(200, b"", {})
NOT_FOUND = error_reply(404, "Not Found")
NOT_ALLOWED = error_reply(405, "Method Not Allowed")


def bad(message: str) -> TritonError:
    return TritonError(message, INVALID_ARG)


class Restricted(TritonError):
    """A restricted API called without its header: 403."""

    def __init__(self, key: str) -> None:
        super().__init__(f"This API is restricted, expecting header '{key}'", INVALID_ARG)
