"""``tritonlite-server``: Triton's command line over the in-process Server.

Parses Triton's flag names (``--model-repository``, ``--model-control-mode``, ``--grpc-port``,
...), builds a Server exactly as ``tritonlite.Server(...)`` does, runs the gRPC, HTTP and
metrics endpoints on one asyncio loop, and on SIGINT/SIGTERM stops accepting requests,
finishes in-flight ones (up to ``--exit-timeout-secs``), unloads the models and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

from . import __version__
from .errors import TritonError
from .log_output import LogOutput
from .protocol_settings import apply_log_level
from .response_cache import parse_cache_config

log = logging.getLogger("tritonlite")


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got '{text}'")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def _rate_limit_mode(text: str) -> str:
    from .rate_limit import parse_rate_limit_mode

    try:
        return parse_rate_limit_mode(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _rate_limit_resource(text: str) -> tuple[str, int, int]:
    from .rate_limit import parse_rate_limit_resource

    try:
        return parse_rate_limit_resource(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _add_http_limit_flags(g: Any) -> None:
    """Limits on what one HTTP request may make the server hold."""
    from .protocol_settings import HTTP_MAX_INPUT_SIZE as DEFAULT_MAX_INPUT_SIZE

    g.add_argument("--http-max-input-size", type=_positive_int, default=DEFAULT_MAX_INPUT_SIZE,
                   metavar="BYTES",
                   help="Maximum allowed HTTP request input size in bytes. For compressed "
                   "requests, this also limits the decompressed size. Default is "
                   f"{DEFAULT_MAX_INPUT_SIZE} bytes (64MB).")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tritonlite-server",
        description="A Triton-compatible inference server. Flags follow NVIDIA Triton's names; "
        "boolean flags take true/false (a bare flag means true).",
    )

    def flag(name: str, default: bool, help: str) -> None:
        p.add_argument(name, type=_bool, nargs="?", const=True, default=default, metavar="BOOL",
                       help=f"{help} (default: {str(default).lower()})")  # fmt: skip

    g = p.add_argument_group("model repository")
    g.add_argument("--model-repository", "--model-repo", "--model-store", dest="model_repository",
                   action="append", required=True, metavar="PATH",
                   help="Model repository path; repeat for several repositories.")  # fmt: skip
    g.add_argument("--model-control-mode", choices=("none", "poll", "explicit"), default="none",
                   help="none: load every model at start; poll: also rescan the repositories "
                   "every --repository-poll-secs and load/unload/reload what changed; explicit: "
                   "load only --load-model models, then load/unload through the API.")  # fmt: skip
    g.add_argument("--repository-poll-secs", type=float, default=15.0, metavar="SECONDS",
                   help="Seconds between repository polls in poll mode (default 15).")
    g.add_argument("--load-model", action="append", default=[], metavar="NAME",
                   help="With --model-control-mode=explicit: a model to load at start; "
                   "repeat, or '*' for all.")  # fmt: skip
    flag("--exit-on-error", True, "Exit if a model fails to load at start")
    flag("--strict-readiness", True, "Ready only when every model is ready")
    flag("--disable-auto-complete-config", False, "Do not fill configs in from the model files")
    flag("--strict-model-config", False, "Deprecated spelling of --disable-auto-complete-config")
    g.add_argument("--exit-timeout-secs", type=float, default=30.0, metavar="SECONDS",
                   help="On shutdown, how long to wait for in-flight requests (default 30).")
    g.add_argument("--model-load-thread-count", type=_non_negative_int, default=4, metavar="N",
                   help="The number of threads used to concurrently load models in model "
                   "repositories (at start and on a poll). Default is 4.")  # fmt: skip
    g.add_argument("--model-load-retry-count", type=_non_negative_int, default=0, metavar="N",
                   help="How many more times to try loading a model version whose backend "
                   "failed to load. Default is 0.")  # fmt: skip
    g.add_argument("--model-config-name", default="", metavar="NAME",
                   help="Read <model>/configs/NAME.pbtxt instead of config.pbtxt where a model "
                   "has it.")  # fmt: skip

    g = p.add_argument_group("gRPC")
    flag("--allow-grpc", True, "Serve gRPC")
    g.add_argument("--grpc-port", type=int, default=8001)
    g.add_argument("--grpc-address", default="0.0.0.0")
    g.add_argument("--grpc-infer-allocation-pool-size", type=int, default=8,
                   help="Accepted for compatibility: no effect (a warning says so when set).")
    flag("--grpc-use-ssl", False, "Serve gRPC over TLS")
    flag("--grpc-use-ssl-mutual", False, "Require client certificates")
    g.add_argument("--grpc-server-cert", default="", metavar="PATH")
    g.add_argument("--grpc-server-key", default="", metavar="PATH")
    g.add_argument("--grpc-root-cert", default="", metavar="PATH")
    g.add_argument("--grpc-infer-response-compression-level", default="none",
                   choices=("none", "low", "medium", "high"))
    g.add_argument("--grpc-keepalive-time", type=int, default=7_200_000, metavar="MS")
    g.add_argument("--grpc-keepalive-timeout", type=int, default=20_000, metavar="MS")
    flag("--grpc-keepalive-permit-without-calls", False, "Allow keepalive pings without calls")
    g.add_argument("--grpc-http2-max-pings-without-data", type=int, default=2)
    g.add_argument("--grpc-http2-min-recv-ping-interval-without-data", type=int, default=300_000,
                   metavar="MS")
    g.add_argument("--grpc-http2-max-ping-strikes", type=int, default=2)
    g.add_argument("--grpc-max-connection-age", type=int, default=None, metavar="MS")
    g.add_argument("--grpc-max-connection-age-grace", type=int, default=None, metavar="MS")
    g.add_argument("--grpc-max-connection-idle", type=int, default=600_000, metavar="MS",
                   help="Graceful GOAWAY to a connection without calls for this long "
                   "(default 600000; 0: never).")  # fmt: skip
    g.add_argument("--grpc-max-connections", type=int, default=4096, metavar="N",
                   help="Native transport: connections beyond N are closed at once with "
                   "GOAWAY ENHANCE_YOUR_CALM (default 4096; 0: unlimited).")  # fmt: skip
    g.add_argument("--grpc-http2-preface-timeout", type=int, default=10_000, metavar="MS",
                   help="Native transport: close a connection that has not sent the HTTP/2 "
                   "preface within MS (default 10000; 0: never).")  # fmt: skip
    g.add_argument("--grpc-max-connection-memory", type=int, default=256 << 20, metavar="BYTES",
                   help="Native transport: request and unread response bytes one connection "
                   "may hold (default 268435456; 0: unlimited).")  # fmt: skip
    g.add_argument("--grpc-http2-max-control-frames-per-second", type=int, default=1000,
                   metavar="N", help="Native transport: SETTINGS, PING, WINDOW_UPDATE, PRIORITY "
                   "and empty DATA frames allowed per second, each kind (default 1000; 0: "
                   "unlimited).")  # fmt: skip
    g.add_argument("--grpc-http2-max-resets-per-second", type=int, default=500, metavar="N",
                   help="Native transport: RST_STREAM frames allowed per second (default 500; "
                   "0: unlimited).")  # fmt: skip
    g.add_argument("--grpc-header-forward-pattern", default=None, metavar="REGEX",
                   help="The regular expression pattern that will be used for forwarding GRPC "
                   "headers as inference request parameters (case-insensitive unless it starts "
                   "with (?-i); matched anywhere in the name). Turns the native transport's "
                   "C++ ModelInfer fast path off.")  # fmt: skip
    g.add_argument("--grpc-restricted-protocol", action="append", default=[],
                   metavar="<protocols>:<key>=<value>",
                   help="Require a header for a group of RPCs, e.g. "
                   "'model-repository,statistics:admin-key=secret'. Groups: health, metadata, "
                   "inference, shared-memory, model-config, model-repository, statistics, "
                   "trace, logging.")  # fmt: skip

    g = p.add_argument_group("HTTP")
    flag("--allow-http", True, "Serve HTTP/REST")
    g.add_argument("--http-port", type=int, default=8000)
    g.add_argument("--http-address", default="0.0.0.0")
    g.add_argument("--http-thread-count", type=int, default=None)
    g.add_argument("--http-restricted-api", action="append", default=[],
                   metavar="<apis>:<key>=<value>")
    flag("--allow-dashboard", True, "Serve the live dashboard at /dashboard on the HTTP port "
         "(reading it is the 'statistics' restricted API)")
    g.add_argument("--http-header-forward-pattern", default=None, metavar="REGEX",
                   help="The regular expression pattern that will be used for forwarding HTTP "
                   "headers as inference request parameters (case-insensitive unless it starts "
                   "with (?-i); matched anywhere in the name).")  # fmt: skip
    _add_http_limit_flags(g)

    g = p.add_argument_group("OpenAI-compatible API (/v1/models, /v1/embeddings, /v1/completions, "
                             "/v1/chat/completions)")
    g.add_argument("--openai-port", type=int, default=None, metavar="PORT",
                   help="Serve the OpenAI-compatible API on PORT (off unless given; Triton's "
                   "OpenAI frontend uses 9000)")  # fmt: skip
    g.add_argument("--openai-address", default=None, help="Default: the HTTP address.")

    g = p.add_argument_group("metrics")
    flag("--allow-metrics", True, "Serve Prometheus metrics")
    g.add_argument("--metrics-port", type=int, default=8002)
    g.add_argument("--metrics-address", default=None, help="Default: the HTTP address.")
    g.add_argument("--metrics-interval-ms", type=int, default=2000)
    g.add_argument("--metrics-config", action="append", default=[], metavar="KEY=VALUE",
                   help="summary_latencies=true, summary_quantiles=0.5:0.05,0.99:0.001, "
                   "histogram_latencies=true, counter_latencies=false")
    flag("--allow-gpu-metrics", True, "Export GPU metrics where NVML exists")
    flag("--allow-cpu-metrics", True, "Export CPU metrics")

    g = p.add_argument_group("logging (changeable at run time through /v2/logging)")
    g.add_argument("--log-verbose", type=int, default=0, metavar="LEVEL",
                   help="Verbose (debug) lines when > 0")  # fmt: skip
    flag("--log-info", True, "Log info messages")
    flag("--log-warning", True, "Log warnings")
    flag("--log-error", True, "Log errors")
    g.add_argument("--log-format", choices=("default", "ISO8601"), default="default",
                   help="default: I1206 02:09:57.123456 <pid> <file>:<line>] \"msg\"; "
                        "ISO8601: 2026-12-06T02:09:57Z I <pid> <file>:<line>] \"msg\"")  # fmt: skip
    g.add_argument("--log-file", default="", metavar="PATH",
                   help="Append log lines to PATH instead of stderr")  # fmt: skip

    g = p.add_argument_group("response cache")
    g.add_argument("--cache-config", action="append", default=[],
                   metavar="<cache>,<setting>=<value>",
                   help="local,size=<bytes>: an LRU cache of responses for the models whose "
                        "config has response_cache { enable: true }")  # fmt: skip
    g.add_argument("--response-cache-byte-size", type=int, default=None, metavar="BYTES",
                   help="Deprecated Triton spelling of --cache-config local,size=BYTES")

    g = p.add_argument_group("tracing (changeable at run time through /v2/trace/setting)")
    g.add_argument("--trace-config", action="append", default=[],
                   metavar="[<mode>,]<setting>=<value>",
                   help="Global: rate=N (trace every Nth request, default 1000), "
                   "level=OFF|TIMESTAMPS|TENSORS (repeatable), count=N (-1: no limit), "
                   "mode=triton|opentelemetry. triton,file=PATH; triton,log-frequency=N (write "
                   "every N traces to PATH.<index>). opentelemetry,url=URL; "
                   "opentelemetry,resource=<key>=<value>; opentelemetry,bsp_max_queue_size=N, "
                   "bsp_schedule_delay=MS, bsp_max_export_batch_size=N.")  # fmt: skip
    for name, metavar, text in (
        ("--trace-file", "PATH", "triton,file=<path>"),
        ("--trace-rate", "N", "rate=<rate value>"),
        ("--trace-count", "N", "count=<count value>"),
        ("--trace-log-frequency", "N", "triton,log-frequency=<log frequency value>"),
    ):
        g.add_argument(name, default=None, metavar=metavar,
                       help=f"DEPRECATED: use --trace-config {text}")  # fmt: skip
    g.add_argument("--trace-level", action="append", default=[], metavar="LEVEL",
                   help="DEPRECATED: use --trace-config level=<OFF|TIMESTAMPS|TENSORS>")

    g = p.add_argument_group("rate limiter")
    g.add_argument("--rate-limit", type=_rate_limit_mode, default="off",
                   metavar="execution_count|off",
                   help="execution_count: an instance runs a batch only when the resources its "
                   "instance_group's rate_limiter names are free, the waiting instances taking "
                   "turns by priority and execution count; off (default): rate_limiter configs "
                   "are ignored.")  # fmt: skip
    g.add_argument("--rate-limit-resource", action="append", default=[],
                   type=_rate_limit_resource, metavar="<name>:<count>[:<device>]",
                   help="How many of a resource the server has (per device, or on <device> "
                   "only; global resources ignore <device>). Default: the largest count any "
                   "instance asks for. Repeat for each resource.")  # fmt: skip

    g = p.add_argument_group("other Triton flags (accepted for compatibility)")
    g.add_argument("--id", default="triton", help="The name server metadata answers")
    g.add_argument("--backend-config", action="append", default=[],
                   metavar="[<backend>,]<setting>=<value>",
                   help="Supported: default-max-batch-size (ONNX auto-complete)")  # fmt: skip
    g.add_argument("--pinned-memory-pool-byte-size", type=int, default=1 << 28)
    g.add_argument("--cuda-memory-pool-byte-size", action="append", default=[])
    p.add_argument("--version", action="version", version=f"tritonlite {__version__}")
    return p


async def _serve(args: argparse.Namespace) -> int:
    from .frontends.grpc import GrpcOptions, start_grpc
    from .server import Server

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    server = await loop.run_in_executor(
        None,
        lambda: Server(
            args.model_repository,
            model_control_mode=args.model_control_mode,
            load_models=args.load_model,
            repository_poll_secs=args.repository_poll_secs,
            auto_complete_config=not (args.disable_auto_complete_config or args.strict_model_config),
            strict_readiness=args.strict_readiness,
            exit_on_error=args.exit_on_error,
            backend_config=args.backend_config,
            server_id=args.id,
            cache_config=args.cache_config,
            trace_config=args.trace_config,
            model_load_thread_count=args.model_load_thread_count,
            model_load_retry_count=args.model_load_retry_count,
            model_config_name=args.model_config_name,
            rate_limit=args.rate_limit,
            rate_limit_resources=args.rate_limit_resource,
        ),
    )
    server.protocol_settings.attach_log_output(args.log_output, _log_settings(args))
    for m in server.repository_index():
        log.info("model %s version %s: %s %s", m["name"], m.get("version", "-"),
                 m.get("state", "-"), m.get("reason", ""))  # fmt: skip
    frontends: list[Any] = []
    try:
        if args.allow_grpc:
            options = GrpcOptions(
                keepalive_time_ms=args.grpc_keepalive_time,
                keepalive_timeout_ms=args.grpc_keepalive_timeout,
                keepalive_permit_without_calls=args.grpc_keepalive_permit_without_calls,
                http2_max_pings_without_data=args.grpc_http2_max_pings_without_data,
                http2_min_recv_ping_interval_without_data_ms=(
                    args.grpc_http2_min_recv_ping_interval_without_data
                ),
                http2_max_ping_strikes=args.grpc_http2_max_ping_strikes,
                max_connection_age_ms=args.grpc_max_connection_age,
                max_connection_age_grace_ms=args.grpc_max_connection_age_grace,
                max_connections=args.grpc_max_connections,
                http2_preface_timeout_ms=args.grpc_http2_preface_timeout,
                max_connection_idle_ms=args.grpc_max_connection_idle,
                max_connection_memory=args.grpc_max_connection_memory,
                http2_max_control_frames_per_second=args.grpc_http2_max_control_frames_per_second,
                http2_max_resets_per_second=args.grpc_http2_max_resets_per_second,
                infer_response_compression_level=args.grpc_infer_response_compression_level,
                use_ssl=args.grpc_use_ssl,
                use_ssl_mutual=args.grpc_use_ssl_mutual,
                server_cert=args.grpc_server_cert,
                server_key=args.grpc_server_key,
                root_cert=args.grpc_root_cert,
            )
            if args.grpc_use_ssl:  # TLS: grpcio's transport
                g = await start_grpc(server, args.grpc_address, args.grpc_port, options=options,
                                     restricted_protocols=args.grpc_restricted_protocol,
                                     header_forward_pattern=args.grpc_header_forward_pattern,
                                     )  # fmt: skip
            else:  # the native HTTP/2 transport, ModelInfer decoded and queued in C++
                from .frontends.grpc import GrpcHandlers, parse_restricted_protocols
                from .frontends.grpc_native import start_native_grpc

                handlers = GrpcHandlers(
                    server, parse_restricted_protocols(args.grpc_restricted_protocol),
                    args.grpc_header_forward_pattern,
                )  # fmt: skip
                g = await start_native_grpc(server, args.grpc_address, args.grpc_port,
                                            handlers=handlers, options=options)  # fmt: skip
            frontends.append(g)
            log.info("Started GRPCInferenceService at %s:%d%s", args.grpc_address, g.port,
                     " (TLS)" if args.grpc_use_ssl else "")  # fmt: skip
        if args.allow_http:
            from .frontends.http import start_http

            h = await start_http(server, args.http_address, args.http_port,
                                 thread_count=args.http_thread_count,
                                 restricted_apis=args.http_restricted_api,
                                 max_body_bytes=args.http_max_input_size,
                                 header_forward_pattern=args.http_header_forward_pattern,
                                 dashboard=args.allow_dashboard,
                                 )  # fmt: skip
            frontends.append(h)
            log.info("Started HTTPService at %s:%d", args.http_address, args.http_port)
        if args.openai_port is not None:
            from .frontends.openai import start_openai

            address = args.openai_address or args.http_address
            o = await start_openai(server, address, args.openai_port)
            frontends.append(o)
            log.info("Started OpenAI-compatible API at %s:%d", address, o.port)
        if args.allow_metrics:
            from .metrics import start_metrics

            address = args.metrics_address or args.http_address
            m = await start_metrics(server, address, args.metrics_port,
                                    interval_ms=args.metrics_interval_ms,
                                    cpu_metrics=args.allow_cpu_metrics,
                                    gpu_metrics=args.allow_gpu_metrics,
                                    config=args.metrics_config)  # fmt: skip
            frontends.append(m)
            log.info("Started Metrics Service at %s:%d", address, args.metrics_port)
        await stop.wait()
        log.info("Shutting down: finishing in-flight requests (timeout %ss)", args.exit_timeout_secs)
    finally:
        await asyncio.gather(*(f.stop(args.exit_timeout_secs) for f in frontends),
                             return_exceptions=True)  # fmt: skip
        await loop.run_in_executor(None, server.close)
    return 0


def _log_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The command line's log settings, as the logging extension names them."""
    return {
        "log_file": args.log_file,
        "log_info": args.log_info,
        "log_warning": args.log_warning,
        "log_error": args.log_error,
        "log_verbose_level": args.log_verbose,
        "log_format": args.log_format,
    }


#: Triton 2.51 flags tritonlite does not implement: refused by name at start, never ignored.
UNSUPPORTED_TRITON_FLAGS = frozenset({
    "--allow-sagemaker", "--allow-vertex-ai", "--buffer-manager-thread-count", "--cache-directory",
    "--cuda-virtual-address-size", "--enable-peer-access", "--host-policy",
    "--min-supported-compute-capability", "--model-load-gpu-limit", "--model-namespacing",
    "--repoagent-directory",
    "--reuse-grpc-port", "--reuse-http-port", "--sagemaker-port", "--sagemaker-safe-port-range",
    "--sagemaker-thread-count", "--vertex-ai-default-model", "--vertex-ai-port",
    "--vertex-ai-thread-count", "--backend-directory",
})  # fmt: skip
#: The --backend-config settings tritonlite honours (any other is refused by name).
BACKEND_CONFIG_KEYS = frozenset({
    "default-max-batch-size", "shm-default-byte-size", "shm-growth-byte-size",
    "enable-global-threadpool", "intra_op_thread_count", "inter_op_thread_count",
})  # fmt: skip
#: Integer settings and their smallest value.
_BACKEND_CONFIG_MINIMUM = {
    "default-max-batch-size": 0,
    "shm-default-byte-size": 4096,
    "shm-growth-byte-size": 0,
    "enable-global-threadpool": 0,
    "intra_op_thread_count": 0,
    "inter_op_thread_count": 0,
}


def parse_backend_config(values: Sequence[str]) -> dict[str, dict[str, str]]:
    """Triton's ``--backend-config [<backend>,]<key>=<value>`` (no backend: every backend, key
    ``""``). Raises ValueError naming the setting tritonlite does not honour or cannot read."""
    out: dict[str, dict[str, str]] = {}
    for text in values:
        backend, _, setting = text.rpartition(",")
        key, eq, value = setting.partition("=")
        if not eq or not key:
            raise ValueError(f"--backend-config '{text}': expected [<backend>,]<setting>=<value>")
        if key not in BACKEND_CONFIG_KEYS:
            raise ValueError(
                f"--backend-config '{text}': setting '{key}' is not supported by tritonlite "
                "(supported: " + ", ".join(sorted(BACKEND_CONFIG_KEYS)) + ")"
            )
        minimum = _BACKEND_CONFIG_MINIMUM[key]
        if not (value.isdigit() and minimum <= int(value) < 2**31):
            what = "a non-negative integer" if minimum == 0 else f"an integer >= {minimum}"
            raise ValueError(f"--backend-config '{text}': expected {what}")
        if key == "enable-global-threadpool" and value not in ("0", "1"):
            raise ValueError(f"--backend-config '{text}': expected 0 or 1")
        if key == "shm-growth-byte-size":
            log.warning(
                "--backend-config %s has no effect: a python model's message larger than its "
                "shared-memory arena (shm-default-byte-size) travels in a segment of its own", text,
            )  # fmt: skip
        out.setdefault(backend, {})[key] = value
    return out


#: --backend-config defaults of the server command that differ from the in-process Server's:
#: onnxruntime's global thread pools (the command's process is the server's alone; see
#: backends/ort_threads.py for why and what it costs).
SERVER_BACKEND_DEFAULTS = {"onnxruntime": {"enable-global-threadpool": "1"}}


def with_server_defaults(config: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """``config`` plus the command's defaults for the settings it does not give (for that
    backend or for every backend)."""
    for backend, settings in SERVER_BACKEND_DEFAULTS.items():
        for key, value in settings.items():
            if key not in config.get(backend, {}) and key not in config.get("", {}):
                config.setdefault(backend, {})[key] = value
    return config


def _trace_config(args: argparse.Namespace) -> Any:
    """--trace-config and Triton's deprecated --trace-* flags (with Triton's warnings)."""
    from .tracing import parse_trace_config

    def warn(line: str) -> None:
        print(line, file=sys.stderr)

    deprecated = {
        "--trace-file": ("triton,file=<filepath>", args.trace_file),
        "--trace-level": ("level=<OFF|TIMESTAMPS|TENSORS>", args.trace_level or None),
        "--trace-rate": ("rate=<rate value>", args.trace_rate),
        "--trace-count": ("count=<count value>", args.trace_count),
        "--trace-log-frequency": ("triton,log-frequency=<log frequency value>",
                                  args.trace_log_frequency),
    }  # fmt: skip
    for flag, (setting, value) in deprecated.items():
        if value is not None:
            warn(f"Warning: '{flag}' has been deprecated and will be removed in future releases. "
                 f"Please use '--trace-config {setting} instead.")  # fmt: skip
    return parse_trace_config(
        args.trace_config, trace_file=args.trace_file, trace_levels=args.trace_level,
        trace_rate=args.trace_rate, trace_count=args.trace_count,
        trace_log_frequency=args.trace_log_frequency, warn=warn,
    )  # fmt: skip


def refused_flag(argv: Sequence[str]) -> str | None:
    """The first Triton flag in ``argv`` that tritonlite does not implement (its name), if any."""
    for token in argv:
        if token == "--":
            break
        name = token.split("=", 1)[0]
        if name in UNSUPPORTED_TRITON_FLAGS:
            return name
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    refused = refused_flag(argv)
    if refused is not None:
        print(f"error: {refused} is a Triton flag tritonlite does not implement: refused rather "
              "than ignored (see README, 'The server command')", file=sys.stderr)  # fmt: skip
        return 2
    args = build_parser().parse_args(argv)
    try:
        args.backend_config = with_server_defaults(parse_backend_config(args.backend_config))
        args.cache_config = parse_cache_config(args.cache_config, args.response_cache_byte_size)
        args.trace_config = _trace_config(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from .frontends.request_parameters import header_pattern

    try:
        header_pattern(args.http_header_forward_pattern, "--http-header-forward-pattern")
        header_pattern(args.grpc_header_forward_pattern, "--grpc-header-forward-pattern")
    except TritonError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 2
    try:
        output = LogOutput(args.log_file)
    except OSError as e:
        print(f"error: --log-file: cannot open '{args.log_file}': {e.strerror}", file=sys.stderr)
        return 1
    output.apply(_log_settings(args))  # until the server's settings drive it (_serve)
    for flag, value, default in (
        ("--pinned-memory-pool-byte-size", args.pinned_memory_pool_byte_size, 1 << 28),
        ("--cuda-memory-pool-byte-size", args.cuda_memory_pool_byte_size, []),
    ):
        if value != default:
            log.warning("%s has no effect: tritonlite keeps no pinned or CUDA memory pool", flag)
    if args.grpc_infer_allocation_pool_size != 8:
        log.warning(
            "--grpc-infer-allocation-pool-size has no effect: tritonlite keeps no pool of "
            "response messages"
        )
    apply_log_level(_log_settings(args))
    args.log_output = output  # the server's log settings drive it (_serve)
    run: Any = asyncio.run
    try:
        import uvloop  # a faster event loop for the HTTP and Python paths, when installed

        run = uvloop.run
    except ImportError:
        pass
    # Only uvloop's own import falls back: an ImportError while serving is an error (it must
    # not start the server a second time).
    try:
        return int(run(_serve(args)))
    except ImportError as e:
        log.error("error: creating server: a module the server needs failed to import: %s", e)
        raise
    except TritonError as e:
        log.error("error: creating server: %s - %s", e.status, e.message)
        return 1
    except OSError as e:
        log.error("error: %s", e)
        return 1
    finally:
        output.close()


if __name__ == "__main__":
    sys.exit(main())
