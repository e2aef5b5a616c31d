"""PyTriton's exception classes (``pytriton.exceptions`` and the client's)."""

from __future__ import annotations


class PyTritonError(Exception):
    """Base of every PyTriton error."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self._message = message

    @property
    def message(self) -> str:
        return self._message


class PyTritonValidationError(PyTritonError):
    """A bind argument or a config value is invalid (or one tritonlite does not honour)."""


class PyTritonInvalidOperationError(PyTritonError):
    """An operation not allowed in the object's state (e.g. bind after run)."""


class PyTritonBadParameterError(PyTritonError):
    """A bad parameter was passed."""


class PyTritonModelConfigError(PyTritonError):
    """The model config could not be made."""


class PyTritonUnrecoverableError(PyTritonError):
    """The server cannot go on."""


class PyTritonRuntimeError(PyTritonError):
    """A runtime error (e.g. decorators stacked in an order that cannot work)."""


class PyTritonUserError(PyTritonError):
    """Raise it in an inference function: the client gets its message (INVALID_ARG)."""


class PyTritonClientError(PyTritonError):
    """Base of the client's errors."""


class PyTritonClientValueError(PyTritonClientError):
    """A bad value given to the client."""


class PyTritonClientInvalidUrlError(PyTritonClientError):
    """The client's URL is invalid."""


class PyTritonClientTimeoutError(PyTritonClientError):
    """The client timed out."""


class PyTritonClientModelUnavailableError(PyTritonClientError):
    """The model is not (yet) available."""


class PyTritonClientInferenceServerError(PyTritonClientError):
    """The server answered the inference with an error."""


class PyTritonClientModelDoesntSupportBatchingError(PyTritonClientError):
    """``infer_batch`` on a model with batching disabled."""


class PyTritonClientClosedError(PyTritonClientError):
    """The client was closed."""


class PyTritonClientQueueFullError(PyTritonClientError):
    """``FuturesModelClient``: its queue is full (``non_blocking=True``)."""
