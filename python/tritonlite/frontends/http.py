"""HTTP/REST frontend: KServe v2 and Triton's HTTP extensions over a ``Server``.

Owns the protocol adapter only (no model logic): routes, request decoding, response encoding
and Triton's status codes and error texts. Two layers:

- ``HttpApi``: transport-independent. ``await api.dispatch(method, path, headers, read_body)``
  returns a ``Reply`` (status, headers, body or a stream of chunks).
- ``start_http``: serves an ``HttpApi`` with aiohttp's low-level server on the caller's event
  loop. Why aiohttp: add_sub (INT32 [16]) at concurrency 32 with binary tensors, perf_analyzer,
  2 shared cores, the same ``HttpApi`` behind both: aiohttp 5.5k-6.8k infer/s, uvicorn +
  httptools + a raw ASGI app 5.6k-6.7k (a tie within noise); aiohttp also runs on a caller's
  loop through a documented API (uvicorn's ``serve()`` installs its own signal handlers) and is
  already what ``tritonclient.http.aio`` needs.

Endpoints (``docs/openapi.yaml`` describes each):
``/v2/health/live|ready``, ``/v2``, ``/v2/models/{m}[/versions/{v}]`` with ``/ready``,
``/config``, ``/stats``, ``/infer``, ``/generate``, ``/generate_stream`` and
``/trace/setting``; ``/v2/models/stats``; ``/v2/repository/index`` and
``/v2/repository/models/{m}/load|unload``; ``/v2/systemsharedmemory[/region/{r}]/status|register|
unregister`` and the same for ``cudasharedmemory``; ``/v2/trace/setting``; ``/v2/logging``.

``/infer`` supports JSON tensors (every datatype; BYTES as strings), Triton's binary tensor data
extension (``Inference-Header-Content-Length``, ``binary_data``, ``binary_data_size``,
``binary_data_output``), raw binary requests (header length 0, the input's shape deduced as
Triton does), gzip and deflate request and response bodies, chunked request bodies (also with a
Content-Length, see ``_ChunkedOverLength``), classification, system shared-memory inputs and
outputs (a region stays registered while a request uses it), and the request
parameters ``priority``, ``timeout``, ``sequence_id`` (integer or string), ``sequence_start``
and ``sequence_end``; other request parameters go to the model (``request.parameters()``).
Binary inputs are zero-copy views of the request body.

Nothing slow runs on the event loop: bodies and responses of ``OFFLOAD_BYTES`` or more are
(de)compressed in a worker thread (zlib releases the GIL), the repository index (a disk scan)
runs in one too, and so does decoding an inference header of ``BIG_JSON_BYTES`` or more, in
bounded steps (``http_bigjson``) so that the loop gets the GIL between them.

Status codes follow Triton's mapping (INVALID_ARG, ALREADY_EXISTS, UNKNOWN -> 400,
NOT_FOUND -> 404, INTERNAL -> 500, UNSUPPORTED -> 501, UNAVAILABLE -> 503; unknown routes 404,
wrong methods 405, restricted APIs 403) with Triton's ``{"error": "..."}`` bodies.

Deliberate differences from Triton 2.51 (checked against it):
- malformed requests (unparsable JSON, a field of the wrong type, an unknown shared-memory key,
  an output too large for its shared-memory window) keep Triton's text but answer 400, not 500;
- FP16 and BF16 tensors are accepted and returned as JSON numbers (Triton refuses them);
- ``/generate`` on a model that answers other than once is a 400 (Triton sends a 200 whose body
  is the error); ``/generate`` also accepts compressed bodies;
- a chunked body that also carries a Content-Length is decoded whatever that length says
  (Triton takes the JSON header's length from it); chunk extensions are accepted (Triton drops
  the connection); a chunk size past 64 bits is refused (Triton reads it as the last chunk);
- bodies over ``max_body_bytes`` (Triton's ``--http-max-input-size``, 64 MiB), also after
  decompression, are refused with 400 and Triton's texts on every route (Triton 2.51 has no
  limit; later Tritons check it per input): a Content-Length over the limit before the body is
  read, a streamed body as soon as it passes the limit;
- an unexpected failure (a bug) answers 500 with a generic text and an error id; the details
  go to the server log under that id, never to the client.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import itertools
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import numpy as np
from aiohttp import web, web_protocol
from aiohttp.helpers import DEFAULT_CHUNK_SIZE
from aiohttp.http import HttpRequestParser
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError
from aiohttp.web_request import BaseRequest

from .. import _core, sizes
from .._proto import model_config_pb2 as mc
from ..config import config_to_json
from ..datatypes import DATATYPES, to_wire_name
from ..errors import INVALID_ARG, NOT_FOUND, UNSUPPORTED, TritonError
from ..server import Server
from ..shared_memory import CUDA_IPC_HANDLE_BYTES, SystemSharedMemoryRegistry
from ..tracing import setting_from_json
from . import http_bigjson, request_parameters
from .classification import classify
from .input_errors import bytes_count_error, input_size_error, request_id_prefix
from . import http_codec as codec
from ..protocol_settings import HTTP_MAX_INPUT_SIZE, ProtocolSettings

Tensor = _core.Tensor
_log = logging.getLogger("tritonlite.http")

#: Triton's limit on a request body (``--http-max-input-size``): 64 MiB.
DEFAULT_MAX_BODY_BYTES = HTTP_MAX_INPUT_SIZE

#: Bodies at least this big are (de)compressed off the event loop; smaller ones inline, where
#: a hop to a thread would cost more than the work.
OFFLOAD_BYTES = 64 * 1024

#: Inference headers (JSON) at least this big are decoded off the event loop, in bounded steps.
BIG_JSON_BYTES = 1024 * 1024

_error_ids = itertools.count(1)

#: Triton status kind -> HTTP status code (Triton's HttpCodeFromError).
HTTP_CODES = {
    "INVALID_ARG": 400,
    "ALREADY_EXISTS": 400,
    "CANCELLED": 400,
    "UNKNOWN": 400,
    "NOT_FOUND": 404,
    "INTERNAL": 500,
    "UNSUPPORTED": 501,
    "UNAVAILABLE": 503,
}

#: Triton's restricted-API categories (``--http-restricted-api=<category>:<key>=<value>``).
API_CATEGORIES = (
    "health", "metadata", "inference", "shared-memory", "model-config", "model-repository",
    "statistics", "trace", "logging",
)  # fmt: skip

SEQUENCE_START = 1
SEQUENCE_END = 2

_JSON = "application/json"
#: generate_stream: responses of a decoupled model waiting for a slow client before the request
#: is cancelled and the stream ends with an error.
MAX_GENERATE_BUFFERED = 1024
_BINARY = "application/octet-stream"
_HEADER_LENGTH = "Inference-Header-Content-Length"

_MODEL_RE = re.compile(
    r"/v2/models/([^/]+)(?:/versions/([0-9]+))?"
    r"(?:/(infer|generate|generate_stream|ready|config|stats|trace/setting))?"
)
_HEALTH_RE = re.compile(r"/v2/health/(live|ready)")
_SYSTEM_SHM_RE = re.compile(
    r"/v2/systemsharedmemory(?:/region/([^/]+))?/(status|register|unregister)"
)
_CUDA_SHM_RE = re.compile(r"/v2/cudasharedmemory(?:/region/([^/]+))?/(status|register|unregister)")
_REPOSITORY_RE = re.compile(r"/v2/repository(?:/([^/]+))?/(index|models/([^/]+)/(load|unload))")

_JSON_KIND, _BINARY_KIND, _SHM_KIND = 0, 1, 2

@dataclass
class Reply:
    """An HTTP response: a complete ``body``, or ``stream`` chunks sent as they come."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    stream: AsyncIterator[bytes] | None = None
    #: A traced inference's trace (tracing.TraceGroup): the transport records HTTP_SEND_START /
    #: HTTP_SEND_END around sending the reply, then releases it.
    trace: Any = None


def _error_reply(status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    out = {"Content-Type": _JSON}
    if headers:
        out.update(headers)
    return Reply(status, codec.dumps({"error": message}), out)


def _json_reply(obj: Any, status: int = 200) -> Reply:
    return Reply(status, codec.dumps(obj), {"Content-Type": _JSON})


_OK = Reply(200, b"", {})
_NOT_FOUND = _error_reply(404, "Not Found")
_NOT_ALLOWED = _error_reply(405, "Method Not Allowed")


def _bad(message: str) -> TritonError:
    return TritonError(message, INVALID_ARG)


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


def parse_restricted_apis(specs: Sequence[str]) -> dict[str, tuple[str, str]]:
    """Triton's ``--http-restricted-api=<category>[,<category>...]:<key>=<value>`` values as
    ``{category: (header key, header value)}``."""
    out: dict[str, tuple[str, str]] = {}
    for spec in specs:
        categories, sep, header = spec.partition(":")
        key, eq, value = header.partition("=")
        if not sep or not eq or not key.strip():
            raise _bad(
                f"invalid restricted API '{spec}': expected "
                "'<category>[,<category>...]:<header key>=<header value>'"
            )
        for category in categories.split(","):
            category = category.strip()
            if category not in API_CATEGORIES:
                raise _bad(
                    f"invalid restricted API category '{category}': expected one of "
                    + ", ".join(API_CATEGORIES)
                )
            if category in out:
                raise _bad(f"restricted API category '{category}' is given more than once")
            out[category] = (key.strip(), value.strip())
    return out


# ---- small JSON readers with Triton's texts --------------------------------------------------


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(f"Unable to parse '{what}': attempt to access JSON non-object as object")
    return value


def _uint(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**64:
        raise _bad(
            f"Unable to parse '{what}': attempt to access JSON non-unsigned-integer as "
            "unsigned-integer"
        )
    return value


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise _bad(f"Unable to parse '{what}': attempt to access JSON non-string as string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _bad(f"Unable to parse '{what}': the string is not valid UTF-8") from None
    return value


def _bool(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise _bad(f"Unable to parse '{what}': attempt to access JSON non-boolean as boolean")
    return value


def _shape(value: Any) -> list[int]:
    if not isinstance(value, list):
        raise _bad("Unable to parse 'shape': attempt to access JSON non-array as array")
    shape = [_uint(d, "shape") for d in value]
    if any(d >= 2**63 for d in shape):
        raise _bad(f"Unable to parse 'shape': dimension out of range in {shape}")
    return shape


def _version(text: str | None) -> int | None:
    if not text:
        return None
    version = int(text)
    if version >= 2**63:
        raise _bad(
            f"failed to get model version from specified version string '{text}' (details: "
            "stol), version should be an integral value > 0"
        )
    return version


def _optional_json(body: bytes) -> dict[str, Any]:
    """A control request's JSON body: absent, or an object (anything else counts as empty, as
    Triton treats it). White space alone is not absent: Triton parses it ("The document is
    empty.")."""
    if not body:
        return {}
    parsed = codec.loads(body)
    return parsed if isinstance(parsed, dict) else {}


def _statistics_json(stats: list[dict[str, Any]]) -> dict[str, Any]:
    """Triton's ModelStatistics JSON (its field order; fields it lacks dropped)."""
    out = []
    for s in stats:
        out.append(
            {
                "name": s["name"],
                "version": s["version"],
                "last_inference": s.get("last_inference", 0),
                "inference_count": s.get("inference_count", 0),
                "execution_count": s.get("execution_count", 0),
                "inference_stats": s.get("inference_stats", {}),
                "response_stats": s.get("response_stats", {}),
                "batch_stats": s.get("batch_stats", []),
                "memory_usage": s.get("memory_usage", []),
            }
        )
    return {"model_stats": out}


@dataclass
class _OutputSpec:
    kind: int = _JSON_KIND
    classes: int = 0
    region: str = ""
    offset: int = 0
    byte_size: int | None = None


@dataclass
class _InferRequest:
    inputs: list[tuple[str, Any]]
    outputs: dict[str, _OutputSpec] | None  # None: every output, as `default_kind`
    default_kind: int
    request_id: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: The shared-memory regions the request names (inputs and outputs).
    regions: list[str] = field(default_factory=list)


class HttpApi:
    """Every HTTP endpoint, transport-independent."""

    def __init__(
        self,
        server: Server,
        *,
        restricted_apis: Mapping[str, tuple[str, str]] | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        settings: ProtocolSettings | None = None,
        executor: ThreadPoolExecutor | None = None,
        header_forward_pattern: str | None = None,
    ) -> None:
        self.server = server
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
                raise _bad(f"invalid restricted API category '{category}'")
        self.cuda_shared_memory = server.cuda_shared_memory

    @property
    def shm(self) -> SystemSharedMemoryRegistry:
        return self.server.system_shared_memory

    # ---- entry point -------------------------------------------------------------------------

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
            return await self._route(method, path, headers, read_body, received_ns)
        except _Restricted as e:
            return _error_reply(403, e.message)
        except codec.UnsupportedEncoding as e:
            return _error_reply(501, e.message, {"Accept-Encoding": ", ".join(codec.ENCODINGS)})
        except TritonError as e:
            return _error_reply(HTTP_CODES.get(e.status, 400), e.message)
        except Exception:  # noqa: BLE001 - a bug must still answer in Triton's error format
            # The details (exception text, traceback, paths) stay in the server's log.
            error_id = f"{os.getpid()}-{next(_error_ids)}"
            _log.exception("HTTP %s %s failed (error id %s)", method, path, error_id)
            return _error_reply(
                500, f"internal server error (error id {error_id}; details in the server log)"
            )

    async def _route(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        read_body: Callable[[], Awaitable[bytes]],
        received_ns: int | None = None,
    ) -> Reply:
        m = _MODEL_RE.fullmatch(path)
        if m is not None and path != "/v2/models/stats":
            name, version, kind = unquote(m.group(1)), m.group(2), m.group(3) or ""
            if kind == "infer":
                if method != "POST":
                    return _NOT_ALLOWED
                self._check_access("inference", headers)
                return await self._infer(name, version, headers, read_body, received_ns)
            if kind in ("generate", "generate_stream"):
                if method != "POST":
                    return _NOT_ALLOWED
                self._check_access("inference", headers)
                body = await self._body(headers, read_body)
                return await self._generate(name, version, body, kind == "generate_stream")
            if kind == "ready":
                if method != "GET":
                    return _NOT_ALLOWED
                self._check_access("health", headers)
                return self._model_ready(name, version)
            if kind == "trace/setting":
                if version is not None or method not in ("GET", "POST"):
                    return _NOT_FOUND if version is not None else _NOT_ALLOWED
                self._check_access("trace", headers)
                body = await self._body(headers, read_body) if method == "POST" else b""
                return self._trace(name, method, body)
            if method != "GET":
                return _NOT_ALLOWED
            if kind == "config":
                self._check_access("model-config", headers)
                config = self._loaded(name, _version(version)).config
                return _json_reply(config_to_json(config))
            if kind == "stats":
                self._check_access("statistics", headers)
                return self._stats(name, version)
            self._check_access("metadata", headers)
            return _json_reply(self._model_metadata(name, version))
        if path == "/v2/models/stats":
            if method != "GET":
                return _NOT_ALLOWED
            self._check_access("statistics", headers)
            return self._stats("", None)
        if path == "/v2":
            if method != "GET":
                return _NOT_ALLOWED
            self._check_access("metadata", headers)
            return _json_reply(self.server.metadata())
        m = _HEALTH_RE.fullmatch(path)
        if m is not None:
            if method != "GET":
                return _NOT_ALLOWED
            self._check_access("health", headers)
            ok = self.server.is_live() if m.group(1) == "live" else self.server.is_ready()
            return _OK if ok else Reply(400, b"", {})
        m = _SYSTEM_SHM_RE.fullmatch(path) or _CUDA_SHM_RE.fullmatch(path)
        if m is not None:
            region, action = unquote(m.group(1)) if m.group(1) else None, m.group(2)
            if method != ("GET" if action == "status" else "POST"):
                return _NOT_ALLOWED
            self._check_access("shared-memory", headers)
            body = await self._body(headers, read_body) if method == "POST" else b""
            if path.startswith("/v2/systemsharedmemory"):
                return self._system_shm(region, action, body)
            return self._cuda_shm(region, action, body)
        m = _REPOSITORY_RE.fullmatch(path)
        if m is not None:
            if method != "POST":
                return _NOT_ALLOWED
            self._check_access("model-repository", headers)
            body = await self._body(headers, read_body)
            if m.group(2) == "index":
                return await self._repository_index(body)
            return await self._repository_control(unquote(m.group(3)), m.group(4), body)
        if path == "/v2/trace/setting":
            if method not in ("GET", "POST"):
                return _NOT_ALLOWED
            self._check_access("trace", headers)
            body = await self._body(headers, read_body) if method == "POST" else b""
            return self._trace(None, method, body)
        if path == "/v2/logging":
            if method not in ("GET", "POST"):
                return _NOT_ALLOWED
            self._check_access("logging", headers)
            if method == "GET":
                return _json_reply(self.settings.log())
            changes = codec.loads(await self._body(headers, read_body))
            return _json_reply(
                self.settings.update_log(changes if isinstance(changes, dict) else {})
            )
        return _NOT_FOUND

    def _check_access(self, category: str, headers: Mapping[str, str]) -> None:
        restriction = self.restricted.get(category)
        if restriction is not None and headers.get(restriction[0]) != restriction[1]:
            raise _Restricted(restriction[0])

    async def _body(
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

    # ---- health, metadata, configuration, statistics -----------------------------------------

    def _loaded(self, name: str, version: int | None) -> Any:
        if version == 0:  # Triton: an explicit version 0 names no version
            raise TritonError(
                f"Request for unknown model: '{name}' version 0 is not found", NOT_FOUND
            )
        return self.server.get_model(name, version)

    def _model_ready(self, name: str, version: str | None) -> Reply:
        v = _version(version)
        if v != 0 and self.server.model_ready(name, v):
            return _OK
        return _error_reply(400, "Model version not ready")

    def _model_metadata(self, name: str, version: str | None) -> dict[str, Any]:
        v = _version(version)
        self._loaded(name, v)
        return self.server.model_metadata(name, v)

    def _stats(self, name: str, version: str | None) -> Reply:
        return _json_reply(_statistics_json(self.server.statistics(name, _version(version))))

    # ---- repository --------------------------------------------------------------------------

    async def _repository_index(self, body: bytes) -> Reply:
        request = _optional_json(body)
        ready = _bool(request["ready"], "ready") if "ready" in request else False
        index = []
        # The index scans the repository directories: off the event loop.
        loop = asyncio.get_running_loop()
        for entry in await loop.run_in_executor(None, self.server.repository_index, ready):
            index.append({k: v for k, v in entry.items() if k != "reason" or v})
        return _json_reply(index)

    async def _repository_control(self, name: str, action: str, body: bytes) -> Reply:
        request = _optional_json(body)
        params = request.get("parameters", {})
        if not isinstance(params, dict):
            raise _bad("Unable to parse 'parameters': attempt to access JSON non-object as object")
        loop = asyncio.get_running_loop()
        if action == "unload":
            dependents = False
            if "unload_dependents" in params:
                dependents = _bool(params["unload_dependents"], "unload_dependents")
            await loop.run_in_executor(
                self.executor,
                functools.partial(self.server.unload_model, name, unload_dependents=dependents),
            )
            return Reply(200, b"", {"Content-Type": _JSON})
        config = None
        files: dict[str, bytes] = {}
        for key, value in params.items():
            if key == "config":
                config = _string(value, "config")
            elif key.startswith("file:"):
                _string(key, "parameters")
                try:
                    files[key] = base64.b64decode(_string(value, key), validate=True)
                except ValueError:  # binascii.Error, or text that is not ASCII
                    raise _bad(
                        f"failed to load '{name}': file override '{key}' is not valid base64"
                    ) from None
        await loop.run_in_executor(
            self.executor, self.server.load_model, name, config, files or None
        )
        return Reply(200, b"", {"Content-Type": _JSON})

    # ---- shared memory -----------------------------------------------------------------------

    def _system_shm(self, region: str | None, action: str, body: bytes) -> Reply:
        if action == "status":
            return _json_reply(self.shm.status(region))
        if action == "unregister":
            self.shm.unregister(region)
            return Reply(200, b"", {"Content-Type": _JSON})
        if region is None:
            return _NOT_FOUND
        request = codec.loads(body)
        if not isinstance(request, dict):
            raise _bad("Shared memory register request has no 'key' field")
        for required in ("key", "byte_size"):
            if required not in request:
                raise _bad(f"Shared memory register request has no '{required}' field")
        key = _string(request["key"], "key")
        offset = _uint(request.get("offset", 0), "offset")
        byte_size = _uint(request["byte_size"], "byte_size")
        self.shm.register(region, key, offset, byte_size)
        return Reply(200, b"", {"Content-Type": _JSON})

    def _cuda_shm(self, region: str | None, action: str, body: bytes) -> Reply:
        if action == "status":
            return _json_reply(self.cuda_shared_memory.status(region))
        if action == "unregister":
            self.cuda_shared_memory.unregister(region)
            return Reply(200, b"", {"Content-Type": _JSON})
        if region is None:
            return _NOT_FOUND
        request = codec.loads(body)
        if not isinstance(request, dict) or "raw_handle" not in request:
            raise _bad("Shared memory register request has no 'raw_handle' field")
        for required in ("device_id", "byte_size"):
            if required not in request:
                raise _bad(f"Shared memory register request has no '{required}' field")
        handle = request["raw_handle"]
        if not isinstance(handle, dict) or "b64" not in handle:
            raise _bad("Unable to parse 'raw_handle': expected an object with 'b64'")
        try:
            raw = base64.b64decode(_string(handle["b64"], "b64"), validate=True)
        except ValueError:  # binascii.Error, or text that is not ASCII
            raw = b""
        if len(raw) != CUDA_IPC_HANDLE_BYTES:  # Triton's text
            raise _bad("'raw_handle' must be a valid base64 encoded cudaIpcMemHandle_t")
        device_id = _uint(request["device_id"], "device_id")
        byte_size = _uint(request["byte_size"], "byte_size")
        self.cuda_shared_memory.register(region, raw, device_id, byte_size)
        return Reply(200, b"", {"Content-Type": _JSON})

    # ---- trace and logging -------------------------------------------------------------------

    def _trace(self, model: str | None, method: str, body: bytes) -> Reply:
        if model is not None and not self.server.model_ready(model, None):
            raise _bad(f"Request for unknown model : {model}")
        tracing = self.server.tracing
        if method == "GET":
            return _json_reply(tracing.settings(model))
        return _json_reply(tracing.update(setting_from_json(codec.loads(body)), model))

    # ---- inference ---------------------------------------------------------------------------

    async def _infer(
        self,
        model: str,
        version_text: str | None,
        headers: Mapping[str, str],
        read_body: Callable[[], Awaitable[bytes]],
        received_ns: int | None = None,
    ) -> Reply:
        version = _version(version_text)
        loaded = self._loaded(model, version)
        if loaded.config.model_transaction_policy.decoupled:
            raise TritonError(
                "HTTP end point doesn't support models with decoupled transaction policy",
                UNSUPPORTED,
            )
        trace = self.server.tracing.sample(model, headers)
        if trace is None:
            return await self._infer_traced(model, version, loaded, headers, read_body, None)
        trace.capture("HTTP_RECV_START", received_ns)
        try:
            reply = await self._infer_traced(model, version, loaded, headers, read_body, trace)
        except BaseException:
            trace.release()
            raise
        reply.trace = trace
        return reply

    async def _infer_traced(
        self,
        model: str,
        version: int | None,
        loaded: Any,
        headers: Mapping[str, str],
        read_body: Callable[[], Awaitable[bytes]],
        trace: Any,
    ) -> Reply:
        body = await self._body(headers, read_body)
        if trace is not None:
            trace.capture("HTTP_RECV_END")
        length_text = headers.get(_HEADER_LENGTH.lower())
        if length_text is None:
            header_length = len(body)
        else:
            header_length = _atol(length_text)
            if header_length < 0 or header_length > len(body):
                raise _bad(
                    f"inference header size should be in range (0, {len(body)}), got: {length_text}"
                )
        if header_length == 0:
            request = _raw_request(loaded, body)
        elif header_length < BIG_JSON_BYTES:
            header = codec.loads(memoryview(body)[:header_length])
            request = self._parse_infer(model, loaded, header, body, header_length)
        else:
            request = await asyncio.get_running_loop().run_in_executor(
                None, self._parse_big_infer, model, loaded, body, header_length
            )
        regions = request.regions
        if regions:  # in use (not unregistered) until the response is written
            self.shm.acquire(regions)
        try:
            return await self._infer_submit(model, version, loaded, headers, request, trace)
        finally:
            if regions:
                self.shm.release(regions)

    async def _infer_submit(
        self,
        model: str,
        version: int | None,
        loaded: Any,
        headers: Mapping[str, str],
        request: _InferRequest,
        trace: Any,
    ) -> Reply:
        outputs = list(request.outputs) if request.outputs is not None else None
        if self.header_forward is not None:
            forwarded = request_parameters.forwarded_headers(self.header_forward, headers.items())
            parameters = request_parameters.with_forwarded(request.kwargs.get("parameters"),
                                                           forwarded)  # fmt: skip
            if parameters:
                request.kwargs["parameters"] = parameters
        tensors = await self.server.submit(
            model, request.inputs, outputs, version, request_id=request.request_id,
            trace=trace, **request.kwargs,
        )  # fmt: skip
        if trace is not None:
            trace.capture("INFER_RESPONSE_COMPLETE")
        reply = self._infer_reply(model, loaded, request, tensors)
        coding = codec.pick_encoding(headers.get("accept-encoding"))
        if coding is not None:
            if len(reply.body) < OFFLOAD_BYTES:
                reply.body = codec.encode_body(reply.body, coding)
            else:
                reply.body = await asyncio.get_running_loop().run_in_executor(
                    None, codec.encode_body, reply.body, coding
                )
            reply.headers["Content-Encoding"] = coding
        return reply

    def _parse_big_infer(
        self, model: str, loaded: Any, body: bytes, header_length: int
    ) -> _InferRequest:
        """``_parse_infer`` of a big JSON header, in a worker thread: long number arrays are
        decoded a piece at a time (see http_bigjson), or the usual way where that can't be
        exact."""
        view = memoryview(body)[:header_length]
        try:
            header = http_bigjson.loads(view)
            return self._parse_infer(model, loaded, header, body, header_length, spans=True)
        except http_bigjson.Fallback:
            header = codec.loads(view)
            return self._parse_infer(model, loaded, header, body, header_length)

    def _parse_infer(
        self,
        model: str,
        loaded: Any,
        header: Any,
        body: bytes,
        header_length: int,
        spans: bool = False,
    ) -> _InferRequest:
        if not isinstance(header, dict) or "inputs" not in header:
            raise _bad(
                "Unable to parse 'inputs': attempt to access non-existing object member 'inputs'"
            )
        raw_inputs = header["inputs"]
        if not isinstance(raw_inputs, list):
            raise _bad("Unable to parse 'inputs': attempt to access JSON non-array as array")
        request_id = _string(header["id"], "id") if "id" in header else ""
        params = _object(header.get("parameters", {}), "parameters")
        kwargs = _request_parameters(params)
        default_kind = _JSON_KIND
        if "binary_data_output" in params and _bool(
            params["binary_data_output"], "binary_data_output"
        ):
            default_kind = _BINARY_KIND

        inputs: list[tuple[str, Any]] = []
        regions: list[str] = []
        position = header_length
        for raw in raw_inputs:
            tensor = _object(raw, "inputs")
            if "name" not in tensor:
                raise _bad(
                    "Unable to parse 'name': attempt to access non-existing object member 'name'"
                )
            name = _string(tensor["name"], "name")
            for member in ("datatype", "shape"):
                if member not in tensor:
                    raise _bad(
                        f"Unable to parse '{member}': attempt to access non-existing object "
                        f"member '{member}'"
                    )
            datatype = _string(tensor["datatype"], "datatype")
            if datatype not in DATATYPES:
                raise _bad(f"invalid datatype for input {name}")
            shape = _shape(tensor["shape"])
            tparams = _object(tensor.get("parameters", {}), "parameters")
            sources: list[str] = [
                k for k in ("binary_data_size", "shared_memory_region") if k in tparams
            ]
            if "data" in tensor:
                sources.insert(0, "data")
            if len(sources) != 1:
                got = " ".join(f"'{s}'" for s in sources) if sources else "no field is set"
                raise _bad(
                    "Input must set only one of the following fields: 'data', 'binary_data_size' "
                    "in 'parameters', 'shared_memory_region' in 'parameters'. But "
                    + (f"set {got}" if sources else got)
                )
            source = sources[0]
            if source == "data":
                data = tensor["data"]
                decode = (
                    http_bigjson.tensor_from_spans
                    if spans and http_bigjson.has_spans(data)
                    else codec.tensor_from_json
                )
                value: Any = decode(name, datatype, shape, data)
            elif source == "binary_data_size":
                size = _uint(tparams["binary_data_size"], "binary_data_size")
                if position + size > len(body):
                    raise _bad(
                        f"unexpected size for input '{name}', expecting "
                        f"{position + size - len(body)} additional bytes for model '{model}'"
                    )
                value = _tensor_from_bytes(
                    loaded.config, request_id, name, datatype, shape, body, position, size
                )
                position += size
            else:
                region = _string(tparams["shared_memory_region"], "shared_memory_region")
                offset = _uint(tparams.get("shared_memory_offset", 0), "shared_memory_offset")
                if "shared_memory_byte_size" not in tparams:
                    raise _bad(
                        f"input '{name}' of model '{model}' names shared memory region "
                        f"'{region}' without 'shared_memory_byte_size'"
                    )
                size = _uint(tparams["shared_memory_byte_size"], "shared_memory_byte_size")
                # Triton checks the window before the size of the tensor it holds
                self.shm.check_window(region, offset, size)
                _check_byte_size(loaded.config, request_id, name, datatype, shape, size)
                value = self.shm.input_tensor(region, offset, size, datatype, shape)
                regions.append(region)
            inputs.append((name, value))
        if position != len(body):
            raise _bad(f"unexpected additional input data for model '{model}'")

        outputs: dict[str, _OutputSpec] | None = None
        if "outputs" in header:
            raw_outputs = header["outputs"]
            if not isinstance(raw_outputs, list):
                raise _bad("Unable to parse 'outputs': attempt to access JSON non-array as array")
            outputs = {}
            for raw in raw_outputs:
                spec_json = _object(raw, "outputs")
                if "name" not in spec_json:
                    raise _bad(
                        "Unable to parse 'name': attempt to access non-existing object member 'name'"
                    )
                name = _string(spec_json["name"], "name")
                outputs[name] = spec = self._output_spec(spec_json, default_kind)
                if spec.region:
                    regions.append(spec.region)
        return _InferRequest(inputs, outputs, default_kind, request_id, kwargs, regions)

    def _output_spec(self, spec_json: dict[str, Any], default_kind: int) -> _OutputSpec:
        params = _object(spec_json.get("parameters", {}), "parameters")
        spec = _OutputSpec(default_kind)
        if "binary_data" in params:
            spec.kind = _BINARY_KIND if _bool(params["binary_data"], "binary_data") else _JSON_KIND
        if "classification" in params:
            try:
                spec.classes = _uint(params["classification"], "classification")
            except TritonError:
                raise _bad(
                    "Unable to set 'classification': attempt to access JSON non-unsigned-integer "
                    "as unsigned-integer"
                ) from None
        if "shared_memory_region" in params:
            if spec.kind == _BINARY_KIND and "binary_data" in params:
                raise _bad("Output can't set both 'shared_memory_region' and 'binary_data'")
            if spec.classes:
                raise _bad("Output can't set both 'shared_memory_region' and 'classification'")
            spec.kind = _SHM_KIND
            spec.region = _string(params["shared_memory_region"], "shared_memory_region")
            spec.offset = _uint(params.get("shared_memory_offset", 0), "shared_memory_offset")
            if "shared_memory_byte_size" in params:
                spec.byte_size = _uint(params["shared_memory_byte_size"], "shared_memory_byte_size")
            if spec.region not in self.shm:
                raise TritonError(
                    f"Unable to find shared memory region: '{spec.region}'", NOT_FOUND
                )
        return spec

    def _infer_reply(
        self, model: str, loaded: Any, request: _InferRequest, tensors: Sequence[tuple[str, Any]]
    ) -> Reply:
        header: dict[str, Any] = {}
        if request.request_id:
            header["id"] = request.request_id
        header["model_name"] = model
        header["model_version"] = str(loaded.version)
        entries: list[dict[str, Any]] = []
        binaries: list[Any] = []
        wanted = request.outputs
        batched = loaded.config.max_batch_size > 0
        for name, tensor in tensors:
            spec = wanted.get(name) if wanted is not None else None
            kind = spec.kind if spec is not None else request.default_kind
            datatype, shape = tensor.datatype, list(tensor.shape)
            value: Any = tensor
            if spec is not None and spec.classes:
                value = classify(
                    tensor.numpy(), datatype, spec.classes, batched, loaded.labels(name)
                )
                datatype, shape = "BYTES", list(value.shape)
            entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
            if kind == _SHM_KIND:
                assert spec is not None
                self.shm.write_output(spec.region, spec.offset, spec.byte_size, value, output=name)
            elif kind == _BINARY_KIND:
                data = _raw_view(value)
                entry["parameters"] = {"binary_data_size": len(data)}
                if len(data):
                    binaries.append(data)
            else:
                array = value if isinstance(value, np.ndarray) else value.numpy()
                entry["data"] = codec.json_data(array)
            entries.append(entry)
        header["outputs"] = entries
        head = codec.dumps(header)
        if not binaries:
            return Reply(200, head, {"Content-Type": _JSON})
        return Reply(
            200,
            b"".join([head, *binaries]),
            {"Content-Type": _BINARY, _HEADER_LENGTH: str(len(head))},
        )

    # ---- generate ----------------------------------------------------------------------------

    async def _generate(
        self, model: str, version_text: str | None, body: bytes, stream: bool
    ) -> Reply:
        version = _version(version_text)
        loaded = self._loaded(model, version)
        request = codec.loads(body, members=True)
        if not isinstance(request, dict):
            raise _bad("generate request must be a JSON object")
        metadata = {t["name"]: t for t in self.server.model_metadata(model, version)["inputs"]}
        request_id = _string(request["id"], "id") if "id" in request else ""
        inputs, parameters = _generate_request(request, metadata)
        # As Triton's generate: every parameter goes to the model as it is; none schedules.
        kwargs: dict[str, Any] = {"parameters": parameters} if parameters else {}
        queue: asyncio.Queue[tuple[Any, Any, bool]] = asyncio.Queue()
        submit_kwargs = dict(request_id=request_id, **kwargs)
        cancel: Callable[[], Any]
        if loaded.config.model_transaction_policy.decoupled:

            def on_response(error: Any, outputs: Any, final: bool) -> None:
                if queue.qsize() >= MAX_GENERATE_BUFFERED and not final and error is None:
                    # The client reads slower than the model produces: stop the model rather
                    # than buffer without bound.
                    handle.cancel()
                    error = TritonError(
                        f"the client read too slowly: {MAX_GENERATE_BUFFERED} responses were "
                        "waiting to be sent; the request was cancelled", "UNAVAILABLE",
                    )  # fmt: skip
                    final = True
                    if queue.qsize() > MAX_GENERATE_BUFFERED:
                        return  # already told
                queue.put_nowait((error, outputs, final))

            handle = self.server.submit_stream(
                model, inputs, on_response, None, version, **submit_kwargs,
            )  # fmt: skip
            cancel = handle.cancel
        else:
            future = self.server.submit(model, inputs, None, version, **submit_kwargs)

            def done(f: asyncio.Future[Any]) -> None:
                error = (
                    TritonError("request cancelled", "CANCELLED")
                    if f.cancelled()
                    else f.exception()
                )
                queue.put_nowait((error, None if error else f.result(), True))

            future.add_done_callback(done)
            cancel = future.cancel

        try:
            return await self._generate_reply(model, loaded, request_id, stream, queue, cancel)
        except BaseException:
            cancel()  # the client is gone (handler cancelled) or the reply failed
            raise

    async def _generate_reply(
        self, model: str, loaded: Any, request_id: str, stream: bool,
        queue: asyncio.Queue[tuple[Any, Any, bool]], cancel: Callable[[], Any],
    ) -> Reply:
        def chunk(error: Any, outputs: Any) -> bytes:
            if error is not None:
                doc: dict[str, Any] = {"error": getattr(error, "message", str(error))}
            else:
                doc = _generate_json(model, loaded, request_id, outputs)
            text = codec.dumps(doc)
            return b"data: " + text + b"\n\n" if stream else text

        if not stream:
            answers: list[Any] = []
            while True:
                error, outputs, final = await queue.get()
                if error is not None:
                    raise error if isinstance(error, TritonError) else TritonError(str(error))
                if outputs or not final:
                    answers.append(outputs)
                if final:
                    break
            if len(answers) != 1:
                raise _bad(
                    "generate expects model to produce exactly 1 response, use generate stream "
                    "for model that generates various number of responses"
                )
            return Reply(200, chunk(None, answers[0]), {"Content-Type": _JSON})

        first = await queue.get()
        status = 200
        if first[0] is not None:
            status = HTTP_CODES.get(getattr(first[0], "status", "INTERNAL"), 500)

        async def events() -> AsyncIterator[bytes]:
            item = first
            done = False
            try:
                while True:
                    error, outputs, final = item
                    if error is not None or outputs or not final:
                        yield chunk(error, outputs)
                    if final or error is not None:
                        done = True
                        return
                    item = await queue.get()
            finally:
                if not done:  # the client went away mid-stream: stop the model
                    cancel()

        headers = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
        return Reply(status, b"", headers, events())


class _Restricted(TritonError):
    def __init__(self, key: str) -> None:
        super().__init__(f"This API is restricted, expecting header '{key}'", INVALID_ARG)


def _atol(text: str) -> int:
    """C's atol: the leading integer of ``text`` (0 when there is none)."""
    m = re.match(r"\s*([+-]?\d+)", text)
    return int(m.group(1)) if m else 0


def _request_parameters(params: dict[str, Any]) -> dict[str, Any]:
    """Scheduling arguments from Triton's request parameters."""
    kwargs: dict[str, Any] = {}
    if "priority" in params:
        kwargs["priority"] = _uint(params["priority"], "priority")
    if "timeout" in params:
        kwargs["timeout_us"] = _uint(params["timeout"], "timeout")
    if "sequence_id" in params:
        seq = params["sequence_id"]
        if isinstance(seq, str):
            kwargs["correlation_id_str"] = _string(seq, "sequence_id")
        else:
            try:
                kwargs["correlation_id"] = _uint(seq, "sequence_id")
            except TritonError:
                raise _bad(
                    "Unable to parse 'sequence_id': expected an unsigned integer or a string"
                ) from None
    flags = 0
    if "sequence_start" in params and _bool(params["sequence_start"], "sequence_start"):
        flags |= SEQUENCE_START
    if "sequence_end" in params and _bool(params["sequence_end"], "sequence_end"):
        flags |= SEQUENCE_END
    if flags:
        kwargs["flags"] = flags
    custom = {k: v for k, v in params.items() if request_parameters.is_custom(k, http=True)}
    for key, value in custom.items():
        request_parameters.check_json_value(key, value)
    if custom:
        kwargs["parameters"] = custom
    return kwargs


def _check_byte_size(
    config: Any, request_id: str, name: str, datatype: str, shape: list[int], size: int
) -> None:
    if datatype == "BYTES":
        return
    try:
        expected = sizes.byte_size(datatype, shape)  # exact: [2**62] FP32 is not 0 bytes
    except TritonError as e:  # [0, 2**62]: no elements, and still no array can have it
        raise _bad(f"input '{name}' for model '{config.name}': {e.message}") from None
    if size != expected:
        raise input_size_error(config, request_id, name, datatype, shape, expected, size)


def _tensor_from_bytes(
    config: Any,
    request_id: str,
    name: str,
    datatype: str,
    shape: list[int],
    body: bytes,
    offset: int,
    size: int,
) -> Any:
    """A zero-copy view of binary tensor data in the request body."""
    model = config.name
    _check_byte_size(config, request_id, name, datatype, shape, size)
    try:
        return Tensor.from_buffer(datatype, shape, body, offset, size)
    except TritonError as e:
        if datatype == "BYTES":
            data = memoryview(body)[offset : offset + size]
            counted = bytes_count_error(config, request_id, name, shape, data)
            if counted is not None:
                raise counted from None
        raise _bad(
            f"invalid BYTES data for input '{name}' of model '{model}': {e.message}"
        ) from None


def _raw_request(loaded: Any, body: bytes) -> _InferRequest:
    """Triton's raw binary request (header length 0): the whole body is the data of the model's
    only input, shaped by its configuration; every output is returned as binary data.

    As Triton deduces it: the batch dimension (batching models) is 1; one variable-size
    dimension takes what the body holds (whole elements, rounded down: a body that is not a
    whole number of them is a byte size mismatch); a BYTES input must have exactly one element,
    the whole body (dims [1])."""
    config = loaded.config
    model = config.name
    prefix = request_id_prefix("")
    if len(config.input) != 1:
        raise _bad(
            f"{prefix}Raw request must only have 1 input (found 1) to be deduced but got "
            f"{len(config.input)} inputs in '{model}' model configuration"
        )
    spec = config.input[0]
    datatype = to_wire_name(mc.DataType.Name(spec.data_type))
    shape = [1] if config.max_batch_size > 0 else []
    variable = -1
    for d in spec.dims:
        if d < 0:
            if variable >= 0:
                raise _bad(
                    f"{prefix}The shape of the raw input '{spec.name}' can not be deduced because "
                    "there are more than one variable-sized dimension"
                )
            variable = len(shape)
        shape.append(int(d))
    fixed = codec.element_count([d for d in shape if d >= 0])
    if datatype == "BYTES":
        if variable >= 0 or fixed != 1:
            raise _bad(
                f"{prefix}For BYTE datatype raw input '{spec.name}', the model must have input "
                "shape [1]"
            )
        value: Any = np.array([body], dtype=np.object_).reshape(shape)
    else:
        size = _core.datatype_size(datatype)
        if variable >= 0:
            shape[variable] = len(body) // (fixed * size) if fixed else 0
        expected = fixed * size * (shape[variable] if variable >= 0 else 1)
        if expected != len(body):  # Triton's text names the raw input as its frontend does
            raise input_size_error(config, "", "raw_input", datatype, shape, expected, len(body))
        value = _tensor_from_bytes(config, "", spec.name, datatype, shape, body, 0, len(body))
    return _InferRequest([(spec.name, value)], None, _BINARY_KIND)


def _raw_view(value: Any) -> Any:
    """The bytes of an output in Triton's layout (BYTES serialized), a view where possible."""
    if isinstance(value, np.ndarray):  # classification results
        return _core.serialize_bytes(value)
    if value.datatype == "BYTES":
        return value.tobytes()
    return memoryview(value.numpy().reshape(-1).view(np.uint8))


def _generate_request(
    request: codec.JsonObject, metadata: dict[str, dict[str, Any]]
) -> tuple[list[tuple[str, Any]], dict[str, Any]]:
    """A generate request's inputs and parameters, as Triton reads them: members are taken in
    document order (a repeated name counts again, with its first value); one named like a model
    input is that input, ``parameters`` is an object of parameters, and every other member
    (``id`` included) is a parameter too. A later parameter replaces an earlier one."""
    inputs: list[tuple[str, Any]] = []
    parameters: dict[str, Any] = {}
    for key in request.names:
        value = request[key]
        meta = metadata.get(key)
        if meta is not None:
            inputs.append((key, _generate_input(key, meta, value)))
        elif key == "parameters":
            if not isinstance(value, codec.JsonObject):
                raise _bad(
                    "Expected JSON object for keyword: 'parameters': attempt to access JSON "
                    "non-object as object"
                )
            for name in value.names:
                request_parameters.check_json_value(
                    name, value[name], "Converting keyword: 'parameters': "
                )
                parameters[name] = _generate_parameter(value[name])
        else:
            request_parameters.check_json_value(key, value)
            parameters[key] = _generate_parameter(value)
    return inputs, parameters


def _generate_parameter(value: Any) -> Any:
    """A JSON parameter value as Triton's generate passes it: an integer that int64 cannot
    hold becomes a double."""
    if type(value) is int and not -(2**63) <= value < 2**63:
        return float(value)
    return value


def _generate_input(name: str, meta: dict[str, Any], value: Any) -> np.ndarray:
    """A generate-request field as the input tensor it names: a scalar or a 1-D array, shaped by
    the model's dims (fixed dims distribute the elements, the innermost variable dim takes the
    rest, other variable dims are 1), as Triton does."""
    data = value if isinstance(value, list) else [value]
    count = len(data)
    shape = [int(d) for d in meta["shape"]]
    remaining = count
    for d in reversed(shape):
        if d != -1:
            if d == 0 or remaining % d:
                raise _bad(f"The schema can not convert input '{name}' to tensor with proper shape")
            remaining //= d
    for i in range(len(shape) - 1, -1, -1):
        if shape[i] == -1:
            shape[i], remaining = remaining, 1
    if remaining != 1:
        raise _bad(f"The schema can not convert input '{name}' to tensor with proper shape")
    return codec.tensor_from_json(name, meta["datatype"], shape, data)


def _generate_json(
    model: str, loaded: Any, request_id: str, outputs: Sequence[tuple[str, Any]]
) -> dict[str, Any]:
    doc: dict[str, Any] = {"model_name": model, "model_version": str(loaded.version)}
    if request_id:
        doc["id"] = request_id
    for name, tensor in outputs:
        data = codec.json_data(tensor.numpy())
        doc[name] = data[0] if len(data) == 1 else data
    return dict(sorted(doc.items()))


# ---- aiohttp transport ---------------------------------------------------------------------


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
) -> HttpFrontend:
    """Serve ``server`` over HTTP on the running event loop (port 0: any free port, see
    ``frontend.port``).

    ``thread_count`` sizes the pool that runs blocking model-control calls (load/unload);
    requests themselves are served on the event loop. ``restricted_apis`` maps Triton's API
    categories to the (header, value) a request must carry, or is a list of Triton's
    ``--http-restricted-api`` values (``<category>[,...]:<key>=<value>``). ``max_body_bytes``
    (Triton's ``--http-max-input-size``) limits request bodies, also after decompression.
    ``header_forward_pattern`` (``--http-header-forward-pattern``): the infer requests' headers
    whose names match it become string request parameters.
    """
    if restricted_apis is not None and not isinstance(restricted_apis, Mapping):
        restricted_apis = parse_restricted_apis(list(restricted_apis))
    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(
        max_workers=max(1, thread_count or 2), thread_name_prefix="tritonlite-http"
    )
    api = HttpApi(
        server, restricted_apis=restricted_apis, max_body_bytes=max_body_bytes, executor=executor,
        header_forward_pattern=header_forward_pattern,
    )  # fmt: skip

    if max_body_bytes <= 0:
        raise _bad(f"--http-max-input-size must be greater than 0, got {max_body_bytes}")

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
