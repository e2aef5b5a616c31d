"""HTTP protocol details: chunked request bodies, duplicate JSON keys, raw binary requests,
generate parameters and missing inputs, system shared memory in use and byte-size mismatches.

Chunked bodies and raw binary requests are sent over plain sockets (tritonclient does not make
them); everything else goes through tritonclient where it can.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from parity.harness import Case, Target, python_model

ECHO_CONFIG = """
name: "echo"
backend: "python"
max_batch_size: 0
input [{ name: "IN" data_type: TYPE_INT32 dims: [-1] }]
output [{ name: "OUT" data_type: TYPE_INT32 dims: [-1] }]
instance_group [{ kind: KIND_CPU count: 1 }]
"""

ECHO = """
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        self.args = args

    def execute(self, requests):
        recorder.record(self.args, [recorder.describe_request(r) for r in requests])
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy())]) for r in requests]
"""


def _request(target: Target, raw: bytes) -> dict[str, Any]:
    """Send ``raw`` (a whole HTTP/1.1 request, which asks the server to close after answering)
    and read one response: status and JSON body, or what became of the connection."""
    host, port = target.http_url.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as s:
        try:
            s.sendall(raw)
        except OSError:
            pass
        response = http.client.HTTPResponse(s)
        try:
            response.begin()
            data = response.read()
        except TimeoutError:
            return {"connection": "no answer"}
        except (http.client.RemoteDisconnected, ConnectionResetError):
            return {"connection": "closed without an answer"}
    try:
        body: Any = json.loads(data) if data else ""
    except ValueError:
        body = data.decode("utf-8", "replace")
    return {"status": response.status, "body": body}


def _post(path: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: localhost", "Connection: close"]
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    if not any(k.lower() == "transfer-encoding" for k in headers or {}):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _chunked(*pieces: bytes, sizes: list[str] | None = None, end: bytes = b"0\r\n\r\n") -> bytes:
    out = b""
    for i, p in enumerate(pieces):
        size = sizes[i] if sizes else f"{len(p):x}"
        out += size.encode() + b"\r\n" + p + b"\r\n"
    return out + end


# ---- chunked bodies ------------------------------------------------------------------------

INFER_JSON = json.dumps(
    {"inputs": [{"name": "IN", "datatype": "INT32", "shape": [3], "data": [1, 2, 3]}]}
).encode()


TWO_INPUTS_CONFIG = """
name: "two"
backend: "python"
max_batch_size: 0
input [{ name: "A" data_type: TYPE_INT32 dims: [-1] }, { name: "B" data_type: TYPE_INT32 dims: [-1] }]
output [{ name: "OUT" data_type: TYPE_INT32 dims: [-1] }]
"""


def build_echo(repo: Path) -> None:
    python_model(repo, "echo", ECHO_CONFIG, ECHO)
    python_model(repo, "two", TWO_INPUTS_CONFIG, ECHO)


def chunked(target: Target) -> Any:
    te = {"Transfer-Encoding": "chunked", "Content-Type": "application/json"}
    a, b, c = INFER_JSON[:10], INFER_JSON[10:40], INFER_JSON[40:]
    seen: dict[str, Any] = {}
    seen["three chunks"] = _request(target, _post("/v2/models/echo/infer", _chunked(a, b, c), te))
    seen["one chunk"] = _request(target, _post("/v2/models/echo/infer", _chunked(INFER_JSON), te))
    seen["upper-case hex sizes"] = _request(
        target,
        _post("/v2/models/echo/infer",
              _chunked(a, b, c, sizes=[f"{len(a):X}", f"{len(b):X}", f"{len(c):X}"]), te),
    )  # fmt: skip
    seen["trailers"] = _request(
        target,
        _post("/v2/models/echo/infer",
              _chunked(a, b, c, end=b"0\r\nX-Trailer: 1\r\n\r\n"), te),
    )  # fmt: skip
    seen["leading zeros"] = _request(
        target,
        _post("/v2/models/echo/infer",
              _chunked(a, b, c, sizes=[f"000{len(a):x}", f"{len(b):x}", f"{len(c):x}"]), te),
    )  # fmt: skip
    seen["repository index"] = _request(
        target, _post("/v2/repository/index", _chunked(b"{", b"}"), te)
    )
    binary_header = json.dumps({"inputs": [{
        "name": "IN", "datatype": "INT32", "shape": [2],
        "parameters": {"binary_data_size": 8}}]}).encode()  # fmt: skip
    seen["binary tensor data"] = _request(
        target,
        _post(
            "/v2/models/echo/infer",
            _chunked(binary_header[:7], binary_header[7:],
                     np.array([5, 6], dtype=np.int32).tobytes()),
            {**te, "Inference-Header-Content-Length": str(len(binary_header))},
        ),
    )  # fmt: skip
    import gzip

    raw = np.arange(8, dtype=np.int32).tobytes()  # a raw binary request, as in Triton's test
    for what, headers, body in (
        ("capitalised", {"Transfer-Encoding": "Chunked"}, _chunked(a, b, c)),
        # what `requests.post(data=<chunk-encoded bytes>, headers={"Transfer-Encoding":
        # "chunked"})` sends (Triton's test_content_encoding_chunked_manually): the chunked
        # framing wins over the Content-Length of the encoded bytes
        (
            "with content-length too",
            {
                **te,
                "Content-Length": str(len(_chunked(raw))),
                "Inference-Header-Content-Length": "0",
            },
            _chunked(raw),
        ),
        ("gzip body", {**te, "Content-Encoding": "gzip"}, _chunked(gzip.compress(INFER_JSON))),
        ("generate", te, _chunked(b'{"IN": ', b"[4, 5]}")),
    ):
        path = "/v2/models/echo/generate" if what == "generate" else "/v2/models/echo/infer"
        seen[what] = _request(target, _post(path, body, headers))
    many = b"1\r\n \r\n" * 200_000
    seen["many one-byte chunks"] = _request(
        target, _post("/v2/repository/index", b"1\r\n{\r\n" + many + _chunked(b"}"), te)
    )
    seen["many chunks, raw request to a model with two inputs"] = _request(
        target,
        _post("/v2/models/two/infer", many + b"0\r\n\r\n",
              {**te, "Inference-Header-Content-Length": "0"}),
    )  # fmt: skip
    seen["model saw"] = target.observations("echo")
    # the server still serves after all of it
    seen["after"] = _request(target, _post("/v2/models/echo/infer", INFER_JSON))
    return seen


# ---- duplicate keys ------------------------------------------------------------------------


def duplicate_keys(target: Target) -> Any:
    seen: dict[str, Any] = {}
    one = {"name": "IN", "datatype": "INT32", "shape": [1], "data": [1]}
    body = json.dumps({"inputs": [one]})
    seen["top level"] = _request(
        target,
        _post("/v2/models/echo/infer",
              ('{"id": "a", "id": "b", ' + body[1:]).encode()),
    )  # fmt: skip
    seen["in an input"] = _request(
        target,
        _post("/v2/models/echo/infer",
              b'{"inputs": [{"name": "IN", "name": "IN", "datatype": "INT32", "shape": [1], '
              b'"data": [1]}]}'),
    )  # fmt: skip
    seen["in parameters"] = _request(
        target,
        _post("/v2/models/echo/infer",
              ('{"parameters": {"a": 1, "a": 2}, ' + body[1:]).encode()),
    )  # fmt: skip
    seen["repository index"] = _request(
        target, _post("/v2/repository/index", b'{"ready": true, "ready": false}')
    )
    seen["input named twice"] = _request(
        target,
        _post("/v2/models/echo/infer", json.dumps({"inputs": [one, one]}).encode()),
    )
    seen["output named twice"] = _request(
        target,
        _post("/v2/models/echo/infer",
              json.dumps({"inputs": [one], "outputs": [{"name": "OUT"}, {"name": "OUT"}]}).encode()),
    )  # fmt: skip
    seen["model saw"] = target.observations("echo")
    return seen


CASES = [
    Case("http_chunked_body", build_echo, chunked,
         about="a Transfer-Encoding: chunked request body is decoded and served"),
    Case("http_duplicate_key", build_echo, duplicate_keys,
         about="a JSON body with a duplicate key is refused with 400"),
]  # fmt: skip


# ---- raw binary requests -------------------------------------------------------------------

RAW_MODELS = {
    "bytes_one": ("TYPE_STRING", "[1]", 0),
    "bytes_one_batched": ("TYPE_STRING", "[1]", 4),
    "bytes_any": ("TYPE_STRING", "[-1]", 0),
    "bytes_two": ("TYPE_STRING", "[-1, -1]", 0),
    "bytes_fixed": ("TYPE_STRING", "[2]", 0),
    "bytes_batched": ("TYPE_STRING", "[-1]", 4),
    "int_two": ("TYPE_INT32", "[-1, -1]", 0),
    "int_any": ("TYPE_INT32", "[-1]", 0),
    "int_rows": ("TYPE_INT32", "[-1, 2]", 4),
    "int_fixed": ("TYPE_INT32", "[2]", 0),
}

RAW_ECHO = """
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        self.args = args

    def execute(self, requests):
        recorder.record(self.args, [recorder.describe_request(r) for r in requests])
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy())]) for r in requests]
"""


def build_raw(repo: Path) -> None:
    for name, (dtype, dims, batch) in RAW_MODELS.items():
        config = (
            f'name: "{name}"\nbackend: "python"\nmax_batch_size: {batch}\n'
            f'input [{{ name: "IN" data_type: {dtype} dims: {dims} }}]\n'
            f'output [{{ name: "OUT" data_type: {dtype} dims: {dims} }}]\n'
            "instance_group [{ kind: KIND_CPU count: 1 }]\n"
        )
        python_model(repo, name, config, RAW_ECHO)


def _serialized(*items: bytes) -> bytes:
    return b"".join(len(i).to_bytes(4, "little") + i for i in items)


def raw_binary(target: Target) -> Any:
    octet = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": "0"}
    bodies = {
        "5 bytes": b"hello",
        "8 bytes": np.array([7, 8], dtype=np.int32).tobytes(),
        "16 bytes": np.arange(4, dtype=np.int32).tobytes(),
    }
    seen: dict[str, Any] = {}
    for model in RAW_MODELS:
        for what, body in bodies.items():
            answer = _request(target, _post(f"/v2/models/{model}/infer", body, octet))
            if answer.get("status") == 200:  # binary output: the JSON header and the bytes
                text = answer["body"]
                head, _, data = text.partition("}]}")
                answer["body"] = {"header": json.loads(head + "}]}"), "data": list(data)}
            seen[f"{model}: {what}"] = answer
        # no body and no inference header: a raw request too
        seen[f"{model}: empty body"] = _request(target, _post(f"/v2/models/{model}/infer", b""))
        seen[f"{model} saw"] = target.observations(model)
    return seen


# ---- generate ------------------------------------------------------------------------------

GENERATE_CONFIG = """
name: "gen"
backend: "python"
max_batch_size: 0
input [{ name: "PROMPT" data_type: TYPE_STRING dims: [1] }]
output [{ name: "TEXT" data_type: TYPE_STRING dims: [1] }]
instance_group [{ kind: KIND_CPU count: 1 }]
"""

GENERATE = """
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        self.args = args

    def execute(self, requests):
        recorder.record(self.args, [recorder.describe_request(r) for r in requests])
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "TEXT", pb_utils.get_input_tensor_by_name(r, "PROMPT").as_numpy())]) for r in requests]
"""

GENERATE2_CONFIG = """
name: "gen2"
backend: "python"
max_batch_size: 0
input [
  { name: "PROMPT" data_type: TYPE_STRING dims: [1] },
  { name: "COUNT" data_type: TYPE_INT32 dims: [1] }
]
output [{ name: "TEXT" data_type: TYPE_STRING dims: [1] }]
instance_group [{ kind: KIND_CPU count: 1 }]
"""


def build_generate(repo: Path) -> None:
    python_model(repo, "gen", GENERATE_CONFIG, GENERATE)
    python_model(repo, "gen2", GENERATE2_CONFIG, GENERATE)


def generate(target: Target) -> Any:
    seen: dict[str, Any] = {}
    bodies = {
        "extra fields": {
            "PROMPT": "hi",
            "temperature": 0.5,
            "stream": False,
            "tag": "x",
            "max_tokens": 7,
        },
        "extra fields and parameters": {"PROMPT": "hi", "top": 3, "parameters": {"p": 1, "top": 4}},
        "nested object": {"PROMPT": "hi", "obj": {"a": 1}},
        "array field": {"PROMPT": "hi", "arr": [1, 2]},
        "null field": {"PROMPT": "hi", "nothing": None},
        "missing input": {"temperature": 0.5},
        "empty": {},
        "parameters before a field of the same name": {
            "parameters": {"top": 4},
            "top": 3,
            "PROMPT": "hi",
        },
        "nested object in parameters": {"PROMPT": "hi", "parameters": {"o": {"a": 1}}},
        "parameters not an object": {"PROMPT": "hi", "parameters": 5},
        "id": {"PROMPT": "hi", "id": "abc", "x": 1},
        "big integer": {"PROMPT": "hi", "big": 2**63, "neg": -5},
        "scheduling names": {
            "PROMPT": "hi",
            "priority": 1,
            "timeout": 5,
            "sequence_id": 3,
            "binary_data_output": True,
        },
    }
    for path in ("generate", "generate_stream"):
        for what, body in bodies.items():
            seen[f"{path}: {what}"] = answer = _request(
                target, _post(f"/v2/models/gen/{path}", json.dumps(body).encode())
            )
            if what == "parameters not an object":
                # Triton answers 500; tritonlite deliberately answers a malformed request with
                # 400 and Triton's text (README "Differences"): compare the text
                del answer["status"]
    seen["gen2 missing one"] = _request(
        target, _post("/v2/models/gen2/generate", json.dumps({"PROMPT": "hi"}).encode())
    )
    seen["gen2 missing both"] = _request(
        target, _post("/v2/models/gen2/generate", json.dumps({"x": "hi"}).encode())
    )
    seen["duplicate input"] = _request(
        target, _post("/v2/models/gen/generate", b'{"PROMPT": "a", "PROMPT": "b"}')
    )
    seen["duplicate field"] = _request(
        target, _post("/v2/models/gen/generate", b'{"PROMPT": "a", "t": 1, "t": 2}')
    )
    seen["duplicate field in parameters"] = _request(
        target,
        _post("/v2/models/gen/generate", b'{"PROMPT": "a", "parameters": {"t": 1, "t": 2}}'),
    )
    seen["model saw"] = target.observations("gen")
    return seen


CASES += [
    Case("http_raw_binary", build_raw, raw_binary,
         about="raw binary requests (no inference header) for BYTES and variable-shape inputs"),
    Case("http_generate_parameters", build_generate, generate,
         about="generate: fields that are not inputs reach the model as parameters"),
]  # fmt: skip


# ---- system shared memory ------------------------------------------------------------------

HOLD_CONFIG = """
name: "hold"
backend: "python"
max_batch_size: 0
input [{ name: "IN" data_type: TYPE_INT32 dims: [-1] }]
output [{ name: "OUT" data_type: TYPE_INT32 dims: [-1] }]
instance_group [{ kind: KIND_CPU count: 1 }]
"""

HOLD = """
import os
import time
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        self.args = args

    def execute(self, requests):
        recorder.record(self.args, [recorder.describe_request(r) for r in requests])
        release = os.path.join(self.args["model_repository"], "release")
        deadline = time.monotonic() + 60
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.01)
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy())]) for r in requests]
"""


def build_hold(repo: Path) -> None:
    python_model(repo, "hold", HOLD_CONFIG, HOLD)
    python_model(repo, "echo", ECHO_CONFIG, ECHO)


def _shm_keys(count: int) -> list[str]:
    """Fresh shm objects of 16 INT32s (0..15). Triton 2.51 refuses a second region on a key
    that is already registered, so every region gets its own."""
    keys = []
    for _ in range(count):
        key = f"/parity_shm_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        (Path("/dev/shm") / key[1:]).write_bytes(np.arange(16, dtype=np.int32).tobytes())
        keys.append(key)
    return keys


def _unlink(keys: list[str]) -> None:
    for key in keys:
        (Path("/dev/shm") / key[1:]).unlink(missing_ok=True)


def _error(e: Any) -> dict[str, Any]:
    return {"status": str(e.status()), "message": e.message()}


def shm_in_use(target: Target) -> Any:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    keys = _shm_keys(3)
    http = httpclient.InferenceServerClient(target.http_url)
    grpc = grpcclient.InferenceServerClient(target.grpc_url)
    seen: dict[str, Any] = {}

    def attempt(what: str, call: Any) -> None:
        try:
            result = call()
            seen[what] = "ok" if result is None else result
        except InferenceServerException as e:
            seen[what] = _error(e)

    def regions() -> Any:
        return sorted(r["name"] for r in http.get_system_shared_memory_status())

    try:
        http.register_system_shared_memory("in", keys[0], 64)
        http.register_system_shared_memory("out", keys[1], 64)
        grpc.register_system_shared_memory("spare", keys[2], 64)
        result: dict[str, Any] = {}

        def infer() -> None:
            tensor = httpclient.InferInput("IN", [4], "INT32")
            tensor.set_shared_memory("in", 16)
            out = httpclient.InferRequestedOutput("OUT")
            out.set_shared_memory("out", 16, offset=16)
            try:
                http2 = httpclient.InferenceServerClient(target.http_url)
                r = http2.infer("hold", [tensor], outputs=[out])
                result["ok"] = r.get_output("OUT")
                http2.close()
            except InferenceServerException as e:
                result["error"] = _error(e)

        thread = threading.Thread(target=infer)
        thread.start()
        seen["model saw"] = target.wait_observations("hold", 1)
        attempt("http unregister input region", lambda: http.unregister_system_shared_memory("in"))
        attempt("grpc unregister input region", lambda: grpc.unregister_system_shared_memory("in"))
        attempt("http unregister output region",
                lambda: http.unregister_system_shared_memory("out"))  # fmt: skip
        attempt("grpc unregister output region",
                lambda: grpc.unregister_system_shared_memory("out"))  # fmt: skip
        attempt("regions while in use", regions)
        attempt("http unregister all", lambda: http.unregister_system_shared_memory())
        attempt("regions after http unregister all", regions)
        grpc.register_system_shared_memory("spare", keys[2], 64)
        attempt("grpc unregister all", lambda: grpc.unregister_system_shared_memory())
        attempt("regions after grpc unregister all", regions)
        (target.repository / "hold" / "release").write_text("")
        thread.join(60)
        seen["result"] = result
        attempt("regions after the request", regions)
        attempt(
            "http unregister input region after", lambda: http.unregister_system_shared_memory("in")
        )
        attempt("grpc unregister output region after",
                lambda: grpc.unregister_system_shared_memory("out"))  # fmt: skip
        attempt("regions at the end", regions)
    finally:
        http.close()
        grpc.close()
        _unlink(keys)
    return seen


def shm_byte_size(target: Target) -> Any:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    keys = _shm_keys(2)
    seen: dict[str, Any] = {}
    try:
        for key, proto, module, url in ((keys[0], "http", httpclient, target.http_url),
                                        (keys[1], "grpc", grpcclient, target.grpc_url)):  # fmt: skip
            client = module.InferenceServerClient(url)
            client.register_system_shared_memory(f"r_{proto}", key, 32)
            for what, shape, size, offset in (
                ("exact", [4], 16, 0),
                ("byte size smaller than the shape", [4], 8, 0),
                ("byte size larger than the shape", [2], 16, 0),
                ("byte size past the region", [10], 40, 0),
                ("offset plus byte size past the region", [4], 16, 24),
                ("offset past the region", [1], 4, 40),
                ("zero byte size", [0], 0, 0),
                ("unknown region", [4], 16, 0),
            ):
                tensor = module.InferInput("IN", shape, "INT32")
                region = "nope" if what == "unknown region" else f"r_{proto}"
                tensor.set_shared_memory(region, size, offset=offset)
                try:
                    r = client.infer("echo", [tensor])
                    seen[f"{proto}: {what}"] = {"ok": r.as_numpy("OUT").tolist()}
                except InferenceServerException as e:
                    seen[f"{proto}: {what}"] = _error(e)
            for what, size, offset in (
                ("output room too small", 8, 0),
                ("output past the region", 16, 24),
            ):
                tensor = module.InferInput("IN", [4], "INT32")
                tensor.set_data_from_numpy(np.arange(4, dtype=np.int32))
                out = module.InferRequestedOutput("OUT")
                out.set_shared_memory(f"r_{proto}", size, offset=offset)
                try:
                    client.infer("echo", [tensor], outputs=[out])
                    seen[f"{proto}: {what}"] = "ok"
                except InferenceServerException as e:
                    seen[f"{proto}: {what}"] = error = _error(e)
                    if what == "output room too small":
                        # Triton says INTERNAL; tritonlite deliberately answers INVALID_ARG (a
                        # client's mistake, README "Differences"): the text must match
                        del error["status"]
            client.unregister_system_shared_memory()
            client.close()
    finally:
        _unlink(keys)
    return seen


CASES += [
    Case("http_shm_in_use", build_hold, shm_in_use,
         about="a system shared-memory region used by an in-flight request cannot be unregistered"),
    Case("http_shm_byte_size", build_hold, shm_byte_size,
         about="byte sizes that do not fit a shared-memory region or the tensor's shape"),
]  # fmt: skip


# ---- JSON syntax errors --------------------------------------------------------------------

BAD_JSON = [
    b"AAAA",
    b"   ",
    b'{"a":1',
    b'{"a" 1}',
    b"{a:1}",
    b"[1 2]",
    b'{"a":"abc',
    b'{"a":"\\x"}',
    b'{"a":"\\u12G4"}',
    b"{} x",
    b'{"a":"\x01"}',
    b'{"a":tru}',
    b'{"a":-}',
    b'{"a":1.}',
    b'{"a":1e}',
    b'{"a":[1,]}',
    b'{"a":1,}',
    b'{"a":01}',
    b'{"a":"\xc3\xa9", "b" 1}',
    b'{\n  "a": 1\n  "b": 2\n}',
    b'{"a":1e999}',
    b'{"a":NaN}',
    b"[[[[",
]


def json_errors(target: Target) -> Any:
    seen: dict[str, Any] = {}
    for body in BAD_JSON:
        key = body.decode("utf-8", "backslashreplace")
        for route, path in (("index", "/v2/repository/index"), ("infer", "/v2/models/echo/infer")):
            answer = _request(target, _post(path, body))
            if answer.get("status") in (400, 500):
                # Triton answers a body it cannot parse with 500, tritonlite deliberately with
                # 400 (a client's mistake; README "Differences"): the texts must match
                answer["status"] = "refused"
            seen[f"{route} {key}"] = answer
    return seen


CASES += [
    Case(
        "http_json_syntax_errors",
        build_echo,
        json_errors,
        about="JSON syntax errors are answered with Triton's (RapidJSON's) texts and offsets",
    ),
]
