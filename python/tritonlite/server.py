"""The in-process Server: the one object that frontends and library users talk to.

It owns the loaded models (installed by the repository or by ``add_model``) and the path of a
request into the core: ``infer`` blocks (without the GIL) until the response arrives;
``infer_async`` and ``submit`` return asyncio futures. Completions for an event loop arrive on
core CompletionQueues whose file descriptors the loop watches: one wakeup resolves every
response that is ready, in one C++ call.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import itertools
import json
import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

from . import _core
from ._proto import model_config_pb2 as mc
from .backends import ort_threads
from .backends.base import Backend
from .datatypes import to_wire_name
from .errors import INTERNAL, INVALID_ARG, NOT_FOUND, UNAVAILABLE, TritonError
from .model import LoadedModel, ModelConfig
from .protocol_settings import ProtocolSettings
from .model_table import ModelTable
from .rate_limit import parse_rate_limit_mode, parse_rate_limit_resources
from .repository import ModelRepository
from .response_cache import create_cache
from .shared_memory import CudaSharedMemoryRegistry, SystemSharedMemoryRegistry
from .tracing import TraceConfig, TraceManager

if TYPE_CHECKING:  # typing.Unpack is Python 3.11+
    from typing_extensions import Unpack

_log = logging.getLogger("tritonlite.server")

#: How long close() waits for the background event loop's thread to finish.
BACKGROUND_JOIN_S = 10.0


Inputs = Mapping[str, Any] | Sequence[tuple[str, Any]]

__version__ = "0.1.0"

#: Protocol extensions the frontends implement (reported in server metadata).
EXTENSIONS = (
    "classification",
    "sequence",
    "model_repository",
    "model_repository(unload_dependents)",
    "schedule_policy",
    "model_configuration",
    "system_shared_memory",
    "cuda_shared_memory",
    "binary_tensor_data",
    "parameters",
    "statistics",
    "trace",
    "logging",
)


def _parameters_json(parameters: Mapping[str, Any] | str | None) -> str:
    """A request's own parameters as the JSON object text python_backend models read ("" for
    none). Values: str, int, float or bool; a str is taken as that JSON text already."""
    if isinstance(parameters, str):
        return "" if parameters in ("", "{}") else parameters
    if not parameters:
        return ""
    for key, value in parameters.items():
        if not isinstance(value, (str, int, float, bool)):
            raise TritonError(
                f"request parameter '{key}' must be a string, integer, float or boolean, got "
                f"{type(value).__name__}",
                INVALID_ARG,
            )
    try:
        text = json.dumps(dict(parameters), separators=(",", ":"), ensure_ascii=False)
        text.encode()  # strings that aren't valid UTF-8 (e.g. surrogate-escaped bytes)
    except (TypeError, ValueError) as e:
        raise TritonError(
            f"request parameters must be JSON-encodable text: {e}", INVALID_ARG
        ) from None
    return text


class RequestOptions(TypedDict, total=False):
    """A request's options: the keywords ``Server.infer``, ``infer_async``, ``submit`` and
    ``submit_stream`` take, all optional.

    ``request_id``: the request's id (echoed in its response and trace); ``priority``: its
    dynamic-batcher priority level (0: the config's default); ``timeout_us``: its queue timeout
    (0: the config's); ``correlation_id`` (or ``correlation_id_str``) and ``flags`` (1: sequence
    start, 2: sequence end): a sequence model's fields; ``parameters``: the request's own
    parameters (str, int, float or bool values, or their JSON object text), which a
    python_backend model reads from ``request.parameters()``.
    """

    request_id: str
    priority: int
    timeout_us: int
    correlation_id: int
    correlation_id_str: str
    flags: int
    parameters: Mapping[str, Any] | str | None


_OPTION_KEYS = frozenset(RequestOptions.__annotations__)
_DEFAULT_ARGS = ("", 0, 0, 0, "", 0, "")


def _request_args(method: str, options: Mapping[str, Any]) -> tuple[Any, ...]:
    """``options`` as the core's positional arguments, in ``ModelRunner.enqueue``'s order
    (defaults filled, parameters as JSON)."""
    if not options:
        return _DEFAULT_ARGS
    if not _OPTION_KEYS.issuperset(options):
        unknown = sorted(options.keys() - _OPTION_KEYS)[0]
        raise TypeError(f"Server.{method}() got an unexpected keyword argument '{unknown}'")
    get = options.get
    return (
        get("request_id", ""), get("priority", 0), get("timeout_us", 0),
        get("correlation_id", 0), get("correlation_id_str", ""), get("flags", 0),
        _parameters_json(get("parameters")),
    )  # fmt: skip


def _cancel_when_cancelled(handle: Any, future: asyncio.Future[Any]) -> None:
    if future.cancelled():
        handle.cancel()


class _TracedEntry:
    """The pending entry of a traced request: records the core's timestamps and the outputs on
    its trace, then resolves the caller's future (or calls its on_response)."""

    __slots__ = ("on_response", "target", "trace")

    def __init__(self, target: Any, trace: Any, on_response: bool) -> None:
        self.target = target
        self.trace = trace
        self.on_response = on_response

    def __call__(self, error: Any, outputs: Any, final: bool, times: Any = None) -> None:
        self.trace.response(outputs, times, final)
        if self.on_response:
            self.target(error, outputs, final)
        elif not self.target.done():
            if error is None:
                self.target.set_result(outputs)
            else:
                self.target.set_exception(error)


class _LoopCompletions:
    """Futures of one event loop, resolved in batches from core completion queues: one for
    in-process callers (outputs as numpy arrays), one for frontends (outputs as Tensors)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.numpy_queue = _core.CompletionQueue()
        self.tensor_queue = _core.CompletionQueue()
        self.pending: dict[int, Any] = {}
        self.unmatched = 0  # responses for no pending request: must stay 0
        loop.add_reader(self.numpy_queue.fd(), self._dispatch, self.numpy_queue, True)
        loop.add_reader(self.tensor_queue.fd(), self._dispatch, self.tensor_queue, False)

    def _dispatch(self, queue: Any, as_numpy: bool) -> None:
        self.unmatched += queue.dispatch(self.pending, TritonError, as_numpy)

    def close(self) -> None:
        """Resolve what has arrived, then stop watching the queues, on the loop's own thread:
        Server.close() may run on another thread just after the models failed their queued
        requests, and removing the readers before the loop saw those answers lost them."""
        if self.loop.is_closed():
            return

        def finish() -> None:
            self._dispatch(self.numpy_queue, True)
            self._dispatch(self.tensor_queue, False)
            self.loop.remove_reader(self.numpy_queue.fd())
            self.loop.remove_reader(self.tensor_queue.fd())

        try:
            on_loop = asyncio.get_running_loop() is self.loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            finish()
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self.loop.call_soon_threadsafe(finish)


class Server:
    """A Triton-compatible inference server, in-process.

    ``Server(model_repository=...)`` loads a model repository exactly as ``tritonlite-server``
    does; ``Server()`` starts empty, and ``add_model`` serves a config + backend directly.
    ``backend_config`` is ``--backend-config`` as ``{backend or "": {setting: value}}``
    (``default-max-batch-size`` is what auto-complete reads). ``server_id`` (``--id``) is the
    name server metadata answers: "triton" by default, as Triton's, for client code that checks it.
    ``cache_config`` is ``--cache-config`` as ``{"local": {"size": "<bytes>"}}``: the response
    cache that models with ``response_cache { enable: true }`` use (none by default).
    ``model_load_thread_count`` (``--model-load-thread-count``): how many models the repository
    loads at once at start and on a poll (Triton's default 4; 0 means 1).
    ``model_load_retry_count`` (``--model-load-retry-count``): more tries for a version whose
    backend fails to load. ``model_config_name`` (``--model-config-name``): read
    ``<model>/configs/<name>.pbtxt`` instead of ``config.pbtxt`` where a model has it.
    ``rate_limit`` (``--rate-limit``): ``"off"`` (Triton's default) or ``"execution_count"``;
    ``rate_limit_resources`` (``--rate-limit-resource``): ``"<name>:<count>[:<device>]"`` strings
    or ``(name, count[, device])`` tuples.
    """

    def __init__(
        self,
        model_repository: str | Path | Sequence[str | Path] | None = None,
        *,
        model_control_mode: str = "none",
        load_models: Sequence[str] = (),
        repository_poll_secs: float = 15.0,
        auto_complete_config: bool = True,
        strict_readiness: bool = True,
        exit_on_error: bool = True,
        backend_config: Mapping[str, Mapping[str, str]] | None = None,
        server_id: str = "triton",
        cache_config: Mapping[str, Mapping[str, str]] | None = None,
        trace_config: TraceConfig | None = None,
        model_load_thread_count: int = 4,
        model_load_retry_count: int = 0,
        model_config_name: str = "",
        rate_limit: str = "off",
        rate_limit_resources: Sequence[str | Sequence[Any]] = (),
    ) -> None:
        # An invalid TRITONLITE_SPIN_US, TRITONLITE_CPU_BUDGET, TRITONLITE_INLINE_BATCHES or
        # TRITONLITE_INLINE_BATCH_US is refused here, not silently ignored by the core.
        _core.cpu_budget()
        _core.spin_wait_ns()
        _core.runs_batches_inline()
        self.server_id = server_id
        #: --backend-config: {backend or "": {setting: value}} (see backend_setting).
        self.backend_config = {k: dict(v) for k, v in (backend_config or {}).items()}
        # onnxruntime's thread pool settings, checked before any model loads (see ort_threads).
        ort_threads.parse(lambda key: self.backend_setting("onnxruntime", key))
        #: The core's response cache, shared by the models that enable it (None: no cache).
        self.response_cache = create_cache(cache_config)
        try:
            mode = parse_rate_limit_mode(rate_limit)
            resources = parse_rate_limit_resources(rate_limit_resources)
        except ValueError as e:
            raise TritonError(str(e), INVALID_ARG) from None
        # One for the whole server (it orders instances across models); None: off.
        self.rate_limiter: Any = (
            _core.RateLimiter(resources) if mode == "execution_count" else None
        )
        if mode == "off" and resources:
            _log.warning("--rate-limit-resource has no effect with --rate-limit off")
        #: The served versions of every model (shared with the repository).
        self.models = ModelTable()
        self._loops: dict[asyncio.AbstractEventLoop, _LoopCompletions] = {}
        self._tokens = itertools.count(1)
        self._closed = False
        self._background: asyncio.AbstractEventLoop | None = None
        self._background_lock = threading.Lock()
        self._background_tasks: set[asyncio.Task[Any]] = set()
        self._background_thread: threading.Thread | None = None
        # Shared by every frontend of this server, as Triton shares them across protocols.
        self.system_shared_memory = SystemSharedMemoryRegistry()
        self.cuda_shared_memory = CudaSharedMemoryRegistry()
        self.protocol_settings = ProtocolSettings()
        # Triton's trace extension (--trace-config); its updates may move models on or off the
        # native gRPC fast path, which serves only models that are not being traced.
        self.tracing = TraceManager(trace_config)
        self.tracing.add_listener(self.models.announce)
        self.strict_readiness = strict_readiness
        self.repository: ModelRepository | None = None
        if model_repository is None:
            return
        paths = (
            [model_repository]
            if isinstance(model_repository, (str, Path))
            else list(model_repository)
        )
        self.repository = ModelRepository(
            self.models,
            paths,
            loader=self._load_version,
            backend_host=self,
            control_mode=model_control_mode,
            auto_complete=auto_complete_config,
            backend_config=backend_config,
            load_thread_count=model_load_thread_count,
            load_retry_count=model_load_retry_count,
            config_name=model_config_name,
        )
        self.repository.load_startup_models(load_models)
        failed = [m for m in self.repository.index() if m.get("state") == "UNAVAILABLE"]
        if failed and exit_on_error:
            self.close()
            raise TritonError(
                "failed to load all models: "
                + "; ".join(f"{m['name']}: {m.get('reason', '')}" for m in failed),
                INTERNAL,
            )
        if model_control_mode == "poll":
            self.repository.start_polling(repository_poll_secs)

    # ---- models ------------------------------------------------------------------------------

    def add_model(self, config: ModelConfig, backend: Backend, version: int = 1) -> None:
        """Serve ``backend`` as ``version`` of the model described by a complete ``config``."""
        loaded = LoadedModel(
            config, version, backend, cache=self.cache_for(config), rate_limiter=self.rate_limiter
        )
        self.models.install(config.name, {version: loaded})

    def remove_model(self, name: str, version: int | None = None) -> None:
        """Stop serving a model (all versions by default); waits for in-flight requests."""
        self.models.uninstall(name, version)

    def model_names(self) -> list[str]:
        return self.models.names()

    def get_model(self, name: str, version: int | None = None) -> LoadedModel:
        """The loaded model version (the latest when ``version`` is None or 0)."""
        return self._model_in(self.models.versions(name), name, version)

    def _model_in(
        self, versions: Mapping[int, LoadedModel], name: str, version: int | None
    ) -> LoadedModel:
        if not versions:
            if self.repository is not None and self.repository.has_versions(name):
                # Triton's text for a model it loaded (or tried to) that has no version now.
                raise TritonError(
                    f"Request for unknown model: '{name}' has no available versions", NOT_FOUND
                )
            raise TritonError(f"Request for unknown model: '{name}' is not found", NOT_FOUND)
        if not version:
            return versions[max(versions)]
        loaded = versions.get(version)
        if loaded is None:
            raise TritonError(
                f"Request for unknown model: '{name}' version {version} is not found", NOT_FOUND
            )
        return loaded

    def add_model_listener(self, listener: Any) -> None:
        """``listener(name, versions)`` runs whenever the versions served for a model change
        ({version: LoadedModel}, empty when the model is gone), before retired versions stop;
        and at once for every model already served. (The native gRPC transport keeps its
        C++ model table in step this way.)"""
        self.models.add_listener(listener)

    def remove_model_listener(self, listener: Any) -> None:
        self.models.remove_listener(listener)

    def backend_setting(self, backend: str, key: str) -> str | None:
        """A --backend-config setting for ``backend``: its own value, else the one given for
        every backend, else None."""
        for scope in (backend, ""):
            value = self.backend_config.get(scope, {}).get(key)
            if value is not None:
                return value
        return None

    def cache_for(self, config: ModelConfig) -> Any:
        """The response cache a model version uses: the server's, when its config enables it."""
        if not config.response_cache.enable:
            return None
        if self.response_cache is None:
            _log.warning(
                "model '%s': response_cache is enabled in its config but the server has no "
                "response cache (start it with --cache-config local,size=<bytes>): its "
                "responses are not cached", config.name,
            )  # fmt: skip
        return self.response_cache

    def _load_version(
        self, config: ModelConfig, version: int, backend: Backend, model_dir: Path
    ) -> LoadedModel:
        """A repository load: one version with this server's response cache and rate limiter."""
        return LoadedModel(
            config, version, backend, model_dir=model_dir, cache=self.cache_for(config),
            rate_limiter=self.rate_limiter,
        )  # fmt: skip

    # ---- health, metadata, repository --------------------------------------------------------

    def is_live(self) -> bool:
        return not self._closed

    def is_ready(self) -> bool:
        """Live, and (with strict readiness) every model the repository knows is READY, or
        was unloaded on purpose (as Triton)."""
        if self._closed:
            return False
        if not self.strict_readiness or self.repository is None:
            return True
        snapshot = self.models.snapshot()
        return self.repository.all_ready() and all(
            self._ready_in(versions, name, None) for name, versions in snapshot.items()
        )

    def model_ready(self, name: str, version: int | None = None) -> bool:
        """Loaded, and its backend healthy (a python model's stub may be restarting)."""
        return self._ready_in(self.models.versions(name), name, version)

    def _ready_in(
        self, versions: Mapping[int, LoadedModel], name: str, version: int | None
    ) -> bool:
        try:
            loaded = self._model_in(versions, name, version)
        except TritonError:
            return False
        return bool(getattr(loaded.backend, "healthy", True))

    def metadata(self) -> dict[str, Any]:
        """Triton's server metadata."""
        return {"name": self.server_id, "version": __version__, "extensions": list(EXTENSIONS)}

    def model_metadata(self, name: str, version: int | None = None) -> dict[str, Any]:
        """KServe v2 model metadata: name, versions, platform, inputs and outputs."""
        config = self.get_model(name, version).config
        batch = [-1] if config.max_batch_size > 0 else []

        def tensors(items: Any) -> list[dict[str, Any]]:
            return [
                {
                    "name": t.name,
                    "datatype": to_wire_name(mc.DataType.Name(t.data_type)),
                    "shape": batch + list(t.dims),
                }
                for t in items
            ]

        return {
            "name": name,
            "versions": [str(v) for v in sorted(self.models.versions(name))],
            "platform": config.platform or config.backend,
            "inputs": tensors(config.input),
            "outputs": tensors(config.output),
        }

    def model_config(self, name: str, version: int | None = None) -> ModelConfig:
        return self.get_model(name, version).config

    def repository_index(self, ready_only: bool = False) -> list[dict[str, str]]:
        if self.repository is None:
            return [
                {"name": n, "version": str(v), "state": "READY", "reason": ""}
                for n in self.model_names()
                for v in sorted(self.models.versions(n))
            ]
        return self.repository.index(ready_only)

    def load_model(
        self, name: str, config: str | None = None, files: Mapping[str, bytes] | None = None
    ) -> None:
        """Load or reload a model from the repository (explicit model control), optionally
        with a JSON config override and file overrides ('file:<version>/<file>' -> bytes)."""
        self._explicit_control().load(name, config, files)

    def unload_model(self, name: str, unload_dependents: bool = False) -> None:
        """Unload every version of a model (explicit model control); in-flight requests finish.
        ``unload_dependents``: an ensemble's composing models are unloaded too, those that no
        other loaded ensemble uses (Triton's model_repository(unload_dependents))."""
        self._explicit_control().unload(name, unload_dependents=unload_dependents)

    def _explicit_control(self) -> ModelRepository:
        if self.repository is None:
            raise TritonError("the server has no model repository", UNAVAILABLE)
        mode = self.repository.control_mode
        if mode != "explicit":
            # Triton's text for every mode but explicit ("none" included).
            raise TritonError(
                "explicit model load / unload is not allowed if polling is enabled", UNAVAILABLE
            )
        return self.repository

    # ---- inference ---------------------------------------------------------------------------

    def infer(
        self,
        model: str,
        inputs: Inputs,
        outputs: Sequence[str] | None = None,
        version: int | None = None,
        **options: Unpack[RequestOptions],
    ) -> dict[str, np.ndarray]:
        """Run one request and wait for its outputs (numpy arrays, zero-copy where possible).
        ``options``: see ``RequestOptions`` (priority, timeout, sequence fields, parameters)."""
        runner = self._runner(model, version)
        args = _request_args("infer", options)
        responses = runner.infer(
            inputs, outputs, request_id=args[0], priority=args[1], timeout_us=args[2],
            correlation_id=args[3], correlation_id_str=args[4], flags=args[5],
            parameters=args[6],
        )  # fmt: skip
        _token, error, tensors, _final = responses[-1]
        if error is not None:
            raise TritonError(error[1], error[0])
        return {name: t.numpy() for name, t in tensors}

    def infer_async(
        self,
        model: str,
        inputs: Inputs,
        outputs: Sequence[str] | None = None,
        version: int | None = None,
        **options: Unpack[RequestOptions],
    ) -> asyncio.Future[dict[str, np.ndarray]]:
        """Like ``infer``, from the running event loop: await the returned future. Bad requests
        raise here, before anything is queued."""
        return self._submit(  # type: ignore[no-any-return]
            "infer_async", True, model, inputs, outputs, version, options
        )

    def submit(
        self,
        model: str,
        inputs: Inputs,
        outputs: Sequence[str] | None = None,
        version: int | None = None,
        *,
        trace: Any = None,
        **options: Unpack[RequestOptions],
    ) -> asyncio.Future[list[tuple[str, Any]]]:
        """For frontends: like ``infer_async``, but the future resolves to the outputs as
        (name, Tensor) pairs. ``trace``: the request's ``tracing.TraceGroup`` (from
        ``tracing.sample``), or the ``RequestTrace`` whose child this request is (an ensemble
        step, a BLS call); None when it is not traced."""
        return self._submit(  # type: ignore[no-any-return]
            "submit", False, model, inputs, outputs, version, options, None, trace
        )

    def submit_stream(
        self,
        model: str,
        inputs: Inputs,
        on_response: Any,
        outputs: Sequence[str] | None = None,
        version: int | None = None,
        *,
        trace: Any = None,
        **options: Unpack[RequestOptions],
    ) -> Any:
        """For decoupled models: ``on_response(error, outputs, final)`` is called on the event
        loop for every response ((name, Tensor) pairs), the last one with ``final=True``.
        Returns the request's cancel handle: ``handle.cancel()`` cancels it (a queued request
        is answered CANCELLED, a running model sees ``is_cancelled()``). ``trace``: as
        ``submit``'s."""
        return self._submit(
            "submit_stream", False, model, inputs, outputs, version, options, on_response, trace
        )

    def _submit(
        self,
        method: str,
        as_numpy: bool,
        model: str,
        inputs: Inputs,
        outputs: Sequence[str] | None,
        version: int | None,
        options: Mapping[str, Any],
        on_response: Any = None,
        trace: Any = None,
    ) -> Any:
        runner = self.models.latest_runner(model) if not version else None
        if runner is None:
            runner = self._runner(model, version)
        loop = asyncio.get_running_loop()
        completions = self._loops.get(loop) or self._completions(loop)
        future = loop.create_future() if on_response is None else on_response
        token = next(self._tokens)
        trace_id = 0
        if trace is None:
            completions.pending[token] = future
        else:  # REQUEST_START now; the core's timestamps come with the response
            trace = trace.start_request(model)
            ensemble = self.get_model(model, version).config.platform == "ensemble"
            trace.begin(runner.version, options.get("request_id", ""), inputs, ensemble)
            trace_id = trace.id
            completions.pending[token] = _TracedEntry(future, trace, on_response is not None)
        try:
            handle = runner.enqueue(
                completions.numpy_queue if as_numpy else completions.tensor_queue,
                token, inputs, outputs, *_request_args(method, options), trace_id,
            )  # fmt: skip
        except BaseException:
            del completions.pending[token]
            if trace is not None:
                trace.end()
            raise
        if on_response is not None:
            return handle
        # Cancelling the future (or the task awaiting it) cancels the request in the core: a
        # queued one never runs, a running python model sees request.is_cancelled().
        future.add_done_callback(functools.partial(_cancel_when_cancelled, handle))
        return future

    def statistics(
        self, model: str = "", version: int | None = None, *, histograms: bool = False
    ) -> list[dict[str, Any]]:
        """Triton's ModelStatistics for one model (or every model) as dicts; ``histograms``:
        with ``latency_histograms`` too (bucket counts per latency kind, see latency.py)."""
        names = [model] if model else self.model_names()
        out = []
        for name in names:
            versions = self.models.versions(name)
            if not versions:  # Triton's text and code (INVALID_ARGUMENT / HTTP 400)
                raise TritonError(f"requested model '{name}' is not available", INVALID_ARG)
            if model and version is not None and version not in versions:
                raise TritonError(
                    f"requested model version is not available for model '{name}'", INVALID_ARG
                )
            for v, loaded in sorted(versions.items()):
                if version is None or v == version or not model:
                    stats = loaded.runner.statistics(histograms)
                    out.append({"name": name, "version": str(v), **stats})
        return out

    def run_in_background(self, coro: Any) -> concurrent.futures.Future[Any]:
        """Run a coroutine on the server's own event loop (a daemon thread started on first
        use): for work the server starts itself, like ensemble steps and BLS calls."""
        return asyncio.run_coroutine_threadsafe(coro, self._background_loop())

    def start_in_background(self, coros: list[Any]) -> None:
        """Start coroutines on the server's own event loop, from any thread, with one wakeup
        of the loop for all of them; nobody waits for their results (they must not raise:
        an exception is logged by asyncio)."""
        loop = self._background_loop()
        loop.call_soon_threadsafe(self._start_tasks, loop, coros)

    def _start_tasks(self, loop: asyncio.AbstractEventLoop, coros: list[Any]) -> None:
        for coro in coros:
            task = loop.create_task(coro)
            self._background_tasks.add(task)  # the loop keeps only weak references
            task.add_done_callback(self._background_tasks.discard)

    def _background_loop(self) -> asyncio.AbstractEventLoop:
        with self._background_lock:
            if self._background is None:
                loop = asyncio.new_event_loop()

                def run() -> None:
                    try:
                        loop.run_forever()
                    finally:  # stopped by close(): closed here, not by the GC at exit
                        loop.close()

                thread = threading.Thread(target=run, name="tritonlite-background", daemon=True)
                thread.start()
                self._background, self._background_thread = loop, thread
            return self._background

    # ---- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Stop accepting requests, finish in-flight ones, unload every model."""
        if self._closed:
            return
        self._closed = True
        self.models.clear_routes()
        if self.repository is not None:
            self.repository.close()
        for name in self.models.names():
            self.models.uninstall(name)
        self.system_shared_memory.close()  # unmaps every client region
        self.tracing.close()  # writes (or exports) the traces of the requests that finished
        for completions in self._loops.values():
            if completions.loop is not self._background:
                completions.close()
        if self._background is not None:
            loop, self._background = self._background, None
            thread, self._background_thread = self._background_thread, None
            loop.call_soon_threadsafe(loop.stop)
            # Joined: a daemon thread still inside a _core call (the GIL released) when the
            # interpreter exits is ended by Python with a forced unwind through C++ frames,
            # and the process aborts ("terminate called without an active exception").
            if thread is not None and thread is not threading.current_thread():
                thread.join(BACKGROUND_JOIN_S)
                if thread.is_alive():
                    _log.warning("the background event loop did not stop within %g s",
                                 BACKGROUND_JOIN_S)  # fmt: skip
        self._loops.clear()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _runner(self, model: str, version: int | None) -> Any:
        if self._closed:
            raise TritonError("Server is shutting down", UNAVAILABLE)
        return self.get_model(model, version).runner

    def _completions(self, loop: asyncio.AbstractEventLoop) -> _LoopCompletions:
        completions = self._loops.get(loop)
        if completions is None or completions.loop.is_closed():
            completions = self._loops[loop] = _LoopCompletions(loop)
        return completions
