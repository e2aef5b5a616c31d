"""Ragged batching: ``allow_ragged_batch`` inputs, ``batch_input`` and ``batch_output``.

The real Triton here has only the python backend, which takes a batch as a list of requests:
what it shows is the core's dynamic batcher putting requests whose ragged input differs in
shape into one execution, and what a python model with ``batch_input`` / ``batch_output`` gets
(the tensors Triton derives from a batch are made by the batching backends' input collectors,
which the python backend does not use). The gathered, flattened tensors and batch inputs an
ONNX model gets are shown by tests/test_ragged_batching.py.
"""

from __future__ import annotations

import queue
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from parity.harness import Case, Target, python_model

# max_batch_size 3 and a long queue delay: the batch goes when the third request arrives (full),
# or earlier when a request cannot join it (a shape that does not batch).
RAGGED = """
name: "{name}"
backend: "python"
max_batch_size: 3
dynamic_batching {{ max_queue_delay_microseconds: {delay} }}
input [{{ name: "IN" data_type: TYPE_FP32 dims: [ -1 ] {ragged} }}]
output [{{ name: "OUT" data_type: TYPE_FP32 dims: [ -1 ] }}]
instance_group [{{ kind: KIND_CPU count: 1 }}]
{extra}
"""

DOUBLE = """
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        self.args = args

    def execute(self, requests):
        seen = [recorder.describe_request(r) for r in requests]
        recorder.record(self.args, sorted(seen, key=lambda d: str(d["inputs"])))
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy() * 2)]) for r in requests]
"""

LENGTHS = (2, 3, 1)  # the three requests' token counts: shapes [1, 2], [1, 3], [1, 1]


def _config(name: str, ragged: bool, delay: int = 20_000_000, extra: str = "") -> str:
    return RAGGED.format(
        name=name, delay=delay, ragged="allow_ragged_batch: true" if ragged else "", extra=extra
    )


def _send_three(target: Target, model: str) -> Any:
    """The three requests at once (gRPC, async); each one's result or error, in send order."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(target.grpc_url)
    results: queue.Queue[tuple[int, Any, Any]] = queue.Queue()

    def done(index: int, result: Any, error: Any) -> None:
        results.put((index, result, error))

    for index, length in enumerate(LENGTHS):
        tensor = grpcclient.InferInput("IN", [1, length], "FP32")
        tensor.set_data_from_numpy(np.full([1, length], length, dtype=np.float32))
        client.async_infer(model, [tensor], partial(done, index))
    answers: list[Any] = [None] * len(LENGTHS)
    for _ in LENGTHS:
        index, result, error = results.get(timeout=60)
        if error is not None:
            answers[index] = {"status": str(error.status()), "message": error.message()}
        else:
            out = result.as_numpy("OUT")
            answers[index] = {"shape": list(out.shape), "values": out.reshape(-1).tolist()}
    client.close()
    return answers


def _batches(target: Target, model: str) -> Any:
    """The executions the model saw: each a sorted list of request descriptions."""
    return sorted(target.observations(model), key=lambda batch: (-len(batch), str(batch)))


def build_shapes(repo: Path) -> None:
    python_model(repo, "ragged", _config("ragged", True), DOUBLE)
    # The same model without allow_ragged_batch: a request whose shape differs does not join.
    python_model(repo, "padded", _config("padded", False, delay=100_000), DOUBLE)


def ragged_shapes(target: Target) -> Any:
    seen: dict[str, Any] = {}
    for model in ("ragged", "padded"):
        seen[model] = {
            "responses": _send_three(target, model),
            "executions": _batches(target, model),
        }
    return seen


BATCH_INPUT = """
batch_input [{ kind: BATCH_ACCUMULATED_ELEMENT_COUNT target_name: "INDEX"
               data_type: TYPE_FP32 source_input: "IN" }]
"""
BATCH_OUTPUT = """
batch_output [{ kind: BATCH_SCATTER_WITH_INPUT_SHAPE target_name: "OUT" source_input: "IN" }]
"""


def build_batch_io(repo: Path) -> None:
    python_model(repo, "with_batch_input", _config("with_batch_input", True, extra=BATCH_INPUT),
                 DOUBLE)  # fmt: skip
    python_model(repo, "with_batch_output",
                 _config("with_batch_output", True, extra=BATCH_OUTPUT), DOUBLE)  # fmt: skip


def batch_io(target: Target) -> Any:
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    client = httpclient.InferenceServerClient(target.http_url)
    seen: dict[str, Any] = {}
    for model in ("with_batch_input", "with_batch_output"):
        try:
            client.load_model(model)
        except InferenceServerException as e:
            seen[model] = {"load": {"status": str(e.status()), "message": e.message()}}
            continue
        seen[model] = {
            "load": "ok",
            "responses": _send_three(target, model),
            "executions": _batches(target, model),
        }
    client.close()
    return seen


CASES = [
    Case(
        "ragged_python_batches_differing_shapes",
        build_shapes,
        ragged_shapes,
        about="requests whose allow_ragged_batch input differs in shape share one execution; "
        "without allow_ragged_batch each runs alone",
    ),
    Case(
        "ragged_python_batch_input_output",
        build_batch_io,
        batch_io,
        args=("--model-control-mode=explicit",),
        about="a python model with batch_input / batch_output loads; it gets the requests' own "
        "inputs only, its responses as it made them",
    ),
]
