"""The one exception type tritonlite raises, carrying Triton's status kinds."""

from __future__ import annotations

INVALID_ARG = "INVALID_ARG"
NOT_FOUND = "NOT_FOUND"
UNAVAILABLE = "UNAVAILABLE"
INTERNAL = "INTERNAL"
UNSUPPORTED = "UNSUPPORTED"
ALREADY_EXISTS = "ALREADY_EXISTS"
CANCELLED = "CANCELLED"
UNKNOWN = "UNKNOWN"


class TritonError(Exception):
    """An error with Triton's status kind (``INVALID_ARG``, ``NOT_FOUND``, ``UNAVAILABLE``, ...).

    Frontends map ``status`` to gRPC and HTTP codes; ``message`` is what the client sees.
    """

    def __init__(self, message: str, status: str = INTERNAL) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def __repr__(self) -> str:
        return f"TritonError({self.status}: {self.message})"
