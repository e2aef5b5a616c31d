"""The OpenAI-compatible HTTP service: routes, bodies and answers on aiohttp, on the caller's
event loop. ``start_openai(server, host, port)`` serves a ``Server``; ``tritonlite-server
--openai-port 9000`` does the same (off unless the flag is given; 9000 is the port Triton's
OpenAI frontend uses).

Routes: ``GET /v1/models``, ``GET /v1/models/{model}``, ``POST /v1/embeddings``,
``POST /v1/completions``, ``POST /v1/chat/completions`` and ``GET /health/ready`` (as Triton's
frontend). Every error answers in OpenAI's shape, ``{"error": {"message", "type", "param",
"code"}}``: bad input 400, unknown model 404, unknown route 404, wrong method 405, a body over
``max_body_bytes`` 413, an unexpected failure 500 with an error id (its details go to the log).
Bodies of ``OFFLOAD_BYTES`` or more are parsed off the event loop.
A client that disconnects cancels its handler, and with it the request in the core.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from .completions import parse_request, run_generation
from .embeddings import create_embeddings
from .errors import OpenAIError
from .fields import parse_body
from .models import list_models, retrieve_model

_log = logging.getLogger("tritonlite.openai")

#: Request bodies above this are refused (413); OpenAI's own API takes up to about 32 MiB.
DEFAULT_MAX_BODY_BYTES = 32 << 20
#: Bodies of this size or more are parsed in a worker thread (the loop keeps serving).
OFFLOAD_BYTES = 1 << 20
_JSON = "application/json"
_error_ids = itertools.count(1)


class OpenAIFrontend:
    """A running OpenAI frontend: ``port`` (the bound one when started on port 0) and
    ``await stop()``."""

    def __init__(self, runner: web.AppRunner, listener: asyncio.base_events.Server) -> None:
        self._runner = runner
        self._listener = listener
        self.port: int = listener.sockets[0].getsockname()[1]

    async def stop(self, grace_s: float = 5.0) -> None:
        self._listener.close()
        server = self._runner.server
        if server is not None:
            server.pre_shutdown()
            await server.shutdown(grace_s)
        await self._listener.wait_closed()
        await self._runner.cleanup()


def _json(doc: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY),
        content_type=_JSON,
    )  # fmt: skip


def _error(error: OpenAIError) -> web.Response:
    return web.Response(status=error.status, body=error.body(), content_type=_JSON)


class _Handlers:
    def __init__(self, server: Any, max_body_bytes: int) -> None:
        self.server = server
        self.max_body_bytes = max_body_bytes
        self.created = int(time.time())  # every model's "created" (as Triton's frontend)

    async def body(self, request: web.Request) -> dict[str, Any]:
        length = request.content_length
        if length is not None and length > self.max_body_bytes:
            raise self._too_large()
        chunks, size = [], 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise self._too_large()
            chunks.append(chunk)
        body = b"".join(chunks)
        if len(body) >= OFFLOAD_BYTES:  # a big body is parsed off the event loop
            return await asyncio.to_thread(parse_body, body)
        return parse_body(body)

    def _too_large(self) -> OpenAIError:
        return OpenAIError(f"the request body is larger than {self.max_body_bytes} bytes", 413,
                           code="request_too_large")  # fmt: skip

    async def models(self, request: web.Request) -> web.StreamResponse:
        return _json(list_models(self.server, self.created))

    async def model(self, request: web.Request) -> web.StreamResponse:
        return _json(retrieve_model(self.server, request.match_info["model"], self.created))

    async def ready(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=200 if self.server.is_ready() else 503)

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        return _json(await create_embeddings(self.server, await self.body(request)))

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=False)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=True)

    async def _generate(self, request: web.Request, chat: bool) -> web.StreamResponse:
        gen = parse_request(self.server, await self.body(request), chat)
        answer = await run_generation(self.server, gen)
        if isinstance(answer, dict):
            return _json(answer)
        return await _send_events(request, answer)


async def _send_events(request: web.Request, events: AsyncIterator[bytes]) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
    )
    try:
        await response.prepare(request)
        async for piece in events:
            await response.write(piece)
        await response.write_eof()
    except ConnectionError:
        pass  # the client went away: closing the events below cancels the request
    finally:
        await events.aclose()  # type: ignore[attr-defined]
    return response


@web.middleware
async def _errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except OpenAIError as e:
        return _error(e)
    except web.HTTPMethodNotAllowed:
        return _error(OpenAIError(f"method {request.method} is not allowed on {request.path}",
                                  405, code="method_not_allowed"))  # fmt: skip
    except web.HTTPNotFound:
        return _error(OpenAIError(f"no route {request.method} {request.path}", 404,
                                  code="not_found"))  # fmt: skip
    except web.HTTPException as e:
        return _error(OpenAIError(e.reason or "bad request", e.status))
    except Exception:
        error_id = next(_error_ids)
        _log.exception("OpenAI frontend: unexpected failure (error id %d) on %s %s", error_id,
                       request.method, request.path)  # fmt: skip
        return _error(OpenAIError(f"internal server error (error id {error_id})", 500,
                                  type="server_error"))  # fmt: skip


async def start_openai(
    server: Any,
    host: str = "0.0.0.0",
    port: int = 9000,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    reuse_port: bool = False,
) -> OpenAIFrontend:
    """Serve ``server`` with OpenAI's API on the running event loop (port 0: any free port, see
    ``frontend.port``); ``await frontend.stop()`` closes it."""
    if max_body_bytes <= 0:
        raise ValueError(f"max_body_bytes must be greater than 0, got {max_body_bytes}")
    handlers = _Handlers(server, max_body_bytes)
    app = web.Application(middlewares=[_errors], client_max_size=max_body_bytes)
    app.router.add_get("/v1/models", handlers.models)
    app.router.add_get("/v1/models/{model}", handlers.model)
    app.router.add_post("/v1/embeddings", handlers.embeddings)
    app.router.add_post("/v1/completions", handlers.completions)
    app.router.add_post("/v1/chat/completions", handlers.chat)
    app.router.add_get("/health/ready", handlers.ready)
    # handler_cancellation: a client that disconnects cancels its handler, and with it the
    # request in the core (a queued one never runs, a running model sees is_cancelled()).
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    loop = asyncio.get_running_loop()
    assert runner.server is not None
    listener = await loop.create_server(
        runner.server, host, port, reuse_address=True, reuse_port=reuse_port or None
    )
    return OpenAIFrontend(runner, listener)
