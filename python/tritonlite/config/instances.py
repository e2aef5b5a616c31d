"""Instance-group expansion: the one place that turns a config's ``instance_group`` into the
instances to create, each with its kind, device and Triton name (``<group name>_<n>``), in the
order the core creates them."""

from __future__ import annotations

from dataclasses import dataclass

from .._proto import model_config_pb2 as _pb
from ..errors import INVALID_ARG, TritonError
from .constants import ModelConfig


@dataclass(frozen=True)
class InstancePlacement:
    """One model instance: its group, kind name (``KIND_CPU``, ``KIND_GPU``, ``KIND_MODEL``),
    device id (0 off GPU) and instance name."""

    group: _pb.ModelInstanceGroup
    kind: str
    device_id: int
    name: str

    @property
    def passive(self) -> bool:
        return bool(self.group.passive)


def instance_placements(config: ModelConfig, gpu_count: int) -> list[InstancePlacement]:
    """Every instance the config's instance groups ask for (one instance when it has none).

    A normalized config (``normalize_instance_groups``) has no KIND_AUTO group and lists the
    gpus of its KIND_GPU groups; for others KIND_AUTO means KIND_GPU when ``gpu_count`` > 0,
    and a KIND_GPU group without gpus runs on every one of the ``gpu_count`` devices.
    """
    placements: list[InstancePlacement] = []
    groups = list(config.instance_group) or [_pb.ModelInstanceGroup(count=1)]
    for group in groups:
        kind = _pb.ModelInstanceGroup.Kind.Name(group.kind)
        count = group.count or 1
        if kind == "KIND_AUTO":
            kind = "KIND_GPU" if gpu_count > 0 else "KIND_CPU"
        devices = [0]
        if kind == "KIND_GPU":
            devices = list(group.gpus) or list(range(gpu_count))
            if not devices:
                raise TritonError(
                    f"model '{config.name}': instance_group asks for KIND_GPU but no CUDA device "
                    "is available",
                    INVALID_ARG,
                )
        base = group.name or config.name
        for index in range(len(devices) * count):
            device = devices[index // count]
            placements.append(InstancePlacement(group, kind, device, f"{base}_{index}"))
    return placements
