"""Sequence batcher implicit state and steps, as python models see them (issue #17, "seqstate").

What Triton 2.51 does (these fixtures are its record):

- A python model's implicit state is never stored: Triton's python backend never calls
  TRITONBACKEND_StateUpdate, so every request of a sequence gets the *initial* state, whatever
  the model returns under the state output's name. A state output that the config also lists
  as a model output is an ordinary output for the client (returned when requested).
- The initial state: ``zero_data`` (BYTES: empty strings) or ``data_file`` under
  ``<model>/initial_state/`` (raw bytes; a longer file is used from its start; BYTES: the
  serialized elements). Its shape is the state's ``dims`` with every -1 as 1, even where
  ``initial_state.dims`` says more (the data then starts with the initial state's).
- A decoupled sequence model's next step is scheduled once ``execute`` returned, not when the
  final response went out: steps of one sequence overlap when the model answers from a thread.
"""

from __future__ import annotations

import queue
import re
from pathlib import Path
from typing import Any

import numpy as np

from parity.harness import Case, Target, python_model

IN_PROCESS = 'parameters { key: "EXECUTION_MODE" value { string_value: "in_process" } }'

# ---- state is never stored for python models --------------------------------------------------

STATEFUL = """
name: "stateful"
backend: "python"
max_batch_size: 1
sequence_batching {
  direct { }
  control_input [{ name: "START" control [{ kind: CONTROL_SEQUENCE_START int32_false_true: [0, 1] }] }]
  state [{ input_name: "STATE_IN" output_name: "STATE_OUT" data_type: TYPE_INT32 dims: [ 2 ]
           initial_state { data_type: TYPE_INT32 dims: [ 2 ] zero_data: true name: "zeros" } }]
}
input [{ name: "IN" data_type: TYPE_INT32 dims: [ 1 ] }]
output [{ name: "OUT" data_type: TYPE_INT32 dims: [ 2 ] },
        { name: "STATE_OUT" data_type: TYPE_INT32 dims: [ 2 ] }]
instance_group [{ kind: KIND_CPU count: 1 }]
"""

# A running sum kept in the implicit state: OUT = STATE_OUT = STATE_IN + IN.
RUNNING_SUM = """
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        self.args = args

    def execute(self, requests):
        recorder.record(self.args, [recorder.describe_request(r) for r in requests])
        responses = []
        for r in requests:
            state = pb_utils.get_input_tensor_by_name(r, "STATE_IN").as_numpy()
            total = state + pb_utils.get_input_tensor_by_name(r, "IN").as_numpy()
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUT", total), pb_utils.Tensor("STATE_OUT", total.copy())]))
        return responses
"""


def build_stateful(extra: str = "") -> Any:
    def build(repo: Path) -> None:
        python_model(repo, "stateful", STATEFUL + extra, RUNNING_SUM)

    return build


def running_sums(target: Target) -> Any:
    """Three sequences one request at a time: sequence 1 asks for OUT (HTTP), 2 for OUT and
    the state output (gRPC), 3 for nothing (every output)."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    seen: dict[str, Any] = {}
    plans = {1: (httpclient, target.http_url, ["OUT"]),
             2: (grpcclient, target.grpc_url, ["OUT", "STATE_OUT"]),
             3: (grpcclient, target.grpc_url, None)}  # fmt: skip
    for corr, (module, url, names) in plans.items():
        client = module.InferenceServerClient(url)
        answers = []
        for step, value in enumerate((corr, 10, 100)):
            tensor = module.InferInput("IN", [1, 1], "INT32")
            tensor.set_data_from_numpy(np.array([[value]], dtype=np.int32))
            outputs = [module.InferRequestedOutput(n) for n in names] if names else None
            try:
                result = client.infer("stateful", [tensor], outputs=outputs, sequence_id=corr,
                                      sequence_start=step == 0, sequence_end=step == 2)  # fmt: skip
                got = result.get_response()
                present = ([o["name"] for o in got["outputs"]] if isinstance(got, dict)
                           else [o.name for o in got.outputs])  # fmt: skip
                answers.append({n: result.as_numpy(n).tolist() for n in sorted(present)})
            except InferenceServerException as e:
                answers.append({"status": str(e.status()), "message": e.message()})
        client.close()
        seen[f"sequence {corr}"] = answers
    seen["model saw"] = target.observations("stateful")
    return seen


# ---- decoupled steps -----------------------------------------------------------------------------

DECOUPLED = """
name: "steps"
backend: "python"
max_batch_size: 1
model_transaction_policy { decoupled: true }
sequence_batching {
  %s
  control_input [{ name: "START" control [{ kind: CONTROL_SEQUENCE_START int32_false_true: [0, 1] }] }]
}
input [{ name: "IN" data_type: TYPE_INT32 dims: [ 1 ] }]
output [{ name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] }]
instance_group [{ kind: KIND_CPU count: 1 }]
"""

# execute() returns at once; a thread answers step N (one response, then the final flag) once
# step N + 1 has started executing, or after 5 s when it does not come. Each answer records
# whether the next step had executed by then: overlapping steps, or one at a time.
ANSWER_LATER = """
import os
import threading
import time

import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        self.args = args
        self.marker = os.path.join(args["model_repository"], "executed")

    def execute(self, requests):
        for r in requests:
            step = int(pb_utils.get_input_tensor_by_name(r, "IN").as_numpy().reshape(-1)[0])
            recorder.record(self.args, {"execute": step})
            with open(self.marker, "a") as f:
                f.write(f"{step}\\n")
            threading.Thread(target=self.answer, args=(r.get_response_sender(), step)).start()
        return None

    def executed(self):
        with open(self.marker) as f:
            return [int(line) for line in f.read().split()]

    def answer(self, sender, step):
        deadline = time.monotonic() + 5
        while step + 1 not in self.executed() and time.monotonic() < deadline:
            time.sleep(0.01)
        recorder.record(self.args, {"final": step, "next step executed": step + 1 in self.executed()})
        sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.array([[step]], np.int32))]))
        sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
"""


def build_decoupled(strategy: str, extra: str = "") -> Any:
    def build(repo: Path) -> None:
        python_model(repo, "steps", DECOUPLED % strategy + extra, ANSWER_LATER)

    return build


def overlapping_steps(target: Target) -> Any:
    """Steps 1, 2, 3 of one sequence streamed back to back (gRPC)."""
    import tritonclient.grpc as grpcclient

    answers: queue.Queue[Any] = queue.Queue()
    client = grpcclient.InferenceServerClient(target.grpc_url)
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    for step in (1, 2, 3):
        tensor = grpcclient.InferInput("IN", [1, 1], "INT32")
        tensor.set_data_from_numpy(np.array([[step]], dtype=np.int32))
        client.async_stream_infer("steps", [tensor], sequence_id=4, sequence_start=step == 1,
                                  sequence_end=step == 3)  # fmt: skip
    got = []
    for _ in range(3):
        result, error = answers.get(timeout=60)
        got.append(result.as_numpy("OUT").tolist() if error is None else str(error))
    client.stop_stream()
    client.close()
    seen = target.observations("steps")
    return {
        "responses": sorted(got),
        # Executes in order; each final says whether the next step had executed before it.
        "executes": [e["execute"] for e in seen if "execute" in e],
        "finals": sorted((e for e in seen if "final" in e), key=lambda e: e["final"]),
    }


# ---- initial state from a file, variable state dims ----------------------------------------------

FILE_STATES = """
name: "%(name)s"
backend: "python"
max_batch_size: %(max_batch_size)d
sequence_batching {
  direct { }
  state [
    { input_name: "FIXED" output_name: "FIXED_OUT" data_type: TYPE_INT32 dims: [ %(fixed)s ]
      initial_state { data_type: TYPE_INT32 dims: [ %(fixed)s ] data_file: "int32s" name: "f" } },
    { input_name: "VARIABLE" output_name: "VARIABLE_OUT" data_type: TYPE_INT32 dims: [ -1 ]
      initial_state { data_type: TYPE_INT32 dims: [ 3 ] data_file: "int32s" name: "v" } },
    { input_name: "EMPTY" output_name: "EMPTY_OUT" data_type: TYPE_STRING dims: [ 2 ]
      initial_state { data_type: TYPE_STRING dims: [ 2 ] zero_data: true name: "e" } },
    { input_name: "ZEROS" output_name: "ZEROS_OUT" data_type: TYPE_FP32 dims: [ -1, 2 ]
      initial_state { data_type: TYPE_FP32 dims: [ 2, 2 ] zero_data: true name: "z" } }
  ]
}
input [{ name: "IN" data_type: TYPE_INT32 dims: [ 1 ] }]
output [{ name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] }]
instance_group [{ kind: KIND_CPU count: 1 }]
"""

# Returns states of other shapes than the inputs had (-1 dims allow it): never stored anyway.
ECHO_STATES = """
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        self.args = args

    def execute(self, requests):
        recorder.record(self.args, [recorder.describe_request(r) for r in requests])
        responses = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "IN").as_numpy()
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUT", x),
                pb_utils.Tensor("VARIABLE_OUT", np.arange(5, dtype=np.int32).reshape(x.shape[:-1] + (5,))),
                pb_utils.Tensor("ZEROS_OUT", np.ones(x.shape[:-1] + (3, 2), np.float32))]))
        return responses
"""

INT32S = np.array([7, 8, 9, 10], np.int32).tobytes()  # one more than the 3 the states need
WORDS = b"".join(len(w).to_bytes(4, "little") + w for w in (b"hi", b"abc", b""))


# A BYTES state from a file has a model of its own: next to it, Triton 2.51 drops the other
# states that come from a file (their inputs never reach the model).
WORDS_STATE = """
name: "words"
backend: "python"
max_batch_size: 1
sequence_batching {
  direct { }
  state [{ input_name: "WORDS" output_name: "WORDS_OUT" data_type: TYPE_STRING dims: [ 3 ]
           initial_state { data_type: TYPE_STRING dims: [ 3 ] data_file: "words" name: "w" } }]
}
input [{ name: "IN" data_type: TYPE_INT32 dims: [ 1 ] }]
output [{ name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] }]
instance_group [{ kind: KIND_CPU count: 1 }]
"""


def build_file_states(extra: str = "") -> Any:
    def build(repo: Path) -> None:
        for name, max_batch_size, fixed in (("batching", 1, "3"), ("plain", 0, "1, 3")):
            values = {"name": name, "max_batch_size": max_batch_size, "fixed": fixed}
            model_dir = python_model(repo, name, FILE_STATES % values + extra, ECHO_STATES)
            (model_dir / "initial_state").mkdir()
            (model_dir / "initial_state" / "int32s").write_bytes(INT32S)
        model_dir = python_model(repo, "words", WORDS_STATE + extra, ECHO_STATES)
        (model_dir / "initial_state").mkdir()
        (model_dir / "initial_state" / "words").write_bytes(WORDS)

    return build


def initial_states(target: Target) -> Any:
    """Two requests of one sequence to each model: both see the initial states."""
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    client = httpclient.InferenceServerClient(target.http_url)
    seen: dict[str, Any] = {}
    for name, shape in (("batching", [1, 1]), ("plain", [1]), ("words", [1, 1])):
        answers = []
        for step in range(2):
            tensor = httpclient.InferInput("IN", shape, "INT32")
            tensor.set_data_from_numpy(np.full(shape, step, dtype=np.int32))
            try:
                result = client.infer(name, [tensor], sequence_id=3, sequence_start=step == 0,
                                      sequence_end=step == 1)  # fmt: skip
                answers.append(result.as_numpy("OUT").tolist())
            except InferenceServerException as e:
                answers.append({"status": str(e.status()), "message": e.message()})
        seen[name] = {"responses": answers, "model saw": target.observations(name)}
    client.close()
    return seen


VARIABLE_ONLY = """
name: "variable"
backend: "python"
max_batch_size: %d
sequence_batching {
  direct { }
  state [{ input_name: "S" output_name: "S_OUT" data_type: TYPE_FP32 dims: [ -1, 2, -1 ] }]
}
input [{ name: "IN" data_type: TYPE_INT32 dims: [ 1 ] }]
output [{ name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] }]
instance_group [{ kind: KIND_CPU count: 1 }]
"""

# Without an initial_state the state's data is uninitialized in Triton: only its shape and
# datatype are recorded.
SHAPES_ONLY = """
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        self.args = args

    def execute(self, requests):
        recorder.record(self.args, [recorder.describe_request(r, with_values=False) for r in requests])
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy())]) for r in requests]
"""


def build_variable(repo: Path) -> None:
    python_model(repo, "variable", VARIABLE_ONLY % 4, SHAPES_ONLY)


def variable_state(target: Target) -> Any:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(target.grpc_url)
    answers = []
    for step in range(2):
        tensor = grpcclient.InferInput("IN", [1, 1], "INT32")
        tensor.set_data_from_numpy(np.array([[step]], dtype=np.int32))
        result = client.infer("variable", [tensor], sequence_id=11, sequence_start=step == 0,
                              sequence_end=step == 1)  # fmt: skip
        answers.append(result.as_numpy("OUT").tolist())
    client.close()
    return {"responses": answers, "model saw": target.observations("variable")}


BROKEN = {
    "short": ('dims: [ 3 ] initial_state { data_type: TYPE_INT32 dims: [ 3 ] data_file: "two" '
              'name: "s" }'),
    "missing": ('dims: [ 3 ] initial_state { data_type: TYPE_INT32 dims: [ 3 ] '
                'data_file: "absent" name: "m" }'),
    "variable_initial": ('dims: [ -1 ] initial_state { data_type: TYPE_INT32 dims: [ 4 ] '
                         'data_file: "two" name: "v" }'),
}  # fmt: skip

BROKEN_CONFIG = """
name: "%s"
backend: "python"
max_batch_size: 1
sequence_batching {
  direct { }
  state [{ input_name: "S" output_name: "S_OUT" data_type: TYPE_INT32 %s }]
}
input [{ name: "IN" data_type: TYPE_INT32 dims: [ 1 ] }]
output [{ name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] }]
instance_group [{ kind: KIND_CPU count: 1 }]
"""


def build_broken(repo: Path) -> None:
    for name, state in BROKEN.items():
        model_dir = python_model(repo, name, BROKEN_CONFIG % (name, state), SHAPES_ONLY)
        (model_dir / "initial_state").mkdir()
        (model_dir / "initial_state" / "two").write_bytes(b"\x01\x00")


# The index's reason starts with the status' name in Triton ("Invalid argument: "): that prefix
# is the repository's text, not the sequence batcher's, and is left out here.
_STATUS_PREFIX = re.compile(r"^(Invalid argument|Internal|Not found|Unavailable): ")


def load_broken(target: Target) -> Any:
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    client = httpclient.InferenceServerClient(target.http_url)
    loaded = {}
    for name in BROKEN:
        try:
            client.load_model(name)
            loaded[name] = "loaded"
        except InferenceServerException as e:
            loaded[name] = f"refused {e.status()}"
    index = {}
    for entry in client.get_model_repository_index():
        reason = _STATUS_PREFIX.sub("", entry.get("reason", ""))
        index[entry["name"]] = {"state": entry.get("state"),
                                "reason": reason.replace(str(target.repository), "<repository>")}
    client.close()
    return {"load": loaded, "index": dict(sorted(index.items()))}


CASES = [
    Case(
        "seqstate_python_state_not_stored",
        build_stateful(),
        running_sums,
        about="a python model's implicit state is never stored: each step sees the initial "
        "state; a state output listed as a model output is returned when requested",
    ),
    Case(
        "seqstate_python_state_not_stored_in_process",
        build_stateful(IN_PROCESS),
        running_sums,
        about="the same, with tritonlite's in-process execution mode (Triton ignores the "
        "parameter)",
    ),
    Case(
        "seqstate_decoupled_steps_overlap_direct",
        build_decoupled("direct { }"),
        overlapping_steps,
        about="a decoupled sequence model's next step executes once execute() returned, before "
        "the previous step's final response",
    ),
    Case(
        "seqstate_decoupled_steps_overlap_oldest",
        build_decoupled("oldest { max_candidate_sequences: 4 }", IN_PROCESS),
        overlapping_steps,
        about="the same with the oldest strategy (in-process execution mode in tritonlite)",
    ),
    Case(
        "seqstate_initial_state_file",
        build_file_states(),
        initial_states,
        about="initial_state data_file (INT32 longer than needed, BYTES), zero_data BYTES, "
        "state dims -1 (1 for each -1, the data from the initial state's start)",
    ),
    Case(
        "seqstate_initial_state_file_in_process",
        build_file_states(IN_PROCESS),
        initial_states,
        about="the same, with tritonlite's in-process execution mode (Triton ignores the "
        "parameter)",
    ),
    Case(
        "seqstate_variable_state_dims",
        build_variable,
        variable_state,
        about="state dims with -1 and no initial_state: the state input has 1 for every -1",
    ),
    Case(
        "seqstate_initial_state_file_errors",
        build_broken,
        load_broken,
        args=("--model-control-mode=explicit",),
        about="initial_state data_file too short or missing: the model does not load, with "
        "Triton's reason",
    ),
]
