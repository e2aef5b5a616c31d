"""The live dashboard on the HTTP port: ``/dashboard`` (the page, its script and stylesheet,
static files shipped in the package under ``tritonlite/dashboard/``) and
``/dashboard/api/state`` (what the page polls).

The state is one JSON object: the server (id, version, model control mode), the latency
histograms' bucket bounds, and per model version its state and reason (every model the
repository knows, loaded or not), instance count, queue depth, request counts, inference count,
batch sizes executed (``{size: executions}``), cumulative p50/p90/p99 per latency kind
(``latency.percentiles``) and the request-duration histogram, from which the page computes
percentiles over its poll interval. Reading it is the ``statistics`` restricted-API category;
the page's load/unload buttons call Triton's repository API (``model-repository``), so both
restrictions hold for the dashboard as for any client. ``start_http(dashboard=False)``
(``--allow-dashboard=false``) answers 404 on these paths.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from ... import latency
from ...errors import TritonError
from .context import Call, HttpContext
from .reply import NOT_FOUND, Reply, json_reply

STATIC_DIR = Path(__file__).resolve().parents[2] / "dashboard"

#: The only files served, with their content types (nothing else under STATIC_DIR is reachable).
_FILES = {
    "index.html": "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
_cache: dict[str, bytes] = {}


def _static(name: str) -> bytes:
    body = _cache.get(name)
    if body is None:
        body = (STATIC_DIR / name).read_bytes()
        _cache[name] = body
    return body


async def page(ctx: HttpContext, call: Call) -> Reply:
    """``/dashboard``, ``/dashboard/`` and ``/dashboard/<file>``."""
    if not ctx.dashboard:
        return NOT_FOUND
    name = call.args[0] or "index.html"
    content_type = _FILES.get(name)
    if content_type is None:
        return NOT_FOUND
    body = _cache.get(name)
    if body is None:  # first time: read off the event loop
        body = await asyncio.get_running_loop().run_in_executor(None, _static, name)
    return Reply(200, body, {"Content-Type": content_type, "Cache-Control": "no-cache"})


def _instances(config: Any) -> int:
    return sum(max(1, g.count) for g in config.instance_group) or 1


def model_rows(server: Any, index: list[dict[str, str]]) -> list[dict[str, Any]]:
    """One row per model version of ``index`` (Triton's repository index), with the live
    statistics of the loaded ones."""
    stats = {(s["name"], s["version"]): s for s in _statistics(server)}
    rows: list[dict[str, Any]] = []
    listed = set()
    for entry in index:
        name, version = entry["name"], entry.get("version", "")
        row: dict[str, Any] = {
            "name": name,
            "version": version,
            "state": entry.get("state", ""),
            "reason": entry.get("reason", ""),
        }
        s = stats.get((name, version))
        if s is not None:
            listed.add((name, version))
            row.update(_live(server, s))
        rows.append(row)
    for (name, version), s in sorted(stats.items()):  # served without a repository entry
        if (name, version) not in listed:
            rows.append({"name": name, "version": version, "state": "READY", "reason": "",
                         **_live(server, s)})  # fmt: skip
    return rows


def _statistics(server: Any) -> list[dict[str, Any]]:
    """Every loaded version's statistics; a model unloaded meanwhile is left out."""
    try:
        return list(server.statistics("", None, histograms=True))
    except TritonError:  # a model went away between listing and reading: one at a time
        out: list[dict[str, Any]] = []
        for name in server.model_names():
            try:
                out += server.statistics(name, histograms=True)
            except TritonError:
                continue
        return out


def _live(server: Any, s: dict[str, Any]) -> dict[str, Any]:
    inf = s.get("inference_stats", {})
    try:
        config = server.get_model(s["name"], int(s["version"])).config
        instances, max_batch = _instances(config), int(config.max_batch_size)
    except TritonError:  # unloaded since the statistics were read
        instances, max_batch = 0, 0
    return {
        "instances": instances,
        "max_batch_size": max_batch,
        "pending": int(s.get("pending_request_count", 0)),
        "success": int(inf.get("success", {}).get("count", 0)),
        "failure": int(inf.get("fail", {}).get("count", 0)),
        "inference_count": int(s.get("inference_count", 0)),
        "execution_count": int(s.get("execution_count", 0)),
        "batch_sizes": {
            str(b["batch_size"]): int(b.get("compute_infer", {}).get("count", 0))
            for b in s.get("batch_stats", [])
        },
        "percentiles_ms": latency.percentiles(s),
        "request_histogram": list(s.get("latency_histograms", {}).get("request", [])),
    }


async def api_state(ctx: HttpContext, call: Call) -> Reply:
    """``/dashboard/api/state``."""
    if not ctx.dashboard:
        return NOT_FOUND
    server = ctx.server
    loop = asyncio.get_running_loop()
    index = await loop.run_in_executor(None, server.repository_index, False)  # a disk scan
    repository = getattr(server, "repository", None)
    meta = server.metadata()
    return json_reply(
        {
            "time": time.time(),
            "server": {
                "id": meta.get("name", ""),
                "version": meta.get("version", ""),
                "control_mode": getattr(repository, "control_mode", "none"),
            },
            "latency_bounds_us": list(latency.BOUNDS_US),
            "models": model_rows(server, index),
        }
    )
