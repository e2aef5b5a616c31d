"""Request tracing, as Triton's trace extension: ``--trace-config``, the trace-setting APIs and
what a traced request records.

Owns: the trace settings (global and per model, Triton's update and fallback rules), sampling
(``rate``, ``count``, W3C ``traceparent`` in OpenTelemetry mode), the trace objects frontends and
the Server fill in, and writing finished traces: Triton's JSON records to the trace file
(``mode=triton``) or spans over OTLP/HTTP with the OpenTelemetry SDK (``mode=opentelemetry``).

How a request is traced:

- A frontend asks ``TraceManager.sample(model, traceparent)`` for each inference request. A
  sampled request gets a ``TraceGroup`` (Triton's per-request trace object): the frontend records
  its own timestamps on it (``HTTP_RECV_START`` ... ``GRPC_SEND_END``, ``INFER_RESPONSE_COMPLETE``),
  passes it to ``Server.submit(trace=...)`` and ``release()``\\ s it once the response is sent.
- ``Server.submit`` starts a ``RequestTrace`` (one trace id, one model) from it: REQUEST_START
  before queueing, the core's per-request timestamps (QUEUE_START, COMPUTE_START,
  COMPUTE_INPUT_END, COMPUTE_OUTPUT_START, COMPUTE_END) with the response, REQUEST_END when the
  final response arrives, and the input/output tensors at level TENSORS.
- Ensemble steps and BLS calls made with ``trace=request.trace()`` start child ``RequestTrace``\\ s
  (``parent_id``) in the same group, found through the core request's ``trace_id``.
- When the frontend released the group and every request trace in it ended, the group goes to the
  writer thread through a bounded queue (at most ``WRITER_MAX_TRACES`` traces and
  ``WRITER_MAX_BYTES`` of tensor data): nothing is formatted or written on the event loop. A
  full queue drops the trace and counts it (``TraceManager.dropped``, a warning in the log):
  a slow disk or collector never grows memory without bound and never slows requests down.

Files (``mode=triton``), as Triton 2.51 writes them: each setting (the global one, each model's)
collects its traces; with ``log-frequency`` N every N traces go to ``<file>.<index>`` (one JSON
array each, index counting from 0 per file name); when ``count`` runs out and every sampled
request has been collected they go to the next index file too; the rest go to ``<file>`` (one
JSON array, closed at shutdown) when their setting is replaced by an update or the server stops.
A setting's pending traces wait in a spooled temporary file (memory up to 8 MiB, then disk).
"""

from __future__ import annotations

import collections
import json
import logging
import os
import random
import re
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import INTERNAL, INVALID_ARG, UNSUPPORTED, TritonError

log = logging.getLogger("tritonlite")

now_ns = time.monotonic_ns  # the core's clock too (std::chrono::steady_clock)

#: Level bits (a setting may have both).
TIMESTAMPS = 1
TENSORS = 2
MODES = ("triton", "opentelemetry")

#: Triton's defaults.
DEFAULT_RATE = 1000
DEFAULT_COUNT = -1
DEFAULT_OTEL_URL = "http://localhost:4318/v1/traces"
OTEL_BSP_DEFAULTS = (
    ("bsp_max_queue_size", "OTEL_BSP_MAX_QUEUE_SIZE", 2048),
    ("bsp_schedule_delay", "OTEL_BSP_SCHEDULE_DELAY", 5000),
    ("bsp_max_export_batch_size", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512),
)
#: The --trace-config settings tritonlite implements (any other is refused by name).
GLOBAL_SETTINGS = ("rate", "level", "count", "mode")
TRITON_SETTINGS = ("file", "log-frequency")
OTEL_SETTINGS = ("url", "resource") + tuple(name for name, _, _ in OTEL_BSP_DEFAULTS)

#: Bounds of the writer's queue: finished traces waiting to be written or exported.
WRITER_MAX_TRACES = 16384
WRITER_MAX_BYTES = 64 << 20
#: A setting's pending traces stay in memory up to this size, then spill to a temporary file.
SPOOL_BYTES = 8 << 20
#: The most seconds between two "dropped traces" warnings.
DROP_WARNING_INTERVAL_S = 10.0

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_UINT32_MAX = 2**32 - 1
_LEADING_INT = re.compile(r"\s*([+-]?\d+)")


def level_names(level: int) -> list[str]:
    if not level:
        return ["OFF"]
    return [n for n, bit in (("TIMESTAMPS", TIMESTAMPS), ("TENSORS", TENSORS)) if level & bit]


def otel_available() -> bool:
    """Whether the OpenTelemetry SDK and OTLP/HTTP exporter (``pip install tritonlite[trace]``)
    can be imported."""
    from importlib.util import find_spec

    try:
        names = ("opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http.trace_exporter")
        return all(find_spec(name) is not None for name in names)
    except ImportError:  # a parent package is missing
        return False


# ---- the command line -------------------------------------------------------------------------


@dataclass
class TraceConfig:
    """The trace settings given at start (``--trace-config`` and Triton's deprecated flags)."""

    mode: str = "triton"
    level: int = 0
    rate: int = DEFAULT_RATE
    count: int = DEFAULT_COUNT
    file: str = ""
    log_frequency: int = 0
    #: The opentelemetry settings in the order given (values as text), Triton's BSP defaults
    #: appended for those not given: what the trace-setting API reports in that mode.
    otel: list[tuple[str, str]] = field(default_factory=list)

    def otel_value(self, name: str, default: Any = None) -> Any:
        for key, value in self.otel:
            if key == name:
                return value
        return default


def _stoi_strict(text: str) -> int:
    """Triton's ParseOption<int>: the whole text an integer (ValueError otherwise)."""
    if not re.fullmatch(r"[+-]?\d+", text.strip()):
        raise ValueError(f"Invalid option value. Got {text}")
    return int(text)


def _bad_option(setting: str, message: str) -> ValueError:
    return ValueError(f'Bad option: "--trace-config {setting}". {message}')


def _cli_level(text: str) -> int | None:
    """Triton's ParseTraceLevelOption: None for OFF."""
    value = text.lower()
    if value in ("false", "off"):
        return None
    if value in ("true", "on", "min", "max", "timestamps"):
        return TIMESTAMPS
    if value == "tensors":
        return TENSORS
    raise ValueError(f"invalid value for trace level option: {value}")


def _cli_mode(text: str) -> str:
    value = text.lower()
    if value not in MODES:
        raise ValueError(
            f"invalid value for trace mode option: {value}. Available options are "
            '"triton" and "opentelemetry"'
        )
    return value


def split_trace_config(arg: str) -> tuple[str, str, str]:
    """``[<mode>,]<setting>=<value>`` -> (mode or "", setting, value), with Triton's texts."""
    comma = arg.find(",")
    mode = ""
    if comma > 0:
        mode = _cli_mode(arg[:comma])
    elif comma == 0:
        raise ValueError(
            "No trace mode specified. --trace-config option format is <trace mode>,<setting>="
            f"<value> or <setting>=<value>. Got {arg}"
        )
    eq = arg.find("=", comma + 1)
    setting, value = (arg[comma + 1 : eq], arg[eq + 1 :]) if eq >= 0 else ("", "")
    if eq < 0 or not setting or not value:
        raise ValueError(
            f"--trace-config option format is '<trace mode>,<setting>=<value>'. Got {arg}"
        )
    return mode, setting, value


def parse_trace_config(
    values: Sequence[str],
    *,
    trace_file: str | None = None,
    trace_levels: Sequence[str] = (),
    trace_rate: str | None = None,
    trace_count: str | None = None,
    trace_log_frequency: str | None = None,
    warn: Callable[[str], None] = lambda line: None,
    environ: Mapping[str, str] | None = None,
) -> TraceConfig:
    """The start-time trace settings from ``--trace-config`` values and Triton's deprecated
    ``--trace-file/-level/-rate/-count/-log-frequency``, by Triton's rules (``--trace-config``
    wins over a deprecated flag; ``level=OFF`` anywhere turns tracing off). Raises ValueError
    with one line naming what is wrong, also for settings tritonlite does not implement."""
    environ = os.environ if environ is None else environ
    config = TraceConfig()
    disabled = False
    by_mode: dict[str, list[tuple[str, str]]] = {"": [], "triton": [], "opentelemetry": []}
    for arg in values:
        mode, setting, value = split_trace_config(arg)
        by_mode[mode].append((setting, value))

    def number(flag: str, text: str, low: int, high: int = _INT32_MAX) -> int:
        try:
            value = _stoi_strict(text)
        except ValueError as e:
            raise _bad_option(flag, str(e)) from None
        if not low <= value <= high:
            raise _bad_option(flag, f"Expected a value in [{low}, {high}], got {text}")
        return value

    # The deprecated flags first; --trace-config overrides them (with Triton's warnings).
    level_given = bool(trace_levels)
    for text in trace_levels:
        try:
            bit = _cli_level(text)
        except ValueError as e:
            raise ValueError(f"--trace-level: {e}") from None
        disabled |= bit is None
        config.level |= bit or 0
    if trace_rate is not None:
        config.rate = number("rate (--trace-rate)", trace_rate, 0)
    if trace_count is not None:
        config.count = number("count (--trace-count)", trace_count, -1)
    for setting, value in by_mode[""]:
        if setting == "rate":
            if trace_rate is not None:
                warn("Warning: Overriding deprecated '--trace-rate' in favor of provided rate "
                     "value in --trace-config!")  # fmt: skip
            config.rate = number(setting, value, 0)
        elif setting == "level":
            if level_given:
                warn("Warning: Overriding deprecated '--trace-level' in favor of provided level "
                     "in --trace-config!")  # fmt: skip
            try:
                bit = _cli_level(value)
            except ValueError as e:
                raise _bad_option(setting, str(e)) from None
            disabled |= bit is None
            config.level |= bit or 0
        elif setting == "mode":
            try:
                config.mode = _cli_mode(value)
            except ValueError as e:
                raise _bad_option(setting, str(e)) from None
        elif setting == "count":
            if trace_count is not None:
                warn("Warning: Overriding deprecated '--trace-count' in favor of provided count "
                     "in --trace-config!")  # fmt: skip
            config.count = number(setting, value, -1)
        else:
            raise _bad_option(
                setting, "tritonlite does not implement this setting (global settings: "
                + ", ".join(GLOBAL_SETTINGS) + ")"
            )  # fmt: skip
    if disabled:
        config.level = 0

    if config.mode == "triton":
        if trace_file is not None:
            config.file = trace_file
        if trace_log_frequency is not None:
            config.log_frequency = number(
                "triton,log-frequency (--trace-log-frequency)", trace_log_frequency, 0
            )
        for setting, value in by_mode["triton"]:
            if setting == "file":
                if trace_file is not None:
                    warn("Warning: Overriding deprecated '--trace-file' in favor of provided "
                         "file in --trace-config!")  # fmt: skip
                config.file = value
            elif setting == "log-frequency":
                if trace_log_frequency is not None:
                    warn("Warning: Overriding deprecated '--trace-log-frequency' in favor of "
                         "provided log-frequency in --trace-config!")  # fmt: skip
                config.log_frequency = number(f"triton,{setting}", value, 0)
            else:
                raise _bad_option(
                    f"triton,{setting}", "tritonlite does not implement this setting (triton "
                    "settings: " + ", ".join(TRITON_SETTINGS) + ")"
                )  # fmt: skip
        for setting, _ in by_mode["opentelemetry"]:
            warn(f"Warning: '--trace-config opentelemetry,{setting}' is ignored: the trace "
                 "mode is triton")  # fmt: skip
        if config.level and not config.file:
            raise ValueError(
                "--trace-config level=" + "/".join(level_names(config.level)) + " needs a "
                "trace file in triton mode: add --trace-config triton,file=<path>"
            )
        if config.level and config.rate == 0:
            raise _bad_option(
                "rate", "A rate of 0 traces nothing in triton mode (0 means: only requests "
                "with an OpenTelemetry context, in opentelemetry mode)"
            )  # fmt: skip
        return config

    # opentelemetry
    if trace_file is not None:
        warn("Warning: '--trace-file' is deprecated and will be ignored with opentelemetry "
             "tracing mode. ")  # fmt: skip
    if trace_log_frequency is not None:
        warn("Warning: '--trace-log-frequency' is deprecated and will be ignored with "
             "opentelemetry tracing mode.")  # fmt: skip
    for setting, _ in by_mode["triton"]:
        warn(f"Warning: '--trace-config triton,{setting}' is ignored: the trace mode is "
             "opentelemetry")  # fmt: skip
    given: set[str] = set()
    for setting, value in by_mode["opentelemetry"]:
        flag = f"opentelemetry,{setting}"
        if setting in ("bsp_max_queue_size", "bsp_schedule_delay", "bsp_max_export_batch_size"):
            value = str(number(flag, value, 0, _UINT32_MAX))
        elif setting == "resource":
            if "=" not in value or value.startswith("="):
                raise _bad_option(flag, f"Expected <key>=<value>, got {value}")
        elif setting != "url":
            raise _bad_option(
                flag, "tritonlite does not implement this setting (opentelemetry settings: "
                + ", ".join(OTEL_SETTINGS) + ")"
            )  # fmt: skip
        given.add(setting)
        config.otel.append((setting, value))
    for name, env, default in OTEL_BSP_DEFAULTS:
        if name not in given:
            text = environ.get(env, str(default))
            try:
                value = _stoi_strict(text)
            except ValueError as e:
                raise ValueError(f'Bad option: "{env}". {e}') from None
            if not 0 <= value <= _UINT32_MAX:
                raise ValueError(f'Bad option: "{env}". Expected a value in [0, {_UINT32_MAX}]')
            config.otel.append((name, str(value)))
    if int(config.otel_value("bsp_max_export_batch_size")) > int(
        config.otel_value("bsp_max_queue_size")
    ):
        raise _bad_option(
            "opentelemetry,bsp_max_export_batch_size",
            "It must be less than or equal to bsp_max_queue_size",
        )
    if config.level & TENSORS:
        raise ValueError(
            "Tensor level tracing is not supported by the mode: opentelemetry "
            "(--trace-config level=TENSORS)"
        )
    if not otel_available():
        raise ValueError(
            "--trace-config mode=opentelemetry needs the OpenTelemetry SDK and its OTLP/HTTP "
            "exporter: pip install 'tritonlite[trace]' (opentelemetry-sdk, "
            "opentelemetry-exporter-otlp-proto-http)"
        )
    return config


# ---- settings -----------------------------------------------------------------------------------


class _TraceFile:
    """A trace file name and its index counter (shared by every setting that names it)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.index = 0  # the next <name>.<index> (writer thread only)
        self.main: Any = None  # the open main file (writer thread only)


class TraceSetting:
    """One trace configuration and its sampling state (Triton's TraceSetting). Replaced, never
    changed, by an update: traces sampled before keep the setting they were sampled with."""

    def __init__(
        self, level: int, rate: int, count: int, log_frequency: int, file: _TraceFile, mode: str,
        specified: frozenset[str] = frozenset(),
    ) -> None:  # fmt: skip
        self.level = level
        self.rate = rate
        self.count = count  # remaining traces (-1: unlimited); decremented by sampling
        self.log_frequency = log_frequency
        self.file = file
        self.mode = mode
        self.specified = specified  # fields set for this setting itself (not fallen back)
        self.lock = threading.Lock()
        self.sampled = 0  # requests counted for the rate (Triton's sample_)
        self.collected = 0  # traces written
        self.in_stream = 0  # traces waiting in `stream` (writer thread)
        self.outstanding = 0  # traces sampled and not yet collected or dropped
        self.retired = False  # replaced by an update: flushed once nothing is outstanding
        self.stream: Any = None  # a SpooledTemporaryFile of pending trace records (writer)
        self.stream_empty = True  # writer thread
        if not level:
            self.invalid_reason = "tracing is disabled"
        elif rate == 0:
            self.invalid_reason = "sample rate must be non-zero"
        elif mode == "triton" and not file.name:
            self.invalid_reason = "trace file name is not given"
        else:
            self.invalid_reason = ""

    def valid(self) -> bool:
        return not self.invalid_reason and self.count != 0

    def sample(self, force: bool) -> bool:
        """Triton's sampling: every ``rate``-th request while ``count`` lasts; ``force`` (a
        request with an OpenTelemetry context) is traced whatever the rate and count."""
        with self.lock:
            hit = False
            if self.rate != 0:
                if not self.valid() and not force:
                    return False
                self.sampled += 1
                hit = self.sampled % self.rate == 0
                if hit and self.count > 0:
                    self.count -= 1
                elif hit and self.count == 0:
                    hit = False
            if hit or force:
                self.outstanding += 1
                return True
            return False


class NewSetting:
    """A trace-setting update (Triton's NewSetting): a value sets a field, ``clear`` falls back
    (a model's field to the global one, a global field to the start-time value)."""

    def __init__(self) -> None:
        self.level: int | None = None
        self.rate: int | None = None
        self.count: int | None = None
        self.log_frequency: int | None = None
        self.clear: set[str] = set()

    def __bool__(self) -> bool:
        return bool(self.clear) or any(
            v is not None for v in (self.level, self.rate, self.count, self.log_frequency)
        )


def _stoi(text: str) -> int:
    """std::stoi: leading whitespace, a sign and digits, anything after ignored; ValueError
    ('invalid') without digits, OverflowError outside int32."""
    m = _LEADING_INT.match(text)
    if m is None:
        raise ValueError(text)
    value = int(m.group(1))
    if not _INT32_MIN <= value <= _INT32_MAX:
        raise OverflowError(text)
    return value


def parse_setting_value(key: str, text: str, grpc: bool = False) -> int:
    """A trace_rate / trace_count / log_frequency value, parsed and checked with Triton's texts
    (a negative rate or frequency wraps around to uint32, as Triton's)."""
    try:
        value = _stoi(text)
    except ValueError:
        raise TritonError(f"Unable to parse '{key}', got: {text}", INVALID_ARG) from None
    except OverflowError:
        low, high = (-1, _INT32_MAX) if key == "trace_count" else (0, _UINT32_MAX)
        raise TritonError(
            f"Unable to parse '{key}', value is out of range [ {low}, {high} ], got: {text}",
            INVALID_ARG,
        ) from None
    if key == "trace_count":
        if value < -1:
            sep = " " if grpc else ""
            raise TritonError(
                f"Unable to parse '{key}'. Expecting value >= -1, got:{sep}{text}", INVALID_ARG
            )
        return value
    return value & _UINT32_MAX


def parse_levels(values: Sequence[str]) -> int | None:
    """A trace_level list: its bits (0 for ["OFF"]); None when it names no level Triton knows
    (unknown names are ignored, as Triton does: then the level is left as it is)."""
    level = None
    for name in values:
        if name == "OFF":
            if len(values) != 1:
                raise TritonError("Expect only one trace level 'OFF' is specified", INVALID_ARG)
            level = 0
        elif name == "TIMESTAMPS":
            level = (level or 0) | TIMESTAMPS
        elif name == "TENSORS":
            level = (level or 0) | TENSORS
    return level


def setting_from_json(body: Any) -> NewSetting:
    """The update in an HTTP trace-setting request body (Triton's checks and texts)."""
    new = NewSetting()
    if not isinstance(body, dict):
        return new
    if "trace_file" in body:
        raise TritonError(
            "trace file location can not be updated through network protocol", UNSUPPORTED
        )
    if "trace_level" in body:
        value = body["trace_level"]
        if value is None:
            new.clear.add("level")
        else:
            if not isinstance(value, list):
                raise TritonError("attempt to access JSON non-array as array", INTERNAL)
            if not all(isinstance(v, str) for v in value):
                raise TritonError("attempt to access JSON non-string as string", INTERNAL)
            level = parse_levels(value)
            if level is not None:
                new.level = level
    for key, attr in (("trace_rate", "rate"), ("trace_count", "count"),
                      ("log_frequency", "log_frequency")):  # fmt: skip
        if key not in body:
            continue
        value = body[key]
        if value is None:
            new.clear.add(attr)
        elif not isinstance(value, str):
            raise TritonError("attempt to access JSON non-string as string", INTERNAL)
        else:
            setattr(new, attr, parse_setting_value(key, value))
    return new


def setting_from_grpc(settings: Mapping[str, Sequence[str]]) -> NewSetting:
    """The update in a gRPC TraceSettingRequest (settings: name -> its values)."""
    new = NewSetting()
    if "trace_file" in settings:
        raise TritonError(
            "trace file location can not be updated through network protocol", UNSUPPORTED
        )
    if "trace_level" in settings:
        values = list(settings["trace_level"])
        if not values:
            new.clear.add("level")
        else:
            new.level = parse_levels(values)
    for key, attr in (("trace_rate", "rate"), ("trace_count", "count"),
                      ("log_frequency", "log_frequency")):  # fmt: skip
        if key not in settings:
            continue
        values = list(settings[key])
        if not values:
            new.clear.add(attr)
        elif len(values) != 1:
            raise TritonError(f"expect only 1 value for '{key}'", INVALID_ARG)
        else:
            setattr(new, attr, parse_setting_value(key, values[0], grpc=True))
    return new


# ---- traces -------------------------------------------------------------------------------------


_TraceParent = tuple[int, int, int, str]  # (trace id, span id, flags, tracestate)
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")


def parse_traceparent(value: str, tracestate: str = "") -> _TraceParent | None:
    """A W3C ``traceparent`` header (None when it is not a valid one)."""
    m = _TRACEPARENT.fullmatch(value.strip().lower())
    if m is None or m.group(1) == "ff" or (m.group(1) == "00" and m.group(5)):
        return None
    trace_id, span_id = int(m.group(2), 16), int(m.group(3), 16)
    if not trace_id or not span_id:
        return None
    return trace_id, span_id, int(m.group(4), 16), tracestate


def _remote_context(carrier: Any) -> _TraceParent | None:
    """The client's span context from its ``traceparent`` (and ``tracestate``) header."""
    if isinstance(carrier, Mapping):
        parent, state = carrier.get("traceparent"), carrier.get("tracestate")
    else:
        parent = state = None
        for key, value in carrier:
            name = key.lower()
            if name == "traceparent":
                parent = value
            elif name == "tracestate":
                state = value
    if not isinstance(parent, str):
        return None
    return parse_traceparent(parent, state if isinstance(state, str) else "")


def _span_id() -> int:
    return random.getrandbits(64) or 1


class RequestTrace:
    """One model request's trace (one trace id): Triton's trace records for it."""

    __slots__ = ("ended", "group", "id", "model_name", "model_version", "no_compute",
                 "parent_id", "request_id", "span_id", "tensors", "timestamps")  # fmt: skip

    def __init__(self, group: TraceGroup, trace_id: int, parent_id: int, model_name: str) -> None:
        self.group = group
        self.id = trace_id
        self.parent_id = parent_id
        self.model_name = model_name
        self.model_version = -1
        self.request_id = ""
        self.timestamps: list[tuple[str, int]] = []
        # (ns, activity, tensor name, datatype, shape, raw bytes in Triton's layout | None)
        self.tensors: list[tuple[int, str, str, str, tuple[int, ...], bytes | None]] = []
        self.span_id = _span_id()  # the model span's (opentelemetry)
        self.ended = False
        self.no_compute = False  # an ensemble: Triton records no COMPUTE_* for it

    @property
    def level(self) -> int:
        return self.group.setting.level

    def begin(self, model_version: int, request_id: str, inputs: Any, ensemble: bool) -> None:
        """REQUEST_START (and the inputs, at level TENSORS): the request is about to be queued."""
        self.model_version = model_version
        self.request_id = request_id
        self.no_compute = ensemble
        t = now_ns()
        self.timestamps.append(("REQUEST_START", t))
        if self.level & TENSORS:
            items = inputs.items() if isinstance(inputs, Mapping) else inputs
            for name, value in items:
                self.tensors.append((t, "TENSOR_QUEUE_INPUT", *_tensor_record(name, value)))

    def response(self, outputs: Any, times: Sequence[int] | None, final: bool) -> None:
        """A response arrived: the core's timestamps (final one), outputs at level TENSORS."""
        t = now_ns()
        if outputs and self.level & TENSORS:
            items = outputs.items() if isinstance(outputs, Mapping) else outputs
            for name, value in items:
                self.tensors.append((t, "TENSOR_BACKEND_OUTPUT", *_tensor_record(name, value)))
        if not final:
            return
        if times is not None:
            names = ("QUEUE_START", "COMPUTE_START", "COMPUTE_INPUT_END", "COMPUTE_OUTPUT_START",
                     "COMPUTE_END")  # fmt: skip
            last = len(names) if not self.no_compute else 1
            for name, ns in zip(names[:last], times[:last], strict=True):
                if ns:
                    self.timestamps.append((name, ns))
        self.end(t)

    def end(self, t: int | None = None) -> None:
        """REQUEST_END: the request is done (answered, or failed before it was queued)."""
        if self.ended:
            return
        self.ended = True
        self.timestamps.append(("REQUEST_END", now_ns() if t is None else t))
        self.group._request_ended(self)

    def start_request(self, model_name: str) -> RequestTrace:
        """A child request's trace (an ensemble step, a BLS call), in this trace's group."""
        return self.group._new_request(model_name, parent=self)

    def context(self) -> str:
        """The OpenTelemetry context of this request's span as Triton hands it to python models
        (``InferenceTrace.get_context()``): JSON with ``traceparent``; "" in triton mode."""
        group = self.group
        if group.otel_trace_id is None:
            return ""
        out = {"traceparent": f"00-{group.otel_trace_id:032x}-{self.span_id:016x}-"
                              f"{group.otel_flags:02x}"}  # fmt: skip
        if group.tracestate:
            out["tracestate"] = group.tracestate
        return json.dumps(out, separators=(",", ":"))


class TraceGroup:
    """A frontend request's trace (Triton's TraceManager::Trace): the frontend's timestamps and
    every RequestTrace started from it (the request's, its ensemble steps', its BLS calls')."""

    def __init__(self, manager: TraceManager, setting: TraceSetting, remote: _TraceParent | None,
                 model_name: str) -> None:  # fmt: skip
        self.manager = manager
        self.setting = setting
        self.start_ns = now_ns()
        self.wall_offset = time.time_ns() - now_ns()
        self.end_ns = 0
        self.events: list[tuple[str, int]] = []  # the frontend's (on the first trace id)
        self.requests: list[RequestTrace] = []
        self._lock = threading.Lock()
        self._open = 1  # the frontend's hold, plus one per request trace not ended
        self.remote = remote
        self.otel_trace_id: int | None = None
        self.otel_flags = 1
        self.tracestate = ""
        self.root_span_id = 0
        if setting.mode == "opentelemetry":
            if remote is not None:
                self.otel_trace_id, _, self.otel_flags, self.tracestate = remote
            else:
                self.otel_trace_id = random.getrandbits(128) or 1
            self.root_span_id = _span_id()
        self.first_id = manager._next_id()
        self._first_model = model_name
        self.tensor_bytes = 0

    @property
    def id(self) -> int:
        return self.first_id

    def capture(self, name: str, ns: int | None = None) -> None:
        """A frontend timestamp (HTTP_RECV_START, GRPC_SEND_END, INFER_RESPONSE_COMPLETE ...)."""
        if self.setting.level & TIMESTAMPS:
            self.events.append((name, now_ns() if ns is None else ns))

    def start_request(self, model_name: str) -> RequestTrace:
        """The trace of the frontend's request (the group's first trace id)."""
        return self._new_request(model_name, parent=None)

    def release(self) -> None:
        """The frontend is done with the request (its response sent, or the request failed)."""
        with self._lock:
            if self.end_ns:
                return
            self.end_ns = now_ns()
            self._open -= 1
            done = self._open == 0
        if done:
            self.manager._finished(self)

    def _new_request(self, model_name: str, parent: RequestTrace | None) -> RequestTrace:
        manager = self.manager
        with self._lock:
            if parent is None and not any(r.parent_id == 0 for r in self.requests):
                trace_id = self.first_id
            else:
                trace_id = manager._next_id()
            request = RequestTrace(self, trace_id, parent.id if parent else 0, model_name)
            self.requests.append(request)
            self._open += 1
        manager._live[trace_id] = request
        return request

    def _request_ended(self, request: RequestTrace) -> None:
        self.manager._live.pop(request.id, None)
        with self._lock:
            self._open -= 1
            done = self._open == 0
        if done:
            self.manager._finished(self)


class CallTrace:
    """A gRPC transport's part in tracing one ModelInfer call: when the request arrived, and
    (set by the handler when the request is traced) its trace, which the transport finishes:
    ``sent`` after sending the response, ``release`` when the call ended otherwise."""

    __slots__ = ("group", "received_ns")

    def __init__(self, received_ns: int | None = None) -> None:
        self.received_ns = now_ns() if received_ns is None else received_ns
        self.group: TraceGroup | None = None

    def sent(self, start_ns: int) -> None:
        group = self.group
        if group is not None:
            group.capture("GRPC_SEND_START", start_ns)
            group.capture("GRPC_SEND_END")
            group.release()

    def release(self) -> None:
        if self.group is not None:
            self.group.release()


def _tensor_record(name: str, value: Any) -> tuple[str, str, tuple[int, ...], bytes | None]:
    """(name, datatype, shape, a copy of the raw bytes) of a request's or response's tensor."""
    from . import _core

    try:
        tensor = value if isinstance(value, _core.Tensor) else _core.Tensor.from_array(value)
        data = tensor.tobytes() if tensor.is_cpu else None
        return name, tensor.datatype, tuple(tensor.shape), data
    except Exception:  # noqa: BLE001 - a tensor the trace cannot read: recorded without data
        return name, "", tuple(getattr(value, "shape", ())), None


# ---- formatting ---------------------------------------------------------------------------------


def _format_data(datatype: str, shape: Sequence[int], data: bytes | None) -> str:
    """A tensor's values as Triton writes them in a TENSORS record: comma separated, floats as
    C++ streams print them (%g), BYTES elements quoted. Unlike Triton, INT8/UINT8 are numbers
    (Triton writes them as raw characters) and every value stays valid JSON."""
    if data is None or datatype in ("FP16", "BF16", ""):
        return ""
    if datatype == "BYTES":
        parts = []
        offset = 0
        while offset + 4 <= len(data):
            size = int.from_bytes(data[offset : offset + 4], "little")
            offset += 4
            if offset + size > len(data):
                break
            text = data[offset : offset + size].decode("utf-8", "backslashreplace")
            parts.append(f'"{text}"')
            offset += size
        return ",".join(parts)
    import numpy as np

    from . import _core

    values = np.frombuffer(data, dtype=_core.datatype_to_numpy(datatype))
    if datatype in ("FP32", "FP64"):
        return ",".join(f"{v:g}" for v in values.tolist())
    if datatype == "BOOL":
        return ",".join("1" if v else "0" for v in values.tolist())
    return ",".join(str(v) for v in values.tolist())


def _json_records(group: TraceGroup) -> list[str]:
    """The group's records in Triton's JSON shapes, each trace id's in time order."""
    out: list[str] = []
    level = group.setting.level
    requests: list[RequestTrace | None] = sorted(group.requests, key=lambda r: r.id)
    if group.events and not any(r.id == group.first_id for r in group.requests):
        requests.insert(0, None)  # the request failed before it was queued: the frontend's
    for request in requests:
        items: list[tuple[int, int, str]] = []  # (ns, order, record)
        rid = group.first_id if request is None else request.id
        if level & TIMESTAMPS:
            events = list(request.timestamps) if request is not None else []
            if rid == group.first_id:
                events += group.events
            for name, ns in events:
                if name == "REQUEST_START" and request is not None:
                    head: dict[str, Any] = {
                        "id": rid, "model_name": request.model_name,
                        "model_version": request.model_version,
                    }  # fmt: skip
                    if request.request_id:
                        head["request_id"] = request.request_id
                    if request.parent_id:
                        head["parent_id"] = request.parent_id
                    items.append((ns, 0, json.dumps(head, separators=(",", ":"))))
                record = {"id": rid, "timestamps": [{"name": name, "ns": ns}]}
                items.append((ns, 1, json.dumps(record, separators=(",", ":"))))
        if level & TENSORS and request is not None:
            for ns, activity, name, datatype, shape, data in request.tensors:
                record = {
                    "id": rid, "activity": activity,
                    "tensor": {
                        "name": name, "data": _format_data(datatype, shape, data),
                        "shape": ",".join(str(d) for d in shape), "dtype": datatype,
                    },
                }  # fmt: skip
                items.append((ns, 2, json.dumps(record, separators=(",", ":"))))
        items.sort(key=lambda item: (item[0], item[1]))
        out.extend(record for _, _, record in items)
    return out


# ---- writing ------------------------------------------------------------------------------------


class _Otel:
    """Spans of finished traces, exported over OTLP/HTTP by the SDK's BatchSpanProcessor (its
    own bounded queue and export thread)."""

    def __init__(self, config: TraceConfig) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        attributes: dict[str, Any] = {"service.name": "triton-inference-server"}
        for key, value in config.otel:
            if key == "resource":
                name, _, text = value.partition("=")
                attributes[name] = text
        url = str(config.otel_value("url", DEFAULT_OTEL_URL))
        if "://" not in url:
            url = "http://" + url
        self.resource = Resource.create(attributes)
        self.scope = InstrumentationScope("triton-server")
        self.processor = BatchSpanProcessor(
            OTLPSpanExporter(endpoint=url),
            max_queue_size=int(config.otel_value("bsp_max_queue_size")),
            schedule_delay_millis=float(config.otel_value("bsp_schedule_delay")),
            max_export_batch_size=int(config.otel_value("bsp_max_export_batch_size")),
        )

    def export(self, group: TraceGroup) -> None:
        from opentelemetry.sdk.trace import Event, ReadableSpan
        from opentelemetry.trace import SpanContext, SpanKind, TraceFlags, TraceState

        trace_id = group.otel_trace_id
        assert trace_id is not None
        flags = TraceFlags(group.otel_flags & 1)
        state = TraceState.from_header([group.tracestate]) if group.tracestate else TraceState()
        offset = group.wall_offset

        def ctx(span_id: int, remote: bool = False) -> Any:
            return SpanContext(trace_id, span_id, remote, flags, state)

        def span(name: str, span_id: int, parent: Any, start: int, end: int,
                 events: Sequence[tuple[str, int]], attributes: Any = None) -> None:  # fmt: skip
            self.processor.on_end(ReadableSpan(
                name, context=ctx(span_id), parent=parent, resource=self.resource,
                attributes=attributes,
                events=[Event(n, timestamp=ns + offset) for n, ns in events],
                kind=SpanKind.SERVER, start_time=start + offset, end_time=max(end, start) + offset,
                instrumentation_scope=self.scope,
            ))  # fmt: skip

        remote = group.remote
        root_parent = ctx(remote[1], remote=True) if remote is not None else None
        by_id = {r.id: r for r in group.requests}
        for request in group.requests:
            stamps = dict(request.timestamps)
            start = stamps.get("REQUEST_START", group.start_ns)
            end = stamps.get("REQUEST_END", start)
            parent_request = by_id.get(request.parent_id)
            parent = ctx(parent_request.span_id if parent_request else group.root_span_id)
            attributes: dict[str, Any] = {
                "triton.model_name": request.model_name,
                "triton.model_version": request.model_version,
                "triton.trace_id": request.id,
                "triton.trace_parent_id": request.parent_id,
            }
            if request.request_id:
                attributes["triton.request_id"] = request.request_id
            model_events = [(n, ns) for n, ns in request.timestamps
                            if n in ("REQUEST_START", "QUEUE_START", "REQUEST_END")]  # fmt: skip
            span(request.model_name, request.span_id, parent, start, end, model_events, attributes)
            compute = [(n, ns) for n, ns in request.timestamps if n.startswith("COMPUTE_")]
            if compute:
                c = dict(compute)
                c_start = c.get("COMPUTE_START", compute[0][1])
                span("compute", _span_id(), ctx(request.span_id), c_start,
                     c.get("COMPUTE_END", compute[-1][1]), compute)  # fmt: skip
        span("InferRequest", group.root_span_id, root_parent, group.start_ns,
             group.end_ns or now_ns(), sorted(group.events, key=lambda e: e[1]))  # fmt: skip

    def close(self) -> None:
        self.processor.shutdown()  # exports what is queued


class _Writer:
    """The one thread that formats and writes (or exports) finished traces. Its queue is
    bounded: a trace that does not fit is dropped and counted, never waited for."""

    def __init__(self, manager: TraceManager) -> None:
        self.manager = manager
        self.cv = threading.Condition()
        self.queue: collections.deque[tuple[str, Any]] = collections.deque()
        self.traces = 0
        self.bytes = 0
        self.closing = False
        self.dropped = 0
        self._last_warning = 0.0
        self.thread = threading.Thread(target=self._run, name="tritonlite-trace-writer",
                                       daemon=True)  # fmt: skip
        self.thread.start()

    def put_trace(self, group: TraceGroup) -> bool:
        size = group.tensor_bytes
        with self.cv:
            if self.closing or self.traces >= WRITER_MAX_TRACES or (
                self.traces and self.bytes + size > WRITER_MAX_BYTES
            ):
                self.dropped += 1
                dropped = self.dropped
                warn = time.monotonic() - self._last_warning >= DROP_WARNING_INTERVAL_S
                if warn:
                    self._last_warning = time.monotonic()
            else:
                self.traces += 1
                self.bytes += size
                self.queue.append(("trace", group))
                self.cv.notify()
                return True
        if warn:
            log.warning("trace writer is behind: %d trace(s) dropped so far (at most %d traces "
                        "and %d bytes wait to be written)", dropped, WRITER_MAX_TRACES,
                        WRITER_MAX_BYTES)  # fmt: skip
        return False

    def put_control(self, kind: str, item: Any = None) -> None:
        with self.cv:
            self.queue.append((kind, item))
            self.cv.notify()

    def close(self, timeout: float | None) -> None:
        with self.cv:
            self.queue.append(("close", None))
            self.cv.notify()
        self.thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self.cv:
                while not self.queue:
                    self.cv.wait()
                kind, item = self.queue.popleft()
                if kind == "trace":
                    self.traces -= 1
                    self.bytes -= item.tensor_bytes
            try:
                if kind == "trace":
                    self.manager._write(item)
                elif kind == "retired":
                    self.manager._flush_if_idle(item)
                elif kind == "close":
                    self.manager._write_all()
                    return
            except Exception:  # a write failure loses traces, never the writer
                log.exception("writing a trace failed")


# ---- the manager --------------------------------------------------------------------------------


class TraceManager:
    """Trace settings, sampling and writing for one Server (``server.tracing``)."""

    def __init__(self, config: TraceConfig | None = None) -> None:
        config = config or TraceConfig()
        self.mode = config.mode
        self.config = config
        self._file = _TraceFile(config.file)
        self._update_lock = threading.Lock()
        self._default = TraceSetting(config.level, config.rate, config.count,
                                     config.log_frequency, self._file, self.mode)  # fmt: skip
        self._global = TraceSetting(config.level, config.rate, config.count,
                                    config.log_frequency, self._file, self.mode)  # fmt: skip
        self._models: dict[str, TraceSetting] = {}  # replaced (copy-on-write), never changed
        self._fallback_models: set[str] = set()
        self._settings: list[TraceSetting] = []  # with pending records (writer thread only)
        self._id_lock = threading.Lock()
        self._last_id = 0
        self._live: dict[int, RequestTrace] = {}
        self._listeners: list[Callable[[], None]] = []
        self._writer: _Writer | None = None
        self._writer_lock = threading.Lock()
        self._otel = _Otel(config) if self.mode == "opentelemetry" else None
        self._closed = False

    # ---- sampling ------------------------------------------------------------------------------

    def enabled_for(self, model: str) -> bool:
        """Whether requests for ``model`` may be traced now (its level is not OFF)."""
        return bool((self._models.get(model) or self._global).level)

    @property
    def any_enabled(self) -> bool:
        return bool(self._global.level) or any(s.level for s in self._models.values())

    def sample(self, model: str, carrier: Any = None) -> TraceGroup | None:
        """The trace of a new inference request for ``model``, or None when it is not traced.
        ``carrier``: the request's headers (a mapping with lower-case or case-insensitive
        names, or (name, value) pairs such as gRPC metadata), where opentelemetry mode looks
        for the client's W3C ``traceparent`` / ``tracestate``."""
        setting = self._models.get(model) or self._global
        if not setting.level or self._closed:
            return None
        remote = None
        if carrier is not None and self.mode == "opentelemetry":
            remote = _remote_context(carrier)
        if not setting.sample(remote is not None):
            return None
        return TraceGroup(self, setting, remote, model)

    def live(self, trace_id: int) -> RequestTrace | None:
        """The running request trace with this id (a core request's ``trace_id``)."""
        return self._live.get(trace_id) if trace_id else None

    def _next_id(self) -> int:
        with self._id_lock:
            self._last_id += 1
            return self._last_id

    # ---- settings (the trace-setting APIs) -----------------------------------------------------

    def settings(self, model: str | None = None) -> dict[str, Any]:
        """The trace settings as Triton reports them (values as text, levels as a list)."""
        setting = (self._models.get(model) if model else None) or self._global
        out: dict[str, Any] = {
            "trace_level": level_names(setting.level),
            "trace_rate": str(setting.rate),
            "trace_count": str(setting.count),
        }
        if self.mode == "triton":
            out["log_frequency"] = str(setting.log_frequency)
            out["trace_file"] = self._file.name
        out["trace_mode"] = self.mode
        if self.mode == "opentelemetry":
            for key, value in self.config.otel:
                out.setdefault(key, value)
        return out

    def update(self, new: NewSetting, model: str | None = None) -> dict[str, Any]:
        """Apply a trace-setting update (Triton's rules: model settings fall back to the global
        ones field by field, and follow later global updates; every update, an empty one too,
        starts a new setting: its rate and count start over). Returns the settings now."""
        with self._update_lock:
            self._update(model or "", new)
            if not model:
                for name in list(self._fallback_models):
                    self._update(name, NewSetting())
        for listener in list(self._listeners):
            listener()
        return self.settings(model)

    def _update(self, model: str, new: NewSetting) -> None:
        current = self._models.get(model) if model else self._global
        fallback = self._global if model else self._default
        fields = {"level": fallback.level, "rate": fallback.rate, "count": fallback.count,
                  "log_frequency": fallback.log_frequency}  # fmt: skip
        specified = set()
        for name in fields:
            value = getattr(new, name)
            if name in new.clear:
                continue
            if value is not None:
                fields[name] = value
                specified.add(name)
            elif current is not None and name in current.specified:
                fields[name] = getattr(current, name)
                specified.add(name)
        if model:
            if len(specified) == len(fields):
                self._fallback_models.discard(model)
            elif not specified:
                self._fallback_models.discard(model)
                if model in self._models:
                    models = dict(self._models)
                    self._retire(models.pop(model))
                    self._models = models
                return
            else:
                self._fallback_models.add(model)
        setting = TraceSetting(fields["level"], fields["rate"], fields["count"],
                               fields["log_frequency"], self._file, self.mode,
                               frozenset(specified))  # fmt: skip
        if not setting.valid() and setting.level:  # as Triton: also a count of 0 (no reason)
            raise TritonError(
                "Attempting to set invalid trace setting :" + setting.invalid_reason, INVALID_ARG
            )
        if model:
            models = dict(self._models)
            old = models.get(model)
            models[model] = setting
            self._models = models
        else:
            old, self._global = self._global, setting
        if old is not None:
            self._retire(old)

    def _retire(self, setting: TraceSetting) -> None:
        with setting.lock:
            setting.retired = True
            idle = setting.outstanding == 0
        if idle and self.mode == "triton" and self._writer is not None:
            self._writer.put_control("retired", setting)  # the writer flushes what it holds

    def add_listener(self, listener: Callable[[], None]) -> None:
        """``listener()`` runs after every trace-setting update (which models may be traced)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[], None]) -> None:
        self._listeners.remove(listener)

    # ---- finished traces -----------------------------------------------------------------------

    @property
    def dropped(self) -> int:
        """Traces dropped because the writer was behind (its queue full)."""
        return self._writer.dropped if self._writer is not None else 0

    def _writer_for(self) -> _Writer:
        writer = self._writer
        if writer is None:
            with self._writer_lock:
                if self._writer is None:
                    self._writer = _Writer(self)
                writer = self._writer
        return writer

    def _finished(self, group: TraceGroup) -> None:
        """Every part of the group is done: hand it to the writer (or drop it, counted)."""
        group.tensor_bytes = sum(len(t[5] or b"") for r in group.requests for t in r.tensors)
        if self._writer_for().put_trace(group):
            return
        setting = group.setting
        with setting.lock:
            setting.outstanding -= 1
            flush = setting.retired and setting.outstanding == 0
        if flush and self._writer is not None:
            self._writer.put_control("retired", setting)

    # Writer thread only, from here on.

    def _write(self, group: TraceGroup) -> None:
        setting = group.setting
        if self._otel is not None:
            with setting.lock:
                setting.outstanding -= 1
            self._otel.export(group)
            return
        records = _json_records(group)
        with setting.lock:
            setting.outstanding -= 1
            setting.collected += 1
            setting.in_stream += 1
            to_index = (setting.count == 0 and setting.collected == setting.sampled) or (
                setting.log_frequency != 0 and setting.in_stream >= setting.log_frequency
            )
            if to_index:
                setting.in_stream = 0
            idle = setting.retired and setting.outstanding == 0
        if records:
            if setting.stream is None:
                setting.stream = tempfile.SpooledTemporaryFile(  # noqa: SIM115 - closed in _save
                    SPOOL_BYTES, mode="w+", encoding="utf-8"
                )
                setting.stream_empty = True
                if setting not in self._settings:
                    self._settings.append(setting)
            stream = setting.stream
            if not setting.stream_empty:
                stream.write(",")
            stream.write(",".join(records))
            setting.stream_empty = False
        if to_index:
            self._save(setting, to_index=True)
        if idle:
            self._flush_if_idle(setting)

    def _flush_if_idle(self, setting: TraceSetting) -> None:
        with setting.lock:
            if not (setting.retired and setting.outstanding == 0):
                return
        self._save(setting, to_index=setting.log_frequency != 0)

    def _save(self, setting: TraceSetting, to_index: bool) -> None:
        """Triton's SaveTraces: the setting's pending records to the next index file, or
        appended to the main file."""
        stream = setting.stream
        if stream is None:
            return
        setting.stream = None
        if setting in self._settings:
            self._settings.remove(setting)
        if setting.stream_empty:
            stream.close()
            return
        setting.stream_empty = True
        trace_file = setting.file
        try:
            stream.seek(0)
            if to_index:  # written whole under a hidden name, then renamed: never seen half
                name = f"{trace_file.name}.{trace_file.index}"
                trace_file.index += 1
                head, tail = os.path.split(name)
                partial = os.path.join(head, f".{tail}.partial")
                with open(partial, "w", encoding="utf-8") as out:
                    out.write("[")
                    _copy(stream, out)
                    out.write("]")
                os.replace(partial, name)
            else:
                if trace_file.main is None:
                    trace_file.main = open(trace_file.name, "w", encoding="utf-8")  # noqa: SIM115
                    trace_file.main.write("[")
                else:
                    trace_file.main.write(",")
                _copy(stream, trace_file.main)
                trace_file.main.flush()
        except OSError as e:
            log.error("failed creating trace file: %s", e)
        finally:
            stream.close()

    def _write_all(self) -> None:
        """At close: every setting's pending records, then the main file's closing bracket."""
        if self._otel is not None:
            self._otel.close()
            return
        for setting in list(self._settings):
            self._save(setting, to_index=setting.log_frequency != 0)
        main = self._file.main
        if main is not None:
            try:
                main.write("]")
                main.close()
            except OSError as e:
                log.error("failed writing trace file: %s", e)
            self._file.main = None

    # ---- lifecycle -----------------------------------------------------------------------------

    def close(self, timeout: float | None = 30.0) -> None:
        """Write (or export) every finished trace and close the trace file; traces finishing
        later are dropped."""
        if self._closed:
            return
        self._closed = True
        if self._writer is None and self._otel is None:
            return
        self._writer_for().close(timeout)


def _copy(source: Any, target: Any) -> None:
    while chunk := source.read(1 << 20):
        target.write(chunk)


__all__ = [
    "TENSORS",
    "TIMESTAMPS",
    "CallTrace",
    "NewSetting",
    "RequestTrace",
    "TraceConfig",
    "TraceGroup",
    "TraceManager",
    "TraceSetting",
    "level_names",
    "otel_available",
    "parse_trace_config",
    "parse_traceparent",
    "setting_from_grpc",
    "setting_from_json",
]
