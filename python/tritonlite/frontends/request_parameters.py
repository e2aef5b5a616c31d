"""Which request parameters Triton keeps for itself, and which reach the model.

A request's own parameters (KServe v2's ``parameters``) go to the model, where a python_backend
model reads them as JSON from ``request.parameters()``. Triton consumes the scheduling and
protocol ones below, and refuses other keys that start with ``triton_``; both frontends use this.
"""

from __future__ import annotations

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
