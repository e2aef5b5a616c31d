"""onnxruntime's process-wide thread pools (``--backend-config=onnxruntime,...``).

This module owns the one decision onnxruntime makes once per process: whether its environment
has global intra-op / inter-op thread pools that every session shares, and their sizes.
Triton's onnxruntime backend spells it ``--backend-config=onnxruntime,enable-global-threadpool=
<0|1>`` with ``intra_op_thread_count=<N>`` / ``inter_op_thread_count=<N>`` (0: for intra-op,
the CPUs this process may use, see ``default_intra_threads``; for inter-op, onnxruntime's
choice).

Without it (Triton's default, and the default of the in-process ``tritonlite.Server``) every
session has pools of its own: one or more threads per model instance, created with the session,
so N models cost N x instances x (intra-op threads - 1) threads. ``tritonlite-server`` turns it on
by default (see cli.py): the server process is its own, and one pool sized to the cores serves
any number of models without oversubscribing them. ``enable-global-threadpool=0`` restores
per-session pools.

onnxruntime decides when it creates its environment, i.e. with the first session of the
process, and its Python API then refuses any session that does not match (a per-session session
in an environment with global pools, or the other way round). So: the server whose model makes
the first session decides, for the whole process; a model's own ``intra_op_thread_count`` /
``inter_op_thread_count`` / ``execution_mode`` parameters are ignored with global pools (with a
warning, as Triton ignores them); an environment made before by other code is detected by its
error and followed. The catch with global pools on: other code in the same process (an
``in_process`` python model that creates its own onnxruntime sessions) must set
``use_per_session_threads = False`` too. Importing this module does not import onnxruntime.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from ..errors import INVALID_ARG, TritonError

_log = logging.getLogger("tritonlite.backends.onnxruntime")

#: --backend-config keys for the onnxruntime backend this module reads.
ENABLE_KEY = "enable-global-threadpool"
INTRA_KEY = "intra_op_thread_count"
INTER_KEY = "inter_op_thread_count"

_lock = threading.Lock()
_env: str | None = None  # "global" / "per_session" once the first session decided; None before
_warned: set[str] = set()  # models told that their thread parameters are ignored


class PoolSettings:
    """What one server asks for: global pools on/off and their sizes (0: onnxruntime's)."""

    __slots__ = ("enabled", "intra", "inter")

    def __init__(self, enabled: bool = False, intra: int = 0, inter: int = 0) -> None:
        self.enabled, self.intra, self.inter = enabled, intra, inter


def _text(value: Any) -> str | None:
    return None if value is None else str(value).strip()


def parse(setting: Callable[[str], Any]) -> PoolSettings:
    """A server's settings from ``setting(key)`` (its --backend-config value for onnxruntime,
    None when unset). Raises TritonError (INVALID_ARG) naming a bad value."""
    enabled = _text(setting(ENABLE_KEY))
    if enabled not in (None, "0", "1"):
        raise TritonError(
            f"--backend-config onnxruntime,{ENABLE_KEY}={enabled}: expected 0 or 1", INVALID_ARG
        )
    counts = []
    for key in (INTRA_KEY, INTER_KEY):
        text = _text(setting(key))
        if text is not None and not (text.isdigit() and int(text) < 2**31):
            raise TritonError(
                f"--backend-config onnxruntime,{key}={text}: expected a non-negative integer",
                INVALID_ARG,
            )
        counts.append(int(text) if text else 0)
    return PoolSettings(enabled == "1", counts[0], counts[1])


def default_intra_threads() -> int:
    """The shared intra-op pool's size when not given: the CPUs this process may use (its
    affinity mask capped by its cgroup's CPU quota, as the spin-wait budget), at least 1.
    onnxruntime's own choice counts the machine's cores: a server pinned to one CPU (taskset,
    a Kubernetes limit of 1) then ran a pool larger than its CPU, and the mlp of
    benchmarks/bench_pinned.py lost a third of its rows/s against per-session pools of 1."""
    from .. import _core

    return max(1, int(_core.cpu_budget()))


def prepare(settings: PoolSettings) -> bool:
    """Call before creating a session: the first call of the process sets up the environment
    as ``settings`` ask. Whether sessions must use the global pools."""
    global _env
    with _lock:
        if _env is None:
            if settings.enabled:
                from onnxruntime.capi import _pybind_state

                _pybind_state.set_global_thread_pool_sizes(
                    settings.intra or default_intra_threads(), settings.inter)
                _env = "global"
            else:
                _env = "per_session"
            _log.info("onnxruntime thread pools: %s", _env.replace("_", "-"))
        elif settings.enabled != (_env == "global"):
            _log.warning(
                "onnxruntime's thread pools are per process and already %s: this server's "
                "%s=%d does not apply", _env.replace("_", "-"), ENABLE_KEY, int(settings.enabled),
            )  # fmt: skip
        return _env == "global"


def configure(options: Any, settings: PoolSettings, model: str, own_threads: bool) -> bool:
    """Set ``options`` (an ``ort.SessionOptions``) for the process's environment; whether the
    session uses the global pools (then its own thread counts must not be set). ``own_threads``:
    the model sets its own thread parameters (ignored, with a warning, under global pools)."""
    if not prepare(settings):
        return False
    options.use_per_session_threads = False
    if own_threads and model not in _warned:
        _warned.add(model)
        _log.warning(
            "model '%s': its intra_op_thread_count / inter_op_thread_count / execution_mode "
            "parameters are ignored: onnxruntime's global thread pools are on (%s=1)",
            model, ENABLE_KEY,
        )  # fmt: skip
    return True


def follow_environment(exc: BaseException) -> bool:
    """A session failed because onnxruntime's environment (made by other code in the process)
    does not match what we assumed: adopt what it is and return True (create the session again
    with new options); False for any other error."""
    global _env
    text = str(exc)
    if "EnvCreatedWithGlobalThreadPools" in text:
        found = "per_session"
    elif "use_per_session_threads must be false" in text:
        found = "global"
    else:
        return False
    with _lock:
        if _env == found:
            return False  # it already was: a different failure
        _env = found
    _log.warning(
        "onnxruntime's environment was created by other code in this process with %s thread "
        "pools: every session uses them", found.replace("_", "-"),
    )  # fmt: skip
    return True
