"""all-MiniLM-L6-v2 served end to end (model_repository/generate_minilm.py, export cached):
the ``minilm_embed`` ensemble's embeddings over gRPC equal a direct transformers + torch
computation on the same weights (mean pooling, L2 normalisation)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from serving import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "model_repository"))
import generate_minilm  # noqa: E402

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A man is playing a guitar.",
    "Inference servers batch requests to keep the accelerator busy.",
    "hello",
    "Sentence embeddings map text of any length to a fixed-size vector that captures its "
    "meaning, so that similar sentences end up close to each other in the vector space.",
    "Ünïcödé and emoji 🙂 survive tokenization.",
]


@pytest.fixture(scope="module")
def repo() -> Path:
    return generate_minilm.generate(generate_minilm.DEFAULT_OUT)


def reference_embeddings(texts: list[str]) -> np.ndarray:
    import torch
    from tokenizers import Tokenizer

    with tempfile.TemporaryDirectory() as d:
        folder = generate_minilm.extract_weights(Path(d))
        model = generate_minilm.load_reference_model(folder)
        tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tok.enable_truncation(256)
        tok.no_padding()  # tokenizer.json pads to a fixed length: the reference runs unpadded
        out = []
        with torch.no_grad():  # inside the folder's lifetime: the weights may be mapped lazily
            for text in texts:  # one at a time: no padding in the reference
                ids = torch.tensor([tok.encode(text).ids])
                mask = torch.ones_like(ids)
                hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
                mean = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
                out.append(torch.nn.functional.normalize(mean, dim=1)[0].numpy())
    return np.stack(out)


def test_served_embeddings_equal_transformers(repo: Path) -> None:
    expected = reference_embeddings(SENTENCES)
    with ServerProcess(repo) as srv:
        client = grpcclient.InferenceServerClient(srv.grpc_url)
        try:
            x = grpcclient.InferInput("text_input", [len(SENTENCES), 1], "BYTES")
            x.set_data_from_numpy(np.array([[s.encode()] for s in SENTENCES], dtype=object))
            got = client.infer("minilm_embed", [x]).as_numpy("embedding")
            singles = []
            for s in SENTENCES:  # one request per text: each padded to its own bucket
                y = grpcclient.InferInput("text_input", [1, 1], "BYTES")
                y.set_data_from_numpy(np.array([[s.encode()]], dtype=object))
                singles.append(client.infer("minilm_embed", [y]).as_numpy("embedding")[0])
        finally:
            client.close()
    for served in (got, np.stack(singles)):
        assert served.shape == (len(SENTENCES), 384)
        cosine = (served * expected).sum(1) / (
            np.linalg.norm(served, axis=1) * np.linalg.norm(expected, axis=1)
        )
        assert cosine.min() >= 0.9999, cosine
        np.testing.assert_allclose(np.linalg.norm(served, axis=1), 1.0, atol=1e-5)
    # Different texts give different embeddings (the check above cannot pass on a constant).
    assert float(got[0] @ got[1]) < 0.9


def test_texts_of_different_lengths_batch_together_on_the_encoder(
    repo: Path, tmp_path: Path
) -> None:
    """The encoder's inputs are ragged: concurrent one-text requests of different token counts
    run in one encoder batch (before, each length bucket ran on its own), and every text still
    gets its own exact embedding (the packed graph keeps each row's tokens apart)."""
    import asyncio
    import shutil

    import tritonclient.grpc.aio as aioclient

    copy = tmp_path / "repo"
    shutil.copytree(repo, copy)
    config = copy / "minilm_encoder" / "config.pbtxt"
    # A long queue delay: the requests sent together are all queued when the batch forms.
    # One instance: the recipe's second one could take the first request alone.
    config.write_text(config.read_text().replace(
        "max_queue_delay_microseconds: 500", "max_queue_delay_microseconds: 300000").replace(
        "count: 2", "count: 1"))  # fmt: skip
    expected = reference_embeddings(SENTENCES)

    async def run(url: str) -> list[np.ndarray]:
        client = aioclient.InferenceServerClient(url)
        try:
            async def one(text: str) -> np.ndarray:
                x = aioclient.InferInput("text_input", [1, 1], "BYTES")
                x.set_data_from_numpy(np.array([[text.encode()]], dtype=object))
                return (await client.infer("minilm_embed", [x])).as_numpy("embedding")[0]

            got = await asyncio.gather(*(one(s) for s in SENTENCES))
            stats = await client.get_inference_statistics("minilm_encoder", as_json=True)
        finally:
            await client.close()
        (model,) = stats["model_stats"]
        assert int(model["inference_count"]) == len(SENTENCES)
        # One batch (two if the queue delay ran out between them); padded to 8-token buckets
        # they took 4 or more (buckets 8, 16 and 40 among them, ended at each change).
        assert int(model["execution_count"]) <= 2, model
        return got

    with ServerProcess(copy) as srv:
        got = np.stack(asyncio.run(run(srv.grpc_url)))
    cosine = (got * expected).sum(1)
    assert cosine.min() >= 0.9999, cosine


def test_cache_is_reused(repo: Path) -> None:
    onnx = repo / "minilm_encoder" / "1" / "model.onnx"
    before = onnx.stat().st_mtime_ns
    assert generate_minilm.generate(repo) == repo
    assert onnx.stat().st_mtime_ns == before


def test_cache_is_invalidated_when_the_recipe_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A changed template (or script, or package version) changes the key, and generate() then
    writes the repository again instead of keeping a stale one."""
    templates = tmp_path / "templates"
    import shutil

    shutil.copytree(generate_minilm.TEMPLATES, templates,
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    monkeypatch.setattr(generate_minilm, "TEMPLATES", templates)
    before = generate_minilm.cache_key()
    assert generate_minilm.cache_key() == before  # deterministic
    config = templates / "minilm_encoder" / "config.pbtxt"
    config.write_text(config.read_text() + "\n# changed\n")
    changed = generate_minilm.cache_key()
    assert changed != before
    (templates / "minilm_extra").mkdir()  # a new file changes it too
    (templates / "minilm_extra" / "config.pbtxt").write_text('name: "minilm_extra"\n')
    assert generate_minilm.cache_key() != changed

    # generate() with a stale key file exports again (the export itself stubbed: seconds).
    exports: list[Path] = []

    def fake_export(folder: Path, out_file: Path) -> None:
        exports.append(out_file)
        out_file.write_bytes(b"onnx")

    monkeypatch.setattr(generate_minilm, "export_encoder", fake_export)
    out = tmp_path / "repo"
    out.mkdir()
    (out / generate_minilm.KEY_FILE).write_text(before)
    (out / "stale_model").mkdir()  # a model the old recipe wrote: gone after the rewrite
    assert generate_minilm.generate(out) == out
    assert len(exports) == 1
    assert (out / generate_minilm.KEY_FILE).read_text() == generate_minilm.cache_key()
    assert not (out / "stale_model").exists()
    assert (out / "minilm_extra" / "config.pbtxt").is_file()
    generate_minilm.generate(out)  # now current: no second export
    assert len(exports) == 1
