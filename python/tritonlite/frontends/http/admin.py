"""Triton's administrative HTTP APIs: statistics, the model repository (index, load, unload),
system and CUDA shared memory, trace settings and logging settings."""

from __future__ import annotations

import asyncio
import base64
import functools
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from ...shared_memory import CUDA_IPC_HANDLE_BYTES
from ...tracing import setting_from_json
from .. import http_codec as codec
from .context import Call, HttpContext
from .fields import as_bool, as_string, as_uint, optional_json, parse_version
from .reply import NOT_FOUND, Reply, bad, empty_json_reply, json_reply

# ---- statistics ------------------------------------------------------------------------------


def statistics_json(stats: list[dict[str, Any]]) -> dict[str, Any]:
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


async def statistics(ctx: HttpContext, call: Call) -> Reply:
    """``/v2/models/{m}[/versions/{v}]/stats``."""
    name, version = unquote(call.args[0] or ""), parse_version(call.args[1])
    return json_reply(statistics_json(ctx.server.statistics(name, version)))


async def all_statistics(ctx: HttpContext, call: Call) -> Reply:
    """``/v2/models/stats``: every model."""
    return json_reply(statistics_json(ctx.server.statistics("", None)))


# ---- repository ------------------------------------------------------------------------------


async def repository_index(ctx: HttpContext, call: Call) -> Reply:
    body = await ctx.call_body(call)
    request = optional_json(body)
    ready = as_bool(request["ready"], "ready") if "ready" in request else False
    index = []
    # The index scans the repository directories: off the event loop.
    loop = asyncio.get_running_loop()
    for entry in await loop.run_in_executor(None, ctx.server.repository_index, ready):
        index.append({k: v for k, v in entry.items() if k != "reason" or v})
    return json_reply(index)


async def repository_control(ctx: HttpContext, call: Call) -> Reply:
    """``/v2/repository/models/{m}/load|unload``."""
    name, action = unquote(call.args[0] or ""), call.args[1]
    body = await ctx.call_body(call)
    request = optional_json(body)
    params = request.get("parameters", {})
    if not isinstance(params, dict):
        raise bad("Unable to parse 'parameters': attempt to access JSON non-object as object")
    loop = asyncio.get_running_loop()
    if action == "unload":
        dependents = False
        if "unload_dependents" in params:
            dependents = as_bool(params["unload_dependents"], "unload_dependents")
        await loop.run_in_executor(
            ctx.executor,
            functools.partial(ctx.server.unload_model, name, unload_dependents=dependents),
        )
        return empty_json_reply()
    config = None
    files: dict[str, bytes] = {}
    for key, value in params.items():
        if key == "config":
            config = as_string(value, "config")
        elif key.startswith("file:"):
            as_string(key, "parameters")
            try:
                files[key] = base64.b64decode(as_string(value, key), validate=True)
            except ValueError:  # binascii.Error, or text that is not ASCII
                raise bad(
                    f"failed to load '{name}': file override '{key}' is not valid base64"
                ) from None
    await loop.run_in_executor(
        ctx.executor, ctx.server.load_model, name, config, files or None
    )
    return empty_json_reply()


# ---- shared memory ---------------------------------------------------------------------------


def _region(call: Call) -> str | None:
    return unquote(call.args[0]) if call.args[0] else None


async def system_shm_status(ctx: HttpContext, call: Call) -> Reply:
    return json_reply(ctx.shm.status(_region(call)))


async def system_shm_change(ctx: HttpContext, call: Call) -> Reply:
    """``register`` / ``unregister`` a system shared-memory region."""

    def register(region: str, body: bytes) -> None:
        request = _register_request(body, ("key", "byte_size"))
        key = as_string(request["key"], "key")
        offset = as_uint(request.get("offset", 0), "offset")
        byte_size = as_uint(request["byte_size"], "byte_size")
        ctx.shm.register(region, key, offset, byte_size)

    return await _shm_change(ctx, call, ctx.shm, register)


async def cuda_shm_status(ctx: HttpContext, call: Call) -> Reply:
    return json_reply(ctx.cuda_shared_memory.status(_region(call)))


async def cuda_shm_change(ctx: HttpContext, call: Call) -> Reply:
    """``register`` / ``unregister`` a CUDA shared-memory region."""

    def register(region: str, body: bytes) -> None:
        request = _register_request(body, ("raw_handle", "device_id", "byte_size"))
        handle = request["raw_handle"]
        if not isinstance(handle, dict) or "b64" not in handle:
            raise bad("Unable to parse 'raw_handle': expected an object with 'b64'")
        try:
            raw = base64.b64decode(as_string(handle["b64"], "b64"), validate=True)
        except ValueError:  # binascii.Error, or text that is not ASCII
            raw = b""
        if len(raw) != CUDA_IPC_HANDLE_BYTES:  # Triton's text
            raise bad("'raw_handle' must be a valid base64 encoded cudaIpcMemHandle_t")
        device_id = as_uint(request["device_id"], "device_id")
        byte_size = as_uint(request["byte_size"], "byte_size")
        ctx.cuda_shared_memory.register(region, raw, device_id, byte_size)

    return await _shm_change(ctx, call, ctx.cuda_shared_memory, register)


async def _shm_change(
    ctx: HttpContext, call: Call, registry: Any, register: Callable[[str, bytes], None]
) -> Reply:
    region, action = _region(call), call.args[1]
    body = await ctx.call_body(call)
    if action == "unregister":
        registry.unregister(region)
    elif region is None:
        return NOT_FOUND
    else:
        register(region, body)
    return empty_json_reply()


def _register_request(body: bytes, required: tuple[str, ...]) -> dict[str, Any]:
    """A register request: a JSON object with the ``required`` members (Triton's texts)."""
    request = codec.loads(body)
    if not isinstance(request, dict):
        raise bad(f"Shared memory register request has no '{required[0]}' field")
    for member in required:
        if member not in request:
            raise bad(f"Shared memory register request has no '{member}' field")
    return request


# ---- trace and logging -----------------------------------------------------------------------


async def trace(ctx: HttpContext, call: Call) -> Reply:
    """``/v2/trace/setting`` and ``/v2/models/{m}/trace/setting``."""
    model = unquote(call.args[0]) if call.args and call.args[0] else None
    method = call.method
    body = await ctx.call_body(call)
    if model is not None and not ctx.server.model_ready(model, None):
        raise bad(f"Request for unknown model : {model}")
    tracing = ctx.server.tracing
    if method == "GET":
        return json_reply(tracing.settings(model))
    return json_reply(tracing.update(setting_from_json(codec.loads(body)), model))


async def logging(ctx: HttpContext, call: Call) -> Reply:
    """``/v2/logging``."""
    if call.method == "GET":
        return json_reply(ctx.settings.log())
    changes = codec.loads(await ctx.call_body(call))
    return json_reply(ctx.settings.update_log(changes if isinstance(changes, dict) else {}))
