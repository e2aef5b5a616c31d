"""Ray Serve deployment of tritonlite: owns the Serve deployment (``TritonliteDeployment``), its
app builder (``app``, for ``serve run tritonlite.ray:app model_repository=...``), multiplexing
of many-model repositories and the queue-time autoscaling policy. No protocol code lives here.

Each replica runs a ``tritonlite.Server`` in-process over a model repository and serves:

- KServe v2 REST through Serve's HTTP ingress: every request goes through the HTTP frontend's
  ``HttpApi.dispatch`` (the same routes, codecs, errors and limits as ``tritonlite-server``), so
  ``tritonclient.http`` works against the Serve address unchanged;
- a handle API for composition with other deployments: ``await handle.infer.remote(model,
  {"INPUT0": array, ...})`` returns ``{"OUTPUT0": array, ...}`` (numpy in, numpy out).

Multiplexing (``multiplex=True``): the server runs in explicit model-control mode with no model
loaded; a request for model M loads it through ``@serve.multiplexed`` (at most
``max_models_per_replica`` per replica, the least recently used one unloaded first). Serve routes
a request to a replica that already holds M when the request names it: the HTTP header
``serve_multiplexed_model_id: M`` or ``handle.options(multiplexed_model_id=M)``; a request
without it goes to any replica, which loads M on demand. Loading and unloading through
``/v2/repository/models/M/load|unload`` is refused there (the LRU owns it).

Autoscaling: Serve's ``autoscaling_config`` (ongoing requests per replica) works as for any
deployment; each replica also reports ``tritonlite_queue_time_us`` (the mean time its requests
waited in the scheduler queues since the last report), and ``QueueTimePolicy`` scales on it
(``autoscaling_config.policy``, see ``app``).
"""

from __future__ import annotations

import asyncio
import re
import threading
import urllib.parse
from collections.abc import AsyncIterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

try:
    import ray
    from ray import serve
    from starlette.requests import Request
    from starlette.responses import Response, StreamingResponse
except ImportError as e:  # pragma: no cover - the [ray] extra is missing
    raise ImportError(
        "tritonlite.ray needs Ray Serve: pip install 'tritonlite[ray]' (ray[serve])"
    ) from e

from .errors import INVALID_ARG, NOT_FOUND, TritonError
from .frontends.http import DEFAULT_MAX_BODY_BYTES, HttpApi, body_too_large
from .frontends.http.reply import HTTP_CODES, Reply, error_reply
from .server import Server

__all__ = [
    "QUEUE_TIME_METRIC",
    "QueueTimePolicy",
    "TritonliteDeployment",
    "app",
    "build_app",
]

#: The custom autoscaling metric each replica reports (microseconds, see the module doc).
QUEUE_TIME_METRIC = "tritonlite_queue_time_us"
#: The response header that names the replica (and its Ray node) that served a request.
REPLICA_HEADER = "tritonlite-replica"
#: How many requests a replica takes at once (Serve's max_ongoing_requests) unless told:
#: the core queues and batches them, so more than Serve's default helps throughput.
DEFAULT_MAX_ONGOING_REQUESTS = 64
DEFAULT_MAX_MODELS_PER_REPLICA = 4

_MODEL_PATH = re.compile(r"/v2/models/([^/]+)(?:/.*)?")
_REPOSITORY_CONTROL = re.compile(r"/v2/repository(?:/[^/]+)?/models/[^/]+/(?:load|unload)")


class _MultiplexedModel:
    """A model a replica's multiplexing LRU holds. Serve calls ``__del__()`` when it evicts
    the model (in a worker thread): the server unloads it then. The instance attribute, unlike
    a class ``__del__``, is never run by the garbage collector."""

    def __init__(self, server: Server, name: str) -> None:
        self.name = name
        self._server = server
        self.__del__ = self._unload

    def _unload(self) -> None:
        try:
            self._server.unload_model(self.name)
        except TritonError:  # the server is closing, or the model is already gone
            pass


class TritonliteDeployment:
    """One Serve replica: a ``tritonlite.Server`` over ``model_repository`` (a path or a list
    of paths), served over KServe v2 REST (``__call__``) and the handle API (``infer``,
    ``model_metadata``, ``model_ready``, ``statistics``).

    ``server_options``: keyword arguments of ``tritonlite.Server`` (``model_control_mode``,
    ``strict_readiness``, ``backend_config``, ...). ``multiplex``: load models on demand, at most
    ``max_models_per_replica`` at once (least recently used unloaded first).
    ``max_body_bytes``: the largest HTTP request body (``--http-max-input-size``).
    """

    def __init__(
        self,
        model_repository: str | Sequence[str],
        *,
        multiplex: bool = False,
        max_models_per_replica: int = DEFAULT_MAX_MODELS_PER_REPLICA,
        server_options: Mapping[str, Any] | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        options = dict(server_options or {})
        if multiplex:
            if options.get("model_control_mode", "explicit") != "explicit":
                raise ValueError("multiplex=True loads models on demand: it needs "
                                 "model_control_mode 'explicit' (the default with multiplex)")
            options["model_control_mode"] = "explicit"
            options["load_models"] = ()
        self._server = Server(model_repository, **options)
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tritonlite-ray")
        self._api = HttpApi(self._server, max_body_bytes=max_body_bytes, executor=self._executor)
        self._max_body_bytes = max_body_bytes
        self._multiplex = multiplex
        self._queue_mark: tuple[int, int] = (0, 0)  # (queue ns, requests) at the last report
        self._stats_lock = threading.Lock()
        self._replica = f"{_replica_id()} node={ray.get_runtime_context().get_node_id()}"
        if multiplex:

            async def load(model_id: str) -> _MultiplexedModel:
                return await self._load_model(model_id)

            # Per instance: the limit is this deployment's argument, not a class constant.
            self.get_model = serve.multiplexed(max_num_models_per_replica=max_models_per_replica)(
                load
            )

    # ---- multiplexing ------------------------------------------------------------------------

    async def _load_model(self, name: str) -> _MultiplexedModel:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._server.load_model, name)
        return _MultiplexedModel(self._server, name)

    async def _ensure_loaded(self, name: str) -> None:
        """With multiplexing, ``name`` loaded on this replica (LRU). A model the repository
        does not have gets the answer a server without multiplexing gives (unknown model)
        without touching the LRU (Serve evicts before it loads); one that fails to load, the
        load's error."""
        if not self._multiplex:
            return
        if name not in self._server.model_names():
            loop = asyncio.get_running_loop()
            index = await loop.run_in_executor(self._executor, self._server.repository_index)
            if not any(m.get("name") == name for m in index):
                raise TritonError(f"Request for unknown model: '{name}' is not found", NOT_FOUND)
        await self.get_model(name)

    # ---- KServe v2 REST through Serve's HTTP ingress -----------------------------------------

    async def __call__(self, request: Request) -> Response:
        scope = request.scope
        raw = scope.get("raw_path")
        path = raw.decode("latin-1").split("?", 1)[0] if raw else scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):] or "/"
        reply = await self._dispatch(request, path)
        headers = dict(reply.headers)
        headers[REPLICA_HEADER] = self._replica
        if reply.trace is not None:  # Serve sends the reply: the trace ends when it is handed over
            reply.trace.capture("HTTP_SEND_START")
            reply.trace.capture("HTTP_SEND_END")
            reply.trace.release()
        if reply.stream is not None:
            return StreamingResponse(reply.stream, status_code=reply.status, headers=headers)
        return Response(reply.body, status_code=reply.status, headers=headers)

    async def _dispatch(self, request: Request, path: str) -> Reply:
        if self._multiplex:
            if _REPOSITORY_CONTROL.fullmatch(path):
                return error_reply(
                    400, "model load / unload is managed by Ray Serve's multiplexing in this "
                    "deployment (models load on demand): not allowed through the API",
                )  # fmt: skip
            m = _MODEL_PATH.fullmatch(path)
            if m is not None and m.group(1) != "stats":
                try:
                    await self._ensure_loaded(urllib.parse.unquote(m.group(1)))
                except TritonError as e:
                    return error_reply(HTTP_CODES.get(e.status, 400), e.message)

        async def read_body() -> bytes:
            return await _read_limited(request, self._max_body_bytes)

        return await self._api.dispatch(request.method, path, request.headers, read_body)

    # ---- the handle API (numpy in, numpy out) ------------------------------------------------

    async def infer(
        self,
        model: str | None,
        inputs: Mapping[str, np.ndarray],
        outputs: Sequence[str] | None = None,
        version: int | None = None,
        **options: Any,
    ) -> dict[str, np.ndarray]:
        """Run one request on ``model`` (None: the request's multiplexed model id) and return
        its outputs. ``options``: ``tritonlite.Server.infer``'s (priority, timeout, sequence
        fields, parameters). Errors raise ``TritonError`` with Triton's status and text."""
        name = model or serve.get_multiplexed_model_id()
        if not name:
            raise TritonError("infer: no model named (pass model, or call through "
                              "handle.options(multiplexed_model_id=...))", INVALID_ARG)  # fmt: skip
        await self._ensure_loaded(name)
        arrays = {k: np.asarray(v) for k, v in inputs.items()}
        return await self._server.infer_async(name, arrays, outputs, version, **options)

    async def model_metadata(self, model: str, version: int | None = None) -> dict[str, Any]:
        await self._ensure_loaded(model)
        return self._server.model_metadata(model, version)

    async def model_ready(self, model: str, version: int | None = None) -> bool:
        return self._server.model_ready(model, version)

    async def statistics(self, model: str = "") -> list[dict[str, Any]]:
        return self._server.statistics(model)

    async def replica(self) -> dict[str, Any]:
        """This replica's id, Ray node and loaded models (for tests and debugging)."""
        return {
            "replica": _replica_id(),
            "node_id": ray.get_runtime_context().get_node_id(),
            "models": self._server.model_names(),
        }

    # ---- autoscaling -------------------------------------------------------------------------

    def record_autoscaling_stats(self) -> dict[str, float]:
        """Serve's custom autoscaling metric: the mean queue time (µs) of the requests this
        replica finished since the last report (0 when none finished)."""
        queue_ns = done = 0
        for s in self._server.statistics():
            stats = s.get("inference_stats", {})
            queue_ns += int(stats.get("queue", {}).get("ns", 0))
            done += int(stats.get("success", {}).get("count", 0))
        with self._stats_lock:
            last_ns, last_done = self._queue_mark
            self._queue_mark = (queue_ns, done)
        if done <= last_done or queue_ns < last_ns:  # nothing new, or a model was reloaded
            return {QUEUE_TIME_METRIC: 0.0}
        return {QUEUE_TIME_METRIC: (queue_ns - last_ns) / (done - last_done) / 1000.0}

    def __del__(self) -> None:  # Serve's replica shutdown
        server = getattr(self, "_server", None)
        if server is not None:
            server.close()
            self._executor.shutdown(wait=False)


async def _read_limited(request: Request, limit: int) -> bytes:
    """A request body of at most ``limit`` bytes (Triton's texts when it is larger)."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise body_too_large(limit, int(length))
    chunks: list[bytes] = []
    total = 0
    stream: AsyncIterator[bytes] = request.stream()
    async for chunk in stream:
        total += len(chunk)
        if total > limit:
            raise body_too_large(limit)
        if chunk:
            chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _replica_id() -> str:
    try:
        return str(serve.get_replica_context().replica_id.unique_id)
    except Exception:  # noqa: BLE001 - outside a replica (a direct test)
        return "local"


class QueueTimePolicy:
    """A Serve autoscaling policy on tritonlite's queue time: as many replicas as the ongoing
    requests need (Serve's default rule, ``target_ongoing_requests``), or more while the mean
    queue time over the replicas exceeds ``target_queue_time_ms`` (scaled in proportion).
    Serve applies min/max replicas, the scaling factors and delays around it.

    ``autoscaling_config={"policy": {"policy_function": "tritonlite.ray:QueueTimePolicy",
    "policy_kwargs": {"target_queue_time_ms": 20}}, ...}``
    """

    def __init__(self, target_queue_time_ms: float = 20.0) -> None:
        if not target_queue_time_ms > 0:
            raise ValueError(f"target_queue_time_ms must be > 0, got {target_queue_time_ms}")
        self.target_us = float(target_queue_time_ms) * 1000.0

    def __call__(self, ctx: Any) -> tuple[float, dict[str, Any]]:
        running = ctx.current_num_replicas
        if running == 0:
            return ctx.target_num_replicas, {}
        per_replica = ctx.config.get_target_ongoing_requests()
        by_requests = ctx.total_num_requests / per_replica if per_replica else running
        samples = list(((ctx.aggregated_metrics or {}).get(QUEUE_TIME_METRIC) or {}).values())
        by_queue = 0.0
        if samples:
            mean_us = sum(samples) / len(samples)
            by_queue = running * mean_us / self.target_us
        return max(by_requests, by_queue), {}


# ---- the application ---------------------------------------------------------------------------

_BOOL = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


def _flag(args: Mapping[str, Any], key: str, default: bool) -> bool:
    value = args.get(key, default)
    if isinstance(value, bool):
        return value
    parsed = _BOOL.get(str(value).strip().lower())
    if parsed is None:
        raise ValueError(f"{key}: expected true or false, got '{value}'")
    return parsed


def _number(args: Mapping[str, Any], key: str, kind: type, default: Any, minimum: float) -> Any:
    value = args.get(key, default)
    if value is None:
        return None
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"{key}: expected a number, got '{value}'") from None
    if number < minimum:
        raise ValueError(f"{key}: must be at least {minimum}, got {number}")
    return number


_APP_ARGS = frozenset({
    "model_repository", "multiplex", "max_models_per_replica", "num_replicas", "min_replicas",
    "max_replicas", "target_ongoing_requests", "target_queue_time_ms", "max_ongoing_requests",
    "num_cpus", "name", "server_options", "max_body_bytes", "autoscaling_config",
})  # fmt: skip


def build_app(args: Mapping[str, Any]) -> Any:
    """The Serve application for ``args`` (strings from ``serve run ... key=value``, or typed
    values from Python or a Serve config file's ``args``):

    - ``model_repository`` (required): a path, or several separated by commas;
    - ``multiplex`` (false) and ``max_models_per_replica`` (4);
    - ``num_replicas`` (1), or autoscaling: ``min_replicas``/``max_replicas`` with
      ``target_ongoing_requests`` (2) and optionally ``target_queue_time_ms`` (QueueTimePolicy);
    - ``max_ongoing_requests`` (64), ``num_cpus`` per replica (1), ``name`` ("tritonlite");
    - ``server_options``: a dict of ``tritonlite.Server`` keyword arguments (Python/config only);
    - ``autoscaling_config``: a dict of further Serve autoscaling settings (``upscale_delay_s``,
      ``look_back_period_s``, ...) over the ones above (Python/config only);
    - ``max_body_bytes``: the largest HTTP request body (64 MiB).
    """
    unknown = sorted(set(args) - _APP_ARGS)
    if unknown:
        raise ValueError(f"tritonlite.ray: unknown argument(s) {', '.join(unknown)} "
                         f"(known: {', '.join(sorted(_APP_ARGS))})")  # fmt: skip
    repo = args.get("model_repository")
    if not repo:
        raise ValueError("tritonlite.ray: model_repository=<path> is required")
    repos = [p.strip() for p in repo.split(",")] if isinstance(repo, str) else list(repo)
    for p in repos:
        if not Path(p).is_dir():
            raise ValueError(f"tritonlite.ray: model_repository '{p}' is not a directory")
    # Absolute: a replica's working directory is Ray's, not the caller's.
    repos = [str(Path(p).resolve()) for p in repos]
    options: dict[str, Any] = {
        "name": str(args.get("name", "tritonlite")),
        "max_ongoing_requests": _number(args, "max_ongoing_requests", int,
                                        DEFAULT_MAX_ONGOING_REQUESTS, 1),
        "ray_actor_options": {"num_cpus": _number(args, "num_cpus", float, 1.0, 0)},
    }  # fmt: skip
    min_r = _number(args, "min_replicas", int, None, 0)
    max_r = _number(args, "max_replicas", int, None, 1)
    extra = args.get("autoscaling_config") or {}
    if not isinstance(extra, Mapping):
        raise ValueError("tritonlite.ray: autoscaling_config must be a mapping of Serve's "
                         "autoscaling settings")  # fmt: skip
    if extra and min_r is None and max_r is None:
        raise ValueError("tritonlite.ray: autoscaling_config needs min_replicas/max_replicas")
    if min_r is not None or max_r is not None:
        if "num_replicas" in args:
            raise ValueError("tritonlite.ray: num_replicas or min_replicas/max_replicas, not both")
        autoscaling: dict[str, Any] = {
            "min_replicas": 1 if min_r is None else min_r,
            "max_replicas": max(1 if min_r is None else min_r, max_r or 1),
            "target_ongoing_requests": _number(args, "target_ongoing_requests", float, 2.0, 0),
        }
        target_ms = _number(args, "target_queue_time_ms", float, None, 0)
        if target_ms is not None:
            autoscaling["policy"] = {
                "policy_function": "tritonlite.ray:QueueTimePolicy",
                "policy_kwargs": {"target_queue_time_ms": target_ms},
            }
        options["autoscaling_config"] = {**autoscaling, **extra}
    else:
        options["num_replicas"] = _number(args, "num_replicas", int, 1, 1)
    deployment = serve.deployment(TritonliteDeployment).options(**options)
    return deployment.bind(
        repos if len(repos) > 1 else repos[0],
        multiplex=_flag(args, "multiplex", False),
        max_models_per_replica=_number(args, "max_models_per_replica", int,
                                       DEFAULT_MAX_MODELS_PER_REPLICA, 1),
        server_options=dict(args.get("server_options") or {}),
        max_body_bytes=_number(args, "max_body_bytes", int, DEFAULT_MAX_BODY_BYTES, 1),
    )  # fmt: skip


def app(args: dict[str, str]) -> Any:
    """``serve run tritonlite.ray:app model_repository=/path [key=value ...]``: see
    ``build_app`` for the arguments."""
    return build_app(args)

