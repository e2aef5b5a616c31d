"""Dynamic batcher rules: preferred batch sizes, queue timeout override, preserve_ordering and
config values at the edges of their types."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from parity.harness import Case, Target, python_model

# Records each batch: the rows of every request (IN holds the request's marker in each row).
RECORD_BATCH = """
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        self.args = args

    def execute(self, requests):
        seen = []
        for r in requests:
            values = pb_utils.get_input_tensor_by_name(r, "IN").as_numpy()
            seen.append({"marker": int(values.reshape(-1)[0]), "rows": int(values.shape[0])})
        recorder.record(self.args, seen)
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy())]) for r in requests]
"""


def _model_config(name: str, batching: str, max_batch_size: int = 16) -> str:
    return f"""
name: "{name}"
backend: "python"
max_batch_size: {max_batch_size}
dynamic_batching {{
{batching}
}}
input [{{ name: "IN" data_type: TYPE_INT32 dims: [1] }}]
output [{{ name: "OUT" data_type: TYPE_INT32 dims: [1] }}]
instance_group [{{ kind: KIND_CPU count: 1 }}]
"""


class _Sender:
    """Requests sent from their own threads (a fresh gRPC client each), answers kept by key."""

    def __init__(self, target: Target, model: str) -> None:
        self.target = target
        self.model = model
        self.answers: dict[str, Any] = {}
        self.threads: list[threading.Thread] = []

    def send(self, key: str, marker: int, rows: int, **kwargs: Any) -> None:
        thread = threading.Thread(target=self._infer, args=(key, marker, rows), kwargs=kwargs)
        thread.start()
        self.threads.append(thread)

    def _infer(self, key: str, marker: int, rows: int, **kwargs: Any) -> None:
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        client = grpcclient.InferenceServerClient(self.target.grpc_url)
        tensor = grpcclient.InferInput("IN", [rows, 1], "INT32")
        tensor.set_data_from_numpy(np.full((rows, 1), marker, dtype=np.int32))
        try:
            result = client.infer(self.model, [tensor], **kwargs)
            self.answers[key] = {"rows": int(result.as_numpy("OUT").shape[0])}
        except InferenceServerException as e:
            self.answers[key] = {"status": str(e.status()), "message": e.message()}
        finally:
            client.close()

    def join(self) -> dict[str, Any]:
        for thread in self.threads:
            thread.join()
        self.threads = []
        answers, self.answers = self.answers, {}
        return dict(sorted(answers.items()))


# ---- item: a batch that cannot reach a preferred size runs at once -------------------------

PREFERRED = """
    preferred_batch_size: [ 4 ]
    max_queue_delay_microseconds: 5000000
"""


def build_preferred(repo: Path) -> None:
    python_model(repo, "pref", _model_config("pref", PREFERRED), RECORD_BATCH)


def over_largest_preferred(target: Target) -> Any:
    seen: dict[str, Any] = {}
    # A request larger than the largest preferred size runs at once; the next one (a preferred
    # size on its own) runs on its own too.
    sender = _Sender(target, "pref")
    sender.send("a: 5 rows", 1, 5)
    time.sleep(1)
    sender.send("b: 4 rows", 2, 4)
    seen["answers 1"] = sender.join()
    seen["batches 1"] = target.observations("pref")
    target.clear("pref")
    # 3 rows wait; 3 more would pass the largest preferred size (4): the first 3 run at once,
    # the next 3 wait until 1 more makes a preferred batch of 4.
    sender.send("c: 3 rows", 3, 3)
    time.sleep(1)
    sender.send("d: 3 rows", 4, 3)
    time.sleep(1)
    sender.send("e: 1 row", 5, 1)
    seen["answers 2"] = sender.join()
    seen["batches 2"] = target.observations("pref")
    return seen


# ---- item: preserve_ordering holds a later request's response for an earlier one ------------

# Request 1 waits (its instance busy) until the client creates "release" in the model's
# directory; every request is recorded when its execution starts.
HOLD_FIRST = """
import os
import time

import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        self.args = args

    def execute(self, requests):
        responses = []
        for r in requests:
            values = pb_utils.get_input_tensor_by_name(r, "IN").as_numpy()
            marker = int(values.reshape(-1)[0])
            recorder.record(self.args, {"marker": marker})
            if marker == 1:
                release = os.path.join(self.args["model_repository"], "release")
                deadline = time.monotonic() + 60
                while not os.path.exists(release) and time.monotonic() < deadline:
                    time.sleep(0.01)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", values)]))
        return responses
"""

ORDERED = """
name: "ordered"
backend: "python"
max_batch_size: 4
dynamic_batching { preserve_ordering: true }
input [{ name: "IN" data_type: TYPE_INT32 dims: [1] }]
output [{ name: "OUT" data_type: TYPE_INT32 dims: [1] }]
instance_group [{ kind: KIND_CPU count: 2 }]
"""


def build_ordered(repo: Path) -> None:
    python_model(repo, "ordered", ORDERED, HOLD_FIRST)


def ordered_responses(target: Target) -> Any:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(target.grpc_url)
    arrived: list[Any] = []
    lock = threading.Lock()
    done = threading.Event()

    def callback(result: Any, error: Any) -> None:
        with lock:
            if error is not None:
                arrived.append({"error": error.message()})
            else:
                arrived.append(int(result.as_numpy("OUT").reshape(-1)[0]))
            if len(arrived) == 2:
                done.set()

    def send(marker: int) -> None:
        tensor = grpcclient.InferInput("IN", [1, 1], "INT32")
        tensor.set_data_from_numpy(np.full((1, 1), marker, dtype=np.int32))
        client.async_infer("ordered", [tensor], callback)

    send(1)
    executing = target.wait_observations("ordered", 1)  # request 1 holds one instance
    send(2)
    executing = target.wait_observations("ordered", 2)  # request 2 ran on the other
    time.sleep(1)  # room for request 2's response to come back first if it is not held
    (target.repository / "ordered" / "release").touch()
    done.wait(60)
    client.close()
    return {"executed": sorted(e["marker"] for e in executing), "responses in order": arrived}


# Records each batch's markers; a batch with marker 1 holds the instance until "release".
HOLD_BATCH = """
import os
import time

import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        self.args = args

    def execute(self, requests):
        values = [pb_utils.get_input_tensor_by_name(r, "IN").as_numpy() for r in requests]
        markers = [int(v.reshape(-1)[0]) for v in values]
        if 1 in markers:
            release = os.path.join(self.args["model_repository"], "release")
            deadline = time.monotonic() + 60
            while not os.path.exists(release) and time.monotonic() < deadline:
                time.sleep(0.01)
        recorder.record(self.args, markers)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", v)]) for v in values]
"""


def build_delay_exceeded(repo: Path) -> None:
    batching = """
    preferred_batch_size: [ 2 ]
    max_queue_delay_microseconds: 1000000
"""
    python_model(repo, "late", _model_config("late", batching), HOLD_BATCH)


def delay_exceeded(target: Target) -> Any:
    # Request 1 (2 rows, a preferred size) holds the only instance; three 1-row requests queue
    # behind it and wait longer than max_queue_delay (1 s). Once the instance is free, all of
    # them go in one batch, not the preferred 2 and then 1.
    sender = _Sender(target, "late")
    sender.send("hold", 1, 2)
    time.sleep(1)
    for marker in (2, 3, 4):
        sender.send(f"request {marker}", marker, 1)
        time.sleep(0.4)
    time.sleep(1.5)
    (target.repository / "late" / "release").touch()
    return {"answers": sender.join(), "batches": target.observations("late")}


def build_queue_full(repo: Path) -> None:
    batching = """
    default_queue_policy { max_queue_size: 1 }
"""
    python_model(repo, "full", _model_config("full", batching), HOLD_BATCH)


def queue_full(target: Target) -> Any:
    # Request 1 holds the only instance, request 2 fills the queue (max_queue_size 1); the next
    # two are refused with Triton's text (with and without a request id).
    sender = _Sender(target, "full")
    sender.send("1 hold", 1, 1)
    time.sleep(1)
    sender.send("2 queued", 2, 1)
    time.sleep(0.5)
    sender.send("3 refused, with an id", 3, 1, request_id="three")
    sender.send("4 refused, without an id", 4, 1)
    time.sleep(0.5)
    (target.repository / "full" / "release").touch()
    return {"answers": sender.join(), "batches": target.observations("full")}


# ---- item: a request's own, lower timeout (allow_timeout_override) --------------------------


def _timeout_config(name: str, allow: bool) -> str:
    policy = f"""
    preferred_batch_size: [ 4 ]
    max_queue_delay_microseconds: 2000000
    default_queue_policy {{
        default_timeout_microseconds: 5000000
        allow_timeout_override: {"true" if allow else "false"}
    }}
"""
    return _model_config(name, policy)


def build_timeouts(repo: Path) -> None:
    python_model(repo, "allowed", _timeout_config("allowed", True), RECORD_BATCH)
    python_model(repo, "refused", _timeout_config("refused", False), RECORD_BATCH)


def timeout_override(target: Target) -> Any:
    seen: dict[str, Any] = {}
    for model in ("allowed", "refused"):
        # Request 1 asks for 200 ms (the policy's default is 5 s); 1 s later 3 rows arrive. If
        # request 1 still waits, 1 + 3 rows make the preferred size 4 and both run at once;
        # if its own timeout took effect, it was answered "Request timeout expired" at 200 ms
        # and the 3 rows run alone after max_queue_delay (2 s).
        sender = _Sender(target, model)
        sender.send("1: 1 row, timeout 200 ms", 1, 1, timeout=200000)
        time.sleep(1)
        sender.send("2: 3 rows", 2, 3)
        seen[f"{model}: answers"] = sender.join()
        seen[f"{model}: batches"] = target.observations(model)
    return seen


# ---- item: config values at the edges of their types ----------------------------------------

U64 = 2**64 - 1

EDGE_MODELS = {
    # Every priority level a uint64 holds; the default is the last one.
    "levels": _model_config(
        "levels",
        f"""
    priority_levels: {U64}
    default_priority_level: {U64}
    priority_queue_policy {{ key: {U64} value: {{ max_queue_size: 4294967295 }} }}
""",
        1,
    ),
    # A timeout past 2**64 ns: Triton's 64-bit nanosecond arithmetic wraps it.
    "wrapped": _model_config(
        "wrapped",
        f"""
    default_queue_policy {{ default_timeout_microseconds: {U64} }}
""",
    ),
    # A queue delay of about forever, and a request that is a preferred size on its own.
    "forever": _model_config(
        "forever",
        f"""
    preferred_batch_size: [ 1 ]
    max_queue_delay_microseconds: {U64}
    default_queue_policy {{ max_queue_size: 4294967295 }}
""",
    ),
    "widest": _model_config(
        "widest",
        """
    preferred_batch_size: [ 2147483647 ]
""",
        2147483647,
    ),
}


def build_edges(repo: Path) -> None:
    for name, config in EDGE_MODELS.items():
        python_model(repo, name, config, HOLD_FIRST if name == "levels" else RECORD_BATCH)


def config_edges(target: Target) -> Any:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(target.http_url)
    seen: dict[str, Any] = {
        "states": {m["name"]: m.get("state") for m in client.get_model_repository_index()},
        "levels config": client.get_model_config("levels")["dynamic_batching"],
    }
    client.close()
    for model in ("wrapped", "forever", "widest"):
        sender = _Sender(target, model)
        sender.send("1 row", 9, 1)
        seen[f"{model}: answers"] = sender.join()
    # Priorities above 2**32 keep their order: while request 1 holds the only instance, three
    # wait at levels 2**40 + 1, 2**40 and 7 (and one at 0: the default, last, level); they run
    # highest priority (lowest number) first.
    sender = _Sender(target, "levels")
    sender.send("hold", 1, 1)
    target.wait_observations("levels", 1)
    for marker, priority in ((2, 2**40 + 1), (3, 2**40), (4, 7), (5, 0)):
        sender.send(f"priority {priority}", marker, 1, priority=priority)
        time.sleep(0.5)
    (target.repository / "levels" / "release").touch()
    seen["levels: answers"] = sender.join()
    seen["levels: execution order"] = [e["marker"] for e in target.observations("levels")]
    return seen


# Decoupled: request 1 sends one response, waits for "release", then its last; request 2 sends
# both of its responses at once. Each response carries marker * 10 + its index.
DECOUPLED_HOLD = """
import os
import threading
import time

import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        self.args = args

    def execute(self, requests):
        for r in requests:
            marker = int(pb_utils.get_input_tensor_by_name(r, "IN").as_numpy().reshape(-1)[0])
            recorder.record(self.args, {"marker": marker})
            sender = r.get_response_sender()

            def out(value):
                return pb_utils.InferenceResponse(
                    [pb_utils.Tensor("OUT", np.array([[value]], dtype=np.int32))])

            sender.send(out(marker * 10))
            if marker == 1:
                release = os.path.join(self.args["model_repository"], "release")
                deadline = time.monotonic() + 60
                while not os.path.exists(release) and time.monotonic() < deadline:
                    time.sleep(0.01)
            sender.send(out(marker * 10 + 1), flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
"""

ORDERED_DECOUPLED = """
name: "ordered_stream"
backend: "python"
max_batch_size: 4
dynamic_batching { preserve_ordering: true }
model_transaction_policy { decoupled: true }
input [{ name: "IN" data_type: TYPE_INT32 dims: [1] }]
output [{ name: "OUT" data_type: TYPE_INT32 dims: [1] }]
instance_group [{ kind: KIND_CPU count: 2 }]
"""


def build_ordered_decoupled(repo: Path) -> None:
    python_model(repo, "ordered_stream", ORDERED_DECOUPLED, DECOUPLED_HOLD)


def ordered_stream(target: Target) -> Any:
    import queue

    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(target.grpc_url)
    arrived: queue.Queue[Any] = queue.Queue()

    def callback(result: Any, error: Any) -> None:
        if error is not None:
            arrived.put({"error": error.message()})
        else:
            arrived.put(int(result.as_numpy("OUT").reshape(-1)[0]))

    def send(marker: int) -> None:
        tensor = grpcclient.InferInput("IN", [1, 1], "INT32")
        tensor.set_data_from_numpy(np.full((1, 1), marker, dtype=np.int32))
        client.async_stream_infer("ordered_stream", [tensor], request_id=str(marker))

    client.start_stream(callback)
    send(1)
    target.wait_observations("ordered_stream", 1)  # request 1 holds one instance
    send(2)
    executing = target.wait_observations("ordered_stream", 2)  # request 2 ran on the other
    time.sleep(1)  # room for request 2's responses to come back early if they are not held
    (target.repository / "ordered_stream" / "release").touch()
    got = [arrived.get(timeout=60) for _ in range(4)]
    client.stop_stream()
    client.close()
    return {"executed": sorted(e["marker"] for e in executing), "responses in order": got}


CASES = [
    Case(
        "batcher_over_largest_preferred",
        build_preferred,
        over_largest_preferred,
        about="a pending batch that would pass the largest preferred batch size runs at once",
    ),
    Case(
        "batcher_delay_exceeded_sends_all",
        build_delay_exceeded,
        delay_exceeded,
        about="once max_queue_delay has passed, everything pending goes, not a preferred prefix",
    ),
    Case(
        "batcher_queue_full_text",
        build_queue_full,
        queue_full,
        about="max_queue_size: a request over it is refused with Triton's text",
    ),
    Case(
        "batcher_timeout_override",
        build_timeouts,
        timeout_override,
        about="allow_timeout_override: a request's lower timeout applies; without it, it does not",
    ),
    Case(
        "batcher_config_edges",
        build_edges,
        config_edges,
        about="uint64/uint32/int32 batcher fields at their largest values load and act as in Triton",
    ),
    Case(
        "batcher_preserve_ordering_decoupled",
        build_ordered_decoupled,
        ordered_stream,
        about="preserve_ordering, decoupled python model: a later request's responses wait for "
        "the earlier request's final one",
    ),
    Case(
        "batcher_preserve_ordering_python",
        build_ordered,
        ordered_responses,
        about="preserve_ordering: a python model's later request answers after the earlier one",
    ),
]
