"""Validation with Triton 2.51's error texts: ValidateModelConfig (batchers, sequence
controls, ensembles), ValidateInstanceGroup and ValidateModelIOConfig."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from .._proto import model_config_pb2 as _pb
from ..errors import INVALID_ARG, TritonError
from .constants import (
    _BACKEND_KIND,
    _ENSEMBLE_PLATFORM,
    _PLATFORM_KIND,
    _TRT_PLATFORM,
    MIN_COMPUTE_CAPABILITY,
    WILDCARD_DIM,
    ModelConfig,
    enum_names,
)


def _invalid(message: str) -> TritonError:
    return TritonError(message, INVALID_ARG)


def validate_model(config: ModelConfig) -> None:
    """Triton's ValidateModelConfig (what it checks when polling the repository)."""
    name = config.name
    if not name:
        raise _invalid("model configuration must specify 'name'")
    if not config.backend:
        if config.platform != _ENSEMBLE_PLATFORM:
            raise _invalid(f"unexpected platform type '{config.platform}' for {name}")
    elif config.platform == _ENSEMBLE_PLATFORM:
        raise _invalid(
            f"Ensemble model '{name}' must have platform type '{config.platform}' and empty "
            "backend type"
        )
    backend_kind = _BACKEND_KIND.get(config.backend)
    if backend_kind is not None and backend_kind != _PLATFORM_KIND.get(config.platform):
        raise _invalid(
            f"unexpected 'platform' and 'backend' pair, got:{config.platform}, {config.backend}"
        )
    if config.max_batch_size < 0:
        raise _invalid(f"'max_batch_size' must be non-negative value for {name}")
    if not config.HasField("version_policy"):
        raise _invalid(f"must specify 'version policy' for {name}")
    policy = config.version_policy
    if policy.WhichOneof("policy_choice") == "specific" and not policy.specific.versions:
        # Triton accepts this and then finds no version to load; say so up front.
        raise _invalid(
            f"at least one version must be available under the version policy of model '{name}'"
        )

    if config.HasField("dynamic_batching"):
        _validate_dynamic_batching(config)
    if config.HasField("sequence_batching"):
        _validate_sequence_batching(config)

    if config.HasField("ensemble_scheduling"):
        _validate_ensemble(config)
    elif config.platform == _ENSEMBLE_PLATFORM:
        raise _invalid(
            f"ensemble scheduling must be set for ensemble {name} whose platform is "
            f"{_ENSEMBLE_PLATFORM}"
        )

    if config.model_transaction_policy.decoupled and config.response_cache.enable:
        raise _invalid(
            f"Response Cache does not currently support model {name} with 'decoupled' "
            "transaction policy. Please disable the response cache."
        )
    for control in config.model_metrics.metric_control:
        if not control.HasField("metric_identifier"):
            raise _invalid("metric control must specify 'metric_identifier'")
        if not control.metric_identifier.family:
            raise _invalid("metric identifier must specify non-empty 'family'")
        if not control.HasField("histogram_options"):
            raise _invalid("metric control must specify 'histogram_options'")
        if not control.histogram_options.buckets:
            raise _invalid("histogram options must specify non-empty 'buckets'")


def _validate_dynamic_batching(config: ModelConfig) -> None:
    name, batching = config.name, config.dynamic_batching
    for size in batching.preferred_batch_size:
        if size <= 0:
            raise _invalid(f"dynamic batching preferred size must be positive for {name}")
        if size > config.max_batch_size:
            raise _invalid(f"dynamic batching preferred size must be <= max batch size for {name}")
    levels = batching.priority_levels
    if levels != 0:
        if batching.default_priority_level == 0 or batching.default_priority_level > levels:
            raise _invalid(f"default priority level must be in range [1, {levels}] for {name}")
        for level in batching.priority_queue_policy:
            if level == 0 or level > levels:
                raise _invalid(
                    "priority queue policy must have priority level in range "
                    f"[1, {levels}] for {name}"
                )
    if batching.preserve_ordering:
        if levels > 1:
            raise _invalid(
                f"Only one priority level is allowed when 'preserve_ordering' is true for {name}"
            )
        delay = _pb.ModelQueuePolicy.DELAY
        policies = [batching.default_queue_policy, *batching.priority_queue_policy.values()]
        for policy in policies:
            if policy.default_timeout_microseconds != 0 and policy.timeout_action == delay:
                raise _invalid(
                    "Queue policy can not have DELAY as timeout action when "
                    f"'preserve_ordering' is true for {name}"
                )


def _validate_sequence_batching(config: ModelConfig) -> None:
    name, batcher = config.name, config.sequence_batching
    if config.response_cache.enable:
        raise _invalid(
            f"Response Cache does not currently support model {name} with sequence batching "
            "scheduler. Please disable the response cache."
        )
    kind = _pb.ModelSequenceBatching.Control
    for control_kind in (
        kind.CONTROL_SEQUENCE_START,
        kind.CONTROL_SEQUENCE_END,
        kind.CONTROL_SEQUENCE_READY,
    ):
        _check_sequence_control(batcher, name, control_kind, typed=False)
    corrid = _check_sequence_control(batcher, name, kind.CONTROL_SEQUENCE_CORRID, typed=True)
    allowed = (_pb.TYPE_UINT64, _pb.TYPE_INT64, _pb.TYPE_UINT32, _pb.TYPE_INT32, _pb.TYPE_STRING)
    if corrid is not None and corrid not in allowed:
        raise _invalid(
            f"unexpected data type for control CONTROL_SEQUENCE_CORRID for {name}. Allowed "
            "data types are TYPE_UINT64, TYPE_INT64, TYPE_UINT32, TYPE_INT32 and TYPE_STRING"
        )
    if batcher.HasField("oldest"):
        for size in batcher.oldest.preferred_batch_size:
            if size <= 0:
                raise _invalid(
                    f"sequence batching preferred batch size must be positive for {name}"
                )
            if size > config.max_batch_size:
                raise _invalid(
                    f"sequence batching preferred batch size must be <= max batch size for {name}"
                )
    if batcher.HasField("direct"):
        utilization = batcher.direct.minimum_slot_utilization
        if utilization < 0.0 or utilization > 1.0:
            raise _invalid(
                f"sequence batching minimum slot utilization must be in range (0.0, 1.0] for {name}"
            )


def _check_sequence_control(
    batcher: Any, name: str, control_kind: int, *, typed: bool
) -> int | None:
    """Triton's Get{Boolean,Typed}SequenceControlProperties; the CORRID data type if typed."""
    kind_name = _pb.ModelSequenceBatching.Control.Kind.Name(control_kind)
    seen_tensors: set[str] = set()
    seen: int | None = None
    for control_input in batcher.control_input:
        if not control_input.name:
            raise _invalid(f"sequence batching control tensor must have a name for {name}")
        if control_input.name in seen_tensors:
            raise _invalid(
                f"sequence batching control tensor '{control_input.name}' is specified for "
                f"multiple control kinds for {name}"
            )
        seen_tensors.add(control_input.name)
        for c in control_input.control:
            if c.kind != control_kind:
                continue
            if seen is not None:
                raise _invalid(
                    f"sequence batching specifies multiple {kind_name} tensors for {name}"
                )
            seen = c.data_type
            counts = {
                "int32_false_true": len(c.int32_false_true),
                "fp32_false_true": len(c.fp32_false_true),
                "bool_false_true": len(c.bool_false_true),
            }
            given = [field for field, n in counts.items() if n]
            if typed:
                if given:
                    raise _invalid(
                        "sequence batching must not specify either 'int32_false_true', "
                        f"'fp32_false_true' or 'bool_false_true' for {kind_name} for {name}"
                    )
                continue
            if not given:
                raise _invalid(
                    "sequence batching must specify either 'int32_false_true', "
                    f"'fp32_false_true' or 'bool_false_true' for {kind_name} for {name}"
                )
            if len(given) > 1:
                raise _invalid(
                    "sequence batching specifies more than one from 'int32_false_true', "
                    f"'fp32_false_true' and 'bool_false_true' for {kind_name} for {name}"
                )
            if counts[given[0]] != 2:
                raise _invalid(
                    f"sequence batching control '{given[0]}' must have exactly 2 entries for "
                    f"{kind_name} for {name}"
                )
    return seen


def _validate_ensemble(config: ModelConfig) -> None:
    """Triton's ValidateEnsembleSchedulingConfig, data-flow checks included."""
    name = config.name
    if config.platform != _ENSEMBLE_PLATFORM:
        raise _invalid(
            f"ensemble scheduling cannot be set for model '{name}' whose platform is not "
            f"{_ENSEMBLE_PLATFORM}"
        )
    if config.instance_group:
        raise _invalid(f"instance group should not be specified for ensemble '{name}'")
    if config.HasField("optimization"):
        raise _invalid(f"optimization should not be specified for ensemble '{name}'")
    if config.model_warmup:
        raise _invalid(f"model_warmup can not be specified for ensemble '{name}'")
    steps = config.ensemble_scheduling.step
    if not steps:
        raise _invalid(f"must specify 'step' for ensemble '{name}'")

    # Ensemble tensor graph: tensor -> (is written by a step, tensors it feeds, its sources)
    written: dict[str, bool] = {}
    feeds: dict[str, list[str]] = {}
    sources: dict[str, list[str]] = {}
    for index, step in enumerate(steps):
        for field in ("model_name", "input_map", "output_map"):
            if not getattr(step, field):
                raise _invalid(f"must specify '{field}' in step {index} of ensemble '{name}'")
        step_outputs = []
        for tensor in step.output_map.values():
            if written.get(tensor):
                raise _invalid(
                    f"ensemble tensor '{tensor}' can appear in an output map only once for "
                    f"ensemble '{name}' step {index}"
                )
            written[tensor] = True
            feeds.setdefault(tensor, [])
            sources.setdefault(tensor, [])
            step_outputs.append(tensor)
        for tensor in step.input_map.values():
            written.setdefault(tensor, False)
            feeds.setdefault(tensor, [])
            sources.setdefault(tensor, [])
            for out in step_outputs:
                sources[out].append(tensor)
                feeds[tensor].append(out)

    ready: set[str] = set()
    queue: list[str] = []
    for io in config.input:
        if io.name not in feeds:
            raise _invalid(f"ensemble input '{io.name}' for ensemble {name}' is not used")
        ready.add(io.name)
        queue.append(io.name)
    while queue:
        tensor = queue.pop(0)
        for nxt in feeds[tensor]:
            if nxt not in ready and all(src in ready for src in sources[nxt]):
                ready.add(nxt)
                queue.append(nxt)
    outputs = set()
    for io in config.output:
        if io.name not in feeds:
            raise _invalid(f"ensemble output '{io.name}' for ensemble {name}' is not used")
        if io.name not in ready:
            message = f"output '{io.name}' for ensemble '{name}' is not written"
            missing = _first_unready_source(io.name, sources, ready)
            if missing is not None:
                message += f": at least one of its depending tensors, '{missing}', is not connected"
            raise _invalid(message)
        outputs.add(io.name)
    for tensor, consumers in feeds.items():
        if tensor not in outputs and (tensor not in ready or not consumers):
            raise _invalid(f"ensemble tensor '{tensor}' is unused in ensemble '{name}'")


def _first_unready_source(
    tensor: str, sources: dict[str, list[str]], ready: set[str]
) -> str | None:
    last, seen = tensor, set()
    current: list[str] | None = sources.get(tensor)
    while current:
        nxt = None
        for src in current:
            if src not in ready and src not in seen:
                seen.add(src)
                last, nxt = src, sources.get(src)
                break
        current = nxt
    return None if last == tensor else last


def validate_instance_groups(config: ModelConfig, gpus: Sequence[int]) -> None:
    """Triton's ValidateInstanceGroup."""
    if config.HasField("ensemble_scheduling"):
        return
    name = config.name
    if not config.instance_group:
        raise _invalid(f"must specify one or more 'instance group's for {name}")
    group_cls = _pb.ModelInstanceGroup
    supported = set(gpus)
    for group in config.instance_group:
        prefix = f"instance group {group.name} of model {name}"
        if group.kind == group_cls.KIND_MODEL:
            if group.gpus:
                raise _invalid(f"{prefix} has kind KIND_MODEL but specifies one or more GPUs")
        elif group.kind == group_cls.KIND_GPU:
            if not group.gpus:
                if not supported:
                    raise _invalid(f"{prefix} has kind KIND_GPU but no GPUs are available")
                raise _invalid(f"{prefix} has kind KIND_GPU but specifies no GPUs")
            for gpu in group.gpus:
                if gpu not in supported:
                    raise _invalid(
                        f"{prefix} specifies invalid or unsupported gpu id {gpu}. GPUs with at "
                        "least the minimum required CUDA compute compatibility of "
                        f"{MIN_COMPUTE_CAPABILITY:f} are: "
                        + ", ".join(str(g) for g in sorted(supported))
                    )
        elif group.kind == group_cls.KIND_CPU:
            if group.gpus:
                raise _invalid(f"{prefix} has kind KIND_CPU but specifies one or more GPUs")
        else:
            raise TritonError(f"{prefix} has unexpected kind KIND_AUTO", "INTERNAL")
        if config.platform != _TRT_PLATFORM and group.profile:
            raise _invalid(
                f"{prefix} and platform {config.platform}specifies profile field which is "
                "only supported for TensorRT models"
            )


def validate_io(config: ModelConfig) -> None:
    """Triton's ValidateModelIOConfig, plus unique tensor names."""
    name = config.name
    for kind, ios in (("input", config.input), ("output", config.output)):
        seen: set[str] = set()
        for io in ios:
            problem = _io_problem(io, kind, config)
            if problem:
                raise _invalid(f"{problem} for {name}")
            if io.name in seen:
                raise _invalid(f"model {kind} '{io.name}' is specified more than once for {name}")
            seen.add(io.name)
    problem = _batch_io_problem(config)
    if problem:
        raise _invalid(f"{problem} for {name}")


def _io_problem(io: Any, kind: str, config: ModelConfig) -> str | None:
    prefix = f"model {kind} "
    if not io.name:
        return prefix + "must specify 'name'"
    prefix += f"'{io.name}' "
    if io.data_type == _pb.TYPE_INVALID:
        return prefix + "must specify 'data_type'"
    if io.data_type not in _pb.DataType.values():
        return (
            prefix + f"has unknown data_type {io.data_type} "
            f"(valid values: {', '.join(enum_names('inference.DataType'))})"
        )
    if not io.dims:
        return prefix + "must specify 'dims'"
    has_reshape = io.HasField("reshape")
    if has_reshape and not io.reshape.shape and config.max_batch_size == 0:
        return (
            prefix + "cannot have empty reshape for non-batching model as scalar tensors are "
            "not supported"
        )
    variable = "-1 to indicate a variable-size dimension"
    if any(d < 1 and d != WILDCARD_DIM for d in io.dims):
        return prefix + f"dimension must be integer >= 1, or {variable}"
    if has_reshape:
        shape = list(io.reshape.shape)
        if any(d < 1 and d != WILDCARD_DIM for d in shape):
            return prefix + f"reshape dimensions must be integer >= 1, or {variable}"
        dims_size, reshape_size = _element_count(io.dims), _element_count(shape)
        if dims_size != reshape_size and (reshape_size != 0 or dims_size != 1):
            return prefix + "has different size for dims and reshape"
        if dims_size == WILDCARD_DIM:
            dim_chunks, reshape_chunks = _chunk_counts(io.dims), _chunk_counts(shape)
            if len(dim_chunks) != len(reshape_chunks):
                return (
                    prefix + "has different number of variable-size dimensions for dims and reshape"
                )
            if dim_chunks != reshape_chunks:
                return prefix + "has different size for dims and reshape"
    if kind == "input":
        formats = (_pb.ModelInput.FORMAT_NHWC, _pb.ModelInput.FORMAT_NCHW)
        if io.format in formats and len(io.dims) != 3:
            return "model input NHWC/NCHW require 3 dims"
    if config.platform != _TRT_PLATFORM and io.is_shape_tensor:
        return "shape tensors are only supported for TensorRT platform"
    if io.is_non_linear_format_io:
        if config.platform != _TRT_PLATFORM:
            return "Non-linear IO format is only supported for the TensorRT platform"
        if len(io.dims) != 3:
            return f"Non-linear IO format {kind} requires 3 dims"
    return None


def _element_count(dims: Iterable[int]) -> int:
    """Triton's GetElementCount: -1 with a variable dim, 0 for no dims."""
    count: int | None = None
    for d in dims:
        if d == WILDCARD_DIM:
            return WILDCARD_DIM
        count = d if count is None else count * d
    return count or 0


def _chunk_counts(dims: Iterable[int]) -> list[int]:
    chunks, current = [], 1
    for d in dims:
        if d == WILDCARD_DIM:
            chunks.append(current)
            current = 1
        else:
            current *= d
    chunks.append(current)
    return chunks


def _source_problem(what: str, sources: Any, inputs: set[str]) -> str | None:
    """A batch input's or output's ``source_input``: exactly one (its name is checked after)."""
    if len(sources) != 1:
        return f"{what} expects 1 source input, got {len(sources)}"
    return None


def _batch_io_problem(config: ModelConfig) -> str | None:
    inputs = {io.name for io in config.input}
    outputs = {io.name for io in config.output}
    for batch_input in config.batch_input:
        kind = _pb.BatchInput.Kind.Name(batch_input.kind)
        problem = _source_problem(f"batch input kind '{kind}'", batch_input.source_input, inputs)
        if problem:
            return problem
        if batch_input.data_type not in (_pb.TYPE_INT32, _pb.TYPE_FP32):
            return "batch input data type must be TYPE_INT32 or TYPE_FP32"
        for source in batch_input.source_input:
            if source not in inputs:
                return f"unknown source input name '{source}'"
    for batch_output in config.batch_output:
        kind = _pb.BatchOutput.Kind.Name(batch_output.kind)
        problem = _source_problem(f"batch output kind '{kind}'", batch_output.source_input, inputs)
        if problem:
            return problem
        for source in batch_output.source_input:
            if source not in inputs:
                return f"unknown source input name '{source}'"
        targets: set[str] = set()
        for target in batch_output.target_name:
            if target not in outputs:
                return f"unknown target output name '{target}'"
            if target in targets:
                return f"target output name '{target}' can only be specified once"
            targets.add(target)
    return None


# --------------------------------------------------------------------------- JSON
