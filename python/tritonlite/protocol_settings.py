"""Log settings of Triton's logging extension, one store per Server.

Owns: the values ``/v2/logging`` reads and updates, validated with Triton's rules and texts.
They set the level of the ``tritonlite`` logger (``apply_log_level``) and, once one is attached
(``attach_log_output``), the format, file and per-level switches of the server's log output
(``log_output.py``). The Server owns one store (``server.protocol_settings``), so every frontend
of that server uses the same settings, as Triton shares them across protocols. (The trace
settings live with tracing itself: ``tracing.TraceManager``, ``server.tracing``.)

Also the defaults of protocol limits set by flags (``--http-max-input-size``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from .errors import INVALID_ARG, UNSUPPORTED, TritonError

#: Triton's ``--http-max-input-size`` default: the most bytes one HTTP request body may have,
#: also after decompression (64 MiB).
HTTP_MAX_INPUT_SIZE = 64 * 1024 * 1024

LOG_DEFAULTS: dict[str, Any] = {
    "log_file": "",
    "log_info": True,
    "log_warning": True,
    "log_error": True,
    "log_verbose_level": 0,
    "log_format": "default",
}
LOG_FORMATS = ("default", "ISO8601")


def _bad(message: str) -> TritonError:
    return TritonError(message, INVALID_ARG)


class ProtocolSettings:
    """Log settings (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._log = dict(LOG_DEFAULTS)
        self._log_output: Any = None  # a log_output.LogOutput once the CLI attaches one

    # ---- logging -------------------------------------------------------------------------------

    def log(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._log)

    def update_log(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Apply Triton's log-setting update (every value validated before any is applied)."""
        parsed: dict[str, Any] = {}
        for key, value in changes.items():
            if key == "log_file":
                raise TritonError(
                    "log file location can not be updated through network protocol", UNSUPPORTED
                )
            if key in ("log_info", "log_warning", "log_error"):
                if not isinstance(value, bool):
                    raise _bad(
                        f"Unable to parse '{key}': attempt to access JSON non-boolean as boolean"
                    )
                parsed[key] = value
            elif key == "log_verbose_level":
                if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32:
                    raise _bad(
                        "Unable to parse 'log_verbose_level': attempt to access JSON "
                        "non-unsigned-integer as unsigned-integer"
                    )
                parsed[key] = value
            elif key == "log_format":
                if value not in LOG_FORMATS:
                    raise _bad(f"invalid argument for --log_format, got: {value}")
                parsed[key] = value
        with self._lock:
            self._log.update(parsed)
            current = dict(self._log)
        self._apply_log(current)
        return current

    def attach_log_output(self, output: Any, initial: Mapping[str, Any]) -> None:
        """Route the log settings to ``output`` (a ``log_output.LogOutput``), starting from
        ``initial`` (the command line's values, ``log_file`` included)."""
        with self._lock:
            self._log_output = output
            self._log.update({k: v for k, v in initial.items() if k in LOG_DEFAULTS})
            current = dict(self._log)
        self._apply_log(current)

    def _apply_log(self, current: Mapping[str, Any]) -> None:
        apply_log_level(current)
        output = self._log_output
        if output is not None:
            output.apply(current)


def apply_log_level(settings: Mapping[str, Any]) -> None:
    if settings["log_verbose_level"] > 0:
        level = logging.DEBUG
    elif settings["log_info"]:
        level = logging.INFO
    elif settings["log_warning"]:
        level = logging.WARNING
    elif settings["log_error"]:
        level = logging.ERROR
    else:
        level = logging.CRITICAL + 10
    logging.getLogger("tritonlite").setLevel(level)

