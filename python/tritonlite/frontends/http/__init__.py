"""HTTP/REST frontend: KServe v2 and Triton's HTTP extensions over a ``Server``.

Owns the protocol adapter only (no model logic). One concern per module:

- ``routes``: the routes table (path pattern, methods, restricted-API category, handler);
- ``api``: ``HttpApi.dispatch``: route, method and access checks, errors as Triton's replies;
- ``context``: what handlers share (server, limits, body reading, the ``Call``);
- ``infer``: ``/infer``: decode -> submit -> encode;
- ``generate``: ``/generate`` and ``/generate_stream``;
- ``metadata``: health, server and model metadata, readiness, ``/config``;
- ``admin``: statistics, repository, shared memory, trace and logging settings;
- ``reply`` / ``fields``: replies and status codes / JSON member readers with Triton's texts;
- ``dashboard``: the live dashboard (``/dashboard``, ``/dashboard/api/state``; not Triton's);
- ``app``: the aiohttp transport (``start_http``).
``http_codec`` and ``http_bigjson`` (beside this package) are its pure codecs.

Endpoints (``docs/openapi.yaml`` describes each):
``/v2/health/live|ready``, ``/v2``, ``/v2/models/{m}[/versions/{v}]`` with ``/ready``,
``/config``, ``/stats``, ``/infer``, ``/generate``, ``/generate_stream`` and
``/trace/setting``; ``/v2/models/stats``; ``/v2/repository/index`` and
``/v2/repository/models/{m}/load|unload``; ``/v2/systemsharedmemory[/region/{r}]/status|register|
unregister`` and the same for ``cudasharedmemory``; ``/v2/trace/setting``; ``/v2/logging``;
and tritonlite's own ``/dashboard`` (off with ``dashboard=False``).

``/infer`` supports JSON tensors (every datatype; BYTES as strings), Triton's binary tensor data
extension (``Inference-Header-Content-Length``, ``binary_data``, ``binary_data_size``,
``binary_data_output``), raw binary requests (header length 0, the input's shape deduced as
Triton does), gzip and deflate request and response bodies, chunked request bodies (also with a
Content-Length, see ``app._ChunkedOverLength``), classification, system shared-memory inputs and
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

from .api import HttpApi
from .app import HttpFrontend, _without_content_length, body_too_large, read_limited, start_http
from .context import API_CATEGORIES, DEFAULT_MAX_BODY_BYTES, OFFLOAD_BYTES, parse_restricted_apis
from .generate import MAX_GENERATE_BUFFERED
from .infer import BIG_JSON_BYTES
from .reply import HTTP_CODES, Reply

__all__ = [
    "API_CATEGORIES",
    "BIG_JSON_BYTES",
    "DEFAULT_MAX_BODY_BYTES",
    "HTTP_CODES",
    "MAX_GENERATE_BUFFERED",
    "OFFLOAD_BYTES",
    "HttpApi",
    "HttpFrontend",
    "Reply",
    "_without_content_length",
    "body_too_large",
    "parse_restricted_apis",
    "read_limited",
    "start_http",
]
