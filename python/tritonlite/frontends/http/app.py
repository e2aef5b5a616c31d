"""The aiohttp transport: serves an ``HttpApi`` with aiohttp's low-level server on the caller's
event loop (``start_http``), with the request-size limit and a parser that accepts a chunked
body that also states a Content-Length (as Triton does).

Why aiohttp: add_sub (INT32 [16]) at concurrency 32 with binary tensors, perf_analyzer, 2 shared
cores, the same ``HttpApi`` behind both: aiohttp 5.5k-6.8k infer/s, uvicorn + httptools + a raw
ASGI app 5.6k-6.7k (a tie within noise); aiohttp also runs on a caller's loop through a
documented API (uvicorn's ``serve()`` installs its own signal handlers) and is already what
``tritonclient.http.aio`` needs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web, web_protocol
from aiohttp.helpers import DEFAULT_CHUNK_SIZE
from aiohttp.http import HttpRequestParser
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError
from aiohttp.web_request import BaseRequest

from ...server import Server
from .. import http_codec as codec
from .api import HttpApi
from .context import DEFAULT_MAX_BODY_BYTES, parse_restricted_apis
from .reply import Reply, bad


def body_too_large(limit: int, size: int | None = None) -> codec.BodyTooLarge:
    """A request body over ``--http-max-input-size``: 400 and Triton's words."""
    what = "request size" if size is None else f"request size of {size} bytes"
    return codec.BodyTooLarge(
        f"{what} exceeds the maximum allowed input size of {limit} bytes. "
        "Use --http-max-input-size to increase the limit."
    )


async def read_limited(request: BaseRequest, limit: int) -> bytes:
    """A request body of at most ``limit`` bytes: a Content-Length over it is refused before
    anything is read, a chunked body as soon as what arrived passes it."""
    length = request.content_length
    if length is not None and length > limit:
        raise body_too_large(limit, length)
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = await request.content.readany()
        if not chunk:
            break
        total += len(chunk)
        if total > limit:
            raise body_too_large(limit)
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class HttpFrontend:
    """A running HTTP frontend; ``await stop()`` closes the listener and open connections."""

    def __init__(
        self,
        api: HttpApi,
        handler: web.Server,
        listener: asyncio.base_events.Server,
        executor: ThreadPoolExecutor,
    ) -> None:
        self.api = api
        self._handler = handler
        self._listener = listener
        self._executor = executor
        self.port: int = listener.sockets[0].getsockname()[1]

    async def stop(self, grace_s: float = 5.0) -> None:
        self._listener.close()
        self._handler.pre_shutdown()
        await self._handler.shutdown(grace_s)
        await self._listener.wait_closed()
        self._executor.shutdown(wait=False)


async def _send_traced(request: BaseRequest, reply: Reply) -> web.StreamResponse:
    """Send a traced inference's reply, recording HTTP_SEND_START / HTTP_SEND_END on its trace."""
    trace = reply.trace
    response = web.Response(status=reply.status, body=reply.body, headers=reply.headers)
    start = time.monotonic_ns()
    try:
        await response.prepare(request)
        await response.write_eof()
    finally:
        trace.capture("HTTP_SEND_START", start)
        trace.capture("HTTP_SEND_END")
        trace.release()
    return response


# ---- a chunked body that also states a Content-Length --------------------------------------

_CHUNKED_WITH_LENGTH = (
    "Content-Length can't be present with Transfer-Encoding",  # llhttp (aiohttp's C parser)
    "Transfer-Encoding can't be present with Content-Length",  # aiohttp's Python parser
)
_HEAD_END = b"\r\n\r\n"
#: The longest request head looked at again (aiohttp's own limits are 8 KiB a line).
_MAX_HEAD_BYTES = 64 * 1024


def _without_content_length(data: bytes) -> bytes | None:
    """``data`` (a request head and what follows it) with the head's Content-Length headers
    dropped and ``Connection: close`` added, when the head is whole and chunked; else None."""
    end = data.find(_HEAD_END, 0, _MAX_HEAD_BYTES)
    if end < 0:
        return None
    lines = data[:end].split(b"\r\n")
    kept = [line for line in lines if not line.lower().startswith(b"content-length:")]
    chunked = any(
        line.lower().startswith(b"transfer-encoding:") and line.lower().rstrip().endswith(b"chunked")
        for line in kept
    )
    if len(kept) == len(lines) or not chunked:
        return None
    return b"\r\n".join([*kept, b"Connection: close"]) + data[end:]


class _ChunkedOverLength:
    """aiohttp's request parser, except for a request whose head has both
    ``Transfer-Encoding: chunked`` and ``Content-Length``: aiohttp refuses it (400), Triton
    decodes the chunked body (what ``requests.post(data=<chunk-encoded bytes>,
    headers={"Transfer-Encoding": "chunked"})`` sends). As RFC 9112 (6.1, 6.3) allows, the
    chunked framing wins, the Content-Length is ignored and the connection is closed after the
    answer, so nothing after the body is ever read as another request. The head must arrive
    whole at the start of one read (anything else keeps aiohttp's 400)."""

    def __init__(self, handler: web_protocol.RequestHandler, make: Callable[[], Any]) -> None:
        self._make = make
        self._parser = handler._parser
        handler._parser = self  # type: ignore[assignment]

    def feed_data(self, data: bytes) -> Any:
        try:
            return self._parser.feed_data(data)
        except HttpProcessingError as e:
            if not any(text in str(e.message) for text in _CHUNKED_WITH_LENGTH):
                raise
            fixed = _without_content_length(data) if data[:1].isalpha() else None
            if fixed is None:
                raise
            self._parser = self._make()  # the old one stays in its error state
            return self._parser.feed_data(fixed)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._parser, name)


class _RequestHandler(web_protocol.RequestHandler):
    def __init__(self, manager: web.Server, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        options: dict[str, Any] = {
            "max_line_size": self.max_line_size, "max_field_size": self.max_field_size,
            "max_headers": self.max_headers, "payload_exception": RequestPayloadError,
            "auto_decompress": False,
        }  # fmt: skip
        queue = getattr(web_protocol, "MAX_MSG_QUEUE_SIZE", None)
        if queue is not None:  # aiohttp 3.14 and later
            options["max_msg_queue_size"] = queue
        loop, limit = kwargs["loop"], getattr(self, "_read_bufsize", DEFAULT_CHUNK_SIZE)
        _ChunkedOverLength(self, lambda: HttpRequestParser(self, loop, limit, **options))


class _Server(web.Server):
    def __call__(self) -> web_protocol.RequestHandler:
        return _RequestHandler(self, loop=self._loop, **self._kwargs)


async def start_http(
    server: Server,
    host: str = "0.0.0.0",
    port: int = 8000,
    *,
    thread_count: int | None = None,
    restricted_apis: Mapping[str, tuple[str, str]] | Sequence[str] | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    reuse_port: bool = False,
    header_forward_pattern: str | None = None,
    dashboard: bool = True,
) -> HttpFrontend:
    """Serve ``server`` over HTTP on the running event loop (port 0: any free port, see
    ``frontend.port``).

    ``thread_count`` sizes the pool that runs blocking model-control calls (load/unload);
    requests themselves are served on the event loop. ``restricted_apis`` maps Triton's API
    categories to the (header, value) a request must carry, or is a list of Triton's
    ``--http-restricted-api`` values (``<category>[,...]:<key>=<value>``). ``max_body_bytes``
    (Triton's ``--http-max-input-size``) limits request bodies, also after decompression.
    ``header_forward_pattern`` (``--http-header-forward-pattern``): the infer requests' headers
    whose names match it become string request parameters. ``dashboard``: serve the live
    dashboard at ``/dashboard`` (``frontends/http/dashboard.py``).
    """
    if restricted_apis is not None and not isinstance(restricted_apis, Mapping):
        restricted_apis = parse_restricted_apis(list(restricted_apis))
    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(
        max_workers=max(1, thread_count or 2), thread_name_prefix="tritonlite-http"
    )
    api = HttpApi(
        server, restricted_apis=restricted_apis, max_body_bytes=max_body_bytes, executor=executor,
        header_forward_pattern=header_forward_pattern, dashboard=dashboard,
    )  # fmt: skip

    if max_body_bytes <= 0:
        raise bad(f"--http-max-input-size must be greater than 0, got {max_body_bytes}")

    def make_request(
        message: Any, payload: Any, protocol: Any, writer: Any, task: Any
    ) -> BaseRequest:
        return BaseRequest(
            message, payload, protocol, writer, task, loop, client_max_size=max_body_bytes
        )

    async def handle(request: BaseRequest) -> web.StreamResponse:
        received_ns = time.monotonic_ns()

        async def read_body() -> bytes:
            return await read_limited(request, max_body_bytes)

        reply = await api.dispatch(request.method, request.raw_path.split("?", 1)[0],
                                   request.headers, read_body, received_ns)  # fmt: skip
        if reply.trace is not None:
            return await _send_traced(request, reply)
        if reply.stream is None:
            return web.Response(status=reply.status, body=reply.body, headers=reply.headers)
        response = web.StreamResponse(status=reply.status, headers=reply.headers)
        await response.prepare(request)
        try:
            async for piece in reply.stream:
                await response.write(piece)
        except (ConnectionError, asyncio.CancelledError):
            return response
        await response.write_eof()
        return response

    # Bodies are decompressed by the API (with the size limit), not by aiohttp's parser.
    # handler_cancellation: a client that disconnects cancels its handler, and with it the
    # request in the core (a queued one never runs, a running model sees is_cancelled()).
    handler = _Server(
        handle, request_factory=make_request, access_log=None, auto_decompress=False,
        handler_cancellation=True,
    )  # fmt: skip
    listener = await loop.create_server(
        handler, host, port, reuse_address=True, reuse_port=reuse_port or None
    )
    return HttpFrontend(api, handler, listener, executor)
