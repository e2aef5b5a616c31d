"""``HttpApi``: every endpoint, transport-independent. ``await api.dispatch(method, path,
headers, read_body)`` finds the route (``routes``), checks the method and the restricted-API
header, runs the handler and turns errors into Triton's replies (status codes and texts)."""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Awaitable, Callable, Mapping

from ...errors import TritonError
from .. import http_codec as codec
from . import routes
from .context import Call, HttpContext
from .reply import HTTP_CODES, NOT_ALLOWED, NOT_FOUND, Reply, Restricted, error_reply

_log = logging.getLogger("tritonlite.http")
_error_ids = itertools.count(1)


class HttpApi(HttpContext):
    """Every HTTP endpoint, transport-independent (see ``HttpContext`` for its arguments)."""

    async def dispatch(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        read_body: Callable[[], Awaitable[bytes]],
        received_ns: int | None = None,
    ) -> Reply:
        """Route one request. ``headers`` must look up names case-insensitively (or be keyed by
        lower-case names); ``read_body`` returns the raw (possibly compressed) body.
        ``received_ns``: when the request arrived (time.monotonic_ns), for its trace. A traced
        inference's reply carries its trace (``Reply.trace``): the caller records the send
        and releases it."""
        try:
            call = Call(method, (), headers, read_body, received_ns)
            return await self._route(path, call)
        except Restricted as e:
            return error_reply(403, e.message)
        except codec.UnsupportedEncoding as e:
            return error_reply(501, e.message, {"Accept-Encoding": ", ".join(codec.ENCODINGS)})
        except TritonError as e:
            return error_reply(HTTP_CODES.get(e.status, 400), e.message)
        except Exception:  # noqa: BLE001 - a bug must still answer in Triton's error format
            # The details (exception text, traceback, paths) stay in the server's log.
            error_id = f"{os.getpid()}-{next(_error_ids)}"
            _log.exception("HTTP %s %s failed (error id %s)", method, path, error_id)
            return error_reply(
                500, f"internal server error (error id {error_id}; details in the server log)"
            )

    async def _route(self, path: str, call: Call) -> Reply:
        found = routes.find(path)
        if found is None:
            return NOT_FOUND
        route, call.args = found
        if call.method not in route.methods:
            return NOT_ALLOWED
        self.check_access(route.category, call.headers)
        return await route.handler(self, call)
