"""ONNX and TorchScript models served through the Server: results equal what the framework
returns directly, for every datatype, batched and unbatched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from models import make_add_sub_onnx, make_add_sub_torchscript, make_identity_onnx
from serving import write_config
from tritonlite import Server
from tritonlite.datatypes import to_config_name

DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
             "FP16", "FP32", "FP64", "BYTES", "BF16"]  # fmt: skip


def sample(datatype: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if datatype == "BYTES":
        words = [b"", b"\xc3\xa9t\xc3\xa9", b"tritonlite", b"x" * 40]
        return np.array([words[i % 4] for i in range(int(np.prod(shape)))], dtype=np.object_).reshape(shape)
    if datatype == "BOOL":
        return rng.integers(0, 2, shape).astype(np.bool_)
    if datatype == "BF16":
        import ml_dtypes

        return rng.standard_normal(shape).astype(ml_dtypes.bfloat16)
    dtype = np.dtype({"FP16": "float16", "FP32": "float32", "FP64": "float64"}.get(datatype, datatype.lower()))
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -100), min(info.max, 100), shape, endpoint=True).astype(dtype)


def identity_repo(root: Path, datatype: str) -> Path:
    name = f"identity_{datatype.lower()}"
    write_config(
        root / name,
        f'name: "{name}" platform: "onnxruntime_onnx" max_batch_size: 8 '
        f'input [{{ name: "INPUT0" data_type: {to_config_name(datatype)} dims: [ 3 ] }}] '
        f'output [{{ name: "OUTPUT0" data_type: {to_config_name(datatype)} dims: [ 3 ] }}] '
        "dynamic_batching { max_queue_delay_microseconds: 1000 }",
    )
    make_identity_onnx(root / name / "1" / "model.onnx", dtype=datatype, dims=[3])
    return root


@pytest.mark.parametrize("datatype", DATATYPES)
def test_every_datatype_matches_direct_onnxruntime(tmp_path: Path, datatype: str) -> None:
    repo = identity_repo(tmp_path, datatype)
    name = f"identity_{datatype.lower()}"
    x = sample(datatype, (2, 3))
    with Server(repo) as server:
        served = server.infer(name, {"INPUT0": x})["OUTPUT0"]
    if datatype == "BF16":
        expected = x  # onnxruntime's numpy API has no bfloat16: compare with the input
    else:
        sess = ort.InferenceSession(str(repo / name / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
        if datatype == "BYTES":  # onnxruntime takes and gives str; Triton's wire gives bytes
            strings = np.array([[v.decode() for v in row] for row in x], dtype=np.object_)
            result = sess.run(None, {"INPUT0": strings})[0]
            expected = np.array([[v.encode() for v in row] for row in result], dtype=np.object_)
        else:
            expected = sess.run(None, {"INPUT0": x})[0]
    assert served.shape == x.shape
    assert served.dtype == x.dtype
    np.testing.assert_array_equal(served, expected)


SIMPLE = """name: "{name}" platform: "{platform}" max_batch_size: 8
input [{{ name: "INPUT0" data_type: {dt} dims: [ 16 ] }}, {{ name: "INPUT1" data_type: {dt} dims: [ 16 ] }}]
output [{{ name: "OUTPUT0" data_type: {dt} dims: [ 16 ] }}, {{ name: "OUTPUT1" data_type: {dt} dims: [ 16 ] }}]
dynamic_batching {{ max_queue_delay_microseconds: 1000 }}
"""


@pytest.mark.parametrize("name, datatype", [("simple", "INT32"), ("simple_int8", "INT8"),
                                            ("simple_string", "BYTES")])  # fmt: skip
def test_triton_style_simple_models(tmp_path: Path, name: str, datatype: str) -> None:
    write_config(tmp_path / name, SIMPLE.format(name=name, platform="onnxruntime_onnx", dt=to_config_name(datatype)))
    make_add_sub_onnx(tmp_path / name / "1" / "model.onnx", dtype=datatype)
    a = np.arange(16).reshape(1, 16)
    b = np.ones((1, 16), np.int64)
    if datatype == "BYTES":
        cast = lambda v: np.array([[str(i).encode() for i in row] for row in v], dtype=np.object_)  # noqa: E731
        back = lambda v: np.array([[int(i) for i in row] for row in v])  # noqa: E731
    else:
        cast = lambda v: v.astype(datatype.lower())  # noqa: E731
        back = lambda v: v  # noqa: E731
    with Server(tmp_path) as server:
        out = server.infer(name, {"INPUT0": cast(a), "INPUT1": cast(b)})
        np.testing.assert_array_equal(back(out["OUTPUT0"]), a + b)
        np.testing.assert_array_equal(back(out["OUTPUT1"]), a - b)


def test_batched_equals_unbatched(tmp_path: Path) -> None:
    write_config(tmp_path / "simple", SIMPLE.format(name="simple", platform="onnxruntime_onnx", dt="TYPE_INT32"))
    make_add_sub_onnx(tmp_path / "simple" / "1" / "model.onnx", dtype="INT32")
    rng = np.random.default_rng(3)
    a = rng.integers(-1000, 1000, (4, 16)).astype(np.int32)
    b = rng.integers(-1000, 1000, (4, 16)).astype(np.int32)
    with Server(tmp_path) as server:
        batched = server.infer("simple", {"INPUT0": a, "INPUT1": b})
        for i in range(4):
            one = server.infer("simple", {"INPUT0": a[i : i + 1], "INPUT1": b[i : i + 1]})
            np.testing.assert_array_equal(one["OUTPUT0"], batched["OUTPUT0"][i : i + 1])
            np.testing.assert_array_equal(one["OUTPUT1"], batched["OUTPUT1"][i : i + 1])


def test_torchscript_model_served(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    write_config(tmp_path / "simple_pt", SIMPLE.format(name="simple_pt", platform="pytorch_libtorch", dt="TYPE_FP32")
                 .replace('"INPUT0"', '"INPUT__0"').replace('"INPUT1"', '"INPUT__1"')
                 .replace('"OUTPUT0"', '"OUTPUT__0"').replace('"OUTPUT1"', '"OUTPUT__1"'))  # fmt: skip
    path = make_add_sub_torchscript(tmp_path / "simple_pt" / "1" / "model.pt")
    module = torch.jit.load(str(path))
    rng = np.random.default_rng(4)
    a = rng.standard_normal((4, 16)).astype(np.float32)
    b = rng.standard_normal((4, 16)).astype(np.float32)
    with Server(tmp_path) as server:
        batched = server.infer("simple_pt", {"INPUT__0": a, "INPUT__1": b})
        direct = module(torch.from_numpy(a), torch.from_numpy(b))
        np.testing.assert_allclose(batched["OUTPUT__0"], direct[0].numpy())
        np.testing.assert_allclose(batched["OUTPUT__1"], direct[1].numpy())
        for i in range(4):
            one = server.infer("simple_pt", {"INPUT__0": a[i : i + 1], "INPUT__1": b[i : i + 1]})
            np.testing.assert_allclose(one["OUTPUT__0"], batched["OUTPUT__0"][i : i + 1])
