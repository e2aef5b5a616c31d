"""Health, server and model metadata, model readiness and model configuration (KServe v2 and
Triton's ``/config``)."""

from __future__ import annotations

from urllib.parse import unquote

from ...config import config_to_json
from .context import Call, HttpContext
from .fields import parse_version
from .reply import OK, Reply, error_reply, json_reply


async def health(ctx: HttpContext, call: Call) -> Reply:
    """``/v2/health/live|ready``: 200 or 400 with no body."""
    ok = ctx.server.is_live() if call.args[0] == "live" else ctx.server.is_ready()
    return OK if ok else Reply(400, b"", {})


async def server_metadata(ctx: HttpContext, call: Call) -> Reply:
    return json_reply(ctx.server.metadata())


async def model_ready(ctx: HttpContext, call: Call) -> Reply:
    v = parse_version(call.args[1])
    if v != 0 and ctx.server.model_ready(unquote(call.args[0] or ""), v):
        return OK
    return error_reply(400, "Model version not ready")


async def model_metadata(ctx: HttpContext, call: Call) -> Reply:
    name, v = unquote(call.args[0] or ""), parse_version(call.args[1])
    ctx.loaded(name, v)
    return json_reply(ctx.server.model_metadata(name, v))


async def model_config(ctx: HttpContext, call: Call) -> Reply:
    """The config as Triton prints it (``config.to_json``, the one printer)."""
    config = ctx.loaded(unquote(call.args[0] or ""), parse_version(call.args[1])).config
    return json_reply(config_to_json(config))
