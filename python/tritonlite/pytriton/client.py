"""PyTriton's ``client``: ``ModelClient`` over ``tritonclient`` (gRPC or HTTP by the URL's
scheme: ``grpc://host:port``, ``http://host:port``; no scheme means HTTP, as in PyTriton).

``infer_batch`` sends inputs that carry the batch dim; ``infer_sample`` adds it and takes it off
the outputs. Positional inputs follow the model config's input order. Server errors raise
``PyTritonClientInferenceServerError`` with the server's message.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .exceptions import (
    PyTritonClientClosedError,
    PyTritonClientInferenceServerError,
    PyTritonClientInvalidUrlError,
    PyTritonClientModelDoesntSupportBatchingError,
    PyTritonClientModelUnavailableError,
    PyTritonClientTimeoutError,
    PyTritonClientValueError,
)

__all__ = ["ModelClient"]

_DEFAULT_PORTS = {"http": 8000, "grpc": 8001}


def _parse_url(url: str) -> tuple[str, str]:
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "http", url
    scheme = scheme.lower()
    if scheme not in _DEFAULT_PORTS or not rest:
        raise PyTritonClientInvalidUrlError(f"Invalid url {url}. Only grpc and http are supported.")
    if ":" not in rest:
        rest = f"{rest}:{_DEFAULT_PORTS[scheme]}"
    return scheme, rest


class ModelClient:
    """A synchronous client for one model."""

    def __init__(
        self,
        url: str,
        model_name: str,
        model_version: str | None = None,
        *,
        lazy_init: bool = True,
        init_timeout_s: float | None = None,
        inference_timeout_s: float | None = None,
        model_config: Any = None,
        ensure_model_is_ready: bool = True,
    ) -> None:
        self.scheme, self.address = _parse_url(url)
        self.model_name = model_name
        self.model_version = model_version or ""
        self.init_timeout_s = 300.0 if init_timeout_s is None else init_timeout_s
        self.inference_timeout_s = 60.0 if inference_timeout_s is None else inference_timeout_s
        self.ensure_model_is_ready = ensure_model_is_ready
        if self.scheme == "grpc":
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
        self._module: Any = module
        if self.scheme == "grpc":
            self._client: Any = module.InferenceServerClient(self.address)
        else:
            self._client = module.InferenceServerClient(
                self.address, connection_timeout=self.inference_timeout_s,
                network_timeout=self.inference_timeout_s,
            )  # fmt: skip
        self._inputs: list[tuple[str, str]] | None = None
        self._max_batch_size = 0
        self._closed = False
        if not lazy_init:
            self.wait_for_model(self.init_timeout_s)

    # ---- setup -------------------------------------------------------------------------------

    def wait_for_model(self, timeout_s: float) -> None:
        """Wait until the server and the model are ready, then read the model's config."""
        from tritonclient.utils import InferenceServerException

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                ready = self._client.is_model_ready(self.model_name, self.model_version)
                if ready or not self.ensure_model_is_ready:
                    break
            except InferenceServerException:
                pass
            except Exception:  # connection refused while the server starts
                pass
            if time.monotonic() >= deadline:
                raise PyTritonClientTimeoutError(
                    f"Timeout while waiting for model {self.model_name} to be ready"
                )
            time.sleep(0.05)
        self._read_config()

    def _read_config(self) -> None:
        from tritonclient.utils import InferenceServerException

        try:
            if self.scheme == "grpc":
                config = self._client.get_model_config(
                    self.model_name, self.model_version, as_json=True
                )["config"]
            else:
                config = self._client.get_model_config(self.model_name, self.model_version)
        except InferenceServerException as e:
            raise PyTritonClientModelUnavailableError(str(e.message())) from None
        self._max_batch_size = int(config.get("max_batch_size", 0))
        self._inputs = [
            (t["name"], str(t["data_type"]).removeprefix("TYPE_")) for t in config.get("input", [])
        ]

    @property
    def model_config(self) -> dict[str, Any]:
        if self._inputs is None:
            self.wait_for_model(self.init_timeout_s)
        return {"max_batch_size": self._max_batch_size, "inputs": list(self._inputs or [])}

    # ---- inference ---------------------------------------------------------------------------

    def infer_sample(
        self, *inputs: Any, parameters: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None, **named_inputs: Any,
    ) -> dict[str, np.ndarray]:  # fmt: skip
        """Infer one sample: inputs without the batch dim; outputs without it."""
        if self._inputs is None:
            self.wait_for_model(self.init_timeout_s)
        if self._max_batch_size > 0:
            inputs = tuple(np.asarray(v)[np.newaxis] for v in inputs)
            named_inputs = {k: np.asarray(v)[np.newaxis] for k, v in named_inputs.items()}
        result = self._infer(inputs, named_inputs, parameters, headers)
        if self._max_batch_size > 0:
            result = {k: v[0] for k, v in result.items()}
        return result

    def infer_batch(
        self, *inputs: Any, parameters: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None, **named_inputs: Any,
    ) -> dict[str, np.ndarray]:  # fmt: skip
        """Infer a batch: every input carries the batch dim first."""
        if self._inputs is None:
            self.wait_for_model(self.init_timeout_s)
        if self._max_batch_size == 0:
            raise PyTritonClientModelDoesntSupportBatchingError(
                f"Model {self.model_name} doesn't support batching - use infer_sample method "
                "instead"
            )
        return self._infer(inputs, named_inputs, parameters, headers)

    def _infer(
        self, inputs: tuple[Any, ...], named: dict[str, Any], parameters: Any, headers: Any
    ) -> dict[str, np.ndarray]:
        from tritonclient.utils import InferenceServerException, np_to_triton_dtype

        if self._closed:
            raise PyTritonClientClosedError("ModelClient is closed")
        if inputs and named:
            raise PyTritonClientValueError(
                "Use either positional either keyword method arguments convention"
            )
        spec = self._inputs or []
        if inputs:
            if len(inputs) > len(spec):
                raise PyTritonClientValueError(
                    f"Model {self.model_name} has {len(spec)} inputs, got {len(inputs)}"
                )
            named = {name: value for (name, _), value in zip(spec, inputs, strict=False)}
        if not named:
            raise PyTritonClientValueError("Provide input data")
        wire = []
        for name, value in named.items():
            array = np.asarray(value)
            dtype = "BYTES" if array.dtype.kind in "OSU" else np_to_triton_dtype(array.dtype)
            tensor = self._module.InferInput(name, list(array.shape), dtype)
            tensor.set_data_from_numpy(array)
            wire.append(tensor)
        try:
            kwargs: dict[str, Any] = {"headers": headers, "parameters": parameters}
            if self.scheme == "grpc":
                kwargs["client_timeout"] = self.inference_timeout_s
            response = self._client.infer(
                self.model_name, wire, model_version=self.model_version, **kwargs
            )
        except InferenceServerException as e:
            raise PyTritonClientInferenceServerError(
                f"Error occurred during inference request. Message: {e.message()}"
            ) from None
        raw = response.get_response()
        outputs = raw.outputs if self.scheme == "grpc" else raw.get("outputs", [])
        names = [o.name if self.scheme == "grpc" else o["name"] for o in outputs]
        return {n: response.as_numpy(n) for n in names}

    # ---- lifetime ----------------------------------------------------------------------------

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._client.close()

    def __enter__(self) -> ModelClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
