"""What tritonlite does with the ModelConfig fields it does not simply honour.

Owns: the load-time answer for every field that is not implemented here, so none is silently
accepted. ``check_config_support(config)`` (called by ``config.load_model_config`` after
validation) raises INVALID_ARG naming the model and the field for a field tritonlite refuses, and
logs one warning naming it for a field that has no effect here (where Triton itself gives it no
effect on a CPU-only server with these backends, or where it only tunes TensorRT/GPU memory).
Triton's own load-time checks on the same fields (initial_state, use_growable_memory) are here
too, with its texts.

docs/config_fields.md lists every ModelConfig field with what tritonlite does with it.
"""

from __future__ import annotations

import logging

from .._proto import model_config_pb2 as _pb
from .constants import ModelConfig
from ..errors import INVALID_ARG, TritonError

_log = logging.getLogger("tritonlite.config")


#: Backends that take gathered batches (reshape is applied around them).
_BATCHING_BACKENDS = ("onnxruntime", "pytorch")
#: Backends for which ragged batching (allow_ragged_batch, batch_input, batch_output) works: the
#: core gathers ragged inputs and makes batch inputs for onnxruntime models; python models take
#: a batch as its requests (as in Triton, they see the requests' own inputs and answer each).
_RAGGED_BACKENDS = ("onnxruntime", "python")


def _refuse(config: ModelConfig, field: str, why: str) -> TritonError:
    return TritonError(
        f"model '{config.name}': {field} is not supported by tritonlite: {why}", INVALID_ARG
    )


def _warn(config: ModelConfig, field: str, why: str) -> None:
    _log.warning("model '%s': %s has no effect in tritonlite: %s", config.name, field, why)


def check_config_support(config: ModelConfig) -> None:
    """Refuse (TritonError, INVALID_ARG) or warn about the fields tritonlite does not implement."""
    _check_backend_fields(config)
    _check_io(config)
    _check_sequence(config)
    _check_ensemble(config)
    _check_instance_groups(config)
    _check_warned(config)


def _check_backend_fields(config: ModelConfig) -> None:
    backend = config.backend
    if config.runtime and config.runtime != f"libtriton_{backend}.so":
        raise _refuse(
            config, f"runtime '{config.runtime}'",
            f"the {backend or config.platform} backend is built in (leave runtime empty)",
        )  # fmt: skip
    if config.model_repository_agents.agents:
        raise _refuse(
            config, "model_repository_agents",
            f"no repository agent ('{config.model_repository_agents.agents[0].name}') can run here",
        )  # fmt: skip
    if config.model_operations.op_library_filename:
        raise _refuse(
            config, "model_operations.op_library_filename",
            "custom operation libraries are not loaded (a config, also one sent with the load "
            "API, would choose a shared library for the server to run)",
        )  # fmt: skip


def _check_io(config: ModelConfig) -> None:
    batching_backend = config.backend in _BATCHING_BACKENDS
    if config.backend not in _RAGGED_BACKENDS:
        why = "ragged batching is implemented for onnxruntime and python models only"
        for tensor in config.input:
            if tensor.allow_ragged_batch and batching_backend:
                raise _refuse(config, f"input '{tensor.name}' allow_ragged_batch", why)
        if config.batch_input:
            raise _refuse(
                config, f"batch_input '{config.batch_input[0].target_name[0] if config.batch_input[0].target_name else ''}'",
                why,
            )  # fmt: skip
        if config.batch_output:
            raise _refuse(
                config, f"batch_output '{config.batch_output[0].target_name[0] if config.batch_output[0].target_name else ''}'",
                why,
            )  # fmt: skip
    if not batching_backend:
        for kind, tensors in (("input", config.input), ("output", config.output)):
            for tensor in tensors:
                if tensor.HasField("reshape"):
                    raise _refuse(
                        config, f"{kind} '{tensor.name}' reshape",
                        f"reshape is applied for the onnxruntime and pytorch backends only, not "
                        f"for {config.backend or config.platform} models",
                    )  # fmt: skip


def _check_sequence(config: ModelConfig) -> None:
    if not config.HasField("sequence_batching"):
        return
    sb = config.sequence_batching
    if sb.iterative_sequence:
        raise _refuse(
            config, "sequence_batching.iterative_sequence", "requests are not rescheduled"
        )
    if (
        sb.HasField("oldest")
        and sb.oldest.preserve_ordering
        and config.model_transaction_policy.decoupled
    ):
        raise _refuse(
            config, "sequence_batching.oldest.preserve_ordering",
            "a decoupled model's responses are forwarded as it sends them",
        )  # fmt: skip
    for state in sb.state:
        name = state.input_name
        if state.use_growable_memory:  # Triton's checks and texts
            if not state.use_same_buffer_for_input_output:
                raise TritonError(
                    "In order to 'use_growable_memory', you must also enable "
                    f"'use_single_buffer' for state input name '{name}'.",
                    INVALID_ARG,
                )
            raise TritonError(
                "'use_growable_memory' can only work with KIND_GPU model instances right now. "
                "Please either change the instance type to KIND_GPU or set "
                f"'use_growable_memory' to false for state input '{name}'.",
                INVALID_ARG,
            )
        if state.use_same_buffer_for_input_output:
            _warn(
                config, f"state '{name}' use_same_buffer_for_input_output",
                "state buffers are managed by the server (a memory layout choice only)",
            )  # fmt: skip
        for initial in state.initial_state:
            _check_initial_state(initial, state)


def _check_initial_state(
    initial: _pb.ModelSequenceBatching.InitialState, state: _pb.ModelSequenceBatching.State
) -> None:
    """Triton's SequenceBatchScheduler::GenerateInitialStateData checks, with its texts."""
    name = state.input_name
    if initial.data_type != state.data_type:
        raise TritonError(
            f"The data type used for 'initial_state' field of state '{name}' does not match "
            "the state data type.",
            INVALID_ARG,
        )
    if not initial.name:
        raise TritonError(
            f"Field 'name' must be set when using initial_state for state input '{name}'.",
            INVALID_ARG,
        )
    if len(initial.dims) != len(state.dims):
        raise TritonError(
            "Number of dimensions in 'initial_state' doesn't match the size of 'state' "
            f"dimensions for state input '{name}'. {len(initial.dims)} != {len(state.dims)}",
            INVALID_ARG,
        )
    for initial_dim, state_dim in zip(initial.dims, state.dims, strict=True):
        if initial_dim == -1:
            raise TritonError(
                f"'initial_state' field for state input name '{name}' contains variable "
                "dimensions.",
                INVALID_ARG,
            )
        if state_dim != -1 and initial_dim != state_dim:
            raise TritonError(
                f"'initial_state' dim for input name '{name}' doesn't match 'state' dim "
                f"description. {initial_dim} != {state_dim}",
                INVALID_ARG,
            )


def _check_ensemble(config: ModelConfig) -> None:
    for step in config.ensemble_scheduling.step:
        if step.model_namespace:
            raise _refuse(
                config, f"ensemble step '{step.model_name}' model_namespace",
                "models are not namespaced (one flat name space, as without "
                "--model-namespacing)",
            )  # fmt: skip
    if config.ensemble_scheduling.max_inflight_requests:
        _warn(
            config, "ensemble_scheduling.max_inflight_requests",
            "each step runs once per ensemble request (a newer Triton setting, not in 2.51)",
        )  # fmt: skip


def _check_instance_groups(config: ModelConfig) -> None:
    groups = list(config.instance_group)
    if groups and all(g.passive for g in groups):
        raise TritonError(
            f"model '{config.name}': every instance group is passive: no instance would ever "
            "execute a request",
            INVALID_ARG,
        )
    for group in groups:
        label = f"instance_group '{group.name}'" if group.name else "instance_group"
        if group.host_policy:
            _warn(config, f"{label} host_policy '{group.host_policy}'",
                  "there are no host policies (--host-policy is refused)")  # fmt: skip
        if group.secondary_devices:
            _warn(config, f"{label} secondary_devices",
                  "Triton uses them for TensorRT (NVDLA) models only")  # fmt: skip


def _check_warned(config: ModelConfig) -> None:
    opt = config.optimization
    if opt.priority != _pb.ModelOptimizationPolicy.PRIORITY_DEFAULT:
        _warn(config, "optimization.priority", "it sets CUDA stream priorities (GPU only)")
    cuda = opt.cuda
    if cuda.graphs or cuda.busy_wait_events or cuda.graph_spec or cuda.output_copy_stream:
        _warn(config, "optimization.cuda", "Triton uses it for TensorRT models on GPUs only")
    if opt.gather_kernel_buffer_threshold:
        _warn(config, "optimization.gather_kernel_buffer_threshold", "TensorRT only")
    if opt.eager_batching:
        _warn(config, "optimization.eager_batching", "TensorRT only")
    if config.cc_model_filenames:
        _warn(config, "cc_model_filenames", "Triton reads it for KIND_GPU instances only")
    if config.model_metrics.metric_control:
        _warn(
            config, "model_metrics",
            "latency histograms are not exported (a newer Triton setting, not in 2.51)",
        )  # fmt: skip
