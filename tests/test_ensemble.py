"""Ensembles: a DAG of served models, run per request; load-time validation."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from google.protobuf import text_format

from models import make_add_sub_onnx, make_plus_onnx
from serving import write_config
from tritonlite import Server, TritonError
from tritonlite._proto import model_config_pb2 as mc
from tritonlite.backends import ensemble

PLUS = """name: "{name}" platform: "onnxruntime_onnx" max_batch_size: 4
input [{{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] }}]
output [{{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] }}]
"""
ADD_SUB = """name: "add_sub" platform: "onnxruntime_onnx" max_batch_size: 4
input [{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] }, { name: "INPUT1" data_type: TYPE_FP32 dims: [ 4 ] }]
output [{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] }, { name: "OUTPUT1" data_type: TYPE_FP32 dims: [ 4 ] }]
"""
# IN -> plus1 -> A ; IN -> plus10 -> B ; (A, B) -> add_sub -> SUM, DIFF   (a diamond)
DIAMOND = """name: "diamond" platform: "ensemble" max_batch_size: 4
input [{ name: "IN" data_type: TYPE_FP32 dims: [ 4 ] }]
output [{ name: "SUM" data_type: TYPE_FP32 dims: [ 4 ] }, { name: "DIFF" data_type: TYPE_FP32 dims: [ 4 ] }]
ensemble_scheduling { step [
  { model_name: "plus1" model_version: -1 input_map { key: "INPUT0" value: "IN" } output_map { key: "OUTPUT0" value: "A" } },
  { model_name: "plus10" model_version: -1 input_map { key: "INPUT0" value: "IN" } output_map { key: "OUTPUT0" value: "B" } },
  { model_name: "add_sub" model_version: -1
    input_map [{ key: "INPUT0" value: "A" }, { key: "INPUT1" value: "B" }]
    output_map [{ key: "OUTPUT0" value: "SUM" }, { key: "OUTPUT1" value: "DIFF" }] }
] }
"""


def repository(root: Path, ensemble_text: str = DIAMOND) -> Path:
    for name, plus in (("plus1", 1.0), ("plus10", 10.0)):
        write_config(root / name, PLUS.format(name=name))
        make_plus_onnx(root / name / "1" / "model.onnx", plus)
    write_config(root / "add_sub", ADD_SUB)
    make_add_sub_onnx(root / "add_sub" / "1" / "model.onnx", dtype="FP32", dims=[4])
    name = text_format.Parse(ensemble_text, mc.ModelConfig()).name
    write_config(root / name, ensemble_text)
    (root / name / "1").mkdir()
    return root


X = np.arange(8, dtype=np.float32).reshape(2, 4)


def test_diamond_ensemble_end_to_end(tmp_path: Path) -> None:
    others = set(threading.enumerate())  # other tests' servers may still be open
    with Server(repository(tmp_path)) as server:
        out = server.infer("diamond", {"IN": X})
        np.testing.assert_allclose(out["SUM"], (X + 1) + (X + 10))
        np.testing.assert_allclose(out["DIFF"], np.full_like(X, -9))
        only = server.infer("diamond", {"IN": X}, outputs=["DIFF"])
        assert list(only) == ["DIFF"]

        async def many() -> list[Any]:
            return await asyncio.gather(*[server.infer_async("diamond", {"IN": X + i}) for i in range(20)])

        for i, r in enumerate(asyncio.run(many())):
            np.testing.assert_allclose(r["SUM"], 2 * (X + i) + 11)
        # Each composing model counts its own work.
        stats = {s["name"]: s for s in server.statistics()}
        assert stats["plus1"]["inference_stats"]["success"]["count"] == 22
        assert stats["diamond"]["inference_stats"]["success"]["count"] == 22
        loop_threads = [t for t in threading.enumerate()
                        if t.name == "tritonlite-background" and t not in others]  # fmt: skip
        assert loop_threads  # the ensemble ran there
    # close() joined the loop's thread: a daemon thread left inside a _core call when the
    # interpreter exits aborts the process (seen: "terminate called without an active
    # exception" after a burst of ensemble requests).
    assert not any(t.is_alive() for t in loop_threads)


class Failing:
    def create_instance(self, index: int, kind: str, device_id: int) -> Failing:
        return self

    def execute(self, inputs: dict[str, np.ndarray], names: list[str]) -> dict[str, Any]:
        raise TritonError("plus10 is broken today", "INTERNAL")

    def close(self) -> None:
        pass


def test_step_error_fails_the_request_naming_the_ensemble(tmp_path: Path) -> None:
    with Server(repository(tmp_path)) as server:
        server.add_model(text_format.Parse(PLUS.format(name="plus10"), mc.ModelConfig()), Failing())
        with pytest.raises(TritonError) as info:
            server.infer("diamond", {"IN": X})
        # Triton's text: the ensemble's name, then the step's own error.
        assert info.value.message == "in ensemble 'diamond', plus10 is broken today"
        assert info.value.status == "INTERNAL"
        np.testing.assert_allclose(server.infer("plus1", {"INPUT0": X})["OUTPUT0"], X + 1)


def bad(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


@pytest.mark.parametrize(
    "text, message",
    [
        (bad(DIAMOND, 'model_name: "plus10"', 'model_name: "nope"'), "needs model 'nope', which is not loaded"),
        (bad(DIAMOND, 'value: "B" }', 'value: "Q" }'),
         "at least one of its depending tensors, 'B', is not connected"),  # Triton's text
        (bad(DIAMOND, '{ key: "OUTPUT1" value: "DIFF" }', '{ key: "OUTPUT1" value: "X" }'),
         "ensemble output 'DIFF' for ensemble diamond' is not used"),  # Triton's text
        (bad(DIAMOND, 'input_map { key: "INPUT0" value: "IN" } output_map { key: "OUTPUT0" value: "A" }',
             'input_map { key: "INPUT0" value: "SUM" } output_map { key: "OUTPUT0" value: "A" }'),
         "output 'SUM' for ensemble 'diamond' is not written"),  # Triton's text for this cycle
        (bad(DIAMOND, 'output [{ name: "SUM" data_type: TYPE_FP32', 'output [{ name: "SUM" data_type: TYPE_INT32'),
         "ensemble output 'SUM' is INT32 in the config but FP32"),
        (bad(DIAMOND, 'input [{ name: "IN" data_type: TYPE_FP32', 'input [{ name: "IN" data_type: TYPE_INT32'),
         "input 'INPUT0' expects FP32 but tensor 'IN' is INT32"),
        (bad(DIAMOND, '{ key: "INPUT1" value: "B" }', '{ key: "NOPE" value: "B" }'),
         "maps 'NOPE', which is not an input of 'add_sub'"),
    ],
)  # fmt: skip
def test_load_time_validation(tmp_path: Path, text: str, message: str) -> None:
    with Server(repository(tmp_path, text), exit_on_error=False) as server:
        index = {m["name"]: m for m in server.repository_index()}
        assert index["diamond"]["state"] == "UNAVAILABLE"
        assert message in index["diamond"]["reason"], index["diamond"]["reason"]
        assert server.model_ready("plus1")


def test_ensemble_needs_a_server() -> None:
    config = text_format.Parse(DIAMOND, mc.ModelConfig())
    with pytest.raises(TritonError, match="needs a server"):
        ensemble.create_backend(config, Path("."), Path("."))
