"""What every HTTP handler shares: the ``Server``, the protocol settings, the body-size limit,
the restricted-API check, reading a (possibly compressed) body, and the call being served."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ...errors import NOT_FOUND, TritonError
from ...protocol_settings import HTTP_MAX_INPUT_SIZE, ProtocolSettings
from ...server import Server
from ...shared_memory import SystemSharedMemoryRegistry
from .. import http_codec as codec
from .. import request_parameters
from .reply import Restricted, bad

#: Triton's limit on a request body (``--http-max-input-size``): 64 MiB.
DEFAULT_MAX_BODY_BYTES = HTTP_MAX_INPUT_SIZE

#: Bodies at least this big are (de)compressed off the event loop; smaller ones inline, where
#: a hop to a thread would cost more than the work.
OFFLOAD_BYTES = 64 * 1024

#: Triton's restricted-API categories (``--http-restricted-api=<category>:<key>=<value>``).
API_CATEGORIES = (
    "health", "metadata", "inference", "shared-memory", "model-config", "model-repository",
    "statistics", "trace", "logging",
)  # fmt: skip


@dataclass
class Call:
    """One request as a route's handler sees it: the method, the route's path groups (still
    percent-encoded), the headers (looked up by lower-case name), the body reader and when it
    arrived (time.monotonic_ns, for its trace)."""

    method: str
    args: tuple[str | None, ...]
    headers: Mapping[str, str]
    read_body: Callable[[], Awaitable[bytes]]
    received_ns: int | None = None


class HttpContext:
    """The state the handlers share (``HttpApi`` is one)."""

    def __init__(
        self,
        server: Server,
        *,
        restricted_apis: Mapping[str, tuple[str, str]] | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        settings: ProtocolSettings | None = None,
        executor: ThreadPoolExecutor | None = None,
        header_forward_pattern: str | None = None,
        dashboard: bool = True,
    ) -> None:
        self.server = server
        #: Whether /dashboard is served (``--allow-dashboard``).
        self.dashboard = dashboard
        # --http-header-forward-pattern: matching request headers become request parameters.
        self.header_forward = request_parameters.header_pattern(
            header_forward_pattern, "--http-header-forward-pattern"
        )
        self.max_body_bytes = max_body_bytes
        self.settings = settings or server.protocol_settings
        self.executor = executor
        self.restricted = {k: (h.lower(), v) for k, (h, v) in (restricted_apis or {}).items()}
        for category in self.restricted:
            if category not in API_CATEGORIES:
                raise bad(f"invalid restricted API category '{category}'")
        self.cuda_shared_memory = server.cuda_shared_memory

    @property
    def shm(self) -> SystemSharedMemoryRegistry:
        return self.server.system_shared_memory

    def check_access(self, category: str, headers: Mapping[str, str]) -> None:
        restriction = self.restricted.get(category)
        if restriction is not None and headers.get(restriction[0]) != restriction[1]:
            raise Restricted(restriction[0])

    async def body(
        self, headers: Mapping[str, str], read_body: Callable[[], Awaitable[bytes]]
    ) -> bytes:
        body = await read_body()
        encoding = headers.get("content-encoding")
        if encoding:
            if len(body) < OFFLOAD_BYTES:
                return codec.decode_body(body, encoding, self.max_body_bytes)
            return await asyncio.get_running_loop().run_in_executor(
                None, codec.decode_body, body, encoding, self.max_body_bytes
            )
        return body

    async def call_body(self, call: Call) -> bytes:
        """The call's body, decompressed (empty for a GET)."""
        return await self.body(call.headers, call.read_body) if call.method == "POST" else b""

    def loaded(self, name: str, version: int | None) -> Any:
        if version == 0:  # Triton: an explicit version 0 names no version
            raise TritonError(
                f"Request for unknown model: '{name}' version 0 is not found", NOT_FOUND
            )
        return self.server.get_model(name, version)


def parse_restricted_apis(specs: Sequence[str]) -> dict[str, tuple[str, str]]:
    """Triton's ``--http-restricted-api=<category>[,<category>...]:<key>=<value>`` values as
    ``{category: (header key, header value)}``."""
    out: dict[str, tuple[str, str]] = {}
    for spec in specs:
        categories, sep, header = spec.partition(":")
        key, eq, value = header.partition("=")
        if not sep or not eq or not key.strip():
            raise bad(
                f"invalid restricted API '{spec}': expected "
                "'<category>[,<category>...]:<header key>=<header value>'"
            )
        for category in categories.split(","):
            category = category.strip()
            if category not in API_CATEGORIES:
                raise bad(
                    f"invalid restricted API category '{category}': expected one of "
                    + ", ".join(API_CATEGORIES)
                )
            if category in out:
                raise bad(f"restricted API category '{category}' is given more than once")
            out[category] = (key.strip(), value.strip())
    return out
