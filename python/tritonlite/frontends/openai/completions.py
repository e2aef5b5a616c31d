"""``POST /v1/completions`` and ``POST /v1/chat/completions`` on generative models (Triton's
LLM tensor convention, see ``models``): the request becomes ``text_input`` (the prompt, or the
chat rendered as ``<role>: <content>`` lines and a final ``assistant:``), ``max_tokens``
(``max_completion_tokens`` first for chat; 16 when absent, as Triton's frontend), ``stream``,
and the sampling parameters the model declares: ``temperature``, ``top_p``,
``frequency_penalty``, ``presence_penalty``, ``seed``, ``stop`` (as ``stop_words``). A sampling
parameter the model does not declare is refused, never dropped silently.

Each ``text_output`` is one chunk: streamed as server-sent events (``data: {...}`` and a last
``data: [DONE]``), or joined into one answer. Usage comes from the model's
``num_input_tokens``/``num_output_tokens`` outputs when it has them (as Triton's vLLM backend);
``finish_reason`` is ``length`` when the model made exactly ``max_tokens`` tokens, else
``stop``. A client that goes away (or a stream that falls ``MAX_BUFFERED`` responses behind)
cancels the request in the core: the model sees ``is_cancelled()``.
"""

from __future__ import annotations

import asyncio
import codecs
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from ..._proto import model_config_pb2 as mc
from ...errors import TritonError
from .errors import OpenAIError, bad_request, from_triton
from .fields import boolean, integer, mapping, number, refuse_unknown, string, unsupported
from .models import ModelInfo, model_info

#: max_tokens when the request has none (Triton's OpenAI frontend's --default-max-tokens).
DEFAULT_MAX_TOKENS = 16
MAX_TOKENS_LIMIT = 1 << 20
#: Responses of a stream waiting for a slow client before the request is cancelled.
MAX_BUFFERED = 4096
MAX_PROMPT_CHARS = 4 << 20
MAX_MESSAGES = 4096
MAX_STOP = 4
CHAT_ROLES = ("system", "developer", "user", "assistant", "tool")

_COMMON = (
    "model", "max_tokens", "temperature", "top_p", "n", "stream", "stream_options", "stop",
    "presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "user", "seed",
)  # fmt: skip
_COMPLETION_FIELDS = (*_COMMON, "prompt", "echo", "best_of", "suffix")
_CHAT_FIELDS = (
    *_COMMON, "messages", "max_completion_tokens", "top_logprobs", "tools", "tool_choice",
    "functions", "function_call", "parallel_tool_calls", "response_format", "metadata", "store",
)  # fmt: skip

#: Sampling fields -> (model input, lowest, highest).
_SAMPLING = {
    "temperature": ("temperature", 0.0, 2.0),
    "top_p": ("top_p", 0.0, 1.0),
    "frequency_penalty": ("frequency_penalty", -2.0, 2.0),
    "presence_penalty": ("presence_penalty", -2.0, 2.0),
}
_NUMPY = {
    mc.TYPE_BOOL: np.bool_, mc.TYPE_INT8: np.int8, mc.TYPE_INT16: np.int16,
    mc.TYPE_INT32: np.int32, mc.TYPE_INT64: np.int64, mc.TYPE_UINT8: np.uint8,
    mc.TYPE_UINT16: np.uint16, mc.TYPE_UINT32: np.uint32, mc.TYPE_UINT64: np.uint64,
    mc.TYPE_FP16: np.float16, mc.TYPE_FP32: np.float32, mc.TYPE_FP64: np.float64,
}  # fmt: skip


@dataclass
class Generation:
    """A validated request: what goes to the model, and how to answer."""

    info: ModelInfo
    chat: bool
    inputs: dict[str, np.ndarray]
    stream: bool
    include_usage: bool
    max_tokens: int | None  # sent to the model (None: the model has no max_tokens input)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created: int = field(default_factory=lambda: int(time.time()))


# ---- the request -----------------------------------------------------------------------------


def parse_request(server: Any, doc: dict[str, Any], chat: bool) -> Generation:
    refuse_unknown(doc, _CHAT_FIELDS if chat else _COMPLETION_FIELDS)
    info = model_info(server, doc.get("model"))
    endpoint = "/v1/chat/completions" if chat else "/v1/completions"
    if not info.generative:
        raise bad_request(
            f"model '{info.name}' is not a generative model: {endpoint} needs a model with a "
            "BYTES input 'text_input' and a BYTES output 'text_output'", param="model",
        )  # fmt: skip
    _refuse_unsupported(doc, chat)
    prompt = _chat_prompt(doc.get("messages")) if chat else _prompt(doc.get("prompt"))
    stream = boolean(doc, "stream")
    options = mapping(doc, "stream_options")
    include_usage = False
    if options is not None:
        if not stream:
            raise bad_request("`stream_options` can only be used when `stream` is True",
                              param="stream_options")  # fmt: skip
        refuse_unknown(options, ("include_usage",))
        include_usage = boolean(options, "include_usage")
    max_tokens = integer(doc, "max_tokens", 1, MAX_TOKENS_LIMIT)
    if chat:
        max_tokens = integer(doc, "max_completion_tokens", 1, MAX_TOKENS_LIMIT) or max_tokens
    string(doc, "user")

    inputs: dict[str, np.ndarray] = {"text_input": np.array([prompt.encode()], dtype=np.object_)}
    sent_max: int | None = None
    if "max_tokens" in info.inputs:
        sent_max = max_tokens or DEFAULT_MAX_TOKENS
        inputs["max_tokens"] = _typed(info, "max_tokens", sent_max)
    elif max_tokens is not None:
        _not_declared(info, "max_tokens" if doc.get("max_tokens") is not None
                      else "max_completion_tokens", "max_tokens")  # fmt: skip
    if "stream" in info.inputs:
        inputs["stream"] = _typed(info, "stream", stream)
    for key, (name, lo, hi) in _SAMPLING.items():
        value = number(doc, key, lo, hi)
        if value is not None:
            inputs[name] = _typed(info, name, value) if name in info.inputs else _not_declared(
                info, key, name)  # fmt: skip
    seed = integer(doc, "seed", -(1 << 63), (1 << 64) - 1)
    if seed is not None:
        inputs["seed"] = _typed(info, "seed", seed) if "seed" in info.inputs else _not_declared(
            info, "seed", "seed")  # fmt: skip
    stop = _stop(doc.get("stop"))
    if stop:
        if info.inputs.get("stop_words") != mc.TYPE_STRING:
            _not_declared(info, "stop", "stop_words")
        inputs["stop_words"] = np.array([s.encode() for s in stop], dtype=np.object_)
    if info.batched:
        inputs = {k: v.reshape(1, -1) for k, v in inputs.items()}
    return Generation(info, chat, inputs, stream, include_usage, sent_max)


def _refuse_unsupported(doc: dict[str, Any], chat: bool) -> None:
    for key in ("n", "best_of"):
        value = integer(doc, key, 1, 128)
        if value is not None and value != 1:
            raise OpenAIError(f"Received {key}={value}, but only a single choice ({key}=1) is "
                              "supported", 400, param=key, code="unsupported_parameter")  # fmt: skip
    if doc.get("logit_bias"):
        unsupported(doc, "logit_bias")
    if chat:
        if doc.get("logprobs") not in (None, False):
            unsupported(doc, "logprobs")
        unsupported(doc, "top_logprobs")
        if doc.get("tools"):
            unsupported(doc, "tools")
        if doc.get("tool_choice") not in (None, "none"):
            unsupported(doc, "tool_choice")
        unsupported(doc, "functions")
        unsupported(doc, "function_call")
        response_format = doc.get("response_format")
        if response_format is not None and response_format != {"type": "text"}:
            unsupported(doc, "response_format", " (only {\"type\": \"text\"})")
        boolean(doc, "store")
        boolean(doc, "parallel_tool_calls")
        mapping(doc, "metadata")
    else:
        if doc.get("logprobs") not in (None, 0):
            unsupported(doc, "logprobs")
        if boolean(doc, "echo"):
            unsupported(doc, "echo")
        unsupported(doc, "suffix")


def _prompt(value: Any) -> str:
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
        value = value[0]
    if isinstance(value, list):
        raise OpenAIError("only a single string prompt is supported", 400, param="prompt",
                          code="unsupported_parameter")  # fmt: skip
    if not isinstance(value, str):
        raise bad_request("'prompt' must be a string", param="prompt")
    if not value:
        raise bad_request("prompt must be non-empty", param="prompt")
    if len(value) > MAX_PROMPT_CHARS:
        raise bad_request(f"'prompt' is longer than {MAX_PROMPT_CHARS} characters", param="prompt")
    return value


def _chat_prompt(messages: Any) -> str:
    """The conversation as ``<role>: <content>`` lines, then ``assistant:`` (the model's turn)."""
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty array", param="messages")
    if len(messages) > MAX_MESSAGES:
        raise bad_request(f"'messages' has more than {MAX_MESSAGES} items", param="messages")
    lines, size = [], 0
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise bad_request(f"'{where}' must be an object", param=where)
        refuse_unknown(message, ("role", "content", "name"))
        role = message.get("role")
        if role not in CHAT_ROLES:
            raise bad_request(f"'{where}.role' must be one of {', '.join(CHAT_ROLES)}, got "
                              f"{role!r:.40}", param=f"{where}.role")  # fmt: skip
        string(message, "name")
        content = _content(message.get("content"), where)
        size += len(content)
        if size > MAX_PROMPT_CHARS:
            raise bad_request(f"'messages' hold more than {MAX_PROMPT_CHARS} characters",
                              param="messages")  # fmt: skip
        lines.append(f"{role}: {content}")
    lines.append("assistant:")
    return "\n".join(lines)


def _content(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: text only
        texts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text":
                raise OpenAIError(f"'{where}.content[{j}]': only text content parts are "
                                  "supported", 400, param=f"{where}.content",
                                  code="unsupported_parameter")  # fmt: skip
            refuse_unknown(part, ("type", "text"))
            text = part.get("text")
            if not isinstance(text, str):
                raise bad_request(f"'{where}.content[{j}].text' must be a string",
                                  param=f"{where}.content")  # fmt: skip
            texts.append(text)
        return "".join(texts)
    raise bad_request(f"'{where}.content' must be a string or an array of text parts",
                      param=f"{where}.content")  # fmt: skip


def _stop(value: Any) -> list[str]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or len(items) > MAX_STOP or not all(
        isinstance(s, str) and 0 < len(s) <= 1024 for s in items
    ):
        raise bad_request(f"'stop' must be a string or an array of at most {MAX_STOP} non-empty "
                          "strings", param="stop")  # fmt: skip
    return items


def _typed(info: ModelInfo, name: str, value: Any) -> np.ndarray:
    """``value`` as the model's declared datatype for input ``name`` (range-checked)."""
    dtype = _NUMPY.get(info.inputs[name])
    if dtype is None:
        raise OpenAIError(
            f"model '{info.name}' declares input '{name}' as "
            f"{mc.DataType.Name(info.inputs[name])}; a number or boolean type is expected",
            500, type="server_error",
        )  # fmt: skip
    if np.issubdtype(dtype, np.integer):
        limits = np.iinfo(dtype)
        if not limits.min <= int(value) <= limits.max:
            raise bad_request(f"'{name}' {value} does not fit model '{info.name}''s "
                              f"{np.dtype(dtype).name} input", param=name)  # fmt: skip
        return np.array([int(value)], dtype=dtype)
    return np.array([value], dtype=dtype)


def _not_declared(info: ModelInfo, key: str, name: str) -> np.ndarray:
    raise OpenAIError(
        f"model '{info.name}' does not support '{key}': it has no '{name}' input", 400,
        param=key, code="unsupported_parameter",
    )  # fmt: skip


# ---- running it ------------------------------------------------------------------------------


class _Responses:
    """The model's responses as an async iterator of (error, outputs, final); ``cancel()`` stops
    the request in the core (idempotent)."""

    def __init__(self, server: Any, gen: Generation) -> None:
        self._queue: asyncio.Queue[tuple[Any, Any, bool]] = asyncio.Queue()
        self._overflowed = False
        self.cancel: Callable[[], Any]
        info = gen.info
        if info.decoupled:
            handle = server.submit_stream(info.name, gen.inputs, self._on_response)
            self.cancel = handle.cancel
        else:
            future = server.submit(info.name, gen.inputs)
            future.add_done_callback(self._on_done)
            self.cancel = future.cancel

    def _on_response(self, error: Any, outputs: Any, final: bool) -> None:
        if self._overflowed:
            return
        if self._queue.qsize() >= MAX_BUFFERED and not final and error is None:
            # The client reads slower than the model produces: stop the model rather than
            # buffer without bound.
            self._overflowed = True
            self.cancel()
            error = TritonError(f"the client read too slowly: {MAX_BUFFERED} responses were "
                                "waiting to be sent; the request was cancelled", "UNAVAILABLE")
            final = True  # fmt: skip
        self._queue.put_nowait((error, outputs, final))

    def _on_done(self, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            self._queue.put_nowait((TritonError("request cancelled", "CANCELLED"), None, True))
        elif future.exception() is not None:
            self._queue.put_nowait((future.exception(), None, True))
        else:
            self._queue.put_nowait((None, future.result(), True))

    async def get(self) -> tuple[Any, Any, bool]:
        return await self._queue.get()


class _Decoder:
    """Text and usage from the responses: UTF-8 is decoded incrementally (a character split
    across two responses comes out whole), invalid bytes become U+FFFD."""

    def __init__(self, gen: Generation) -> None:
        self.gen = gen
        self.utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None

    def text(self, outputs: Any, final: bool) -> str:
        raw = b""
        for name, tensor in outputs or ():
            if name == "text_output":
                values = tensor.numpy().reshape(-1)
                if values.size != 1:
                    raise OpenAIError(f"model '{self.gen.info.name}' returned {values.size} "
                                      "strings in 'text_output'; 1 is expected", 500,
                                      type="server_error")  # fmt: skip
                value = values[0]
                raw = value if isinstance(value, bytes) else str(value).encode()
            elif name == "num_input_tokens" and self.prompt_tokens is None:
                self.prompt_tokens = _count(tensor)
            elif name == "num_output_tokens":
                self.completion_tokens = (self.completion_tokens or 0) + _count(tensor)
        return self.utf8.decode(raw, final)

    def usage(self) -> dict[str, int] | None:
        if self.prompt_tokens is None or self.completion_tokens is None:
            return None
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }

    def finish_reason(self) -> str:
        if self.gen.max_tokens is not None and self.completion_tokens == self.gen.max_tokens:
            return "length"
        return "stop"


def _count(tensor: Any) -> int:
    values = tensor.numpy().reshape(-1)
    return int(values[0]) if values.size and 0 <= int(values[0]) < 1 << 62 else 0


async def run_generation(server: Any, gen: Generation) -> dict[str, Any] | AsyncIterator[bytes]:
    """The answer: a JSON document, or (``stream``) the server-sent events. Errors before the
    first response raise ``OpenAIError``; later ones are sent as an ``error`` event."""
    try:
        responses = _Responses(server, gen)
    except TritonError as e:
        raise from_triton(e) from None
    try:
        first = await responses.get()
        if first[0] is not None:
            raise from_triton(first[0])
    except BaseException:
        responses.cancel()  # the client went away (handler cancelled) or the model failed
        raise
    if gen.stream:
        return _events(gen, responses, first)
    try:
        return await _collect(gen, responses, first)
    except BaseException:
        responses.cancel()
        raise


async def _collect(gen: Generation, responses: _Responses, item: tuple[Any, Any, bool]) -> dict[
    str, Any
]:
    decoder = _Decoder(gen)
    pieces = []
    while True:
        error, outputs, final = item
        if error is not None:
            raise from_triton(error)
        pieces.append(decoder.text(outputs, final))
        if final:
            break
        item = await responses.get()
    text = "".join(pieces)
    choice: dict[str, Any] = {"index": 0}
    if gen.chat:
        choice["message"] = {"role": "assistant", "content": text}
    else:
        choice["text"] = text
    choice["logprobs"] = None
    choice["finish_reason"] = decoder.finish_reason()
    doc: dict[str, Any] = {
        "id": ("chatcmpl-" if gen.chat else "cmpl-") + gen.id,
        "object": "chat.completion" if gen.chat else "text_completion",
        "created": gen.created,
        "model": gen.info.name,
        "choices": [choice],
    }
    usage = decoder.usage()
    if usage is not None:
        doc["usage"] = usage
    return doc


def _event(doc: Any) -> bytes:
    return b"data: " + orjson.dumps(doc) + b"\n\n"


async def _events(gen: Generation, responses: _Responses, item: tuple[Any, Any, bool]) -> (
    AsyncIterator[bytes]
):
    decoder = _Decoder(gen)
    base = {
        "id": ("chatcmpl-" if gen.chat else "cmpl-") + gen.id,
        "object": "chat.completion.chunk" if gen.chat else "text_completion",
        "created": gen.created,
        "model": gen.info.name,
    }

    def chunk(text: str | None, finish: str | None) -> bytes:
        if gen.chat:
            delta = {} if text is None else {"content": text}
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
        return _event({**base, "choices": [choice]})

    done = False
    try:
        if gen.chat:
            yield _event({**base, "choices": [{"index": 0, "delta": {"role": "assistant",
                          "content": ""}, "logprobs": None, "finish_reason": None}]})  # fmt: skip
        while True:
            error, outputs, final = item
            if error is not None:
                done = True
                yield _event(from_triton(error).doc())
                return
            text = decoder.text(outputs, final)
            if text:
                yield chunk(text, None)
            if final:
                break
            item = await responses.get()
        done = True
        yield chunk(None, decoder.finish_reason())
        usage = decoder.usage()
        if gen.include_usage and usage is not None:
            yield _event({**base, "choices": [], "usage": usage})
        yield b"data: [DONE]\n\n"
    finally:
        if not done:  # the client went away mid-stream: stop the model
            responses.cancel()
