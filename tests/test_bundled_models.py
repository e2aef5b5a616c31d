"""The bundled model_repository/: it loads, every model answers, and the committed files are
exactly what model_repository/generate.py makes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tritonlite import Server

ROOT = Path(__file__).resolve().parent.parent
REPO = ROOT / "model_repository"


@pytest.fixture(scope="module")
def server():
    with Server(REPO) as s:
        yield s


def test_every_bundled_model_is_ready(server: Server) -> None:
    index = server.repository_index()
    assert index and all(m["state"] == "READY" for m in index), index
    assert server.is_ready()


def test_simple(server: Server) -> None:
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.ones((1, 16), np.int32)
    out = server.infer("simple", {"INPUT0": a, "INPUT1": b})
    np.testing.assert_array_equal(out["OUTPUT0"], a + b)
    np.testing.assert_array_equal(out["OUTPUT1"], a - b)


def test_simple_string(server: Server) -> None:
    a = np.array([[str(i).encode() for i in range(16)]], dtype=np.object_)
    out = server.infer("simple_string", {"INPUT0": a, "INPUT1": a})
    assert [int(x) for x in out["OUTPUT0"][0]] == [2 * i for i in range(16)]


def test_mlp_classifier(server: Server) -> None:
    x = np.random.default_rng(0).standard_normal((3, 64)).astype(np.float32)
    probs = server.infer("mlp_classifier", {"INPUT": x})["PROBABILITIES"]
    assert probs.shape == (3, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    labels = (REPO / "mlp_classifier" / "labels.txt").read_text().split()
    assert len(labels) == 10


def test_committed_files_match_the_generator(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(REPO / "generate.py"), "--out", str(tmp_path)], check=True,
                   capture_output=True)  # fmt: skip
    for generated in sorted(p for p in tmp_path.rglob("*") if p.is_file()):
        rel = generated.relative_to(tmp_path)
        committed = REPO / rel
        assert committed.exists(), f"{rel} is generated but not in model_repository/"
        assert committed.read_bytes() == generated.read_bytes(), f"{rel} differs from the generator"


def _sequence(server: Server, model: str, corr: int, values: list[float]) -> list[dict[str, np.ndarray]]:
    import asyncio

    async def run() -> list[dict[str, np.ndarray]]:
        outs = []
        for i, v in enumerate(values):
            flags = (1 if i == 0 else 0) | (2 if i == len(values) - 1 else 0)
            pairs = await server.submit(model, {"INPUT": np.array([[v]], np.float32)},
                                        correlation_id=corr, flags=flags)  # fmt: skip
            outs.append({name: t.numpy() for name, t in pairs})
        return outs

    return asyncio.run(run())


def test_sequence_accumulator(server: Server) -> None:
    outs = _sequence(server, "sequence_accumulator", 5, [1, 2, 3, 4])
    assert [float(o["OUTPUT"][0, 0]) for o in outs] == [1, 3, 6, 10]
    assert all(list(o) == ["OUTPUT"] for o in outs)  # the state stays inside the server


def test_sequence_controls(server: Server) -> None:
    outs = _sequence(server, "sequence_controls", 77, [5, 1, 1])
    assert [float(o["OUTPUT"][0, 0]) for o in outs] == [5, 6, 7]
    assert [int(o["CORRID_OUT"][0, 0]) for o in outs] == [77, 77, 77]


def test_simple_python(server: Server) -> None:
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    out = server.infer("simple_python", {"INPUT0": a, "INPUT1": a})
    np.testing.assert_array_equal(out["OUTPUT0"], 2 * a)
    np.testing.assert_array_equal(out["OUTPUT1"], 0 * a)


def test_classify_ensemble(server: Server) -> None:
    raw = np.random.default_rng(1).standard_normal((3, 64)).astype(np.float32) * 5 + 2
    out = server.infer("classify", {"RAW": raw})
    # The same pipeline by hand, model by model.
    features = (raw - raw.mean(axis=1, keepdims=True)) / (raw.std(axis=1, keepdims=True) + 1e-6)
    probs = server.infer("mlp_classifier", {"INPUT": features.astype(np.float32)})["PROBABILITIES"]
    labels = (REPO / "mlp_classifier" / "labels.txt").read_text().split()
    assert out["LABEL"].ravel().tolist() == [labels[i].encode() for i in probs.argmax(axis=1)]
    np.testing.assert_allclose(out["SCORE"].ravel(), probs.max(axis=1), rtol=1e-5)


def _generate(server: Server, inputs: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    import asyncio

    async def run() -> list[dict[str, np.ndarray]]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        outs: list[dict[str, np.ndarray]] = []

        def on_response(error, outputs, final) -> None:  # type: ignore[no-untyped-def]
            if error is not None:
                done.set_exception(error)
                return
            if outputs:
                outs.append({name: t.numpy() for name, t in outputs})
            if final:
                done.set_result(None)

        server.submit_stream("tiny_llm", inputs, on_response)
        await asyncio.wait_for(done, 30)
        return outs

    return asyncio.run(run())


def test_tiny_llm(server: Server) -> None:
    prompt = np.array([b"one two three"], dtype=np.object_)
    streamed = _generate(server, {"text_input": prompt, "max_tokens": np.array([4], np.int32),
                                  "stream": np.array([True])})  # fmt: skip
    assert [o["text_output"][0] for o in streamed] == [b"one", b" two", b" three", b" one"]
    assert all(int(o["num_input_tokens"][0]) == 3 for o in streamed)
    whole = _generate(server, {"text_input": prompt, "seed": np.array([1], np.uint64),
                               "stop_words": np.array([b"three"], dtype=np.object_)})  # fmt: skip
    assert len(whole) == 1 and whole[0]["text_output"][0] == b"two"
    assert int(whole[0]["num_output_tokens"][0]) == 1
    default = _generate(server, {"text_input": np.array([b"a"], dtype=np.object_)})
    assert default[0]["text_output"][0] == b" ".join([b"a"] * 16)  # max_tokens absent: 16
