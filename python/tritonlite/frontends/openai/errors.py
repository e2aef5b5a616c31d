"""OpenAI's error shape: ``{"error": {"message", "type", "param", "code"}}`` with an HTTP status,
and the mapping of the core's Triton status kinds onto it."""

from __future__ import annotations

from typing import Any

import orjson

from ...errors import TritonError

#: Triton status kinds -> (HTTP status, OpenAI error type).
_KINDS: dict[str, tuple[int, str]] = {
    "INVALID_ARG": (400, "invalid_request_error"),
    "NOT_FOUND": (404, "invalid_request_error"),
    "ALREADY_EXISTS": (400, "invalid_request_error"),
    "UNSUPPORTED": (400, "invalid_request_error"),
    "UNAVAILABLE": (503, "server_error"),
    "CANCELLED": (499, "invalid_request_error"),
    "INTERNAL": (500, "server_error"),
    "UNKNOWN": (400, "invalid_request_error"),  # as Triton's HTTP frontend
}


class OpenAIError(Exception):
    """An error answered in OpenAI's shape (raised anywhere in a request's handling)."""

    def __init__(
        self,
        message: str,
        status: int = 400,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.param = param
        self.code = code

    def doc(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message, "type": self.type, "param": self.param,
                "code": self.code,
            }
        }  # fmt: skip

    def body(self) -> bytes:
        return orjson.dumps(self.doc())


def bad_request(message: str, param: str | None = None, code: str | None = None) -> OpenAIError:
    return OpenAIError(message, 400, param=param, code=code)


def unknown_model(name: str) -> OpenAIError:
    # Triton's OpenAI frontend's text ("Unknown model: <name>"); OpenAI's status and code.
    return OpenAIError(f"Unknown model: {name}", 404, param="model", code="model_not_found")


def from_triton(error: BaseException) -> OpenAIError:
    """A core or model error (a TritonError, or an exception a model raised) as an OpenAIError."""
    if isinstance(error, OpenAIError):
        return error
    kind = getattr(error, "status", "INTERNAL") if isinstance(error, TritonError) else "INTERNAL"
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    status, type_ = _KINDS.get(str(kind), (500, "server_error"))
    return OpenAIError(str(message), status, type=type_, code=str(kind).lower())
