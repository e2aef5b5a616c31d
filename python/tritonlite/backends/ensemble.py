"""Ensembles (platform "ensemble"): a DAG of other served models.

Owns: checking an ``ensemble_scheduling`` at load (unknown models, unmapped tensors, cycles,
datatype mismatches are load errors) and running it per request: each step is submitted to its
model as soon as every tensor it needs exists, steps run concurrently, and tensors pass between
steps as the core's Tensors (no copies). A failing step fails the ensemble request with the step
named. Each composing model keeps its own statistics.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._proto import model_config_pb2 as mc
from ..datatypes import to_wire_name
from ..errors import INVALID_ARG, UNAVAILABLE, TritonError


@dataclass(frozen=True)
class _Step:
    index: int
    model: str
    version: int | None
    inputs: dict[str, str]  # model input -> ensemble tensor
    outputs: dict[str, str]  # model output -> ensemble tensor

    @property
    def label(self) -> str:
        return f"step {self.index} (model '{self.model}')"


def _invalid(config: mc.ModelConfig, message: str) -> TritonError:
    return TritonError(f"ensemble '{config.name}': {message}", INVALID_ARG)


def _steps(config: mc.ModelConfig) -> list[_Step]:
    if not config.HasField("ensemble_scheduling") or not config.ensemble_scheduling.step:
        raise _invalid(config, "ensemble_scheduling must list at least one step")
    steps = []
    for i, s in enumerate(config.ensemble_scheduling.step):
        version = s.model_version if s.model_version > 0 else None
        steps.append(_Step(i, s.model_name, version, dict(s.input_map), dict(s.output_map)))
    return steps


def _check(config: mc.ModelConfig, steps: list[_Step], server: Any) -> None:
    """Load-time validation against the served composing models."""
    produced: dict[str, str] = {t.name: "the ensemble's inputs" for t in config.input}
    types: dict[str, str] = {
        t.name: to_wire_name(mc.DataType.Name(t.data_type)) for t in config.input
    }
    for step in steps:
        try:
            composing = server.model_config(step.model, step.version)
        except TritonError as e:
            raise _invalid(
                config, f"{step.label} needs model '{step.model}', which is not loaded: {e.message}"
            ) from e
        model_inputs = {t.name: to_wire_name(mc.DataType.Name(t.data_type)) for t in composing.input}
        model_outputs = {t.name: to_wire_name(mc.DataType.Name(t.data_type)) for t in composing.output}
        for model_input in step.inputs:
            if model_input not in model_inputs:
                raise _invalid(config, f"{step.label} maps '{model_input}', which is not an input of '{step.model}'")
        for model_output, tensor in step.outputs.items():
            if model_output not in model_outputs:
                raise _invalid(config, f"{step.label} maps '{model_output}', which is not an output of '{step.model}'")
            if tensor in produced:
                raise _invalid(config, f"tensor '{tensor}' is produced by both {produced[tensor]} and {step.label}")
            produced[tensor] = step.label
            types[tensor] = model_outputs[model_output]
    for step in steps:
        for model_input, tensor in step.inputs.items():
            if tensor not in produced:
                raise _invalid(config, f"{step.label} needs tensor '{tensor}', which no step produces and is not an ensemble input")
            expected = dict((t.name, to_wire_name(mc.DataType.Name(t.data_type)))
                            for t in server.model_config(step.model, step.version).input)[model_input]
            if types[tensor] != expected:
                raise _invalid(config, f"{step.label} input '{model_input}' expects {expected} but tensor '{tensor}' is {types[tensor]}")
    for out in config.output:
        if out.name not in produced:
            raise _invalid(config, f"ensemble output '{out.name}' is not produced by any step")
        wire = to_wire_name(mc.DataType.Name(out.data_type))
        if types[out.name] != wire:
            raise _invalid(config, f"ensemble output '{out.name}' is {wire} in the config but {types[out.name]} from {produced[out.name]}")
    # Cycles: every step must become runnable from the ensemble inputs.
    available = {t.name for t in config.input}
    remaining = list(steps)
    while remaining:
        runnable = [s for s in remaining if set(s.inputs.values()) <= available]
        if not runnable:
            raise _invalid(config, "the steps form a cycle: " + ", ".join(s.label for s in remaining) + " can never run")
        for s in runnable:
            available |= set(s.outputs.values())
            remaining.remove(s)


#: How often a running ensemble looks whether its request was cancelled (then it cancels its
#: running steps and submits no more).
CANCEL_POLL_S = 0.05


class EnsembleBackend:
    """Runs an ensemble's DAG for every request on the server's background loop."""

    per_request_execution = True

    def __init__(self, config: mc.ModelConfig, server: Any) -> None:
        self.config = config
        self.server = server
        self.steps = _steps(config)
        _check(config, self.steps, server)
        self.outputs = [o.name for o in config.output]

    def create_instance(self, index: int, kind: str, device_id: int) -> EnsembleBackend:
        return self

    def execute_requests(self, requests: list[Any]) -> None:
        for request in requests:
            self.server.run_in_background(self._run(request))

    async def _run(self, request: Any) -> None:
        # A traced ensemble request: each step is a child of its trace (Triton's parent_id).
        trace = self.server.tracing.live(request.trace_id) if request.trace_id else None
        try:
            tensors = dict(request.inputs())
            wanted = list(request.requested_outputs) or self.outputs
            pending = list(self.steps)
            running: dict[asyncio.Future[Any], _Step] = {}
            while pending or running:
                if request.cancelled:  # the client is gone: no step more, and none running
                    for other in running:
                        other.cancel()
                    request.respond(error=("CANCELLED", "Request was cancelled"))
                    return
                for step in [s for s in pending if set(s.inputs.values()) <= tensors.keys()]:
                    pending.remove(step)
                    inputs = [(name, tensors[t]) for name, t in step.inputs.items()]
                    try:
                        # As Triton: each step inherits the request's priority, timeout and
                        # parameters.
                        future = self.server.submit(step.model, inputs, list(step.outputs), step.version,
                                                    priority=request.priority, request_id=request.id,
                                                    timeout_us=request.timeout_us,
                                                    parameters=request.parameters,
                                                    trace=trace)  # fmt: skip
                    except TritonError as e:
                        raise self._step_error(step, e) from e
                    running[asyncio.ensure_future(future)] = step
                if not running:
                    break
                # Woken at least every CANCEL_POLL_S to notice a cancellation of the request.
                done, _ = await asyncio.wait(
                    running, timeout=CANCEL_POLL_S, return_when=asyncio.FIRST_COMPLETED
                )
                for future in done:
                    step = running.pop(future)
                    try:
                        outputs = future.result()
                    except TritonError as e:
                        for other in running:
                            other.cancel()
                        raise self._step_error(step, e) from e
                    for name, tensor in outputs:
                        tensors[step.outputs[name]] = tensor
            request.respond([(name, tensors[name]) for name in wanted])
        except TritonError as e:
            request.respond(error=(e.status, e.message))
        except Exception as e:  # never leave the client waiting
            request.respond(error=("INTERNAL", f"ensemble '{self.config.name}': {e}"))

    def _step_error(self, step: _Step, error: TritonError) -> TritonError:
        return TritonError(
            f"in ensemble '{self.config.name}', {step.label} failed: {error.message}", error.status
        )

    def close(self) -> None:
        pass


def create_backend(
    config: mc.ModelConfig, model_dir: Path, version_dir: Path, *, server: Any = None
) -> EnsembleBackend:
    """BackendFactory for platform "ensemble" (see ``backends.base``)."""
    if server is None:
        raise TritonError(f"ensemble '{config.name}' needs a server to run its steps", UNAVAILABLE)
    return EnsembleBackend(config, server)
