"""Implicit state of the sequence batcher beyond what the real Triton can show here (it has no
onnxruntime backend): initial state from a data file and a requested state output for a model
whose state the server keeps, state dims with -1, and the initial-state file rules. The python
model side is compared with Triton 2.51 in tests/parity/cases/seqstate.py."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from google.protobuf import text_format
from models import make_accumulator_onnx
from serving import ServerProcess, wait_http_live, write_config
from tritonlite import Server, TritonError
from tritonlite._proto import model_config_pb2 as mc
from tritonlite.initial_state import MAX_STATE_BYTES, initial_states

START, END = 1, 2

# The accumulator (OUTPUT = STATE_OUT = INPUT + STATE_IN) starting from 100 read from a file,
# with its state output also listed as a model output.
ACCUMULATOR = """
name: "acc" platform: "onnxruntime_onnx" max_batch_size: 8
input [{ name: "INPUT" data_type: TYPE_FP32 dims: [ 1 ] }]
output [{ name: "OUTPUT" data_type: TYPE_FP32 dims: [ 1 ] },
        { name: "STATE_OUT" data_type: TYPE_FP32 dims: [ 1 ] }]
sequence_batching {
  direct { }
  state [{ input_name: "STATE_IN" output_name: "STATE_OUT" data_type: TYPE_FP32 dims: [ 1 ]
           initial_state { data_type: TYPE_FP32 dims: [ 1 ] data_file: "hundred" name: "h" } }]
}
"""


def test_initial_state_from_a_file_and_the_state_output_for_the_client(tmp_path: Path) -> None:
    """main refused data_file at load, and answered a client that requested the state output
    with 500 "did not produce requested output" (the batcher took it away as its own)."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    model_dir = tmp_path / "acc"
    write_config(model_dir, ACCUMULATOR)
    make_accumulator_onnx(model_dir / "1" / "model.onnx")
    (model_dir / "initial_state").mkdir()
    # A longer file is used from its start, as Triton does.
    (model_dir / "initial_state" / "hundred").write_bytes(np.array([100, 7], np.float32).tobytes())
    with ServerProcess(tmp_path) as server:
        wait_http_live(server)
        for corr, (module, url) in enumerate(
            ((grpcclient, server.grpc_url), (httpclient, server.http_url)), start=1
        ):
            client = module.InferenceServerClient(url)
            got = []
            for step, value in enumerate((1.0, 2.0, 3.0)):
                x = module.InferInput("INPUT", [1, 1], "FP32")
                x.set_data_from_numpy(np.array([[value]], np.float32))
                outputs = [module.InferRequestedOutput(n) for n in ("OUTPUT", "STATE_OUT")]
                if step == 2:
                    outputs = [module.InferRequestedOutput("OUTPUT")]  # the state is still kept
                result = client.infer("acc", [x], outputs=outputs, sequence_id=corr,
                                      sequence_start=step == 0, sequence_end=step == 2)  # fmt: skip
                state = result.as_numpy("STATE_OUT")
                got.append((float(result.as_numpy("OUTPUT")[0, 0]),
                            None if state is None else float(state[0, 0])))  # fmt: skip
            client.close()
            assert got == [(101.0, 101.0), (103.0, 103.0), (106.0, None)], module.__name__


# A state of -1 dims that grows by one element per request: STATE_OUT = [STATE_IN, INPUT],
# OUTPUT = its sum and its length.
GROWING = """
name: "growing" max_batch_size: 4
input [{ name: "INPUT" data_type: TYPE_FP32 dims: [ 1 ] }]
output [{ name: "OUTPUT" data_type: TYPE_FP32 dims: [ 2 ] }]
instance_group [{ count: 1 }]
sequence_batching {
  max_sequence_idle_microseconds: 60000000
  direct { max_queue_delay_microseconds: 300000 }
  state [{ input_name: "STATE_IN" output_name: "STATE_OUT" data_type: TYPE_FP32 dims: [ -1 ] }]
}
"""


class Growing:
    """A gathered backend (the server keeps its state): records each batch's state shape."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, ...]] = []
        self.lock = threading.Lock()

    def create_instance(self, index: int, kind: str, device_id: int) -> Growing:
        return self

    def execute(self, inputs: dict[str, np.ndarray], names: list[str]) -> dict[str, Any]:
        state = inputs["STATE_IN"]
        with self.lock:
            self.batches.append(state.shape)
        grown = np.concatenate([state, inputs["INPUT"]], axis=1)
        length = np.full((grown.shape[0], 1), grown.shape[1], np.float32)
        return {"OUTPUT": np.concatenate([grown.sum(axis=1, keepdims=True), length], axis=1),
                "STATE_OUT": grown}  # fmt: skip

    def close(self) -> None:
        pass


def test_state_with_variable_dims_takes_the_shape_the_model_outputs() -> None:
    """main refused a state with -1 dims at load. The first request gets 1 for each -1 (zeros),
    later ones what the model returned; sequences whose states differ in shape never share a
    batch (their inputs could not be gathered)."""
    server = Server()
    backend = Growing()
    server.add_model(text_format.Parse(GROWING, mc.ModelConfig()), backend)

    async def step(corr: int, value: float, flags: int = 0) -> list[float]:
        out = await server.infer_async("growing", {"INPUT": np.array([[value]], np.float32)},
                                       correlation_id=corr, flags=flags)  # fmt: skip
        return [float(v) for v in out["OUTPUT"][0]]

    async def main() -> None:
        assert await step(1, 1.0, START) == [1.0, 2.0]  # the initial [1, 1] zeros + 1
        assert await step(1, 2.0) == [3.0, 3.0]
        # Sequence 1 (state of 3) and a new sequence 2 (state of 1) queue together: two
        # batches, each right.
        a, b = await asyncio.gather(step(1, 3.0), step(2, 5.0, START))
        assert a == [6.0, 4.0]
        assert b == [5.0, 2.0]
        # Sequences 2 and 3 now both have states of 2 after this: they may share a batch.
        assert await step(3, 4.0, START) == [4.0, 2.0]
        c, d = await asyncio.gather(step(2, 1.0, END), step(3, 1.0, END))
        assert c == [6.0, 3.0]
        assert d == [5.0, 3.0]

    try:
        asyncio.run(main())
    finally:
        server.close()
    assert all(len(shape) == 2 for shape in backend.batches)
    # The state lengths 1 and 3 were each executed in their own batch, never gathered together.
    # (How many rows a batch has depends on timing: an idle slot adds a not-ready filler row.)
    state_lengths = {shape[1] for shape in backend.batches}
    assert {1, 3} <= state_lengths


def test_a_state_output_of_another_rank_still_fails_clearly() -> None:
    server = Server()

    class WrongRank(Growing):
        def execute(self, inputs: dict[str, np.ndarray], names: list[str]) -> dict[str, Any]:
            out = super().execute(inputs, names)
            out["STATE_OUT"] = out["STATE_OUT"][:, :, None]
            return out

    server.add_model(text_format.Parse(GROWING, mc.ModelConfig()), WrongRank())
    try:
        with pytest.raises(TritonError) as info:
            server.infer("growing", {"INPUT": np.ones((1, 1), np.float32)}, correlation_id=1,
                         flags=START)  # fmt: skip
        assert info.value.status == "INTERNAL"
        assert ("returned implicit state output 'STATE_OUT' as FP32 [1,2,1], but "
                "sequence_batching state 'STATE_IN' needs FP32 [1,-1]") in info.value.message
    finally:
        server.close()


# ---- the initial state's data and its file -------------------------------------------------------

STATE = """
name: "m" max_batch_size: 1
input [{ name: "IN" data_type: TYPE_INT32 dims: [ 1 ] }]
output [{ name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] }]
sequence_batching { state [{ input_name: "S" output_name: "S_OUT" %s }] }
"""


def states(tmp_path: Path, state: str, files: dict[str, bytes] | None = None) -> list[bytes]:
    (tmp_path / "initial_state").mkdir(exist_ok=True)
    for name, data in (files or {}).items():
        (tmp_path / "initial_state" / name).write_bytes(data)
    return initial_states(text_format.Parse(STATE % state, mc.ModelConfig()), tmp_path)


def words(*items: bytes) -> bytes:
    return b"".join(len(w).to_bytes(4, "little") + w for w in items)


def test_initial_state_data(tmp_path: Path) -> None:
    int32 = 'data_type: TYPE_INT32 dims: [ %s ] initial_state { data_type: TYPE_INT32 dims: [ %s ] %s name: "i" }'
    f = {"f": np.arange(1, 7, dtype=np.int32).tobytes()}
    assert states(tmp_path, int32 % ("2", "2", 'data_file: "f"'), f) == [f["f"][:8]]
    assert states(tmp_path, int32 % ("-1, 2", "3, 2", 'data_file: "f"'), f) == [f["f"][:8]]
    assert states(tmp_path, int32 % ("-1", "0", 'data_file: "f"'), f) == [bytes(4)]  # padded
    assert states(tmp_path, int32 % ("3", "3", "zero_data: true"), f) == [bytes(12)]
    assert states(tmp_path, "data_type: TYPE_FP32 dims: [ -1, 2 ]") == [bytes(8)]
    text = 'data_type: TYPE_STRING dims: [ 2 ] initial_state { data_type: TYPE_STRING dims: [ 2 ] %s name: "w" }'
    w = {"w": words(b"a", b"bc", b"ignored")}
    assert states(tmp_path, text % 'data_file: "w"', w) == [words(b"a", b"bc")]
    assert states(tmp_path, text % "zero_data: true") == [words(b"", b"")]


@pytest.mark.parametrize(
    "state, files, status, message",
    [
        ('dims: [ 3 ] initial_state { data_type: TYPE_INT32 dims: [ 3 ] data_file: "f" name: "i" }',
         {"f": b"\x01\x02"}, "INVALID_ARG",
         "initial_state setting expects 12 bytes, but the data provided from fonly has 2 bytes."),
        ('dims: [ 1 ] initial_state { data_type: TYPE_INT32 dims: [ 1 ] data_file: "gone" name: "i" }',
         {}, "INTERNAL", "failed to open text file for read {dir}/initial_state/gone: No such file"),
        ('dims: [ 1 ] initial_state { data_type: TYPE_INT32 dims: [ 1 ] data_file: "../config" name: "i" }',
         {}, "INVALID_ARG", "must name a file inside the model's 'initial_state' directory"),
        ('dims: [ 1 ] initial_state { data_type: TYPE_INT32 dims: [ 1 ] data_file: "link" name: "i" }',
         {}, "INVALID_ARG", "resolves outside the model's 'initial_state' directory"),
        ('dims: [ 1 ] initial_state { data_type: TYPE_INT32 dims: [ 1 ] data_file: "sub" name: "i" }',
         {}, "INVALID_ARG", "initial_state data_file 'sub' is not a regular file"),
        ('dims: [ 3 ] initial_state { data_type: TYPE_STRING dims: [ 3 ] data_file: "w" name: "w" }',
         {"w": words(b"x")}, "INVALID_ARG", "holds 1 BYTES elements, the state's shape asks for 3"),
        ('dims: [ 1 ] initial_state { data_type: TYPE_STRING dims: [ 1 ] data_file: "w" name: "w" }',
         {"w": b"\x09\x00\x00\x00ab"}, "INVALID_ARG", "is not a BYTES serialization"),
        ("dims: [ 1048576, 1024 ]", {}, "INVALID_ARG",
         f"more than the {MAX_STATE_BYTES} a state may take"),
        (('dims: [ 1 ] initial_state [{ data_type: TYPE_INT32 dims: [ 1 ] zero_data: true name: "a" },'
          ' { data_type: TYPE_INT32 dims: [ 1 ] zero_data: true name: "b" }]'),
         {}, "INVALID_ARG", "State input name 'S' specified more than once."),
    ],
)  # fmt: skip
def test_initial_state_refusals(
    tmp_path: Path, state: str, files: dict[str, bytes], status: str, message: str
) -> None:
    (tmp_path / "initial_state").mkdir()
    (tmp_path / "initial_state" / "sub").mkdir()
    (tmp_path / "config").write_bytes(bytes(4))
    (tmp_path / "initial_state" / "link").symlink_to(tmp_path / "config")
    datatype = "TYPE_STRING" if "TYPE_STRING" in state else "TYPE_INT32"
    with pytest.raises(TritonError) as info:
        states(tmp_path, f"data_type: {datatype} {state}", files)
    assert info.value.status == status
    assert message.format(dir=tmp_path) in info.value.message
