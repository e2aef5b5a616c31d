"""OpenAI-compatible frontend: ``/v1/models``, ``/v1/embeddings``, ``/v1/completions`` and
``/v1/chat/completions`` over a ``Server`` (see ``app`` for the service, ``models`` for which
models serve which endpoint)."""

from .app import DEFAULT_MAX_BODY_BYTES, OpenAIFrontend, start_openai

__all__ = ["DEFAULT_MAX_BODY_BYTES", "OpenAIFrontend", "start_openai"]
