"""Ragged batching for gathered batches (onnxruntime): a ragged input flattened to
[total elements], the batch_input tensors of every kind, batch_output scattered by the source
input's shapes, the dynamic batcher batching differing shapes, the ONNX load checks, and the
README's bundled example (model_repository/token_sum) through tritonclient.

No side-by-side record exists for these: the real Triton here has only the python backend, which
takes a batch as its requests (tests/parity/cases/ragged.py records what it does); the expected
batch_input values are those of Triton's docs (user_guide/ragged_batching.md: requests of shapes
[1, 3], [1, 4], [1, 5] give INPUT [12] and INDEX [3, 7, 12]) and of its backend input collector.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from google.protobuf import text_format
from serving import ServerProcess
from tritonlite import Server, TritonError
from tritonlite._proto import model_config_pb2 as mc

ROOT = Path(__file__).resolve().parents[1]


class Gathered:
    """A batching backend that records the gathered inputs of every execution."""

    def __init__(self, fn: Any = None) -> None:
        self.fn = fn or (lambda inputs: {"OUT": inputs["IN"] * 2})
        self.executions: list[dict[str, np.ndarray]] = []
        self.lock = threading.Lock()

    def create_instance(self, index: int, kind: str, device_id: int) -> Gathered:
        return self

    def execute(self, inputs: dict[str, np.ndarray], names: list[str]) -> dict[str, Any]:
        with self.lock:
            self.executions.append({k: np.array(v, copy=True) for k, v in inputs.items()})
        return self.fn(inputs)

    def close(self) -> None:
        pass


def ragged_config(
    rows: int, extra: str = "", dims: str = "[ -1 ]", dtype: str = "TYPE_FP32"
) -> Any:
    """max_batch_size `rows` and a long queue delay: a batch goes when `rows` rows are queued."""
    text = (
        f'name: "m" max_batch_size: {rows}\n'
        f'input [{{ name: "IN" data_type: TYPE_FP32 dims: {dims} allow_ragged_batch: true }}]\n'
        f'output [{{ name: "OUT" data_type: TYPE_FP32 dims: {dims} }}]\n'
        "dynamic_batching { max_queue_delay_microseconds: 30000000 }\n"
        + extra.replace("DTYPE", dtype)
    )
    return text_format.Parse(text, mc.ModelConfig())


def batch_input(kind: str, target: str) -> str:
    return (f'batch_input [{{ kind: {kind} target_name: "{target}" data_type: DTYPE '
            'source_input: "IN" }]\n')  # fmt: skip


ALL_KINDS = "".join(
    batch_input(kind, target)
    for kind, target in (
        ("BATCH_ELEMENT_COUNT", "COUNT"),
        ("BATCH_ACCUMULATED_ELEMENT_COUNT", "INDEX"),
        ("BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO", "OFFSETS"),
        ("BATCH_MAX_ELEMENT_COUNT_AS_SHAPE", "MAX"),
        ("BATCH_ITEM_SHAPE", "ITEMS"),
        ("BATCH_ITEM_SHAPE_FLATTEN", "ITEMS_FLAT"),
    )
)
SCATTER = 'batch_output [{ kind: BATCH_SCATTER_WITH_INPUT_SHAPE target_name: "OUT" source_input: "IN" }]\n'


def run(server: Server, tensors: list[np.ndarray]) -> list[Any]:
    async def main() -> list[Any]:
        return await asyncio.gather(
            *[server.infer_async("m", {"IN": t}) for t in tensors], return_exceptions=True
        )

    return asyncio.run(main())


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def docs_requests() -> list[np.ndarray]:
    return [np.full([1, n], n, dtype=np.float32) for n in (3, 4, 5)]


@pytest.mark.parametrize(
    ("dtype", "np_dtype"), [("TYPE_FP32", np.float32), ("TYPE_INT32", np.int32)]
)
def test_batch_inputs_of_triton_docs_example(server: Server, dtype: str, np_dtype: Any) -> None:
    backend = Gathered()
    server.add_model(ragged_config(3, ALL_KINDS + SCATTER, dtype=dtype), backend)
    results = run(server, docs_requests())
    assert len(backend.executions) == 1  # the three shapes share one execution
    seen = backend.executions[0]
    assert seen["IN"].shape == (12,)
    assert seen["IN"].tolist() == [3.0] * 3 + [4.0] * 4 + [5.0] * 5
    expected = {
        "COUNT": ([3], [3, 4, 5]),
        "INDEX": ([3], [3, 7, 12]),
        "OFFSETS": ([4], [0, 3, 7, 12]),
        "MAX": ([5], [0, 0, 0, 0, 0]),  # described by its shape; Triton leaves the data unset
        "ITEMS": ([3, 1], [3, 4, 5]),
        "ITEMS_FLAT": ([3], [3, 4, 5]),
    }
    for name, (shape, values) in expected.items():
        assert seen[name].dtype == np_dtype, name
        assert list(seen[name].shape) == shape, name
        assert seen[name].reshape(-1).tolist() == values, name
    # batch_output: each request gets its own shape's worth of the flat output.
    for n, result in zip((3, 4, 5), results, strict=True):
        assert result["OUT"].shape == (1, n)
        assert result["OUT"].tolist() == [[2.0 * n] * n]


def test_item_shapes_of_multi_row_requests(server: Server) -> None:
    backend = Gathered(lambda inputs: {"OUT": np.zeros(0, dtype=np.float32)})
    server.add_model(ragged_config(3, ALL_KINDS, dims="[ -1, -1 ]"), backend)
    run(server, [np.ones([1, 2, 3], np.float32), np.ones([2, 4, 1], np.float32)])
    seen = backend.executions[0]
    assert seen["IN"].shape == (14,)
    assert seen["COUNT"].tolist() == [6, 8]
    assert seen["INDEX"].tolist() == [6, 14]
    assert seen["OFFSETS"].tolist() == [0, 6, 14]
    assert seen["MAX"].shape == (8,)
    assert seen["ITEMS"].tolist() == [[2, 3], [4, 1], [4, 1]]  # one entry per batch row
    assert seen["ITEMS_FLAT"].tolist() == [2, 3, 4, 1, 4, 1]


def test_single_request_is_flattened_too(server: Server) -> None:
    backend = Gathered()
    server.add_model(ragged_config(1, ALL_KINDS + SCATTER), backend)
    result = server.infer("m", {"IN": np.arange(4, dtype=np.float32).reshape(1, 4)})
    seen = backend.executions[0]
    assert seen["IN"].shape == (4,)
    assert seen["INDEX"].tolist() == [4]
    assert seen["OFFSETS"].tolist() == [0, 4]
    assert result["OUT"].tolist() == [[0.0, 2.0, 4.0, 6.0]]


def test_ragged_without_batch_output_scatters_rows(server: Server) -> None:
    # A per-request output ([batch, 1]) next to a ragged input: split by rows as usual.
    def lengths(inputs: dict[str, np.ndarray]) -> dict[str, Any]:
        return {"OUT": inputs["COUNT"].reshape(-1, 1).astype(np.float32)}

    backend = Gathered(lengths)
    server.add_model(ragged_config(3, batch_input("BATCH_ELEMENT_COUNT", "COUNT")), backend)
    results = run(server, docs_requests())
    assert [r["OUT"].tolist() for r in results] == [[[3.0]], [[4.0]], [[5.0]]]


def test_batch_output_too_small_fails_the_batch(server: Server) -> None:
    backend = Gathered(lambda inputs: {"OUT": np.zeros(5, dtype=np.float32)})
    server.add_model(ragged_config(3, SCATTER), backend)
    results = run(server, docs_requests())
    for r in results:
        assert isinstance(r, TritonError)
        assert r.status == "INTERNAL"
        assert r.message == (
            "model 'm' returned output 'OUT' that cannot be scattered by the shapes of input "
            "'IN': it holds 20 bytes, fewer than its requests' shapes need"
        )


def test_zero_element_request(server: Server) -> None:
    backend = Gathered()
    server.add_model(ragged_config(1, batch_input("BATCH_ELEMENT_COUNT", "COUNT") + SCATTER,
                                   dims="[ -1, -1 ]", dtype="TYPE_INT32"), backend)  # fmt: skip
    ok = server.infer("m", {"IN": np.zeros([1, 2, 0], np.float32)})
    assert ok["OUT"].shape == (1, 2, 0)
    assert backend.executions[0]["IN"].shape == (0,)
    assert backend.executions[0]["COUNT"].tolist() == [0]


def test_non_ragged_inputs_still_need_equal_shapes(server: Server) -> None:
    text = (
        'name: "m" max_batch_size: 3\n'
        'input [{ name: "IN" data_type: TYPE_FP32 dims: [ -1 ] }]\n'
        'output [{ name: "OUT" data_type: TYPE_FP32 dims: [ -1 ] }]\n'
        "dynamic_batching { max_queue_delay_microseconds: 100000 }\n"
    )
    backend = Gathered()
    server.add_model(text_format.Parse(text, mc.ModelConfig()), backend)
    run(server, docs_requests())
    assert sorted(e["IN"].shape for e in backend.executions) == [(1, 3), (1, 4), (1, 5)]


# --------------------------------------------------------------------------- onnxruntime

ort = pytest.importorskip("onnxruntime")


def _repo(tmp_path: Path) -> Path:
    """The bundled token_sum alone, batching exactly 3 rows: a batch goes when 3 are queued (a
    30 s queue delay otherwise), so the README's three requests are one batch on any machine."""
    repo = tmp_path / "models"
    shutil.copytree(ROOT / "model_repository" / "token_sum", repo / "token_sum")
    config = repo / "token_sum" / "config.pbtxt"
    text = config.read_text()
    assert "max_batch_size: 8" in text and "max_queue_delay_microseconds: 100000" in text
    config.write_text(
        text.replace("max_batch_size: 8", "max_batch_size: 3").replace(
            "max_queue_delay_microseconds: 100000", "max_queue_delay_microseconds: 30000000"
        )
    )
    return repo


def test_onnx_ragged_input_must_be_1d_in_the_model(tmp_path: Path) -> None:
    from tritonlite.backends import onnxruntime as ort_backend

    repo = _repo(tmp_path)
    model_dir = repo / "token_sum"
    config = text_format.Parse((model_dir / "config.pbtxt").read_text(), mc.ModelConfig())
    backend = ort_backend.create_backend(config, model_dir, model_dir / "1")
    backend.create_instance(0, "KIND_CPU", 0).close()  # the bundled model loads

    from models import make_identity_onnx

    flat = tmp_path / "m"
    make_identity_onnx(flat / "1" / "model.onnx", "FP32", dims=(-1,), batch=True,
                       input_name="IN", output_name="OUT")  # fmt: skip
    bad = ragged_config(4)
    bad.platform = "onnxruntime_onnx"
    with pytest.raises(TritonError) as info:
        ort_backend.create_backend(bad, flat, flat / "1").create_instance(0, "KIND_CPU", 0)
    assert info.value.message == (
        "unable to load model 'm', configuration expects model provides input with shape [-1]  "
        "for ragged input 'IN', model provides [-1,-1]"
    )


def test_readme_token_sum_example(tmp_path: Path) -> None:
    """The README's ragged batching example, as written there, against the bundled model."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index("<!-- ragged-example -->")
    block = readme[start:].split("```python\n", 1)[1].split("```", 1)[0]
    repo = _repo(tmp_path)
    with ServerProcess(repo) as srv:
        from serving import wait_http_live

        wait_http_live(srv)
        source = block.replace("localhost:8001", srv.grpc_url).replace(
            "localhost:8000", srv.http_url
        )
        scope: dict[str, Any] = {}
        exec(compile(source, "README.md", "exec"), scope)  # noqa: S102
        assert scope["sums"] == [6, 60, 7]  # and it printed them
        import tritonclient.http as httpclient

        client = httpclient.InferenceServerClient(srv.http_url, concurrency=3)
        stats = client.get_inference_statistics("token_sum")["model_stats"][0]
        # The three requests of different lengths ran as one batch of 3.
        assert [(b["batch_size"], b["compute_infer"]["count"]) for b in stats["batch_stats"]] == [
            (3, 1)
        ]
        # The same over HTTP: another batch of three, each answered with its own sum and length.
        pending = []
        for tokens in ([5, 5], [1, 1, 1, 1], [-3]):
            x = httpclient.InferInput("TOKENS", [1, len(tokens)], "INT32")
            x.set_data_from_numpy(np.array([tokens], np.int32))
            pending.append(client.async_infer("token_sum", [x]))
        answers = [p.get_result() for p in pending]
        assert [int(a.as_numpy("SUM")[0, 0]) for a in answers] == [10, 4, -3]
        assert [int(a.as_numpy("LENGTH")[0, 0]) for a in answers] == [2, 4, 1]
        stats = client.get_inference_statistics("token_sum")["model_stats"][0]
        client.close()
        assert [(b["batch_size"], b["compute_infer"]["count"]) for b in stats["batch_stats"]] == [
            (3, 2)
        ]
