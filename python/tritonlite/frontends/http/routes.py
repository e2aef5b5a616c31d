"""The routes table: every HTTP endpoint as (path pattern, methods, restricted-API category,
handler), first match wins. A path that matches no pattern is 404; a matching path with another
method is 405 (checked before the restricted-API header, and before the body is read)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from . import admin, dashboard, generate, infer, metadata
from .context import Call, HttpContext
from .reply import Reply

Handler = Callable[[HttpContext, Call], Awaitable[Reply]]


@dataclass(frozen=True)
class Route:
    """Paths matching ``pattern`` (whole path) serve ``methods`` with ``handler``, which gets
    the pattern's groups as ``Call.args``; ``category`` is the restricted-API category."""

    pattern: re.Pattern[str]
    methods: tuple[str, ...]
    category: str
    handler: Handler


def _route(pattern: str, methods: str, category: str, handler: Handler) -> Route:
    return Route(re.compile(pattern), tuple(methods.split(",")), category, handler)


_MODEL = r"/v2/models/([^/]+)(?:/versions/([0-9]+))?"  # groups: model name, version
_SYSTEM_SHM = r"/v2/systemsharedmemory(?:/region/([^/]+))?"  # group: region
_CUDA_SHM = r"/v2/cudasharedmemory(?:/region/([^/]+))?"

ROUTES: tuple[Route, ...] = (
    _route(r"/v2/health/(live|ready)", "GET", "health", metadata.health),
    _route(r"/v2", "GET", "metadata", metadata.server_metadata),
    _route(r"/v2/models/stats", "GET", "statistics", admin.all_statistics),  # before _MODEL
    _route(_MODEL + r"/infer", "POST", "inference", infer.infer),
    _route(_MODEL + r"/(generate|generate_stream)", "POST", "inference", generate.generate),
    _route(_MODEL + r"/ready", "GET", "health", metadata.model_ready),
    _route(_MODEL + r"/config", "GET", "model-config", metadata.model_config),
    _route(_MODEL + r"/stats", "GET", "statistics", admin.statistics),
    _route(_MODEL, "GET", "metadata", metadata.model_metadata),
    _route(r"/v2/models/([^/]+)/trace/setting", "GET,POST", "trace", admin.trace),
    _route(r"/v2/trace/setting", "GET,POST", "trace", admin.trace),
    _route(r"/v2/logging", "GET,POST", "logging", admin.logging),
    _route(r"/v2/repository(?:/[^/]+)?/index", "POST", "model-repository",
           admin.repository_index),  # fmt: skip
    _route(r"/v2/repository(?:/[^/]+)?/models/([^/]+)/(load|unload)", "POST", "model-repository",
           admin.repository_control),  # fmt: skip
    _route(_SYSTEM_SHM + r"/status", "GET", "shared-memory", admin.system_shm_status),
    _route(_SYSTEM_SHM + r"/(register|unregister)", "POST", "shared-memory",
           admin.system_shm_change),  # fmt: skip
    _route(_CUDA_SHM + r"/status", "GET", "shared-memory", admin.cuda_shm_status),
    _route(_CUDA_SHM + r"/(register|unregister)", "POST", "shared-memory",
           admin.cuda_shm_change),  # fmt: skip
    # The live dashboard (not Triton's): static page files, and the state it polls.
    _route(r"/dashboard/api/state", "GET", "statistics", dashboard.api_state),
    _route(r"/dashboard(?:/([a-z]+\.[a-z]+)?)?", "GET", "", dashboard.page),
)


def find(path: str) -> tuple[Route, tuple[str | None, ...]] | None:
    """The route serving ``path`` and its path groups, or None (404)."""
    for route in ROUTES:
        m = route.pattern.fullmatch(path)
        if m is not None:
            return route, m.groups()
    return None
