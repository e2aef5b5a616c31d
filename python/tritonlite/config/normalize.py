"""The defaults Triton fills into a config (NormalizeModelConfig, NormalizeInstanceGroup):
version policy, preferred batch sizes, sequence idle time, pinned memory, instance groups."""

from __future__ import annotations

from collections.abc import Sequence

from .._proto import model_config_pb2 as _pb
from .constants import _ONNX_BACKEND, _TF_BACKEND, SEQUENCE_IDLE_DEFAULT_US, ModelConfig


def normalize(config: ModelConfig) -> None:
    """Triton's NormalizeModelConfig: the defaults that do not depend on devices."""
    if not config.HasField("version_policy"):
        config.version_policy.latest.num_versions = 1
    if config.HasField("dynamic_batching"):
        batching = config.dynamic_batching
        if not batching.preferred_batch_size and config.max_batch_size > 0:
            batching.preferred_batch_size.append(config.max_batch_size)
    if config.HasField("sequence_batching"):
        sequence = config.sequence_batching
        if sequence.max_sequence_idle_microseconds == 0:
            sequence.max_sequence_idle_microseconds = SEQUENCE_IDLE_DEFAULT_US
        if sequence.HasField("oldest"):
            oldest = sequence.oldest
            if not oldest.preferred_batch_size and config.max_batch_size > 0:
                oldest.preferred_batch_size.append(config.max_batch_size)
    if not config.HasField("ensemble_scheduling"):
        optimization = config.optimization
        if not optimization.HasField("input_pinned_memory"):
            optimization.input_pinned_memory.enable = True
        if not optimization.HasField("output_pinned_memory"):
            optimization.output_pinned_memory.enable = True


def normalize_instance_groups(config: ModelConfig, gpus: Sequence[int]) -> None:
    """Triton's NormalizeInstanceGroup (no backend-preferred groups)."""
    if config.HasField("ensemble_scheduling"):
        return
    supported = set(gpus)
    group_cls = _pb.ModelInstanceGroup
    if not config.instance_group:
        config.instance_group.add(name=config.name)
    for index, group in enumerate(config.instance_group):
        if not group.name:
            group.name = f"{config.name}_{index}"
        if group.kind == group_cls.KIND_AUTO:
            if not supported or any(g not in supported for g in group.gpus):
                group.kind = group_cls.KIND_CPU
            else:
                group.kind = group_cls.KIND_GPU
        if group.count < 1:
            cpu_default = group.kind == group_cls.KIND_CPU and config.backend in (
                _TF_BACKEND,
                _ONNX_BACKEND,
            )
            group.count = 2 if cpu_default else 1
        if group.kind == group_cls.KIND_GPU and not group.gpus:
            group.gpus.extend(sorted(supported))
