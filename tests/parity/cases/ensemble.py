"""Ensembles: lifecycle with their composing models (explicit mode, nested ensembles), sequence
ids and flags reaching the steps, decoupled steps, steps no requested output needs, failure
counting of a rejected step, and load-config overrides across later loads.

Models whose lifecycle a case watches write their ``initialize`` events outside the model
repository (``events.jsonl`` next to it) and have a file named ``__pycache__`` in their version
directory (Python then writes no bytecode there): Triton reloads a model on a later load only
when a file in its directory is newer than at its last load, so nothing but the script may
touch those directories.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from parity.harness import Case, Target, python_model

ADD_ONE = """
import json
import os
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        self.args = args
        events = os.path.join(os.path.dirname(os.path.dirname(args["model_repository"])),
                              "events.jsonl")
        with open(events, "a") as f:
            f.write(json.dumps(["initialize", args["model_name"]]) + "\\n")

    def execute(self, requests):
        if RECORDING:
            recorder.record(self.args, [recorder.describe_request(r) for r in requests])
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "IN").as_numpy()
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", (x + 1).astype(np.int32))]))
        return out
"""


def _add_one(recording: bool) -> str:
    return f"RECORDING = {recording}\n" + ADD_ONE


def _plain(name: str, max_batch_size: int = 0, extra: str = "") -> str:
    return f"""
name: "{name}"
backend: "python"
max_batch_size: {max_batch_size}
input [{{ name: "IN" data_type: TYPE_INT32 dims: [1] }}]
output [{{ name: "OUT" data_type: TYPE_INT32 dims: [1] }}]
instance_group [{{ kind: KIND_CPU count: 1 }}]
{extra}
"""


def _ensemble(
    name: str,
    steps: list[tuple[str, dict[str, str], dict[str, str]]],
    inputs: tuple[str, ...] = ("IN",),
    outputs: tuple[str, ...] = ("OUT",),
    max_batch_size: int = 0,
) -> str:
    text = [f'name: "{name}"', 'platform: "ensemble"', f"max_batch_size: {max_batch_size}"]
    text += [f'input [{{ name: "{i}" data_type: TYPE_INT32 dims: [1] }}]' for i in inputs]
    text += [f'output [{{ name: "{o}" data_type: TYPE_INT32 dims: [1] }}]' for o in outputs]
    parts = []
    for model, in_map, out_map in steps:
        maps = [f'input_map {{ key: "{k}" value: "{v}" }}' for k, v in in_map.items()]
        maps += [f'output_map {{ key: "{k}" value: "{v}" }}' for k, v in out_map.items()]
        parts.append(f'{{ model_name: "{model}" model_version: -1 {" ".join(maps)} }}')
    text.append("ensemble_scheduling { step [\n" + ",\n".join(parts) + "\n] }")
    return "\n".join(text) + "\n"


def _ensemble_dir(repo: Path, name: str, config: str) -> None:
    (repo / name / "1").mkdir(parents=True, exist_ok=True)
    (repo / name / "config.pbtxt").write_text(config)


def _no_bytecode(model_dir: Path) -> None:
    """A file named __pycache__ in the version directory: Python writes no bytecode there."""
    (model_dir / "1" / "__pycache__").write_text("")


def _error(e: Any) -> dict[str, Any]:
    return {"status": str(e.status()), "message": e.message()}


def _infer(client: Any, module: Any, model: str, value: int = 1, batch: bool = False,
           **kw: Any) -> Any:  # fmt: skip
    from tritonclient.utils import InferenceServerException

    shape = [1, 1] if batch else [1]
    tensor = module.InferInput("IN", shape, "INT32")
    tensor.set_data_from_numpy(np.full(shape, value, dtype=np.int32))
    try:
        result = client.infer(model, [tensor], **kw)
        response = result.get_response()
        names = (
            [o.name for o in response.outputs]
            if hasattr(response, "outputs")
            else [o["name"] for o in response["outputs"]]
        )
        return {name: result.as_numpy(name).tolist() for name in sorted(names)}
    except InferenceServerException as e:
        return _error(e)


def _control(fn: Any, *args: Any, **kw: Any) -> Any:
    from tritonclient.utils import InferenceServerException

    try:
        fn(*args, **kw)
        return "ok"
    except InferenceServerException as e:
        return _error(e)


def _settled_index(client: Any, timeout: float = 20) -> list[Any]:
    """The repository index once no model is LOADING or UNLOADING (Triton finishes an unload
    after answering the request)."""
    deadline = time.monotonic() + timeout
    while True:
        index = sorted(client.get_model_repository_index(),
                       key=lambda e: (e["name"], e.get("version", "")))  # fmt: skip
        busy = any(e.get("state") in ("LOADING", "UNLOADING") for e in index)
        if not busy or time.monotonic() > deadline:
            return index
        time.sleep(0.05)


def _events(target: Target) -> list[Any]:
    path = target.repository.parent / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _touch(path: Path) -> None:
    """Make ``path`` newer than anything the server saw (a second ahead of now)."""
    later = time.time() + 1
    os.utime(path, (later, later))


# ---- 1. lifecycle: composing models load with the ensemble; dependents follow ---------------


def build_lifecycle(repo: Path) -> None:
    _no_bytecode(python_model(repo, "add", _plain("add"), _add_one(False)))
    # ens_a (outer) calls ens_b (inner), which calls add: name order is not dependency order.
    _ensemble_dir(repo, "ens_b", _ensemble("ens_b", [("add", {"IN": "IN"}, {"OUT": "OUT"})]))
    _ensemble_dir(repo, "ens_a", _ensemble("ens_a", [("ens_b", {"IN": "IN"}, {"OUT": "OUT"})]))
    # ens_c calls a model that is not in the repository.
    _ensemble_dir(repo, "ens_c", _ensemble("ens_c", [("missing", {"IN": "IN"}, {"OUT": "OUT"})]))


def lifecycle(target: Target) -> Any:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    http = httpclient.InferenceServerClient(target.http_url)
    grpc = grpcclient.InferenceServerClient(target.grpc_url)
    seen: dict[str, Any] = {}

    def step(label: str, action: Any) -> None:
        result = action() if action else None
        seen[label] = {
            "result": result,
            "index": _settled_index(http),
            "ready": {m: http.is_model_ready(m) for m in ("add", "ens_a", "ens_b", "ens_c")},
            "infer ens_a http": _infer(http, httpclient, "ens_a", 1),
            "infer ens_a grpc": _infer(grpc, grpcclient, "ens_a", 1),
            "infer ens_b http": _infer(http, httpclient, "ens_b", 1),
            "server ready": http.is_server_ready(),
            "initialized": _events(target),
        }

    step("0 start", None)
    step("1 load ens_a", lambda: _control(http.load_model, "ens_a"))
    step("2 load ens_a again, nothing changed", lambda: _control(grpc.load_model, "ens_a"))
    step("3 unload add", lambda: _control(http.unload_model, "add"))
    step("4 load add", lambda: _control(grpc.load_model, "add"))
    step("5 unload ens_b", lambda: _control(grpc.unload_model, "ens_b"))
    step("6 load ens_b", lambda: _control(http.load_model, "ens_b"))

    def reload_add() -> Any:
        _touch(target.repository / "add" / "1" / "model.py")
        return _control(http.load_model, "add")

    step("7 load add after its model file changed", reload_add)
    step("8 unload ens_a", lambda: _control(http.unload_model, "ens_a"))
    step("9 load ens_c", lambda: _control(http.load_model, "ens_c"))
    http.close()
    grpc.close()
    return seen


def build_nested(repo: Path) -> None:
    python_model(repo, "add", _plain("add"), _add_one(False))
    _ensemble_dir(repo, "ens_b", _ensemble("ens_b", [("add", {"IN": "IN"}, {"OUT": "OUT"})]))
    _ensemble_dir(repo, "ens_a", _ensemble("ens_a", [("ens_b", {"IN": "IN"}, {"OUT": "OUT"})]))


def nested(target: Target) -> Any:
    import tritonclient.http as httpclient

    http = httpclient.InferenceServerClient(target.http_url)
    seen = {
        "index": _settled_index(http),
        "server ready": http.is_server_ready(),
        "infer ens_a": _infer(http, httpclient, "ens_a", 5),
    }
    http.close()
    return seen


# ---- 2. sequence ids and flags reach the steps -----------------------------------------------

SEQUENCE_STEP = """
name: "seq"
backend: "python"
max_batch_size: 4
sequence_batching {
  direct { max_queue_delay_microseconds: 0 }
  control_input [
    { name: "START" control [{ kind: CONTROL_SEQUENCE_START int32_false_true: [0, 1] }] },
    { name: "END" control [{ kind: CONTROL_SEQUENCE_END int32_false_true: [0, 1] }] },
    { name: "READY" control [{ kind: CONTROL_SEQUENCE_READY int32_false_true: [0, 1] }] },
    { name: "CORRID" control [{ kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 }] }
  ]
}
input [{ name: "IN" data_type: TYPE_INT32 dims: [1] }]
output [{ name: "OUT" data_type: TYPE_INT32 dims: [1] }]
instance_group [{ kind: KIND_CPU count: 1 }]
"""


def build_sequence(repo: Path) -> None:
    python_model(repo, "seq", SEQUENCE_STEP, _add_one(True))
    python_model(repo, "plain", _plain("plain", max_batch_size=4), _add_one(True))
    _ensemble_dir(
        repo,
        "seq_ens",
        _ensemble(
            "seq_ens",
            [("seq", {"IN": "IN"}, {"OUT": "MID"}), ("plain", {"IN": "MID"}, {"OUT": "OUT"})],
            max_batch_size=4,
        ),
    )


def sequence(target: Target) -> Any:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    http = httpclient.InferenceServerClient(target.http_url)
    grpc = grpcclient.InferenceServerClient(target.grpc_url)
    seen: dict[str, Any] = {}
    seen["grpc start"] = _infer(grpc, grpcclient, "seq_ens", 1, batch=True, sequence_id=42,
                                sequence_start=True)  # fmt: skip
    seen["grpc middle"] = _infer(grpc, grpcclient, "seq_ens", 2, batch=True, sequence_id=42)
    seen["grpc end"] = _infer(grpc, grpcclient, "seq_ens", 3, batch=True, sequence_id=42,
                              sequence_end=True)  # fmt: skip
    seen["http start+end"] = _infer(http, httpclient, "seq_ens", 4, batch=True, sequence_id=7,
                                    sequence_start=True, sequence_end=True)  # fmt: skip
    seen["http no sequence"] = _infer(http, httpclient, "seq_ens", 5, batch=True)
    seen["seq saw"] = target.observations("seq")
    seen["plain saw"] = target.observations("plain")
    http.close()
    grpc.close()
    return seen


# ---- 3. a decoupled step: every response flows on ---------------------------------------------

DECOUPLED = """
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        self.args = args

    def execute(self, requests):
        recorder.record(self.args, [recorder.describe_request(r) for r in requests])
        for r in requests:
            n = int(pb_utils.get_input_tensor_by_name(r, "IN").as_numpy()[0])
            sender = r.get_response_sender()
            for i in range(n):
                sender.send(pb_utils.InferenceResponse(
                    [pb_utils.Tensor("OUT", np.array([10 * (i + 1)], dtype=np.int32))]))
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
"""


def build_decoupled(repo: Path) -> None:
    python_model(
        repo, "gen", _plain("gen", extra="model_transaction_policy { decoupled: true }"), DECOUPLED
    )
    python_model(repo, "add", _plain("add"), _add_one(True))
    _ensemble_dir(
        repo,
        "gen_ens",
        _ensemble(
            "gen_ens",
            [("gen", {"IN": "IN"}, {"OUT": "MID"}), ("add", {"IN": "MID"}, {"OUT": "OUT"})],
        ),
    )


def _stream(url: str, model: str, value: int) -> Any:
    import queue

    import tritonclient.grpc as grpcclient

    results: queue.Queue[Any] = queue.Queue()
    client = grpcclient.InferenceServerClient(url)
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    tensor = grpcclient.InferInput("IN", [1], "INT32")
    tensor.set_data_from_numpy(np.array([value], dtype=np.int32))
    client.async_stream_infer(model, [tensor], enable_empty_final_response=True)
    got = []
    while True:
        try:
            result, error = results.get(timeout=30)
        except queue.Empty:
            got.append("no final response within 30 s")
            break
        if error is not None:
            got.append(_error(error))
            break
        response = result.get_response()
        final = response.parameters["triton_final_response"].bool_param
        entry: dict[str, Any] = {"final": final}
        if response.outputs:
            entry["OUT"] = result.as_numpy("OUT").tolist()
        got.append(entry)
        if final:
            break
    client.stop_stream()
    client.close()
    return got


def decoupled(target: Target) -> Any:
    import tritonclient.http as httpclient

    seen: dict[str, Any] = {}
    seen["stream 3"] = _stream(target.grpc_url, "gen_ens", 3)
    seen["stream 0"] = _stream(target.grpc_url, "gen_ens", 0)
    http = httpclient.InferenceServerClient(target.http_url)
    seen["http 1"] = _infer(http, httpclient, "gen_ens", 1)
    seen["gen saw"] = target.wait_observations("gen", 4)
    seen["add saw"] = target.wait_observations("add", 3)
    http.close()
    return seen


def build_mixed(repo: Path) -> None:
    build_decoupled(repo)
    # "join" takes one tensor from gen's responses and one from the request's lineage.
    python_model(
        repo,
        "join",
        _plain("join").replace(
            'input [{ name: "IN" data_type: TYPE_INT32 dims: [1] }]',
            'input [{ name: "IN" data_type: TYPE_INT32 dims: [1] },'
            ' { name: "OTHER" data_type: TYPE_INT32 dims: [1] }]',
        ),
        _add_one(False),
    )
    _ensemble_dir(
        repo,
        "mixed",
        _ensemble(
            "mixed",
            [("gen", {"IN": "IN"}, {"OUT": "MID"}),
             ("join", {"IN": "MID", "OTHER": "IN"}, {"OUT": "OUT"})],
        ),
    )  # fmt: skip


def mixed(target: Target) -> Any:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    http = httpclient.InferenceServerClient(target.http_url)
    grpc = grpcclient.InferenceServerClient(target.grpc_url)
    from tritonclient.utils import InferenceServerException

    seen: dict[str, Any] = {
        "load mixed": _control(http.load_model, "mixed"),
        "load gen_ens": _control(grpc.load_model, "gen_ens"),
    }
    try:
        config = grpc.get_model_config("gen_ens").config
        seen["gen_ens decoupled"] = config.model_transaction_policy.decoupled
    except InferenceServerException as e:
        seen["gen_ens decoupled"] = _error(e)
    seen["index"] = _settled_index(http)
    http.close()
    grpc.close()
    return seen


# ---- 4. steps that no requested output needs do not run --------------------------------------


def build_pruned(repo: Path) -> None:
    for name in ("left", "right", "after_right"):
        python_model(repo, name, _plain(name), _add_one(True))
    _ensemble_dir(
        repo,
        "fork",
        _ensemble(
            "fork",
            [
                ("left", {"IN": "IN"}, {"OUT": "OUT_L"}),
                ("right", {"IN": "IN"}, {"OUT": "MID_R"}),
                ("after_right", {"IN": "MID_R"}, {"OUT": "OUT_R"}),
            ],
            outputs=("OUT_L", "OUT_R"),
        ),
    )


def pruned(target: Target) -> Any:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    seen: dict[str, Any] = {}
    for proto, module, url in (("grpc", grpcclient, target.grpc_url),
                               ("http", httpclient, target.http_url)):  # fmt: skip
        client = module.InferenceServerClient(url)
        for wanted in (["OUT_L"], ["OUT_R"], ["OUT_L", "OUT_R"], []):
            outputs = [module.InferRequestedOutput(name) for name in wanted] or None
            label = f"{proto} {'+'.join(wanted) or 'all'}"
            seen[label] = _infer(client, module, "fork", 1, outputs=outputs)
            seen[label + " ran"] = {
                m: [len(e) for e in target.observations(m)] for m in ("left", "right", "after_right")
            }
            for m in ("left", "right", "after_right"):
                target.clear(m)
        client.close()
    return seen


# ---- 5. a step rejected by its queue policy: the ensemble's failure counts -------------------

SLOW = """
import os
import time
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        self.args = args

    def execute(self, requests):
        recorder.record(self.args, [recorder.describe_request(r) for r in requests])
        release = os.path.join(self.args["model_repository"], "release")
        deadline = time.monotonic() + 30
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.02)
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy() + 1)]) for r in requests]
"""


def build_rejected(repo: Path) -> None:
    python_model(
        repo,
        "slow",
        _plain("slow", max_batch_size=1,
               extra="dynamic_batching { default_queue_policy { max_queue_size: 1 } }"),
        SLOW,
    )  # fmt: skip
    _ensemble_dir(
        repo,
        "slow_ens",
        _ensemble("slow_ens", [("slow", {"IN": "IN"}, {"OUT": "OUT"})], max_batch_size=1),
    )


_COUNTERS = (
    "nv_inference_request_success",
    "nv_inference_request_failure",
    "nv_inference_count",
    "nv_inference_exec_count",
)


def _metrics(url: str) -> list[str]:
    import urllib.request

    with urllib.request.urlopen(f"http://{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sorted(line for line in text.splitlines() if line.startswith(_COUNTERS))


def _counts(stats: Any) -> dict[str, Any]:
    out = {}
    for model in stats["model_stats"]:
        inference = model["inference_stats"]
        out[model["name"]] = {
            "inference_count": model.get("inference_count", 0),
            "execution_count": model.get("execution_count", 0),
            **{k: inference.get(k, {}).get("count", 0) for k in ("success", "fail", "queue")},
        }
    return out


def rejected(target: Target) -> Any:
    import tritonclient.http as httpclient

    seen: dict[str, Any] = {}
    results: dict[str, Any] = {}

    def direct(label: str, value: int) -> None:
        client = httpclient.InferenceServerClient(target.http_url)
        results[label] = _infer(client, httpclient, "slow", value, batch=True)
        client.close()

    first = threading.Thread(target=direct, args=("first", 1))
    first.start()
    target.wait_observations("slow", 1)  # executing, waiting for the release file
    second = threading.Thread(target=direct, args=("queued", 2))
    second.start()
    http = httpclient.InferenceServerClient(target.http_url)
    deadline = time.monotonic() + 10  # until the second request waits in slow's queue
    while time.monotonic() < deadline:
        if _queued_now(target):
            break
        time.sleep(0.05)
    # (A server may count the executing request as pending too: time for the second to arrive,
    # generous on a loaded machine.)
    time.sleep(1.5)
    seen["ensemble while full"] = _infer(http, httpclient, "slow_ens", 3, batch=True)
    (target.repository / "slow" / "release").write_text("")
    first.join()
    second.join()
    seen["direct"] = results
    seen["ensemble after"] = _infer(http, httpclient, "slow_ens", 4, batch=True)
    seen["statistics"] = _counts(http.get_inference_statistics())
    seen["metrics"] = _metrics(target.metrics_url)
    http.close()
    return seen


def _queued_now(target: Target) -> bool:
    """Whether slow's pending-request gauge shows a request in its queue."""
    try:
        import urllib.request

        url = f"http://{target.metrics_url}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
    except OSError:
        return False
    return any(
        line.startswith('nv_inference_pending_request_count{model="slow"')
        and not line.endswith(" 0")
        for line in text.splitlines()
    )


# ---- 6. a load with a config override, then plain loads --------------------------------------

OVERRIDE = {
    "name": "conf",
    "backend": "python",
    "max_batch_size": 0,
    "input": [{"name": "IN", "data_type": "TYPE_INT32", "dims": [1]}],
    "output": [{"name": "OUT", "data_type": "TYPE_INT32", "dims": [1]}],
    "parameters": {"source": {"string_value": "override"}},
}


def build_override(repo: Path) -> None:
    extra = 'parameters { key: "source" value { string_value: "file" } }'
    _no_bytecode(python_model(repo, "conf", _plain("conf", extra=extra), _add_one(False)))


def override(target: Target) -> Any:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    http = httpclient.InferenceServerClient(target.http_url)
    grpc = grpcclient.InferenceServerClient(target.grpc_url)
    seen: dict[str, Any] = {}

    def step(label: str, action: Any) -> None:
        from tritonclient.utils import InferenceServerException

        result = action()
        try:
            config = http.get_model_config("conf")
            source = config.get("parameters", {}).get("source", {}).get("string_value")
        except InferenceServerException as e:
            source = _error(e)
        seen[label] = {
            "result": result,
            "source": source,
            "index": _settled_index(http),
            "initialized": len(_events(target)),
        }

    step("1 load", lambda: _control(http.load_model, "conf"))
    step("2 load with override", lambda: _control(http.load_model, "conf",
                                                  config=json.dumps(OVERRIDE)))  # fmt: skip
    step("3 plain load", lambda: _control(grpc.load_model, "conf"))
    step("4 plain load again", lambda: _control(http.load_model, "conf"))

    def edited() -> Any:
        _touch(target.repository / "conf" / "config.pbtxt")
        return _control(http.load_model, "conf")

    step("5 plain load after the config file changed", edited)
    step("6 unload", lambda: _control(http.unload_model, "conf"))
    step("7 load with override, unload, plain load", lambda: [
        _control(grpc.load_model, "conf", config=json.dumps(OVERRIDE)),
        _control(grpc.unload_model, "conf"),
        _settled_index(http) and _control(grpc.load_model, "conf"),
    ])  # fmt: skip
    http.close()
    grpc.close()
    return seen


CASES = [
    Case(
        "ensemble_lifecycle_explicit",
        build_lifecycle,
        lifecycle,
        args=("--model-control-mode=explicit",),
        about="explicit mode: loading an ensemble loads its composing models (nested, in "
        "dependency order); unloading or loading a composing model unloads or reloads its "
        "ensembles; an unchanged model is not reloaded",
    ),
    Case(
        "ensemble_nested_startup",
        build_nested,
        nested,
        about="at start nested ensembles load in dependency order, not name order",
    ),
    Case(
        "ensemble_nested_load_model_flag",
        build_nested,
        nested,
        args=("--model-control-mode=explicit", "--load-model=ens_a"),
        about="--load-model of an ensemble loads its composing models, nested",
    ),
    Case(
        "ensemble_sequence_flags",
        build_sequence,
        sequence,
        about="the ensemble's correlation id and sequence start/end flags reach every step",
    ),
    Case(
        "ensemble_decoupled_step",
        build_decoupled,
        decoupled,
        about="every response of a decoupled step flows through the later steps to the client",
    ),
    Case(
        "ensemble_decoupled_mixed_inputs",
        build_mixed,
        mixed,
        args=("--model-control-mode=explicit",),
        about="a step fed by a decoupled step and by the request's own lineage is refused at "
        "load; an ensemble with a decoupled step is decoupled itself",
    ),
    Case(
        "ensemble_pruned_steps",
        build_pruned,
        pruned,
        about="steps that no requested output needs do not run",
    ),
    Case(
        "ensemble_rejected_step_counts",
        build_rejected,
        rejected,
        about="a step rejected by its queue policy fails the ensemble request; how the "
        "statistics and failure metrics count it",
    ),
    Case(
        "ensemble_load_config_override",
        build_override,
        override,
        args=("--model-control-mode=explicit",),
        about="a config given with a load request stays in use on later plain loads until the "
        "model's files change",
    ),
]
