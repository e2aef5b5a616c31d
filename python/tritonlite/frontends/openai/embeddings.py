"""``POST /v1/embeddings``: each text is one request to the embedding model (so its dynamic
batcher groups texts of similar length), the vectors come back in order, as floats or as
base64 little-endian float32; ``usage.prompt_tokens`` sums the model's ``token_count``."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import numpy as np

from .errors import OpenAIError, bad_request, from_triton
from .fields import integer, refuse_unknown, string
from .models import model_info

#: OpenAI's own limit on the texts of one request.
MAX_INPUTS = 2048
#: The longest text accepted (characters; the model may truncate to fewer tokens).
MAX_TEXT_CHARS = 1 << 20
_KNOWN = ("model", "input", "encoding_format", "dimensions", "user")


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        items: list[Any] = [value]
    elif isinstance(value, list):
        items = value
        if not items:
            raise bad_request("'input' must not be an empty array", param="input")
        if len(items) > MAX_INPUTS:
            raise bad_request(
                f"'input' has {len(items)} items; at most {MAX_INPUTS} are accepted", param="input"
            )
    else:
        raise bad_request("'input' must be a string or an array of strings", param="input")
    for i, item in enumerate(items):
        if isinstance(item, (int, list)) and not isinstance(item, bool):
            raise OpenAIError(
                "token id arrays are not supported: 'input' must be a string or an array of "
                "strings", 400, param="input", code="unsupported_parameter",
            )  # fmt: skip
        if not isinstance(item, str):
            raise bad_request(f"'input[{i}]' must be a string", param="input")
        if not item:
            raise bad_request(f"'input[{i}]' must not be empty", param="input")
        if len(item) > MAX_TEXT_CHARS:
            raise bad_request(
                f"'input[{i}]' is longer than {MAX_TEXT_CHARS} characters", param="input"
            )
    return items


async def create_embeddings(server: Any, doc: dict[str, Any]) -> dict[str, Any]:
    refuse_unknown(doc, _KNOWN)
    info = model_info(server, doc.get("model"))
    if not info.embedding:
        raise bad_request(
            f"model '{info.name}' is not an embedding model: /v1/embeddings needs a model with "
            "a BYTES input 'text_input' and an FP32 output 'embedding'", param="model",
        )  # fmt: skip
    texts = _texts(doc.get("input"))
    encoding = string(doc, "encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise bad_request(
            f"'encoding_format' must be 'float' or 'base64', got '{encoding}'",
            param="encoding_format",
        )
    dimensions = integer(doc, "dimensions", 1, 1 << 20)
    string(doc, "user")
    shape = (1, 1) if info.batched else (1,)
    outputs = ["embedding"] + (["token_count"] if "token_count" in info.outputs else [])
    futures = []
    try:
        for text in texts:
            tensor = np.array([text.encode()], dtype=np.object_).reshape(shape)
            futures.append(server.infer_async(info.name, {"text_input": tensor}, outputs))
        results = await asyncio.gather(*futures)
    except BaseException as e:
        for f in futures:
            f.cancel()  # the others stop too (a queued request never runs)
        if isinstance(e, Exception):
            raise from_triton(e) from None
        raise
    vectors = []
    tokens = 0
    for result in results:
        vector = np.asarray(result["embedding"], dtype=np.float32).reshape(-1)
        vectors.append(vector)
        if "token_count" in result:
            tokens += int(np.asarray(result["token_count"]).reshape(-1)[0])
    if dimensions is not None and vectors and dimensions != vectors[0].size:
        raise bad_request(
            f"model '{info.name}' makes {vectors[0].size}-dimensional embeddings; 'dimensions' "
            f"{dimensions} is not supported", param="dimensions",
        )  # fmt: skip
    data = []
    for i, vector in enumerate(vectors):
        value: Any = (
            base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
            if encoding == "base64"
            else vector
        )
        data.append({"object": "embedding", "index": i, "embedding": value})
    return {
        "object": "list",
        "data": data,
        "model": info.name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
