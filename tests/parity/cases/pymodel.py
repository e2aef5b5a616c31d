"""Python backend details: the response sender of a non-decoupled model, failure reasons,
``triton_grpc_error``, optional-input texts, ``pb_utils.Logger`` lines, decoupled models asked
for one response."""

from __future__ import annotations

import queue
import re
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from parity.harness import Case, Target, python_model

ECHO_CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 0
input [{{ name: "IN" data_type: TYPE_INT32 dims: [1] }}]
output [{{ name: "OUT" data_type: TYPE_INT32 dims: [1] }}]
instance_group [{{ kind: KIND_CPU count: 1 }}]
{extra}
"""


DECOUPLED = "model_transaction_policy { decoupled: true }"
#: tritonlite runs such a model in the server process; Triton ignores the parameter.
IN_PROCESS = 'parameters { key: "EXECUTION_MODE" value { string_value: "in_process" } }'


def _config(name: str, extra: str = "") -> str:
    return ECHO_CONFIG.format(name=name, extra=extra)


def _error(e: Any, target: Target | None = None) -> dict[str, str]:
    message = e.message()
    if target is not None:
        message = message.replace(str(target.repository), "<repo>")
    return {"status": str(e.status()), "message": message}


def _infer(target: Target, model: str, value: int, headers: Any = None) -> dict[str, Any]:
    """One unary request over each protocol: its output or its error."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    seen: dict[str, Any] = {}
    for proto, module, url in (("grpc", grpcclient, target.grpc_url),
                               ("http", httpclient, target.http_url)):  # fmt: skip
        client = module.InferenceServerClient(url)
        tensor = module.InferInput("IN", [1], "INT32")
        tensor.set_data_from_numpy(np.array([value], dtype=np.int32))
        try:
            result = client.infer(model, [tensor], headers=headers)
            seen[proto] = {"ok": result.as_numpy("OUT").tolist()}
        except InferenceServerException as e:
            seen[proto] = _error(e, target)
        client.close()
    return seen


# ---- 1. a non-decoupled model answers later through its response sender --------------------

LATE = """
import threading
import time

import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        self.args = args

    def execute(self, requests):
        recorder.record(self.args, [recorder.describe_request(r) for r in requests])
        for request in requests:
            sender = request.get_response_sender()
            value = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()

            def later(sender=sender, value=value):
                time.sleep(0.3)
                sender.send(
                    pb_utils.InferenceResponse([pb_utils.Tensor("OUT", value + 1)]),
                    flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL,
                )

            threading.Thread(target=later).start()
        return None
"""


def build_late(repo: Path) -> None:
    python_model(repo, "late", _config("late"), LATE)
    python_model(repo, "late_inproc", _config("late_inproc", IN_PROCESS), LATE)


def late_response(target: Target) -> Any:
    seen: dict[str, Any] = {}
    for model in ("late", "late_inproc"):
        seen[model] = {"first": _infer(target, model, 1), "second": _infer(target, model, 41)}
        seen[model]["model saw"] = target.observations(model)
    return seen


# ---- 2. failure reasons ---------------------------------------------------------------------

RAISES = """
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        raise ValueError("no good")
"""

ERROR_RESPONSE = """
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse(error=pb_utils.TritonError("bad input"))
                for _ in requests]
"""

INVALID_ARG_RESPONSE = """
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        error = pb_utils.TritonError("negative", pb_utils.TritonError.INVALID_ARG)
        return [pb_utils.InferenceResponse(error=error) for _ in requests]
"""

WRONG_COUNT = """
class TritonPythonModel:
    def execute(self, requests):
        return []
"""

WRONG_DTYPE = """
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.array([1.5], np.float32))])
                for _ in requests]
"""

MODEL_EXCEPTION = """
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        raise pb_utils.TritonModelException("model says no")
"""

DECOUPLED_RAISES = """
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        raise ValueError("decoupled no good")
"""

DECOUPLED_ERROR_RESPONSE = """
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            request.get_response_sender().send(
                pb_utils.InferenceResponse(error=pb_utils.TritonError("bad input")),
                flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
"""

FAILING = {
    "raises": RAISES,
    "error_response": ERROR_RESPONSE,
    "invalid_arg_response": INVALID_ARG_RESPONSE,
    "wrong_count": WRONG_COUNT,
    "wrong_dtype": WRONG_DTYPE,
    "model_exception": MODEL_EXCEPTION,
}
FAILING_IN_PROCESS = {"inproc_raises": RAISES, "inproc_error_response": ERROR_RESPONSE}
DECOUPLED_ERROR_THEN_FINAL = """
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError("bad input")))
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
"""

DECOUPLED_OK = """
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            sender.send(pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUT", pb_utils.get_input_tensor_by_name(request, "IN").as_numpy())]),
                flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
"""

FAILING_DECOUPLED = {
    "decoupled_raises": DECOUPLED_RAISES,
    "decoupled_error_response": DECOUPLED_ERROR_RESPONSE,
    "decoupled_error_then_final": DECOUPLED_ERROR_THEN_FINAL,
    "decoupled_ok": DECOUPLED_OK,
}


def build_failing(repo: Path) -> None:
    for name, source in FAILING.items():
        python_model(repo, name, _config(name), source)
    for name, source in FAILING_IN_PROCESS.items():
        python_model(repo, name, _config(name, IN_PROCESS), source)
    for name, source in FAILING_DECOUPLED.items():
        python_model(repo, name, _config(name, DECOUPLED), source)


def _metrics(target: Target, prefix: str) -> list[str]:
    with urllib.request.urlopen(f"http://{target.metrics_url}/metrics", timeout=30) as reply:
        text = reply.read().decode()
    return sorted(line for line in text.splitlines() if line.startswith(prefix))


def failure_reasons(target: Target) -> Any:
    seen: dict[str, Any] = {
        name: _infer(target, name, 1) for name in sorted([*FAILING, *FAILING_IN_PROCESS])
    }
    for name in sorted(FAILING_DECOUPLED):
        seen[name] = _stream(target, name, [1], None)
    # A decoupled model's request is counted when the server releases it, which may be after
    # its client had the final response: read once the counts stopped moving.
    seen["metrics"], seen["success"] = _settled_counts(target)
    return seen


CANCELLABLE = """
import time

import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        self.args = args

    def execute(self, requests):
        recorder.record(self.args, "started")
        deadline = time.monotonic() + 20
        while not requests[0].is_cancelled() and time.monotonic() < deadline:
            time.sleep(0.01)
        recorder.record(self.args, "cancelled" if requests[0].is_cancelled() else "not cancelled")
        error = pb_utils.TritonError("stopped", pb_utils.TritonError.CANCELLED)
        return [pb_utils.InferenceResponse(error=error) for _ in requests]
"""


def build_cancellable(repo: Path) -> None:
    python_model(repo, "cancellable", _config("cancellable"), CANCELLABLE)


def cancelled_error_response(target: Target) -> Any:
    """A request cancelled while the model runs; the model answers it with an error."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(target.grpc_url)
    tensor = grpcclient.InferInput("IN", [1], "INT32")
    tensor.set_data_from_numpy(np.array([1], dtype=np.int32))
    call = client.async_infer("cancellable", [tensor], lambda r, e: None)
    target.wait_observations("cancellable", 1, timeout=30)
    call.cancel()  # (tritonclient does not call back for a call it cancelled)
    seen: dict[str, Any] = {"model saw": target.wait_observations("cancellable", 2, timeout=30)}
    client.close()
    seen["metrics"], seen["success"] = _settled_counts(target)
    return seen


def _settled_counts(target: Target) -> tuple[list[str], list[str]]:
    """Failure and success counters once they stopped moving (a request may be counted after
    its client had the answer)."""
    counts = None
    while True:
        time.sleep(1)
        now = (_metrics(target, "nv_inference_request_failure{"),
               _metrics(target, "nv_inference_request_success{"))  # fmt: skip
        if now == counts:
            return now
        counts = now


# ---- 3. triton_grpc_error ends the stream with the model's status ---------------------------

SIGNED = """
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            value = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            if value[0] == -1:
                raise ValueError("minus one")
            if value[0] < 0:
                error = pb_utils.TritonError("negative", pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(error=error))
            else:
                responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", value)]))
        return responses
"""

SIGNED_DECOUPLED = """
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            value = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            if value[0] < 0:
                error = pb_utils.TritonError("negative", pb_utils.TritonError.INVALID_ARG)
                sender.send(pb_utils.InferenceResponse(error=error),
                            flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
            else:
                sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", value)]))
                sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
"""

def build_signed(repo: Path) -> None:
    python_model(repo, "signed", _config("signed"), SIGNED)
    python_model(repo, "signed_decoupled", _config("signed_decoupled", DECOUPLED),
                 SIGNED_DECOUPLED)  # fmt: skip


def _stream(target: Target, model: str, values: list[int], headers: Any) -> list[Any]:
    """Send ``values`` one at a time on one stream, each after the previous one's answer."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    answers: queue.Queue[Any] = queue.Queue()
    client = grpcclient.InferenceServerClient(target.grpc_url)
    client.start_stream(callback=lambda result, error: answers.put((result, error)),
                        headers=headers)  # fmt: skip
    seen: list[Any] = []
    try:
        for value in values:
            tensor = grpcclient.InferInput("IN", [1], "INT32")
            tensor.set_data_from_numpy(np.array([value], dtype=np.int32))
            try:
                client.async_stream_infer(model, [tensor])
            except InferenceServerException as e:
                seen.append({"send": value, "refused": _error(e, target)})
                continue
            result, error = answers.get(timeout=30)
            if error is not None:
                seen.append({"send": value, "error": _error(error, target)})
            else:
                seen.append({"send": value, "ok": result.as_numpy("OUT").tolist()})
    finally:
        client.stop_stream()
        client.close()
    return seen


def grpc_error_header(target: Target) -> Any:
    header = {"triton_grpc_error": "true"}
    return {
        "in-stream errors": _stream(target, "signed", [1, -2, 3], None),
        "header, error response": _stream(target, "signed", [1, -2, 3], header),
        "header, raise": _stream(target, "signed", [1, -1, 3], header),
        "header, decoupled": _stream(target, "signed_decoupled", [1, -2, 3], header),
    }


# ---- 4. optional inputs ---------------------------------------------------------------------

OPTIONAL_CONFIG = """
name: "optional"
backend: "python"
max_batch_size: 0
input [
  { name: "A" data_type: TYPE_INT32 dims: [1] },
  { name: "B" data_type: TYPE_INT32 dims: [1] },
  { name: "C" data_type: TYPE_INT32 dims: [1] },
  { name: "D" data_type: TYPE_INT32 dims: [1] optional: true }
]
output [{ name: "OUT" data_type: TYPE_INT32 dims: [1] }]
instance_group [{ kind: KIND_CPU count: 1 }]
"""

OPTIONAL = """
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        self.args = args

    def execute(self, requests):
        recorder.record(self.args, [recorder.describe_request(r) for r in requests])
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.array([len(r.inputs())],
                np.int32))]) for r in requests]
"""


def build_optional(repo: Path) -> None:
    python_model(repo, "optional", OPTIONAL_CONFIG, OPTIONAL)


def optional_inputs(target: Target) -> Any:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    sets = {"A B": "AB", "A B D": "ABD", "A B C": "ABC", "A B C D": "ABCD", "A B C D E": "ABCDE",
            "A": "A", "none": ""}  # fmt: skip
    seen: dict[str, Any] = {}
    for label, names in sets.items():
        for proto, module, url in (("grpc", grpcclient, target.grpc_url),
                                   ("http", httpclient, target.http_url)):  # fmt: skip
            client = module.InferenceServerClient(url)
            tensors = []
            for name in names:
                tensor = module.InferInput(name, [1], "INT32")
                tensor.set_data_from_numpy(np.array([1], dtype=np.int32))
                tensors.append(tensor)
            try:
                result = client.infer("optional", tensors)
                seen[f"{label} ({proto})"] = {"ok": result.as_numpy("OUT").tolist()}
            except InferenceServerException as e:
                seen[f"{label} ({proto})"] = _error(e)
            client.close()
    seen["model saw"] = target.observations("optional")
    return seen


# ---- 5. pb_utils.Logger ---------------------------------------------------------------------

LOGGING = """
import threading

import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        logger = pb_utils.Logger
        logger.log_info("PARITY initialize info")
        logger.log_warn("PARITY initialize warn")
        logger.log_error("PARITY initialize error")
        logger.log_verbose("PARITY initialize verbose")
        logger.log("PARITY initialize default level")
        logger.log_error("PARITY initialize end")

    def execute(self, requests):
        logger = pb_utils.Logger
        logger.log("PARITY execute info", logger.INFO)
        logger.log("PARITY execute warning", logger.WARNING)
        logger.log("PARITY execute error", logger.ERROR)
        logger.log("PARITY execute verbose", logger.VERBOSE)
        logger.log_info('PARITY quotes "x" and a\\ttab\\nand a second line, unicode \u00e9 \u2713')
        thread = threading.Thread(target=logger.log_warn, args=("PARITY from a thread",))
        thread.start()
        thread.join()
        logger.log_error("PARITY execute end")
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy())]) for r in requests]

    def finalize(self):
        pb_utils.Logger.log_info("PARITY finalize info")
        pb_utils.Logger.log_error("PARITY finalize end")
"""

_LOG_PREFIX = re.compile(
    r"^([IWEV])\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ "  # default: I1206 06:30:00.123456 1234
    r"|^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ([IWEV]) \d+ "  # ISO8601: 2026-12-06T06:30:00Z I 1234
)
_STDLIB_LINE = re.compile(r"(threading\.py:)\d+\]")
EXPLICIT = ("--model-control-mode=explicit", "--load-model=logging", "--load-model=logging_inproc")


def build_logging(repo: Path) -> None:
    python_model(repo, "logging", _config("logging"), LOGGING)
    python_model(repo, "logging_inproc", _config("logging_inproc", IN_PROCESS), LOGGING)


def _normalise(match: re.Match[str]) -> str:
    if match.group(1):
        return f"{match.group(1)}<time> <pid> "
    return f"<time> {match.group(2)} <pid> "


def _parity_lines(target: Target, marker: str = "", count: int = 0) -> list[str]:
    """The models' log lines, timestamps and pids normalised; first waits (up to 30 s) until
    ``marker`` (the last line a model logs in a call) appeared ``count`` times: a server may
    write a model's lines after the call returned."""
    deadline = time.monotonic() + 30
    while True:
        lines = [line for line in target.log().splitlines() if "PARITY" in line]
        if sum(marker in line for line in lines) >= count or time.monotonic() > deadline:
            # the line in the standard library's threading.py differs between Python versions
            return [_STDLIB_LINE.sub(r"\1<line>]", _LOG_PREFIX.sub(_normalise, line))
                    for line in lines]  # fmt: skip
        time.sleep(0.05)


def logger_lines(target: Target) -> Any:
    """Each model logs as it loads (in its own order: models load in parallel), as it executes
    (one model after the other) and as it is unloaded."""
    import tritonclient.grpc as grpcclient

    loading = _parity_lines(target, "PARITY initialize end", 2)
    seen: dict[str, Any] = {"load": sorted(loading)}
    seen["infer"] = _infer(target, "logging", 5)
    _parity_lines(target, "PARITY execute end", 2)
    seen["infer in process"] = _infer(target, "logging_inproc", 6)
    executed = _parity_lines(target, "PARITY execute end", 4)
    seen["execute"] = executed[len(loading):]
    client = grpcclient.InferenceServerClient(target.grpc_url)
    for model in ("logging", "logging_inproc"):
        client.unload_model(model)
    client.close()
    seen["unload"] = sorted(_parity_lines(target, "PARITY finalize end", 2)[len(executed):])
    return seen


# ---- 6. a decoupled model asked for one response --------------------------------------------


def build_unary_decoupled(repo: Path) -> None:
    python_model(repo, "signed_decoupled", _config("signed_decoupled", DECOUPLED),
                 SIGNED_DECOUPLED)  # fmt: skip


def unary_decoupled(target: Target) -> Any:
    seen = _infer(target, "signed_decoupled", 1)
    seen["stream"] = _stream(target, "signed_decoupled", [1], None)
    return seen


CASES = [
    Case(
        "pymodel_late_response",
        build_late,
        late_response,
        about="a non-decoupled model returns None from execute and answers from a thread later",
    ),
    Case(
        "pymodel_failure_reasons",
        build_failing,
        failure_reasons,
        about="errors of python models: statuses, texts and nv_inference_request_failure reasons",
    ),
    Case(
        "pymodel_cancelled_error_response",
        build_cancellable,
        cancelled_error_response,
        about="a request cancelled while running, answered by the model with an error: counts",
    ),
    Case(
        "pymodel_grpc_error_header",
        build_signed,
        grpc_error_header,
        about="with the triton_grpc_error header a model error ends the stream with its status",
    ),
    Case(
        "pymodel_optional_inputs",
        build_optional,
        optional_inputs,
        about="requests with too few, too many or missing inputs to a model with an optional one",
    ),
    Case(
        "pymodel_logger",
        build_logging,
        logger_lines,
        args=EXPLICIT,
        about="pb_utils.Logger lines in the server log at the default verbosity",
    ),
    Case(
        "pymodel_logger_verbose",
        build_logging,
        logger_lines,
        args=(*EXPLICIT, "--log-verbose=1"),
        about="pb_utils.Logger lines in the server log with --log-verbose=1",
    ),
    Case(
        "pymodel_logger_quiet",
        build_logging,
        logger_lines,
        args=(*EXPLICIT, "--log-info=false", "--log-warning=false"),
        about="pb_utils.Logger lines with --log-info=false --log-warning=false",
    ),
    Case(
        "pymodel_logger_iso8601",
        build_logging,
        logger_lines,
        args=(*EXPLICIT, "--log-format=ISO8601"),
        about="pb_utils.Logger lines with --log-format=ISO8601",
    ),
    Case(
        "pymodel_unary_decoupled",
        build_unary_decoupled,
        unary_decoupled,
        about="unary gRPC and HTTP infer on a decoupled model are refused; streaming works",
    ),
]
