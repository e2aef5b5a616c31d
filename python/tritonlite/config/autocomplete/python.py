"""The python backend's auto-complete: the model's ``auto_complete_config`` (run by the
backend, passed in as a callable) and what of its result Triton takes."""

from __future__ import annotations

from collections.abc import Callable

from ...errors import INVALID_ARG, TritonError
from ..constants import ModelConfig

PythonAutoComplete = Callable[[ModelConfig], ModelConfig]


def merge_auto_completed(config: ModelConfig, completed: ModelConfig) -> None:
    """Take what a backend may auto-complete, as Triton's TritonModel::UpdateModelConfig."""
    if getattr(completed, "DESCRIPTOR", None) is not ModelConfig.DESCRIPTOR:
        raise TritonError(
            f"auto-complete for model '{config.name}' must return a ModelConfig, "
            f"got {type(completed).__name__}",
            INVALID_ARG,
        )
    config.max_batch_size = completed.max_batch_size
    del config.input[:]
    config.input.extend(completed.input)
    del config.output[:]
    config.output.extend(completed.output)
    if config.WhichOneof("scheduling_choice") is None:
        choice = completed.WhichOneof("scheduling_choice")
        if choice is not None:
            getattr(config, choice).CopyFrom(getattr(completed, choice))
    if completed.HasField("model_transaction_policy"):
        config.model_transaction_policy.decoupled = completed.model_transaction_policy.decoupled
