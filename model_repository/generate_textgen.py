#!/usr/bin/env python
"""Write the ``textgen_rnn`` model repository: a small real generative model (cached).

The model is textgenrnn's pretrained character-level network (Max Woolf, MIT licence): an
embedding of 465 characters, two LSTM layers of 128 units, an attention-weighted average over
the last 40 characters and a softmax over the next character. Its Keras weights
(``textgenrnn_weights.hdf5``) and vocabulary ship inside the PyPI package ``textgenrnn``
(installed with ``--no-deps``: its metadata pulls TensorFlow, which serving does not need). This
script reads them with ``h5py`` (found without importing the package, whose ``__init__``
imports TensorFlow), converts the LSTM weights from their CuDNN layout to the standard one (as
Keras does when it loads them into a CPU ``LSTM``) and writes ``--out`` (default
``build/textgen_repository``):

- ``textgen_rnn``  python, decoupled, Triton's LLM tensor convention (``text_input``,
  ``max_tokens``, ``stream``, ``temperature``, ``top_p``, ``seed``, ``stop_words`` ->
  ``text_output``): ``1/model.py`` runs the network in numpy from ``1/weights.npz`` and
  ``1/vocab.json``; a token is a character.

It is written again only when the cached key (this script, the templates, the package version)
changes.

Usage: python model_repository/generate_textgen.py [--out DIR] [--force]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import generate_common
import numpy as np

HERE = Path(__file__).resolve().parent
# Hidden from the repository loader (it skips dot folders): `make serve` does not load it.
TEMPLATES = HERE / ".textgen"
DEFAULT_OUT = HERE.parent / "build" / "textgen_repository"
WEIGHTS_PACKAGE = "textgenrnn"
KEY_FILE = ".textgen-key"
GATES = 4  # an LSTM's input, forget, cell and output gates


def package_files() -> tuple[Path, Path]:
    """(weights .hdf5, vocab .json) of the installed textgenrnn package."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            f"the weights package is not installed: pip install --no-deps {WEIGHTS_PACKAGE}"
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    weights, vocab = folder / "textgenrnn_weights.hdf5", folder / "textgenrnn_vocab.json"
    for path in (weights, vocab):
        if not path.is_file():
            raise SystemExit(f"{path} is missing: reinstall {WEIGHTS_PACKAGE}")
    return weights, vocab


def cache_key() -> str:
    return generate_common.recipe_key(Path(__file__), TEMPLATES, (WEIGHTS_PACKAGE,))


def lstm_from_cudnn(
    kernel: np.ndarray, recurrent: np.ndarray, bias: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A CuDNNLSTM's weights as a standard LSTM's (gates i, f, c, o), as Keras converts them:
    each gate's input kernel is stored in CuDNN's column-major order, each recurrent kernel
    transposed, and CuDNN keeps two biases (input and recurrent) that add up."""
    units = recurrent.shape[0]
    if kernel.shape[1] != GATES * units or recurrent.shape != (units, GATES * units):
        raise ValueError(f"unexpected LSTM kernel shapes {kernel.shape}, {recurrent.shape}")
    if bias.shape != (2 * GATES * units,):
        raise ValueError(f"expected CuDNN's two biases of {GATES * units}, got {bias.shape}")
    kernel = np.hstack([k.T.reshape(k.shape, order="F") for k in np.hsplit(kernel, GATES)])
    recurrent = np.hstack([k.T for k in np.hsplit(recurrent, GATES)])
    bias = bias[: GATES * units] + bias[GATES * units :]
    return kernel, recurrent, bias


def read_weights(hdf5: Path) -> dict[str, np.ndarray]:
    import h5py

    with h5py.File(hdf5, "r") as f:

        def get(name: str) -> np.ndarray:
            return np.asarray(f[name], np.float32)

        w = {"embedding": get("embedding/embedding/embeddings:0"),
             "attention": get("attention/attention/attention_W:0")[:, 0],
             "output_kernel": get("output/output/kernel:0"),
             "output_bias": get("output/output/bias:0")}  # fmt: skip
        for layer in (1, 2):
            prefix = f"rnn_{layer}/rnn_{layer}/"
            k, r, b = lstm_from_cudnn(get(prefix + "kernel:0"), get(prefix + "recurrent_kernel:0"),
                                      get(prefix + "bias:0"))  # fmt: skip
            w[f"lstm{layer}_kernel"], w[f"lstm{layer}_recurrent"], w[f"lstm{layer}_bias"] = k, r, b
    return w


def generate(out: Path, force: bool = False) -> Path:
    def fill(repo: Path, scratch: Path) -> None:
        hdf5, vocab = package_files()
        version = repo / "textgen_rnn" / "1"
        np.savez(version / "weights.npz", **read_weights(hdf5))
        chars = json.loads(vocab.read_text(encoding="utf-8"))
        (version / "vocab.json").write_text(json.dumps(chars, ensure_ascii=False), "utf-8")

    return generate_common.write_repository(out, TEMPLATES, KEY_FILE, cache_key(), fill, force)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--force", action="store_true", help="write even when the cache is current")
    args = p.parse_args(argv)
    print(generate(args.out, args.force))
    return 0


if __name__ == "__main__":
    sys.exit(main())
