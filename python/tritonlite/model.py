"""A loaded model version: its complete config, its backend and the core ModelRunner that
schedules it. Turns the ModelConfig protobuf into the core's scheduling spec."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from . import _core
from ._proto import model_config_pb2 as mc
from .backends.base import Backend
from .backends.reshape import with_reshape
from .config.constants import ModelConfig
from .config.instances import instance_placements
from .datatypes import to_wire_name
from .errors import INVALID_ARG, TritonError
from .initial_state import initial_states, state_shape
from .rate_limit import instance_rate_limit, uses_rate_limiter
from .warmup import warmup_samples

log = logging.getLogger("tritonlite")


def _tensor_specs(tensors: Any) -> list[dict[str, Any]]:
    return [
        {
            "name": t.name,
            "datatype": to_wire_name(mc.DataType.Name(t.data_type)),
            "dims": list(t.dims),
            "optional": getattr(t, "optional", False),
            "allow_ragged_batch": getattr(t, "allow_ragged_batch", False),
        }
        for t in tensors
    ]


def _batch_io_specs(config: ModelConfig) -> dict[str, Any]:
    """batch_input / batch_output for the core (csrc/scheduling/ragged.h); validated with the config."""
    outputs = {o.name: o for o in config.output}
    batch_outputs = []
    for b in config.batch_output:
        target = outputs[b.target_name[0]]
        dims = list(target.reshape.shape) if target.HasField("reshape") else list(target.dims)
        batch_outputs.append({
            "target_name": list(b.target_name),
            "source_input": b.source_input[0],
            # Triton's BatchOutput::OutputShape: the batch dim first when the model batches.
            "shape": ([-1] if config.max_batch_size != 0 else []) + dims,
        })  # fmt: skip
    return {
        "batch_input": [
            {
                "kind": mc.BatchInput.Kind.Name(b.kind),
                "target_name": list(b.target_name),
                "datatype": to_wire_name(mc.DataType.Name(b.data_type)),
                "source_input": b.source_input[0],
            }
            for b in config.batch_input
        ],
        "batch_output": batch_outputs,
    }


def _queue_policy(policy: Any) -> dict[str, Any]:
    return {
        "timeout_action": mc.ModelQueuePolicy.TimeoutAction.Name(policy.timeout_action),
        "default_timeout_microseconds": policy.default_timeout_microseconds,
        "allow_timeout_override": policy.allow_timeout_override,
        "max_queue_size": policy.max_queue_size,
    }


def scheduler_spec(
    config: ModelConfig, version: int, initial: list[bytes] | None = None
) -> dict[str, Any]:
    """The core's spec for one version of a model (see csrc/core/model_spec.h). ``initial``: each
    implicit state's initial data (``initial_state.initial_states``; None: made here, without
    a model directory for data files)."""
    spec: dict[str, Any] = {
        "name": config.name,
        "version": version,
        "max_batch_size": config.max_batch_size,
        "inputs": _tensor_specs(config.input),
        "outputs": _tensor_specs(config.output),
        "dynamic_batching": None,
        "sequence_batching": (
            _sequence_spec(config, initial) if config.HasField("sequence_batching") else None
        ),
    }
    spec.update(_batch_io_specs(config))
    if config.HasField("dynamic_batching"):
        db = config.dynamic_batching
        spec["dynamic_batching"] = {
            "preferred_batch_size": list(db.preferred_batch_size),
            "max_queue_delay_microseconds": db.max_queue_delay_microseconds,
            "preserve_ordering": db.preserve_ordering,
            "priority_levels": db.priority_levels,
            "default_priority_level": db.default_priority_level,
            "default_queue_policy": _queue_policy(db.default_queue_policy),
            "priority_queue_policy": {
                int(level): _queue_policy(p) for level, p in db.priority_queue_policy.items()
            },
        }
    return spec


def _int_parameter(config: ModelConfig, key: str) -> int:
    """A non-negative integer model parameter (``parameters { key: ... }``), 0 when absent."""
    if key not in config.parameters:
        return 0
    text = config.parameters[key].string_value
    if not text.isdigit():
        raise TritonError(
            f"model '{config.name}': parameter '{key}' must be a non-negative integer, got '{text}'",
            INVALID_ARG,
        )
    return int(text)


def _sequence_spec(config: ModelConfig, initial: list[bytes] | None) -> dict[str, Any]:
    sb = config.sequence_batching
    strategy = sb.WhichOneof("strategy_choice") or "direct"
    s = getattr(sb, strategy)
    spec: dict[str, Any] = {
        "oldest": strategy == "oldest",
        "max_sequence_idle_microseconds": sb.max_sequence_idle_microseconds or 1_000_000,
        "max_queue_delay_microseconds": s.max_queue_delay_microseconds,
        "minimum_slot_utilization": s.minimum_slot_utilization if strategy == "direct" else 0.0,
        "max_candidate_sequences": s.max_candidate_sequences if strategy == "oldest" else 0,
        "preferred_batch_size": list(s.preferred_batch_size) if strategy == "oldest" else [],
        # tritonlite's own bound on sequences waiting for a slot (Triton's is unbounded).
        "sequence_backlog_limit": _int_parameter(config, "sequence_backlog_limit"),
        "controls": [],
        "states": [],
    }
    Kind = mc.ModelSequenceBatching.Control.Kind
    for control_input in sb.control_input:
        for c in control_input.control:
            kind = Kind.Name(c.kind)
            entry: dict[str, Any] = {"kind": kind, "input_name": control_input.name}
            if kind == "CONTROL_SEQUENCE_CORRID":
                entry["datatype"] = to_wire_name(mc.DataType.Name(c.data_type))
            elif len(c.fp32_false_true) == 2:
                entry.update(datatype="FP32", false_value=c.fp32_false_true[0],
                             true_value=c.fp32_false_true[1])  # fmt: skip
            elif len(c.bool_false_true) == 2:
                entry.update(datatype="BOOL", false_value=float(c.bool_false_true[0]),
                             true_value=float(c.bool_false_true[1]))  # fmt: skip
            else:
                values = list(c.int32_false_true) or [0, 1]
                entry.update(datatype="INT32", false_value=values[0], true_value=values[1])
            spec["controls"].append(entry)
    if initial is None:
        initial = initial_states(config, None)
    for st, data in zip(sb.state, initial, strict=True):
        spec["states"].append(
            {
                "input_name": st.input_name,
                "output_name": st.output_name,
                "datatype": to_wire_name(mc.DataType.Name(st.data_type)),
                "dims": list(st.dims),  # -1: the model's state output decides
                "initial_shape": state_shape(st),
                "initial": data,
            }
        )
    return spec


class LoadedModel:
    """One served version of a model: config + backend + core runner."""

    def __init__(
        self,
        config: ModelConfig,
        version: int,
        backend: Backend,
        model_dir: Path | None = None,
        cache: Any = None,
        rate_limiter: Any = None,
    ) -> None:
        """``rate_limiter``: the server's ``_core.RateLimiter`` (None: ``--rate-limit off``)."""
        self.config = config
        self.version = version
        self.backend = backend
        self.model_dir = model_dir  # where label files etc. live (None: not from a repository)
        self._labels: dict[str, list[str]] = {}
        self._check_label_files()
        # Built (files read, sizes checked) before any instance starts.
        samples = warmup_samples(config, model_dir)
        initial = initial_states(config, model_dir) if config.HasField("sequence_batching") else []
        placements = instance_placements(config, _core.cuda_device_count())
        # Registered before any instance exists: a load that asks the rate limiter for more
        # than the server has fails before an instance starts. The runner's (active) instances
        # first, in its order; passive ones count toward the limits, as in Triton, and never
        # run. Ensembles have no instances of their own (Triton does not rate-limit them;
        # their steps are).
        registration = None
        if rate_limiter is not None and not config.HasField("ensemble_scheduling"):
            ordered = [p for p in placements if not p.passive]
            ordered += [p for p in placements if p.passive]
            registration = rate_limiter.register(
                [instance_rate_limit(p.group, p.device_id) for p in ordered]
            )
        elif rate_limiter is None and uses_rate_limiter(config):
            log.warning(
                "model '%s': instance_group rate_limiter is ignored: the server runs with "
                "--rate-limit off (start it with --rate-limit execution_count)",
                config.name,
            )
        try:
            # Passive instances are made (loaded and initialized, as in Triton) but never given
            # requests: the runner sees only the others.
            instances, self._passive = [], []
            try:
                for i, placement in enumerate(placements):
                    instance = backend.create_instance(i, placement.kind, placement.device_id)
                    (self._passive if placement.passive else instances).append(instance)
            except BaseException:
                for instance in [*instances, *self._passive]:
                    _close(instance)
                raise
            if not getattr(backend, "per_request_execution", False):
                instances = [with_reshape(instance, config) for instance in instances]
            spec = scheduler_spec(config, version, initial)
            # Backends that answer each request themselves (python backend, decoupled models)
            # get the batch as Request objects instead of gathered tensors.
            spec["per_request_execution"] = bool(getattr(backend, "per_request_execution", False))
            # Ensembles count their requests as Triton's ensemble scheduler does.
            spec["ensemble"] = config.HasField("ensemble_scheduling")
            try:
                # Every instance runs the warmup samples before this returns; a failing one
                # raises (its instances already closed by their workers). `cache`: the server's
                # response cache when the config enables it (Server.cache_for).
                self.runner = _core.ModelRunner(spec, instances, cache, samples, registration)
            except BaseException:
                for instance in self._passive:  # never warmed up, as Triton's passive instances
                    _close(instance)
                backend.close()
                raise
        finally:
            # The runner holds it from here; on a failed load, dropping it unregisters (not
            # left to the traceback, which keeps this frame alive).
            registration = None

    @property
    def name(self) -> str:
        return str(self.config.name)

    def _check_label_files(self) -> None:
        """Triton fails a load whose label_filename cannot be read; a label file must also lie
        inside the model's directory (a config override must not read other files)."""
        if self.model_dir is None:
            return
        root = self.model_dir.resolve()
        for output in self.config.output:
            if not output.label_filename:
                continue
            path = (self.model_dir / output.label_filename).resolve()
            if root not in path.parents:
                raise TritonError(
                    f"model '{self.name}': label_filename '{output.label_filename}' of output "
                    f"'{output.name}' is outside the model directory",
                    INVALID_ARG,
                )
            if not path.is_file():
                raise TritonError(
                    f"failed to open text file for read {path}: No such file or directory",
                    INVALID_ARG,
                )

    def labels(self, output: str) -> list[str]:
        """The output's label file lines (Triton's label_filename), [] when it has none."""
        if output not in self._labels:
            names = [o.label_filename for o in self.config.output if o.name == output]
            lines: list[str] = []
            if names and names[0] and self.model_dir is not None:
                path = self.model_dir / names[0]
                if path.is_file():
                    lines = path.read_text(encoding="utf-8").splitlines()
            self._labels[output] = lines
        return self._labels[output]

    def stop(self) -> None:
        """Finish queued and in-flight requests, stop the instances, release the backend."""
        self.runner.stop()
        for instance in self._passive:
            _close(instance)
        self.backend.close()


def _close(instance: Any) -> None:
    close = getattr(instance, "close", None)
    if close is not None:
        close()
