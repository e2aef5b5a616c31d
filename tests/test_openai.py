"""The OpenAI-compatible frontend (``--openai-port``), driven by the official ``openai`` client:
models, embeddings on the MiniLM ensemble (equal to a direct gRPC call), completions and chat
completions streamed and not on the bundled ``tiny_llm``, errors in OpenAI's shape, hostile
bodies, and a client that disconnects mid-stream cancelling the generation in the model."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest
import tritonclient.grpc as grpcclient
from serving import ServerProcess, free_port, wait_http_live

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "model_repository"))
import generate_minilm  # noqa: E402
import generate_textgen  # noqa: E402

TINY_LLM = ROOT / "model_repository" / "tiny_llm"
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A man is playing a guitar.",
    "hello",
    "Sentence embeddings map text of any length to a fixed-size vector that captures its "
    "meaning, so that similar sentences end up close to each other in the vector space.",
    "Ünïcödé and emoji 🙂 survive tokenization.",
]


def llm_repository(root: Path) -> Path:
    """tiny_llm as bundled, and ``slow_llm``: the same model pacing its words (20 ms each)."""
    repo = root / "llm"
    shutil.copytree(TINY_LLM, repo / "tiny_llm")
    shutil.copytree(TINY_LLM, repo / "slow_llm")
    config = (TINY_LLM / "config.pbtxt").read_text()
    slow = config.replace('name: "tiny_llm"', 'name: "slow_llm"').replace(
        'string_value: "0"', 'string_value: "20"')  # fmt: skip
    assert slow != config
    (repo / "slow_llm" / "config.pbtxt").write_text(slow)
    return repo


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    minilm = generate_minilm.generate(generate_minilm.DEFAULT_OUT)
    textgen = generate_textgen.generate(generate_textgen.DEFAULT_OUT)
    llm = llm_repository(tmp_path_factory.mktemp("openai"))
    port = free_port()
    with ServerProcess(minilm, llm, textgen, args=("--openai-port", str(port))) as srv:
        srv.openai_port = port  # type: ignore[attr-defined]
        wait_http_live(srv)
        _wait_openai(port)
        yield srv


def _wait_openai(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture(scope="module")
def client(served: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://127.0.0.1:{served.openai_port}/v1",  # type: ignore[attr-defined]
                         api_key="unused", max_retries=0, timeout=60)  # fmt: skip


def raw(port: int, method: str, path: str, body: bytes | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any] | bytes]:  # fmt: skip
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method,
                                     headers=headers or {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            status, data = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, data = e.code, e.read()
    try:
        return status, json.loads(data)
    except ValueError:
        return status, data


def assert_openai_error(doc: Any, param: str | None = None) -> dict[str, Any]:
    assert isinstance(doc, dict) and set(doc) == {"error"}, doc
    error = doc["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"]
    if param is not None:
        assert error["param"] == param, error
    return error


# ---- models ----------------------------------------------------------------------------------


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    models = {m.id: m for m in client.models.list()}
    assert {"tiny_llm", "slow_llm", "minilm_embed", "minilm_encoder"} <= set(models)
    card = models["tiny_llm"]
    assert card.object == "model" and card.owned_by == "Triton Inference Server"
    assert abs(card.created - time.time()) < 3600
    one = client.models.retrieve("minilm_embed")
    assert one.id == "minilm_embed" and one.owned_by == "Triton Inference Server"
    with pytest.raises(openai.NotFoundError) as e:
        client.models.retrieve("no_such_model")
    assert e.value.status_code == 404
    assert e.value.body["code"] == "model_not_found"  # type: ignore[index]
    assert "Unknown model: no_such_model" in e.value.body["message"]  # type: ignore[index]


# ---- embeddings ------------------------------------------------------------------------------


def grpc_embeddings(served: ServerProcess, texts: list[str]) -> tuple[np.ndarray, int]:
    client = grpcclient.InferenceServerClient(served.grpc_url)
    try:
        vectors, tokens = [], 0
        for text in texts:
            x = grpcclient.InferInput("text_input", [1, 1], "BYTES")
            x.set_data_from_numpy(np.array([[text.encode()]], dtype=object))
            result = client.infer("minilm_embed", [x])
            vectors.append(result.as_numpy("embedding")[0])
            tokens += int(result.as_numpy("token_count")[0, 0])
    finally:
        client.close()
    return np.stack(vectors), tokens


def test_embeddings_equal_a_direct_grpc_call(served: ServerProcess, client: openai.OpenAI) -> None:
    expected, tokens = grpc_embeddings(served, SENTENCES)
    # Not given, the openai client asks for base64 and decodes it itself; float is the
    # JSON-number path.
    for encoding in (openai.NOT_GIVEN, "float"):
        response = client.embeddings.create(model="minilm_embed", input=SENTENCES,
                                            encoding_format=encoding)  # type: ignore[arg-type]
        assert response.model == "minilm_embed" and response.object == "list"
        assert [d.index for d in response.data] == list(range(len(SENTENCES)))
        got = np.array([d.embedding for d in response.data], dtype=np.float32)
        assert got.shape == (len(SENTENCES), 384)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
        assert response.usage.prompt_tokens == tokens == response.usage.total_tokens
    assert tokens > len(SENTENCES) * 2  # [CLS] and [SEP] and at least one word each
    single = client.embeddings.create(model="minilm_embed", input="hello")
    np.testing.assert_allclose(single.data[0].embedding, expected[2], rtol=0, atol=1e-6)


def test_embeddings_base64_is_little_endian_float32(served: ServerProcess) -> None:
    port = served.openai_port  # type: ignore[attr-defined]
    body = json.dumps({"model": "minilm_embed", "input": ["hello"], "encoding_format": "base64"})
    status, doc = raw(port, "POST", "/v1/embeddings", body.encode())
    assert status == 200, doc
    vector = np.frombuffer(base64.b64decode(doc["data"][0]["embedding"]), "<f4")  # type: ignore[index]
    expected, _ = grpc_embeddings(served, ["hello"])
    np.testing.assert_allclose(vector, expected[0], rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("body", "param", "text"),
    [
        ({"model": "minilm_embed", "input": [1, 2, 3]}, "input", "token id arrays"),
        ({"model": "minilm_embed", "input": [[1, 2]]}, "input", "token id arrays"),
        ({"model": "minilm_embed", "input": []}, "input", "empty"),
        ({"model": "minilm_embed", "input": ""}, "input", "empty"),
        ({"model": "minilm_embed", "input": {"a": 1}}, "input", "string"),
        ({"model": "minilm_embed", "input": ["a"] * 2049}, "input", "2048"),
        ({"model": "minilm_embed", "input": "a", "encoding_format": "int8"}, "encoding_format",
         "'float' or 'base64'"),
        ({"model": "minilm_embed", "input": "a", "dimensions": 3}, "dimensions", "384"),
        ({"model": "minilm_embed", "input": "a", "bogus": 1}, "bogus", "Unrecognized"),
        ({"model": "tiny_llm", "input": "a"}, "model", "not an embedding model"),
        ({"input": "a"}, "model", "model"),
    ],
)
def test_embeddings_bad_input(served: ServerProcess, body: dict[str, Any], param: str,
                              text: str) -> None:  # fmt: skip
    status, doc = raw(served.openai_port, "POST", "/v1/embeddings",  # type: ignore[attr-defined]
                      json.dumps(body).encode())  # fmt: skip
    assert status == 400, doc
    error = assert_openai_error(doc, param)
    assert text in error["message"], error


# ---- completions -----------------------------------------------------------------------------

PROMPT = "the quick brown fox"


def test_completion(client: openai.OpenAI) -> None:
    c = client.completions.create(model="tiny_llm", prompt=PROMPT, max_tokens=6)
    assert c.object == "text_completion" and c.model == "tiny_llm" and c.id.startswith("cmpl-")
    assert c.choices[0].text == "the quick brown fox the quick"
    assert c.choices[0].finish_reason == "length"
    assert c.usage is not None
    assert (c.usage.prompt_tokens, c.usage.completion_tokens, c.usage.total_tokens) == (4, 6, 10)
    # stop -> stop_words, seed -> seed (tiny_llm starts at word seed % 4)
    c = client.completions.create(model="tiny_llm", prompt=PROMPT, max_tokens=10, stop=["fox"])
    assert c.choices[0].text == "the quick brown" and c.choices[0].finish_reason == "stop"
    c = client.completions.create(model="tiny_llm", prompt=PROMPT, max_tokens=3, seed=5)
    assert c.choices[0].text == "quick brown fox"
    # max_tokens absent: Triton's frontend default, 16
    c = client.completions.create(model="tiny_llm", prompt="a b")
    assert c.choices[0].text == " ".join(["a", "b"] * 8)


def test_completion_streamed(client: openai.OpenAI) -> None:
    chunks = list(client.completions.create(model="tiny_llm", prompt=PROMPT, max_tokens=6,
                                            stream=True))  # fmt: skip
    texts = [c.choices[0].text for c in chunks if c.choices and c.choices[0].text]
    assert texts == ["the", " quick", " brown", " fox", " the", " quick"]  # one chunk a token
    assert chunks[-1].choices[0].finish_reason == "length"
    assert all(c.id == chunks[0].id and c.object == "text_completion" for c in chunks)


def test_chat_completion(client: openai.OpenAI) -> None:
    messages: Any = [{"role": "system", "content": "be brief"},
                     {"role": "user", "content": "hello there"}]  # fmt: skip
    c = client.chat.completions.create(model="tiny_llm", messages=messages, max_tokens=7)
    # The prompt: "system: be brief\nuser: hello there\nassistant:" (7 words)
    assert c.object == "chat.completion" and c.id.startswith("chatcmpl-")
    assert c.choices[0].message.role == "assistant"
    assert c.choices[0].message.content == "system: be brief user: hello there assistant:"
    assert c.choices[0].finish_reason == "length"
    assert c.usage is not None and c.usage.prompt_tokens == 7 and c.usage.completion_tokens == 7
    c = client.chat.completions.create(model="tiny_llm", messages=messages,
                                       max_completion_tokens=2, max_tokens=50)  # fmt: skip
    assert c.choices[0].message.content == "system: be"  # max_completion_tokens wins


def test_chat_completion_streamed(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="tiny_llm", messages=[{"role": "user", "content": "hi you"}], max_tokens=4,
        stream=True, stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert deltas == ["user:", " hi", " you", " assistant:"]
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "length" and not any(finishes[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4 and chunks[-1].usage.prompt_tokens == 4
    assert all(c.object == "chat.completion.chunk" for c in chunks)


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    for call in (
        lambda: client.completions.create(model="nope", prompt="x"),
        lambda: client.chat.completions.create(model="nope", messages=[{"role": "user",
                                                                        "content": "x"}]),
        lambda: client.embeddings.create(model="nope", input="x"),
    ):  # fmt: skip
        with pytest.raises(openai.NotFoundError) as e:
            call()
        assert e.value.body["code"] == "model_not_found"  # type: ignore[index]
        assert e.value.body["message"] == "Unknown model: nope"  # type: ignore[index]


@pytest.mark.parametrize(
    ("path", "body", "param", "text"),
    [
        ("/v1/completions", {"model": "tiny_llm", "prompt": "x", "max_tokens": "5"},
         "max_tokens", "integer"),
        ("/v1/completions", {"model": "tiny_llm", "prompt": "x", "max_tokens": 0}, "max_tokens",
         "between"),
        ("/v1/completions", {"model": "tiny_llm", "prompt": "x", "max_tokens": True},
         "max_tokens", "integer"),
        ("/v1/completions", {"model": "tiny_llm", "prompt": ""}, "prompt", "non-empty"),
        ("/v1/completions", {"model": "tiny_llm", "prompt": ["a", "b"]}, "prompt", "single"),
        ("/v1/completions", {"model": "tiny_llm", "prompt": [1, 2]}, "prompt", "single"),
        ("/v1/completions", {"model": "tiny_llm", "prompt": "x", "temperature": 0.5},
         "temperature", "no 'temperature' input"),
        ("/v1/completions", {"model": "tiny_llm", "prompt": "x", "temperature": 9},
         "temperature", "between"),
        ("/v1/completions", {"model": "tiny_llm", "prompt": "x", "n": 2}, "n", "n=1"),
        ("/v1/completions", {"model": "tiny_llm", "prompt": "x", "echo": True}, "echo",
         "not supported"),
        ("/v1/completions", {"model": "tiny_llm", "prompt": "x", "seed": -1}, "seed", "uint64"),
        ("/v1/completions", {"model": "tiny_llm", "prompt": "x", "stop": ["a"] * 5}, "stop",
         "at most 4"),
        ("/v1/completions", {"model": "tiny_llm", "prompt": "x", "stream_options": {}},
         "stream_options", "stream"),
        ("/v1/completions", {"model": "minilm_embed", "prompt": "x"}, "model",
         "not a generative model"),
        ("/v1/completions", {"model": "tiny_llm", "prompt": "x", "frobnicate": 1}, "frobnicate",
         "Unrecognized request argument supplied: frobnicate"),
        ("/v1/chat/completions", {"model": "tiny_llm", "messages": []}, "messages", "non-empty"),
        ("/v1/chat/completions", {"model": "tiny_llm", "messages": [{"role": "wizard",
                                                                     "content": "x"}]},
         "messages[0].role", "must be one of"),
        ("/v1/chat/completions", {"model": "tiny_llm", "messages": [{"role": "user",
                                  "content": [{"type": "image_url", "image_url": {}}]}]},
         "messages[0].content", "only text"),
        ("/v1/chat/completions", {"model": "tiny_llm", "messages": [{"role": "user",
                                  "content": "x"}], "tools": [{"type": "function"}]},
         "tools", "not supported"),
        ("/v1/chat/completions", {"model": "tiny_llm", "messages": "hello"}, "messages",
         "non-empty array"),
    ],
)  # fmt: skip
def test_generation_bad_input(served: ServerProcess, path: str, body: dict[str, Any],
                              param: str, text: str) -> None:  # fmt: skip
    status, doc = raw(served.openai_port, "POST", path, json.dumps(body).encode())  # type: ignore[attr-defined]
    assert status == 400, doc
    error = assert_openai_error(doc, param)
    assert text in error["message"], error
    assert error["type"] == "invalid_request_error"


def test_bad_input_with_the_openai_client(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="tiny_llm", prompt="x", temperature=0.7)
    assert e.value.status_code == 400
    assert e.value.body["param"] == "temperature"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="minilm_embed", input=[[101, 102]])


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/v1/completions", b"{not json", 400),
        ("POST", "/v1/completions", b"[1, 2]", 400),
        ("POST", "/v1/completions", b"", 400),
        ("POST", "/v1/completions", b"\xff\xfe", 400),
        ("POST", "/v1/completions", b"[" * 100_000, 400),
        ("POST", "/v1/embeddings", b'{"model": "minilm_embed", "input": ' + b"[" * 100 + b"]" *
         100 + b"}", 400),
        ("POST", "/v1/chat/completions", b'{"model": 5, "messages": []}', 400),
        ("GET", "/v1/completions", None, 405),
        ("POST", "/v1/models", b"{}", 405),
        ("GET", "/v1/nothing", None, 404),
        ("GET", "/v2/health/ready", None, 404),
    ],
)  # fmt: skip
def test_hostile_requests(served: ServerProcess, method: str, path: str, body: bytes | None,
                          status: int) -> None:  # fmt: skip
    got, doc = raw(served.openai_port, method, path, body)  # type: ignore[attr-defined]
    assert got == status, doc
    assert_openai_error(doc)


def test_error_from_the_model_mid_stream_is_an_error_event(served: ServerProcess) -> None:
    """max_tokens past tiny_llm's own limit: the model answers an INVALID_ARG error response,
    which comes back as an HTTP 400 since it is the first response."""
    body = {"model": "tiny_llm", "prompt": "x", "max_tokens": 5000, "stream": True}
    status, doc = raw(served.openai_port, "POST", "/v1/completions",  # type: ignore[attr-defined]
                      json.dumps(body).encode())  # fmt: skip
    assert status == 400, doc
    error = assert_openai_error(doc)
    assert "max_tokens must be between 1 and 4096" in error["message"]


# ---- cancellation ----------------------------------------------------------------------------


def _cancelled_count(served: ServerProcess) -> float:
    with urllib.request.urlopen(served.metrics_url, timeout=10) as r:
        text = r.read().decode()
    for line in text.splitlines():
        if line.startswith("tiny_llm_cancelled_total") and 'model="slow_llm"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_disconnect_mid_stream_cancels_the_generation(served: ServerProcess) -> None:
    """A client reads two chunks of a long stream (1000 words at 20 ms) and hangs up: the model
    sees is_cancelled() and stops (its counter goes up within a second or two, not 20 s)."""
    before = _cancelled_count(served)
    body = json.dumps({"model": "slow_llm", "messages": [{"role": "user", "content": "a b c"}],
                       "max_tokens": 1000, "stream": True}).encode()  # fmt: skip
    sock = socket.create_connection(("127.0.0.1", served.openai_port), timeout=10)  # type: ignore[attr-defined]
    try:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)  # fmt: skip
        received = b""
        while received.count(b"data: ") < 3:  # the role chunk and two words
            data = sock.recv(65536)
            assert data, received
            received += data
        assert b" 200 " in received.split(b"\r\n", 1)[0]
    finally:
        sock.close()
    started = time.monotonic()
    while _cancelled_count(served) < before + 1:
        assert time.monotonic() - started < 10, "the model never saw the cancellation"
        time.sleep(0.1)
    assert time.monotonic() - started < 10


def test_disconnect_before_a_non_streamed_answer_cancels(served: ServerProcess) -> None:
    before = _cancelled_count(served)
    body = json.dumps({"model": "slow_llm", "prompt": "a b", "max_tokens": 1000}).encode()
    sock = socket.create_connection(("127.0.0.1", served.openai_port), timeout=10)  # type: ignore[attr-defined]
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                 b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)  # fmt: skip
    time.sleep(0.3)  # the model is generating
    sock.close()
    started = time.monotonic()
    while _cancelled_count(served) < before + 1:
        assert time.monotonic() - started < 10, "the model never saw the cancellation"
        time.sleep(0.1)


# ---- in-process ------------------------------------------------------------------------------


def test_in_process_start_openai(tmp_path: Path) -> None:
    """``start_openai(server, host, port)`` on a caller's loop, with a small body limit."""
    from tritonlite import Server
    from tritonlite.frontends.openai import start_openai

    repo = llm_repository(tmp_path)
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def main(server: Server) -> None:
        frontend = await start_openai(server, "127.0.0.1", 0, max_body_bytes=1000)
        state["port"] = frontend.port
        state["stop"] = asyncio.Event()
        ready.set()
        await state["stop"].wait()
        await frontend.stop()

    with Server(repo) as server:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_until_complete, args=(main(server),))
        thread.start()
        try:
            assert ready.wait(30)
            port = state["port"]
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x",
                                   max_retries=0)  # fmt: skip
            c = client.completions.create(model="tiny_llm", prompt="one two", max_tokens=3)
            assert c.choices[0].text == "one two one"
            status, doc = raw(port, "POST", "/v1/completions", b'{"prompt": "' + b"a" * 2000
                              + b'"}')  # fmt: skip
            assert status == 413
            assert_openai_error(doc)
        finally:
            loop.call_soon_threadsafe(state["stop"].set)
            thread.join(30)
            loop.close()


def test_readme_example(served: ServerProcess) -> None:
    """The README's openai-client example, as written (its URL pointed at this server)."""
    import contextlib
    import io
    import re

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## OpenAI-compatible API"):]
    code = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    assert "http://localhost:9000/v1" in code
    code = code.replace("http://localhost:9000/v1",
                        f"http://127.0.0.1:{served.openai_port}/v1")  # type: ignore[attr-defined]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    lines = out.getvalue().splitlines()
    assert "minilm_embed" in lines[0] and "tiny_llm" in lines[0]
    assert lines[1] == "2 384 12"  # as the README's comments say
    assert lines[2] == "user: Say hello assistant: user:"
    assert lines[3] == " I was a bit of the state of the state o"  # textgen_rnn, greedy
