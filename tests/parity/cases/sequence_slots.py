"""Sequence batcher slots: the direct strategy lays a batch out by sequence slot (filler rows
with READY=0 for slots without a ready request), sequences beyond the slots wait for one,
minimum_slot_utilization holds a batch back, and oldest's max_candidate_sequences applies per
instance."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from parity.harness import Case, Target, python_model

CONTROLS = """
  control_input [
    { name: "START" control [{ kind: CONTROL_SEQUENCE_START int32_false_true: [0, 1] }] },
    { name: "END" control [{ kind: CONTROL_SEQUENCE_END int32_false_true: [0, 1] }] },
    { name: "READY" control [{ kind: CONTROL_SEQUENCE_READY int32_false_true: [0, 1] }] },
    { name: "CORRID" control [{ kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 }] }
  ]
"""

# {max_batch_size}, {strategy}, {instances}, {idle}
CONFIG = (
    """
name: "seq"
backend: "python"
max_batch_size: {max_batch_size}
sequence_batching {{
  max_sequence_idle_microseconds: {idle}
  {strategy}
"""
    + CONTROLS.replace("{", "{{").replace("}", "}}")
    + """
}}
input [{{ name: "IN" data_type: TYPE_INT32 dims: [1] }}]
output [{{ name: "OUT" data_type: TYPE_INT32 dims: [1] }}]
instance_group [{{ kind: KIND_CPU count: {instances} }}]
"""
)

# Records each execute's requests in order. A filler (not-ready) request's data is unspecified
# in Triton (uninitialised memory): its IN values are left out. The first execute waits for the
# file "gate" in the model directory (the client creates it once it queued the rest).
GATED = """
import time
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        self.args = args
        self.first = True

    def execute(self, requests):
        if self.first:
            self.first = False
            gate = os.path.join(self.args["model_repository"], "gate")
            deadline = time.monotonic() + 30
            while not os.path.exists(gate) and time.monotonic() < deadline:
                time.sleep(0.01)
        seen = []
        for r in requests:
            entry = recorder.describe_request(r)
            if entry["inputs"]["READY"]["values"] == [0]:
                entry["inputs"]["IN"].pop("values")
            seen.append(entry)
        recorder.record(self.args, seen)
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy())]) for r in requests]
"""


def _config(max_batch_size: int = 4, strategy: str = "direct { }", instances: int = 1,
            idle: int = 60_000_000) -> str:  # fmt: skip
    return CONFIG.format(max_batch_size=max_batch_size, strategy=strategy, instances=instances,
                         idle=idle)  # fmt: skip


def _short(entry: dict[str, Any]) -> dict[str, Any]:
    """One request as the model saw it, compactly: controls, correlation ID, flags, IN."""
    inputs = entry["inputs"]
    out = {name.lower(): inputs[name]["values"] for name in ("START", "END", "READY", "CORRID")}
    out.update(correlation_id=entry["correlation_id"], flags=entry["flags"],
               requested_outputs=entry["requested_outputs"],
               shapes={k: v["shape"] for k, v in inputs.items()})  # fmt: skip
    if "values" in inputs["IN"]:
        out["in"] = inputs["IN"]["values"]
    return out


def _batches(target: Target) -> list[list[dict[str, Any]]]:
    return [[_short(e) for e in batch] for batch in target.observations("seq")]


def _statistics(target: Target) -> dict[str, Any]:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(target.http_url)
    stats = client.get_inference_statistics("seq")["model_stats"][0]
    client.close()
    return {
        "inference_count": int(stats.get("inference_count", 0)),
        "execution_count": int(stats.get("execution_count", 0)),
        "success_count": int(stats["inference_stats"]["success"]["count"]),
        "batch_stats": sorted(
            (int(b["batch_size"]), int(b["compute_infer"]["count"]))
            for b in stats.get("batch_stats", [])
        ),
    }


class _Client:
    """Sequence steps over gRPC, sent in the background or waited for."""

    def __init__(self, target: Target) -> None:
        import tritonclient.grpc as grpcclient

        self.grpc = grpcclient
        self.client = grpcclient.InferenceServerClient(target.grpc_url)

    def send(self, corr: int | str, value: int, start: bool = False, end: bool = False,
             timeout_s: float | None = None) -> dict[str, Any]:  # fmt: skip
        """Sends one step in the background; the returned dict gets "ok" or "error"."""
        from tritonclient.utils import InferenceServerException

        tensor = self.grpc.InferInput("IN", [1, 1], "INT32")
        tensor.set_data_from_numpy(np.array([[value]], dtype=np.int32))
        got: dict[str, Any] = {}
        done = threading.Event()

        def callback(result: Any, error: InferenceServerException | None) -> None:
            try:
                if error is not None:
                    got["error"] = {"status": str(error.status()), "message": error.message()}
                else:
                    got["ok"] = result.as_numpy("OUT").tolist()
            finally:
                done.set()

        kwargs: dict[str, Any] = {}
        if timeout_s is not None:
            kwargs["client_timeout"] = timeout_s
        call = self.client.async_infer("seq", [tensor], callback, sequence_id=corr,
                                       sequence_start=start, sequence_end=end, **kwargs)  # fmt: skip
        got["_done"] = done
        got["_call"] = call
        return got

    @staticmethod
    def wait(*results: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for r in results:
            r["_done"].wait(60)
            out.append({k: v for k, v in r.items() if not k.startswith("_")})
        return out

    def step(self, corr: int | str, value: int, start: bool = False, end: bool = False,
             timeout_s: float | None = None) -> dict[str, Any]:  # fmt: skip
        return self.wait(self.send(corr, value, start, end, timeout_s))[0]

    def close(self) -> None:
        self.client.close()


# ---- direct: the batch is laid out by slot ---------------------------------------------------


def build_direct(repo: Path) -> None:
    python_model(repo, "seq", _config(), GATED)


def direct_slots(target: Target) -> Any:
    c = _Client(target)
    answers: dict[str, Any] = {}
    # Sequence 1 takes slot 0 and runs alone, held at the gate while 2 and 3 take slots 1, 2.
    a = c.send(1, 10, start=True)
    time.sleep(0.5)
    b = c.send(2, 20, start=True)
    time.sleep(0.3)
    d = c.send(3, 30, start=True)
    time.sleep(1.0)
    (target.repository / "seq" / "gate").touch()
    answers["starts"] = c.wait(a, b, d)
    answers["3 end"] = c.step(3, 31, end=True)  # slots 0 and 1 idle: filler rows
    answers["1 end"] = c.step(1, 11, end=True)  # slot 0: alone
    answers["4 start"] = c.step(4, 40, start=True)  # the lowest free slot: 0
    answers["2 end"] = c.step(2, 21, end=True)  # slot 1, slot 0 (sequence 4) idle
    answers["4 end"] = c.step(4, 41, end=True)
    c.close()
    return {"answers": answers, "model saw": _batches(target), "statistics": _statistics(target)}


# ---- direct: sequences beyond the slots wait --------------------------------------------------


def build_backlog(repo: Path) -> None:
    python_model(repo, "seq", _config(max_batch_size=2), GATED)


def direct_backlog(target: Target) -> Any:
    c = _Client(target)
    (target.repository / "seq" / "gate").touch()
    answers: dict[str, Any] = {}
    answers["1 start"] = c.step(1, 10, start=True)  # slot 0
    answers["2 start"] = c.step(2, 20, start=True)  # slot 1
    third = c.send(3, 30, start=True)  # no slot free: waits (backlog)
    time.sleep(1.0)
    answers["3 waiting"] = "_done" in third and not third["_done"].is_set()
    answers["1 end"] = c.step(1, 11, end=True)  # frees slot 0: sequence 3 takes it
    answers["3 start"] = c.wait(third)[0]
    answers["2 end"] = c.step(2, 21, end=True)
    answers["3 end"] = c.step(3, 31, end=True)
    c.close()
    return {"answers": answers, "model saw": _batches(target)}


# ---- direct: minimum_slot_utilization ---------------------------------------------------------


def build_utilization(repo: Path) -> None:
    strategy = "direct { max_queue_delay_microseconds: 30000000 minimum_slot_utilization: 0.5 }"
    python_model(repo, "seq", _config(strategy=strategy), GATED)


def direct_utilization(target: Target) -> Any:
    c = _Client(target)
    (target.repository / "seq" / "gate").touch()
    answers: dict[str, Any] = {}
    # One ready slot of four is below 0.5: sequence 1 waits until sequence 2 is ready too.
    a = c.send(1, 10, start=True)
    time.sleep(0.5)
    answers["1 waiting"] = not a["_done"].is_set()
    b = c.send(2, 20, start=True)
    answers["starts"] = c.wait(a, b)
    a = c.send(1, 11, end=True)
    time.sleep(0.3)
    b = c.send(2, 21, end=True)
    answers["ends"] = c.wait(a, b)
    c.close()
    return {"answers": answers, "model saw": _batches(target), "statistics": _statistics(target)}


# ---- a cancelled queued request ends its sequence ----------------------------------------------


def build_cancel(repo: Path) -> None:
    python_model(repo, "seq", _config(max_batch_size=1), GATED)


def cancel_ends_sequence(target: Target) -> Any:
    c = _Client(target)
    answers: dict[str, Any] = {}
    running = c.send(1, 10, start=True)  # takes the only slot, held at the gate
    time.sleep(0.5)
    queued = c.send(1, 11)
    time.sleep(0.5)
    queued["_call"].cancel()
    time.sleep(0.5)
    (target.repository / "seq" / "gate").touch()
    answers["running, cancelled"] = c.wait(running, queued)
    answers["1 again"] = c.step(1, 12)  # the sequence ended with the cancellation
    answers["2"] = c.step(2, 20, start=True, end=True)  # and its slot is free
    answers["never started"] = c.step("abc", 30)  # Triton's text for a string ID
    c.close()
    return {"answers": answers, "model saw": _batches(target)}


# ---- oldest: max_candidate_sequences per instance ---------------------------------------------


def build_oldest(repo: Path) -> None:
    strategy = "oldest { max_candidate_sequences: 2 }"
    python_model(repo, "seq", _config(strategy=strategy, instances=2), GATED)


def oldest_candidates(target: Target) -> Any:
    c = _Client(target)
    (target.repository / "seq" / "gate").touch()
    answers: dict[str, Any] = {}
    # Two instances with two candidate slots each: four sequences run at once.
    for corr in (1, 2, 3, 4):
        answers[f"{corr} start"] = c.step(corr, corr * 10, start=True, timeout_s=20)
    for corr in (1, 2, 3, 4):
        answers[f"{corr} end"] = c.step(corr, corr * 10 + 1, end=True, timeout_s=20)
    c.close()
    saw = sorted(r for batch in _batches(target) for r in (json_key(x) for x in batch))
    return {"answers": answers, "model saw (sorted)": saw}


def json_key(entry: dict[str, Any]) -> str:
    import json

    return json.dumps(entry, sort_keys=True)


CASES = [
    Case(
        "sequence_slots_direct_layout",
        build_direct,
        direct_slots,
        about="direct: each sequence keeps its batch slot; slots without a ready request below "
        "the highest ready one are filler requests (READY=0, CORRID=0)",
    ),
    Case(
        "sequence_slots_direct_backlog",
        build_backlog,
        direct_backlog,
        about="direct: a sequence beyond the slots waits until one ends, then takes its slot",
    ),
    Case(
        "sequence_slots_min_utilization",
        build_utilization,
        direct_utilization,
        about="direct: minimum_slot_utilization holds a batch until enough slots are ready",
    ),
    Case(
        "sequence_slots_cancel_ends_sequence",
        build_cancel,
        cancel_ends_sequence,
        about="direct: cancelling a queued request of a sequence ends the sequence and frees "
        "its slot; its next request needs START",
    ),
    Case(
        "sequence_slots_oldest_candidates_per_instance",
        build_oldest,
        oldest_candidates,
        about="oldest: max_candidate_sequences is the number of slots of each instance",
    ),
]
