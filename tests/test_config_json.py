"""The one config-to-JSON printer (``config.to_json``) prints what Triton 2.51's ModelConfigToJson
prints (recorded from the real server: HTTP /v2/models/<m>/config of the same config), and the
HTTP frontend's /config uses it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
from google.protobuf import text_format

from tritonlite import Server
from tritonlite._proto import model_config_pb2 as mc
from tritonlite.config import config_to_json
from tritonlite.frontends.http import HttpApi

# Triton turns some 64-bit fields back into JSON numbers and leaves the others as protobuf's JSON
# strings: sequence_batching.state.dims are numbers, state.initial_state.dims and
# instance_group.secondary_devices.device_id stay strings.
CONFIG = """
name: "m" backend: "python" max_batch_size: 8
input [{ name: "IN" data_type: TYPE_FP32 dims: [ -1, 4 ] reshape { shape: [ -1, 2, 2 ] } }]
output [{ name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] }]
sequence_batching { max_sequence_idle_microseconds: 9 state [{ input_name: "INPUT_STATE"
  output_name: "OUTPUT_STATE" data_type: TYPE_FP32 dims: [ 1 ]
  initial_state { name: "s" data_type: TYPE_FP32 dims: [ 1 ] zero_data: true } }] }
instance_group [{ name: "m_0" kind: KIND_CPU count: 1
  secondary_devices [{ kind: KIND_NVDLA device_id: 3 }] }]
"""


def test_int64_fields_as_triton_prints_them() -> None:
    doc = config_to_json(text_format.Parse(CONFIG, mc.ModelConfig()))
    assert doc["input"][0]["dims"] == [-1, 4]
    assert doc["input"][0]["reshape"] == {"shape": [-1, 2, 2]}
    assert doc["sequence_batching"]["max_sequence_idle_microseconds"] == 9
    state = doc["sequence_batching"]["state"][0]
    assert state["dims"] == [1]
    assert state["initial_state"][0]["dims"] == ["1"]
    assert doc["instance_group"][0]["secondary_devices"] == [
        {"kind": "KIND_NVDLA", "device_id": "3"}
    ]


class Identity:
    def create_instance(self, index: int, kind: str, device_id: int) -> Identity:
        return self

    def execute(self, inputs: dict[str, np.ndarray], names: list[str]) -> dict[str, Any]:
        return {"OUT": inputs["IN"]}

    def close(self) -> None:
        pass


def test_http_config_is_the_one_printer() -> None:
    config = text_format.Parse(
        'name: "m" max_batch_size: 0 input [{ name: "IN" data_type: TYPE_FP32 dims: [ 4 ] }] '
        'output [{ name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] }] '
        'instance_group [{ name: "m_0" kind: KIND_CPU count: 1 '
        "secondary_devices [{ kind: KIND_NVDLA device_id: 3 }] }]",
        mc.ModelConfig(),
    )
    server = Server()
    try:
        server.add_model(config, Identity())
        api = HttpApi(server)

        async def get() -> Any:
            async def no_body() -> bytes:
                return b""

            return await api.dispatch("GET", "/v2/models/m/config", {}, no_body)

        reply = asyncio.run(get())
    finally:
        server.close()
    assert reply.status == 200
    doc = json.loads(reply.body)
    assert doc == config_to_json(config)
    assert doc["instance_group"][0]["secondary_devices"][0]["device_id"] == "3"
