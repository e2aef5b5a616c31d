"""Where and how the server's log lines are written: Triton's two line formats and its per-level
switches, changeable at run time through the logging extension (``/v2/logging``, LogSettings).

Owns ``LogOutput``: one handler on the root logger (stderr, or ``--log-file`` appended to;
the ``tritonlite`` logger's level decides what of ours reaches it, libraries log warnings), a
formatter writing Triton's formats, and a filter applying ``log_info``, ``log_warning``,
``log_error`` and ``log_verbose_level`` separately (so errors can be off while info is on, as
in Triton). Formats, as Triton 2.51 writes them (the message JSON-escaped
and quoted, unless ``TRITON_SERVER_ESCAPE_LOG_MESSAGES=0``):

* ``default``: ``I1206 02:09:57.123456 14077 server.py:241] "message"``
* ``ISO8601``: ``2026-12-06T02:09:57Z I 14077 server.py:241] "message"``

Verbose (debug) lines carry ``I`` as in Triton.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

__all__ = ["LogOutput"]

def _level_char(levelno: int) -> str:
    if levelno >= logging.ERROR:
        return "E"
    return "W" if levelno >= logging.WARNING else "I"


class _TritonFormatter(logging.Formatter):
    def __init__(self, log_format: str, escape: bool) -> None:
        super().__init__()
        self.log_format = log_format
        self.escape = escape

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        if self.escape:
            message = json.dumps(message, ensure_ascii=False)
        where = f"{record.process} {record.filename}:{record.lineno}]"
        if self.log_format == "ISO8601":
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))
            return f"{stamp} {_level_char(record.levelno)} {where} {message}"
        t = time.gmtime(record.created)
        usec = int((record.created % 1) * 1e6)
        stamp = time.strftime("%m%d %H:%M:%S", t) + f".{usec:06d}"
        return f"{_level_char(record.levelno)}{stamp} {where} {message}"


class _LevelSwitches(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.info = self.warning = self.error = True
        self.verbose = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return self.error
        if record.levelno >= logging.WARNING:
            return self.warning
        if record.levelno >= logging.INFO:
            return self.info
        return self.verbose > 0


class LogOutput:
    """The server's log handler; ``apply(settings)`` takes Triton's log settings (the keys of
    ``protocol_settings.LOG_DEFAULTS``). ``log_file`` is opened here, once: Triton does not let
    a client move it."""

    def __init__(self, log_file: str = "", logger: str = "") -> None:
        self.logger = logging.getLogger(logger)
        if log_file:
            # Fails (OSError, naming the path) when the file cannot be opened: the caller refuses
            # to start.
            self.handler: logging.Handler = logging.FileHandler(
                log_file, mode="a", encoding="utf-8"
            )
        else:
            self.handler = logging.StreamHandler(sys.stderr)
        escape = os.environ.get("TRITON_SERVER_ESCAPE_LOG_MESSAGES", "1") != "0"
        self.formatter = _TritonFormatter("default", escape)
        self.switches = _LevelSwitches()
        self.handler.setFormatter(self.formatter)
        self.handler.addFilter(self.switches)
        self.logger.addHandler(self.handler)

    def apply(self, settings: Mapping[str, Any]) -> None:
        self.formatter.log_format = str(settings.get("log_format", "default"))
        self.switches.info = bool(settings.get("log_info", True))
        self.switches.warning = bool(settings.get("log_warning", True))
        self.switches.error = bool(settings.get("log_error", True))
        self.switches.verbose = int(settings.get("log_verbose_level", 0))

    def close(self) -> None:
        self.logger.removeHandler(self.handler)
        self.handler.close()
