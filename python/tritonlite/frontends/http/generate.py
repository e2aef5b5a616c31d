"""Triton's generate extension: ``/generate`` (one JSON response) and ``/generate_stream``
(server-sent events, one per response of a decoupled model). Inputs are the request's members
named like model inputs; every other member is a parameter, as Triton reads them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any
from urllib.parse import unquote

import numpy as np

from ...errors import TritonError
from .. import http_codec as codec
from .. import request_parameters
from .context import Call, HttpContext
from .fields import as_string, parse_version
from .reply import HTTP_CODES, JSON, Reply, bad

#: generate_stream: responses of a decoupled model waiting for a slow client before the request
#: is cancelled and the stream ends with an error.
MAX_GENERATE_BUFFERED = 1024


async def generate(ctx: HttpContext, call: Call) -> Reply:
    """``POST /v2/models/{m}[/versions/{v}]/generate`` and ``.../generate_stream``."""
    body = await ctx.body(call.headers, call.read_body)
    name = unquote(call.args[0] or "")
    stream = call.args[2] == "generate_stream"
    return await _generate(ctx, name, call.args[1], body, stream)


async def _generate(
    ctx: HttpContext, model: str, version_text: str | None, body: bytes, stream: bool
) -> Reply:
    version = parse_version(version_text)
    loaded = ctx.loaded(model, version)
    request = codec.loads(body, members=True)
    if not isinstance(request, dict):
        raise bad("generate request must be a JSON object")
    metadata = {t["name"]: t for t in ctx.server.model_metadata(model, version)["inputs"]}
    request_id = as_string(request["id"], "id") if "id" in request else ""
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

        handle = ctx.server.submit_stream(
            model, inputs, on_response, None, version, **submit_kwargs,
        )  # fmt: skip
        cancel = handle.cancel
    else:
        future = ctx.server.submit(model, inputs, None, version, **submit_kwargs)

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
        return await _reply(model, loaded, request_id, stream, queue, cancel)
    except BaseException:
        cancel()  # the client is gone (handler cancelled) or the reply failed
        raise


async def _reply(
    model: str, loaded: Any, request_id: str, stream: bool,
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
            raise bad(
                "generate expects model to produce exactly 1 response, use generate stream "
                "for model that generates various number of responses"
            )
        return Reply(200, chunk(None, answers[0]), {"Content-Type": JSON})

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
                raise bad(
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
                raise bad(f"The schema can not convert input '{name}' to tensor with proper shape")
            remaining //= d
    for i in range(len(shape) - 1, -1, -1):
        if shape[i] == -1:
            shape[i], remaining = remaining, 1
    if remaining != 1:
        raise bad(f"The schema can not convert input '{name}' to tensor with proper shape")
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
