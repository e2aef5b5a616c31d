"""Ensembles (platform "ensemble"): a DAG of other served models.

Owns: checking an ``ensemble_scheduling`` at load (unknown models, unmapped tensors, cycles,
datatype mismatches are load errors) and running it per request: each step is submitted to its
model as soon as every tensor it needs exists, steps run concurrently, and tensors pass between
steps as the core's Tensors (no copies). A failing step fails the ensemble request with the step
named. Each composing model keeps its own statistics.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
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


class EnsembleConfigError(TritonError):
    """An ensemble that does not fit the models it calls. (In explicit mode Triton finds this
    while checking the dependencies, before the load: the load request fails with the text and
    the index keeps no state for the ensemble.)"""


def _invalid(config: mc.ModelConfig, message: str) -> TritonError:
    return EnsembleConfigError(f"ensemble '{config.name}': {message}", INVALID_ARG)


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


def _decoupled_labels(config: mc.ModelConfig, steps: list[_Step], server: Any) -> bool:
    """Triton's decoupled check: a step may not take inputs that come from different decoupled
    steps (or from one and from the ensemble's own inputs' lineage). Returns whether any step
    is decoupled: then the ensemble is decoupled itself."""
    labels: dict[str, int] = {t.name: 0 for t in config.input}
    fresh = 0
    remaining = list(steps)
    while remaining:
        runnable = [s for s in remaining if set(s.inputs.values()) <= labels.keys()]
        if not runnable:
            break  # a cycle, reported by _check
        for step in runnable:
            remaining.remove(step)
            seen = {labels[t] for t in step.inputs.values()}
            if len(seen) > 1:
                # Triton's text (it names the ensemble as the step's model).
                raise EnsembleConfigError(
                    f"in ensemble {config.name}, step of model '{config.name}' receives inputs "
                    "originated from different decoupled models",
                    INVALID_ARG,
                )
            label = next(iter(seen), 0)
            if server.model_config(step.model, step.version).model_transaction_policy.decoupled:
                fresh += 1
                label = fresh
            for tensor in step.outputs.values():
                labels[tensor] = label
    return fresh != 0


class _Frame:
    """The tensors one response of a decoupled step made (its own) on top of those its parent
    frame sees; the root frame holds the request's inputs and every non-decoupled result."""

    __slots__ = ("parent", "responded", "tensors")

    def __init__(self, tensors: dict[str, Any], parent: _Frame | None = None) -> None:
        self.tensors = tensors
        self.parent = parent
        self.responded = False

    def find(self, name: str) -> Any:
        frame: _Frame | None = self
        while frame is not None:
            if name in frame.tensors:
                return frame.tensors[name]
            frame = frame.parent
        return None

    def sees(self, names: Any) -> bool:
        return all(self.find(n) is not None for n in names)

    def owns_any(self, names: Any) -> bool:
        return self.parent is None or any(n in self.tensors for n in names)


class EnsembleBackend:
    """Runs an ensemble's DAG for every request on the server's background loop."""

    per_request_execution = True

    def __init__(self, config: mc.ModelConfig, server: Any) -> None:
        self.config = config
        self.server = server
        # Runs waiting for a step's answer, with their requests: looked at every CANCEL_POLL_S
        # by one timer while any wait (on the background loop only: no lock).
        self._waiting: dict[asyncio.Future[None], Any] = {}
        self._sweeping = False
        self.steps = _steps(config)
        _check(config, self.steps, server)
        # As Triton: an ensemble with a decoupled step is decoupled (its config says so, and
        # clients stream its responses).
        if _decoupled_labels(config, self.steps, server):
            config.model_transaction_policy.decoupled = True
        self.outputs = [o.name for o in config.output]
        self._producer = {t: s for s in self.steps for t in s.outputs.values()}

    def create_instance(self, index: int, kind: str, device_id: int) -> EnsembleBackend:
        return self

    def execute_requests(self, requests: list[Any]) -> None:
        self.server.start_in_background([self._run(request) for request in requests])

    def _needed_steps(self, wanted: list[str]) -> list[_Step]:
        """The steps some requested output needs (Triton runs no others)."""
        needed: set[int] = set()
        todo = list(wanted)
        while todo:
            step = self._producer.get(todo.pop())
            if step is not None and step.index not in needed:
                needed.add(step.index)
                todo.extend(step.inputs.values())
        return [s for s in self.steps if s.index in needed]

    async def _run(self, request: Any) -> None:
        # A traced ensemble request: each step is a child of its trace (Triton's parent_id).
        trace = self.server.tracing.live(request.trace_id) if request.trace_id else None
        loop = asyncio.get_running_loop()
        # The steps' answers, in order, and the future the run waits on when there is none:
        # everything below runs on this loop (done callbacks and decoupled on_response too).
        events: deque[tuple[_Frame, _Step, Any, Any, bool]] = deque()
        waiter: list[asyncio.Future[None] | None] = [None]

        def post(event: tuple[_Frame, _Step, Any, Any, bool]) -> None:
            events.append(event)
            w = waiter[0]
            if w is not None and not w.done():
                w.set_result(None)

        running: dict[int, Any] = {}  # submitted steps not finished: their future or handle
        ids = itertools.count()
        try:
            wanted = list(request.requested_outputs) or self.outputs
            steps = self._needed_steps(wanted)
            # As Triton: each step inherits the request's priority, timeout, parameters,
            # correlation id and sequence flags.
            common = {
                "priority": request.priority, "request_id": request.id,
                "timeout_us": request.timeout_us, "parameters": request.parameters,
                "correlation_id": request.correlation_id,
                "correlation_id_str": request.correlation_id_str, "flags": request.flags,
                "trace": trace,
            }  # fmt: skip
            started: set[tuple[int, int]] = set()
            final_sent = False

            def submit(frame: _Frame, step: _Step) -> None:
                key = next(ids)
                inputs = [(name, frame.find(t)) for name, t in step.inputs.items()]
                outputs = list(step.outputs)
                try:
                    loaded = self.server.get_model(step.model, step.version)
                    if loaded.config.model_transaction_policy.decoupled:

                        def on_response(error: Any, tensors: Any, final: bool) -> None:
                            if final:
                                running.pop(key, None)
                            post((frame, step, error, tensors, final))

                        running[key] = self.server.submit_stream(
                            step.model, inputs, on_response, outputs, step.version, **common
                        )
                        return
                    future = self.server.submit(step.model, inputs, outputs, step.version, **common)
                except TritonError as e:
                    raise self._step_error(e) from e
                running[key] = future

                def done(f: asyncio.Future[Any]) -> None:
                    running.pop(key, None)
                    if f.cancelled():
                        return
                    error = f.exception()
                    post((frame, step, error, None if error else f.result(), True))

                future.add_done_callback(done)

            def schedule(frame: _Frame) -> None:
                for step in steps:
                    names = step.inputs.values()
                    if (id(frame), step.index) in started or not frame.sees(names):
                        continue
                    if not frame.owns_any(names):
                        continue  # it runs (ran) in the frame that made its inputs
                    started.add((id(frame), step.index))
                    submit(frame, step)

            def respond_if_complete(frame: _Frame) -> None:
                nonlocal final_sent
                if frame.responded or not frame.sees(wanted) or not frame.owns_any(wanted):
                    return
                frame.responded = True
                final = not running and not events
                final_sent = final
                request.respond([(name, frame.find(name)) for name in wanted], final=final)

            root = _Frame(dict(request.inputs()))
            schedule(root)
            respond_if_complete(root)
            while running or events:
                if request.cancelled:  # the client is gone: no step more, and none running
                    self._cancel(running)
                    request.respond(error=("CANCELLED", "Request was cancelled"))
                    return
                if not events:  # woken by an answer, or by the sweep if cancelled
                    w = waiter[0] = loop.create_future()
                    self._watch(loop, w, request)
                    try:
                        await w
                    finally:
                        waiter[0] = None
                        self._waiting.pop(w, None)
                    continue
                frame, step, error, tensors, _final = events.popleft()
                if error is not None:
                    self._cancel(running)
                    if isinstance(error, TritonError):
                        raise self._step_error(error)
                    raise error
                if tensors:
                    made = {step.outputs[name]: tensor for name, tensor in tensors
                            if name in step.outputs}  # fmt: skip
                    if self._is_decoupled(step):  # each response: a frame of its own
                        target = _Frame(made, frame)
                    else:
                        frame.tensors.update(made)
                        target = frame
                    schedule(target)
                    respond_if_complete(target)
            if final_sent:
                return
            if self.config.model_transaction_policy.decoupled:
                request.respond(final=True)  # as Triton: only the final flag
                return
            request.respond(error=("INVALID_ARG", (
                f"in ensemble '{self.config.name}', unexpected deadlock, at least one output is "
                "not set while no more ensemble steps can be made")))  # fmt: skip
        except TritonError as e:
            self._cancel(running)
            request.respond(error=(e.status, e.message))
        except Exception as e:  # noqa: BLE001 - never leave the client waiting
            self._cancel(running)
            request.respond(error=("INTERNAL", f"in ensemble '{self.config.name}', {e}"))

    def _is_decoupled(self, step: _Step) -> bool:
        try:
            config = self.server.model_config(step.model, step.version)
        except TritonError:
            return False
        return bool(config.model_transaction_policy.decoupled)

    def _watch(self, loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[None],
               request: Any) -> None:  # fmt: skip
        """Wake ``waiter`` if ``request`` is cancelled while it waits: one timer for all the
        runs that wait (a timer per wait cost more than the wait's own work)."""
        self._waiting[waiter] = request
        if not self._sweeping:
            self._sweeping = True
            loop.call_later(CANCEL_POLL_S, self._sweep, loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        for waiter, request in list(self._waiting.items()):
            if not waiter.done() and request.cancelled:
                waiter.set_result(None)
        if self._waiting:
            loop.call_later(CANCEL_POLL_S, self._sweep, loop)
        else:
            self._sweeping = False

    @staticmethod
    def _cancel(running: dict[int, Any]) -> None:
        for handle in list(running.values()):
            handle.cancel()
        running.clear()

    def _step_error(self, error: TritonError) -> TritonError:
        """Triton's text for a failed step: the ensemble's name, then the step's own error."""
        return TritonError(f"in ensemble '{self.config.name}', {error.message}", error.status)

    def close(self) -> None:
        pass


def create_backend(
    config: mc.ModelConfig, model_dir: Path, version_dir: Path, *, server: Any = None
) -> EnsembleBackend:
    """BackendFactory for platform "ensemble" (see ``backends.base``)."""
    if server is None:
        raise TritonError(f"ensemble '{config.name}' needs a server to run its steps", UNAVAILABLE)
    return EnsembleBackend(config, server)
