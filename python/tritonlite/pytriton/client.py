"""PyTriton's ``client``: ``ModelClient``, ``DecoupledModelClient``, ``AsyncioModelClient`` and
``FuturesModelClient`` over ``tritonclient`` (gRPC or HTTP by the URL's scheme:
``grpc://host:port``, ``http://host:port``; no scheme means HTTP, as in PyTriton).

``infer_batch`` sends inputs that carry the batch dim; ``infer_sample`` adds it and takes it off
the outputs. Positional inputs follow the model config's input order. Server errors raise
``PyTritonClientInferenceServerError`` with the server's message. ``model_config`` is the
model's ``TritonModelConfig`` as the server reports it.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future
from typing import Any

import numpy as np

from .exceptions import (
    PyTritonClientClosedError,
    PyTritonClientInferenceServerError,
    PyTritonClientInvalidUrlError,
    PyTritonClientModelDoesntSupportBatchingError,
    PyTritonClientModelUnavailableError,
    PyTritonClientQueueFullError,
    PyTritonClientTimeoutError,
    PyTritonClientValueError,
)
from .model_config import DynamicBatcher, TensorSpec, TritonModelConfig

__all__ = ["AsyncioModelClient", "DecoupledModelClient", "FuturesModelClient", "ModelClient"]

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


def _numpy_dtype(data_type: str) -> Any:
    from tritonclient.utils import triton_to_np_dtype

    name = data_type.removeprefix("TYPE_")
    return np.bytes_ if name in ("STRING", "BYTES") else triton_to_np_dtype(name)


def _model_config(config: dict[str, Any]) -> TritonModelConfig:
    """A TritonModelConfig from the server's JSON model config."""

    def specs(key: str) -> list[TensorSpec]:
        return [
            TensorSpec(name=t["name"], shape=tuple(int(d) for d in t.get("dims", [])),
                       dtype=_numpy_dtype(str(t["data_type"])),
                       optional=bool(t.get("optional", False)))  # fmt: skip
            for t in config.get(key, [])
        ]

    max_batch_size = int(config.get("max_batch_size", 0))
    dynamic = config.get("dynamic_batching")
    batcher = None
    if dynamic is not None:
        batcher = DynamicBatcher(
            max_queue_delay_microseconds=int(dynamic.get("max_queue_delay_microseconds", 0)),
            preferred_batch_size=[int(b) for b in dynamic.get("preferred_batch_size", [])] or None,
        )
    policy = config.get("model_transaction_policy", {})
    return TritonModelConfig(
        model_name=str(config.get("name", "")),
        max_batch_size=max_batch_size,
        batching=max_batch_size > 0,
        batcher=batcher,
        decoupled=bool(policy.get("decoupled", False)),
        inputs=specs("input"),
        outputs=specs("output"),
    )


def _wire_inputs(
    module: Any, config: TritonModelConfig, model: str, inputs: tuple[Any, ...],
    named: dict[str, Any],
) -> list[Any]:  # fmt: skip
    """tritonclient InferInputs from positional (config order) or named numpy inputs."""
    from tritonclient.utils import np_to_triton_dtype

    if inputs and named:
        raise PyTritonClientValueError(
            "Use either positional either keyword method arguments convention"
        )
    spec = config.inputs or []
    if inputs:
        if len(inputs) > len(spec):
            raise PyTritonClientValueError(
                f"Model {model} has {len(spec)} inputs, got {len(inputs)}"
            )
        named = {s.name: value for s, value in zip(spec, inputs, strict=False)}
    if not named:
        raise PyTritonClientValueError("Provide input data")
    wire = []
    for name, value in named.items():
        array = np.asarray(value)
        dtype = "BYTES" if array.dtype.kind in "OSU" else np_to_triton_dtype(array.dtype)
        tensor = module.InferInput(name, list(array.shape), dtype)
        tensor.set_data_from_numpy(array)
        wire.append(tensor)
    return wire


def _outputs(response: Any, grpc: bool) -> dict[str, np.ndarray]:
    raw = response.get_response()
    outputs = raw.outputs if grpc else raw.get("outputs", [])
    names = [o.name if grpc else o["name"] for o in outputs]
    return {n: response.as_numpy(n) for n in names}


def _add_batch_dim(config: TritonModelConfig, inputs: tuple[Any, ...],
                   named: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:  # fmt: skip
    if config.batching:
        inputs = tuple(np.asarray(v)[np.newaxis] for v in inputs)
        named = {k: np.asarray(v)[np.newaxis] for k, v in named.items()}
    return inputs, named


def _check_batching(config: TritonModelConfig, model: str) -> None:
    if not config.batching:
        raise PyTritonClientModelDoesntSupportBatchingError(
            f"Model {model} doesn't support batching - use infer_sample method instead"
        )


def _server_error(e: Any) -> PyTritonClientInferenceServerError:
    message = e.message() if callable(getattr(e, "message", None)) else str(e)
    return PyTritonClientInferenceServerError(
        f"Error occurred during inference request. Message: {message}"
    )


class _ClientSettings:
    """What the sync and asyncio clients keep of their constructor's arguments, with PyTriton's
    defaults (300 s to initialise, 60 s an inference)."""

    def _keep_settings(
        self, url: str, model_name: str, model_version: str | None, init_timeout_s: float | None,
        inference_timeout_s: float | None, model_config: TritonModelConfig | None,
        ensure_model_is_ready: bool,
    ) -> None:  # fmt: skip
        self.scheme, self.address = _parse_url(url)
        self.model_name = model_name
        self.model_version = model_version or ""
        self.init_timeout_s = 300.0 if init_timeout_s is None else init_timeout_s
        self.inference_timeout_s = 60.0 if inference_timeout_s is None else inference_timeout_s
        self.ensure_model_is_ready = ensure_model_is_ready
        self._model_config: TritonModelConfig | None = model_config
        self._closed = False


class ModelClient(_ClientSettings):
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
        model_config: TritonModelConfig | None = None,
        ensure_model_is_ready: bool = True,
    ) -> None:
        self._keep_settings(url, model_name, model_version, init_timeout_s, inference_timeout_s,
                            model_config, ensure_model_is_ready)
        self._client: Any
        if self.scheme == "grpc":
            import tritonclient.grpc as module

            self._client = module.InferenceServerClient(self.address)
        else:
            import tritonclient.http as module

            self._client = module.InferenceServerClient(
                self.address, connection_timeout=self.inference_timeout_s,
                network_timeout=self.inference_timeout_s,
            )  # fmt: skip
        self._module: Any = module
        if not lazy_init:
            self.wait_for_model(self.init_timeout_s)

    # ---- setup -------------------------------------------------------------------------------

    def wait_for_model(self, timeout_s: float) -> None:
        """Wait until the server and the model are ready, then read the model's config."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                ready = self._client.is_model_ready(self.model_name, self.model_version)
                if ready or not self.ensure_model_is_ready:
                    break
            except Exception:  # InferenceServerException, or refused while the server starts
                pass
            if time.monotonic() >= deadline:
                raise PyTritonClientTimeoutError(
                    f"Timeout while waiting for model {self.model_name} to be ready"
                )
            time.sleep(0.05)
        if self._model_config is None:
            self._model_config = self._read_config()

    def _read_config(self) -> TritonModelConfig:
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
        return _model_config(config)

    @property
    def model_config(self) -> TritonModelConfig:
        """The model's config (waits for the model first, up to init_timeout_s)."""
        if self._model_config is None:
            self.wait_for_model(self.init_timeout_s)
        assert self._model_config is not None
        return self._model_config

    @property
    def is_batching_supported(self) -> bool:
        return self.model_config.max_batch_size > 0

    # ---- inference ---------------------------------------------------------------------------

    def infer_sample(
        self, *inputs: Any, parameters: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None, **named_inputs: Any,
    ) -> Any:  # fmt: skip
        """Infer one sample: inputs without the batch dim; outputs without it."""
        inputs, named_inputs = _add_batch_dim(self.model_config, inputs, named_inputs)
        result = self._infer(inputs, named_inputs, parameters, headers)
        return self._debatch(result) if self.model_config.batching else result

    def infer_batch(
        self, *inputs: Any, parameters: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None, **named_inputs: Any,
    ) -> Any:  # fmt: skip
        """Infer a batch: every input carries the batch dim first."""
        _check_batching(self.model_config, self.model_name)
        return self._infer(inputs, named_inputs, parameters, headers)

    @staticmethod
    def _debatch(result: Any) -> Any:
        return {k: v[0] for k, v in result.items()}

    def _infer(
        self, inputs: tuple[Any, ...], named: dict[str, Any], parameters: Any, headers: Any
    ) -> Any:
        from tritonclient.utils import InferenceServerException

        if self._closed:
            raise PyTritonClientClosedError("ModelClient is closed")
        wire = _wire_inputs(self._module, self.model_config, self.model_name, inputs, named)
        try:
            kwargs: dict[str, Any] = {"headers": headers, "parameters": parameters}
            if self.scheme == "grpc":
                kwargs["client_timeout"] = self.inference_timeout_s
            response = self._client.infer(
                self.model_name, wire, model_version=self.model_version, **kwargs
            )
        except InferenceServerException as e:
            raise _server_error(e) from None
        return _outputs(response, self.scheme == "grpc")

    def load_model(self, config: str | None = None, files: dict[str, bytes] | None = None) -> None:
        """Ask the server to load the model (explicit model control; a server serving bound
        functions has no repository and says so)."""
        self._model_control(self._client.load_model, config=config, files=files)

    def unload_model(self) -> None:
        self._model_control(self._client.unload_model)

    def _model_control(self, call: Any, **kwargs: Any) -> None:
        from tritonclient.utils import InferenceServerException

        try:
            call(self.model_name, **{k: v for k, v in kwargs.items() if v is not None})
        except InferenceServerException as e:
            raise PyTritonClientInferenceServerError(
                f"Error occurred during model control request. Message: {e.message()}"
            ) from None

    # ---- lifetime ----------------------------------------------------------------------------

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._client.close()

    def __enter__(self) -> ModelClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DecoupledModelClient(ModelClient):
    """A synchronous client for a decoupled model (gRPC only): ``infer_sample``/``infer_batch``
    return an iterator over the responses, ending at the server's final flag."""

    def __init__(self, url: str, model_name: str, model_version: str | None = None,
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(url, model_name, model_version, **kwargs)
        if self.scheme == "http":
            self.close()
            raise PyTritonClientValueError(
                "DecoupledModelClient is only supported for grpc protocol"
            )
        self._queue: queue.Queue[Any] = queue.Queue()
        self._lock = threading.Lock()
        self._stream = False

    def _debatch(self, result: Any) -> Any:
        return ({k: v[0] for k, v in r.items()} for r in result)

    def _callback(self, result: Any, error: Any) -> None:
        if error is not None:
            self._queue.put(error)
            return
        raw = result.get_response()
        final = raw.parameters.get("triton_final_response")
        if raw.outputs:
            self._queue.put(_outputs(result, True))
        if final is not None and final.bool_param:
            self._queue.put(None)

    def _infer(
        self, inputs: tuple[Any, ...], named: dict[str, Any], parameters: Any, headers: Any
    ) -> Iterator[dict[str, np.ndarray]]:
        from tritonclient.utils import InferenceServerException

        if self._closed:
            raise PyTritonClientClosedError("DecoupledModelClient is closed")
        if not self.model_config.decoupled:
            raise PyTritonClientInferenceServerError(
                "Model config is coupled. Use ModelClient instead."
            )
        if parameters is not None:
            raise PyTritonClientValueError("DecoupledModelClient does not support parameters")
        if headers is not None:
            raise PyTritonClientValueError("DecoupledModelClient does not support headers")
        wire = _wire_inputs(self._module, self.model_config, self.model_name, inputs, named)
        if not self._lock.acquire(blocking=False):
            raise PyTritonClientInferenceServerError("Inference is already in progress")
        try:
            if not self._stream:
                self._client.start_stream(callback=self._callback)
                self._stream = True
            self._client.async_stream_infer(
                self.model_name, wire, model_version=self.model_version,
                enable_empty_final_response=True,
            )  # fmt: skip
        except InferenceServerException as e:
            self._lock.release()
            raise _server_error(e) from None
        except BaseException:
            self._lock.release()
            raise
        return self._responses()

    def _responses(self) -> Iterator[dict[str, np.ndarray]]:
        try:
            while True:
                try:
                    item = self._queue.get(timeout=self.inference_timeout_s)
                except queue.Empty:
                    raise PyTritonClientTimeoutError(
                        "Timeout occurred during inference request. Timeout: "
                        f"{self.inference_timeout_s} s"
                    ) from None
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise _server_error(item) from None
                yield item
        finally:
            self._lock.release()

    def close(self) -> None:
        if not self._closed and getattr(self, "_stream", False):
            self._client.stop_stream()
        super().close()


class AsyncioModelClient(_ClientSettings):
    """An asyncio client for one model (``tritonclient.grpc.aio`` / ``tritonclient.http.aio``);
    ``async with`` or ``await client.close()``."""

    def __init__(
        self,
        url: str,
        model_name: str,
        model_version: str | None = None,
        *,
        lazy_init: bool = True,
        init_timeout_s: float | None = None,
        inference_timeout_s: float | None = None,
        model_config: TritonModelConfig | None = None,
        ensure_model_is_ready: bool = True,
    ) -> None:
        self._keep_settings(url, model_name, model_version, init_timeout_s, inference_timeout_s,
                            model_config, ensure_model_is_ready)
        self.lazy_init = lazy_init
        if self.scheme == "grpc":
            import tritonclient.grpc.aio as module
        else:
            import tritonclient.http.aio as module
        self._module: Any = module
        self._client: Any = None  # made on the running loop (aiohttp needs one)

    def _connection(self) -> Any:
        if self._closed:
            raise PyTritonClientClosedError("AsyncioModelClient is closed")
        if self._client is None:
            if self.scheme == "grpc":
                self._client = self._module.InferenceServerClient(self.address)
            else:
                self._client = self._module.InferenceServerClient(
                    self.address, conn_timeout=self.inference_timeout_s
                )
        return self._client

    async def __aenter__(self) -> AsyncioModelClient:
        if not self.lazy_init:
            try:
                await self.wait_for_model(self.init_timeout_s)
            except BaseException:
                await self.close()
                raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._client is not None:
                await self._client.close()

    async def wait_for_model(self, timeout_s: float) -> None:
        client = self._connection()
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if await client.is_model_ready(self.model_name, self.model_version) or (
                    not self.ensure_model_is_ready
                ):
                    break
            except Exception:
                pass
            if time.monotonic() >= deadline:
                raise PyTritonClientTimeoutError(
                    f"Timeout while waiting for model {self.model_name} to be ready"
                )
            await asyncio.sleep(0.05)
        if self._model_config is None:
            self._model_config = await self._read_config()

    async def _read_config(self) -> TritonModelConfig:
        from tritonclient.utils import InferenceServerException

        client = self._connection()
        try:
            if self.scheme == "grpc":
                config = (await client.get_model_config(
                    self.model_name, self.model_version, as_json=True))["config"]  # fmt: skip
            else:
                config = await client.get_model_config(self.model_name, self.model_version)
        except InferenceServerException as e:
            raise PyTritonClientModelUnavailableError(str(e.message())) from None
        return _model_config(config)

    @property
    async def model_config(self) -> TritonModelConfig:
        """``await client.model_config``: the model's config."""
        if self._model_config is None:
            await self.wait_for_model(self.init_timeout_s)
        assert self._model_config is not None
        return self._model_config

    async def infer_sample(
        self, *inputs: Any, parameters: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None, **named_inputs: Any,
    ) -> Any:  # fmt: skip
        config = await self.model_config
        inputs, named_inputs = _add_batch_dim(config, inputs, named_inputs)
        result = await self._infer(config, inputs, named_inputs, parameters, headers)
        return {k: v[0] for k, v in result.items()} if config.batching else result

    async def infer_batch(
        self, *inputs: Any, parameters: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None, **named_inputs: Any,
    ) -> Any:  # fmt: skip
        config = await self.model_config
        _check_batching(config, self.model_name)
        return await self._infer(config, inputs, named_inputs, parameters, headers)

    async def _infer(self, config: TritonModelConfig, inputs: tuple[Any, ...],
                     named: dict[str, Any], parameters: Any, headers: Any) -> Any:  # fmt: skip
        from tritonclient.utils import InferenceServerException

        client = self._connection()
        wire = _wire_inputs(self._module, config, self.model_name, inputs, named)
        kwargs: dict[str, Any] = {"headers": headers, "parameters": parameters}
        if self.scheme == "grpc":
            kwargs["client_timeout"] = self.inference_timeout_s
        else:
            kwargs["timeout"] = int(self.inference_timeout_s * 1_000_000)  # Triton's µs
        try:
            response = await client.infer(
                self.model_name, wire, model_version=self.model_version, **kwargs
            )
        except InferenceServerException as e:
            raise _server_error(e) from None
        return _outputs(response, self.scheme == "grpc")


class AsyncioDecoupledModelClient(AsyncioModelClient):
    """An asyncio client for a decoupled model (gRPC only): ``infer_sample``/``infer_batch``
    are async iterators over the responses."""

    def __init__(self, url: str, model_name: str, model_version: str | None = None,
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(url, model_name, model_version, **kwargs)
        if self.scheme == "http":
            raise PyTritonClientValueError(
                "AsyncioDecoupledModelClient is only supported for grpc protocol"
            )

    async def infer_sample(  # type: ignore[override]
        self, *inputs: Any, parameters: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None, **named_inputs: Any,
    ) -> AsyncIterator[dict[str, np.ndarray]]:  # fmt: skip
        config = await self.model_config
        inputs, named_inputs = _add_batch_dim(config, inputs, named_inputs)
        async for r in self._stream(config, inputs, named_inputs, parameters, headers):
            yield {k: v[0] for k, v in r.items()} if config.batching else r

    async def infer_batch(  # type: ignore[override]
        self, *inputs: Any, parameters: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None, **named_inputs: Any,
    ) -> AsyncIterator[dict[str, np.ndarray]]:  # fmt: skip
        config = await self.model_config
        _check_batching(config, self.model_name)
        async for r in self._stream(config, inputs, named_inputs, parameters, headers):
            yield r

    async def _stream(self, config: TritonModelConfig, inputs: tuple[Any, ...],
                      named: dict[str, Any], parameters: Any,
                      headers: Any) -> AsyncIterator[dict[str, np.ndarray]]:  # fmt: skip
        from tritonclient.utils import InferenceServerException

        if not config.decoupled:
            raise PyTritonClientInferenceServerError(
                "Model config is coupled. Use AsyncioModelClient instead."
            )
        if parameters is not None or headers is not None:
            raise PyTritonClientValueError(
                "AsyncioDecoupledModelClient does not support parameters or headers"
            )
        client = self._connection()
        wire = _wire_inputs(self._module, config, self.model_name, inputs, named)

        async def requests() -> AsyncIterator[dict[str, Any]]:
            yield {"model_name": self.model_name, "inputs": wire,
                   "model_version": self.model_version,
                   "enable_empty_final_response": True}  # fmt: skip

        try:
            async for result, error in client.stream_infer(
                requests(), stream_timeout=self.inference_timeout_s
            ):
                if error is not None:
                    raise _server_error(error)
                raw = result.get_response()
                if raw.outputs:
                    yield _outputs(result, True)
                final = raw.parameters.get("triton_final_response")
                if final is not None and final.bool_param:
                    return
        except InferenceServerException as e:
            raise _server_error(e) from None


_CLOSE = object()


class FuturesModelClient:
    """A client whose calls return ``concurrent.futures.Future``: up to ``max_workers``
    threads, each with its own ``ModelClient``, take calls from a queue of ``max_queue_size``
    (``non_blocking``: a full queue raises PyTritonClientQueueFullError instead of waiting)."""

    def __init__(
        self,
        url: str,
        model_name: str,
        model_version: str | None = None,
        *,
        max_workers: int | None = 128,
        max_queue_size: int | None = 128,
        non_blocking: bool = False,
        init_timeout_s: float | None = None,
        inference_timeout_s: float | None = None,
    ) -> None:
        if max_workers is not None and max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if max_queue_size is not None and max_queue_size <= 0:
            raise ValueError("max_queue_size must be greater than 0")
        _parse_url(url)  # a bad URL fails here, not in a worker
        self._url, self._model_name, self._model_version = url, model_name, model_version
        self._max_workers = max_workers
        self._non_blocking = non_blocking
        self._init_timeout_s = init_timeout_s
        self._inference_timeout_s = inference_timeout_s
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue_size or 0)
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()
        self._closed = False

    def __enter__(self) -> FuturesModelClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self, wait: bool = True) -> None:
        """Stop the workers once the queued calls are done (``wait``: join them)."""
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self._queue.put(_CLOSE)
        if wait:
            for thread in self._threads:
                thread.join()

    def wait_for_model(self, timeout_s: float) -> Future[None]:
        return self._execute(lambda c: c.wait_for_model(timeout_s))

    def model_config(self) -> Future[TritonModelConfig]:
        return self._execute(lambda c: c.model_config)

    def infer_sample(self, *inputs: Any, parameters: dict[str, Any] | None = None,
                     headers: dict[str, str] | None = None,
                     **named_inputs: Any) -> Future[dict[str, np.ndarray]]:  # fmt: skip
        return self._execute(lambda c: c.infer_sample(
            *inputs, parameters=parameters, headers=headers, **named_inputs))  # fmt: skip

    def infer_batch(self, *inputs: Any, parameters: dict[str, Any] | None = None,
                    headers: dict[str, str] | None = None,
                    **named_inputs: Any) -> Future[dict[str, np.ndarray]]:  # fmt: skip
        return self._execute(lambda c: c.infer_batch(
            *inputs, parameters=parameters, headers=headers, **named_inputs))  # fmt: skip

    def _execute(self, call: Any) -> Future[Any]:
        if self._closed:
            raise PyTritonClientClosedError("FutureModelClient is already closed")
        future: Future[Any] = Future()
        self._grow()
        try:
            if self._non_blocking:
                self._queue.put_nowait((future, call))
            else:
                self._queue.put((future, call), timeout=self._inference_timeout_s)
        except queue.Full:
            raise PyTritonClientQueueFullError("Queue is full") from None
        return future

    def _grow(self) -> None:
        with self._lock:
            if self._idle > 0 or (
                self._max_workers is not None and len(self._threads) >= self._max_workers
            ):
                return
            thread = threading.Thread(target=self._worker, daemon=True,
                                      name=f"pytriton-futures-{len(self._threads)}")  # fmt: skip
            self._threads.append(thread)
            self._idle += 1
        thread.start()

    def _worker(self) -> None:
        client = ModelClient(self._url, self._model_name, self._model_version,
                             init_timeout_s=self._init_timeout_s,
                             inference_timeout_s=self._inference_timeout_s)  # fmt: skip
        try:
            while True:
                item = self._queue.get()
                if item is _CLOSE:
                    return
                with self._lock:
                    self._idle -= 1
                future, call = item
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(call(client))
                    except BaseException as e:
                        future.set_exception(e)
                with self._lock:
                    self._idle += 1
        finally:
            client.close()
