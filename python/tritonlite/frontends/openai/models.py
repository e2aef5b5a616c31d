"""The models the OpenAI frontend serves: ``/v1/models`` and ``/v1/models/{id}`` from the
server's loaded models, and what each model can do under the OpenAI API.

A model is
- *generative* (``/v1/completions``, ``/v1/chat/completions``) when it takes Triton's LLM
  tensor convention: a ``text_input`` BYTES input and a ``text_output`` BYTES output; the
  optional inputs ``max_tokens``, ``stream`` and the sampling parameters (``temperature``,
  ``top_p``, ``frequency_penalty``, ``presence_penalty``, ``seed``, ``stop_words``) are sent
  when the model declares them. Decoupled models stream one chunk per response.
- an *embedding* model (``/v1/embeddings``) when it takes ``text_input`` (BYTES) and returns
  ``embedding`` (FP32, one vector per text); an optional ``token_count`` output is the usage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..._proto import model_config_pb2 as mc
from ...errors import TritonError
from .errors import OpenAIError, unknown_model

#: Triton's OpenAI frontend answers this as every model's owner.
OWNED_BY = "Triton Inference Server"


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: int
    batched: bool  # max_batch_size > 0: every tensor has a leading batch dimension
    decoupled: bool
    inputs: dict[str, int]  # name -> model_config DataType
    outputs: dict[str, int]

    @property
    def generative(self) -> bool:
        return (
            self.inputs.get("text_input") == mc.TYPE_STRING
            and self.outputs.get("text_output") == mc.TYPE_STRING
        )

    @property
    def embedding(self) -> bool:
        return (
            self.inputs.get("text_input") == mc.TYPE_STRING
            and self.outputs.get("embedding") == mc.TYPE_FP32
        )


def model_info(server: Any, name: Any) -> ModelInfo:
    """The latest loaded version of ``name``; 404 in OpenAI's shape when there is none."""
    if not isinstance(name, str) or not name:
        raise OpenAIError("you must provide a model parameter", 400, param="model")
    try:
        loaded = server.get_model(name)
    except TritonError:
        raise unknown_model(name) from None
    config = loaded.config
    return ModelInfo(
        name=name,
        version=loaded.version,
        batched=config.max_batch_size > 0,
        decoupled=bool(config.model_transaction_policy.decoupled),
        inputs={t.name: t.data_type for t in config.input},
        outputs={t.name: t.data_type for t in config.output},
    )


def model_card(name: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": OWNED_BY}


def list_models(server: Any, created: int) -> dict[str, Any]:
    names = [n for n in server.model_names() if server.model_ready(n)]
    return {"object": "list", "data": [model_card(n, created) for n in names]}


def retrieve_model(server: Any, name: str, created: int) -> dict[str, Any]:
    if name not in server.model_names() or not server.model_ready(name):
        raise unknown_model(name)
    return model_card(name, created)
