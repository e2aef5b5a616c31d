"""Sequence batcher request rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from parity.harness import Case, Target, python_model

SEQUENCE_MODEL = """
name: "seq"
backend: "python"
max_batch_size: 4
sequence_batching {
  direct { max_queue_delay_microseconds: 0 }
  control_input [
    { name: "START" control [{ kind: CONTROL_SEQUENCE_START int32_false_true: [0, 1] }] },
    { name: "READY" control [{ kind: CONTROL_SEQUENCE_READY int32_false_true: [0, 1] }] }
  ]
}
input [{ name: "IN" data_type: TYPE_INT32 dims: [1] }]
output [{ name: "OUT" data_type: TYPE_INT32 dims: [1] }]
instance_group [{ kind: KIND_CPU count: 1 }]
"""

ECHO = """
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        self.args = args

    def execute(self, requests):
        recorder.record(self.args, [recorder.describe_request(r) for r in requests])
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy())]) for r in requests]
"""


def build(repo: Path) -> None:
    python_model(repo, "seq", SEQUENCE_MODEL, ECHO)


def batch_of_two(target: Target) -> Any:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    seen: dict[str, Any] = {}
    for proto, module, url in (("grpc", grpcclient, target.grpc_url),
                               ("http", httpclient, target.http_url)):  # fmt: skip
        client = module.InferenceServerClient(url)
        tensor = module.InferInput("IN", [2, 1], "INT32")
        tensor.set_data_from_numpy(np.array([[1], [2]], dtype=np.int32))
        try:
            result = client.infer("seq", [tensor], sequence_id=7, sequence_start=True,
                                  sequence_end=True)  # fmt: skip
            seen[proto] = {"ok": result.as_numpy("OUT").tolist()}
        except InferenceServerException as e:
            seen[proto] = {"status": str(e.status()), "message": e.message()}
        client.close()
    seen["model saw"] = target.observations("seq")
    return seen


CASES = [
    Case(
        "sequence_batch_size_above_one",
        build,
        batch_of_two,
        about="a request with batch size 2 to a sequence model is refused",
    ),
]
