"""Atheris target: config.pbtxt parsing and validation (python/tritonlite/config.py).

Input: the text of a config.pbtxt (UTF-8; invalid bytes replaced). It is written into a model
directory and loaded the way the repository loads it (load_model_config without ONNX
auto-complete: there is no model file), then turned into the JSON and tensor specs the
frontends use. Anything but a TritonError (INVALID_ARG) is a bug: a config from disk must be
refused with a message, never crash the repository poll or the load API.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from atheris_main import fuzz
from tritonlite import config as cfg
from tritonlite.errors import TritonError

MODEL_DIR = Path(tempfile.mkdtemp(prefix="tritonlite-fuzz-config-")) / "m"
MODEL_DIR.mkdir()
(MODEL_DIR / "1").mkdir()


def test_one_input(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    (MODEL_DIR / "config.pbtxt").write_text(text, encoding="utf-8")
    try:
        config = cfg.load_model_config(MODEL_DIR, auto_complete=False)
    except TritonError:
        return
    cfg.config_to_json(config)
    cfg.input_specs(config)
    cfg.output_specs(config)
    cfg.has_dynamic_batching(config)
    cfg.select_versions(config, [1, 2, 3])


def main() -> None:
    fuzz(test_one_input)


if __name__ == "__main__":
    main()
