"""Request cancellation seen by python_backend models: ``request.is_cancelled()`` and
``response_sender.is_cancelled()`` turn True once the core request is cancelled (an asyncio
future of ``Server.infer_async`` cancelled, or ``Server.submit_stream``'s handle), in both
execution modes, for plain and decoupled models (tests/python_models/cancel_wait*). In stub
mode: the cancel board's slots (``backends/python/cancel.py``) are freed when requests end (also
after a crash, which gives the new stub a fresh board) and a reused slot starts at 0, the stub
refuses a slot outside its board, and a request without a slot still runs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import mmap
import os
import queue
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from models import serve_python_model
from tritonlite import Server, TritonError
from tritonlite import config as model_config
from tritonlite.backends.python import cancel, pb_utils

MODES = ["stub", "in_process"]
IN = {"IN": np.zeros(1, np.float32)}


class Env:
    """One Server per execution mode; models from tests/python_models, loaded on first use."""

    def __init__(self, mode: str, repo: Path) -> None:
        self.mode = mode
        self.repo = repo
        self.server = Server()
        self.backends: dict[str, Any] = {}

    def model(self, name: str) -> Any:
        if name not in self.backends:
            self.backends[name] = serve_python_model(self.server, self.repo, name, self.mode)
        return self.backends[name]


@pytest.fixture(scope="module", params=MODES)
def env(request: Any, tmp_path_factory: Any) -> Iterator[Env]:
    e = Env(request.param, tmp_path_factory.mktemp(f"cancel_{request.param}"))
    yield e
    e.server.close()


@pytest.fixture(scope="module")
def stub_env(tmp_path_factory: Any) -> Iterator[Env]:
    e = Env("stub", tmp_path_factory.mktemp("cancel_stub_only"))
    yield e
    e.server.close()


async def _file(path: Path, timeout: float, what: str) -> str:
    """The text of ``path`` once it exists (the models write markers atomically)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)
    return path.read_text()


def _wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def _settled(backend: Any, mode: str) -> None:
    """In stub mode: wait until the instance holds no request and no cancel slot is taken."""
    if mode != "stub":
        return
    instance = backend.instances[0]
    _wait_for(
        lambda: not instance.pending and instance._stub.cancel.in_use == 0,
        10,
        f"requests still pending: {instance.pending}",
    )


def _not_cancelled(env: Env, model: str) -> list[float]:
    """OUT of a request that nobody cancels: [request.is_cancelled(), sender.is_cancelled()]."""

    async def run() -> list[float]:
        params = {"wait": False}
        if model == "cancel_wait":
            out = await env.server.infer_async(model, IN, parameters=params)
            return [float(x) for x in out["OUT"]]
        loop = asyncio.get_running_loop()
        done: asyncio.Future[list[float]] = loop.create_future()
        got: list[float] = []

        def on_response(error: Any, outputs: Any, final: bool) -> None:
            assert error is None, error
            for _, t in outputs or ():
                got.extend(float(x) for x in t.numpy())
            if final:
                done.set_result(got)

        env.server.submit_stream(model, IN, on_response, parameters=params)
        return await asyncio.wait_for(done, 10)

    return asyncio.run(run())


# ---- the model sees the cancellation ---------------------------------------------------------


def test_a_running_model_sees_its_request_cancelled(env: Env, tmp_path: Path) -> None:
    backend = env.model("cancel_wait")
    marker = tmp_path / "plain"

    async def run() -> tuple[str, str]:
        future = env.server.infer_async("cancel_wait", IN, parameters={"marker": str(marker)})
        started = await _file(Path(f"{marker}.started"), 20, "the model never started")
        assert not future.done()
        future.cancel()  # cancels the core request: the model is polling is_cancelled()
        seen = await _file(Path(f"{marker}.seen"), 5, "the model never saw is_cancelled()")
        return started, seen

    started, seen = asyncio.run(run())
    assert json.loads(started) is False  # not cancelled before it was
    assert json.loads(seen) is True  # the response sender agrees with the request
    _settled(backend, env.mode)
    # The next request is not cancelled. In a stub it reuses the slot the cancelled request had
    # (the only one ever taken), which the core cleared when the server let go of it.
    assert _not_cancelled(env, "cancel_wait") == [0.0, 0.0]
    if env.mode == "stub":
        board = backend.instances[0]._stub.cancel
        assert board._next == 1 and board.in_use == 0
        assert not board.board.is_set(0)


def test_a_decoupled_model_sees_its_request_cancelled(env: Env, tmp_path: Path) -> None:
    backend = env.model("cancel_wait_decoupled")
    marker = tmp_path / "decoupled"

    async def run() -> tuple[str, str]:
        finals: list[Any] = []

        def on_response(error: Any, outputs: Any, final: bool) -> None:
            if final:
                finals.append(error)

        handle = env.server.submit_stream(
            "cancel_wait_decoupled", IN, on_response, parameters={"marker": str(marker)}
        )
        started = await _file(Path(f"{marker}.started"), 20, "the model never started")
        assert not finals
        handle.cancel()  # execute() has returned: a thread polls the response sender
        seen = await _file(Path(f"{marker}.seen"), 5, "the model never saw is_cancelled()")
        return started, seen

    started, seen = asyncio.run(run())
    assert json.loads(started) is False
    assert json.loads(seen) is True  # request.is_cancelled() agrees with the sender
    # The slot is freed when the model's final response (sent after execute returned) arrives.
    _settled(backend, env.mode)
    assert _not_cancelled(env, "cancel_wait_decoupled") == [0.0, 0.0]


def test_requests_nobody_cancels_are_not_cancelled(env: Env) -> None:
    for model in ("cancel_wait", "cancel_wait_decoupled"):
        backend = env.model(model)
        for _ in range(3):
            assert _not_cancelled(env, model) == [0.0, 0.0]
        _settled(backend, env.mode)


# ---- stub mode: the cancel board -------------------------------------------------------------


def test_a_crash_frees_the_slots_and_the_new_stub_gets_a_fresh_board(
    stub_env: Env, tmp_path: Path
) -> None:
    backend = stub_env.model("cancel_wait_decoupled")
    instance = backend.instances[0]
    old = instance._stub
    marker = tmp_path / "crash"
    finals: list[Any] = []

    async def run() -> None:
        done = asyncio.get_running_loop().create_future()

        def on_response(error: Any, outputs: Any, final: bool) -> None:
            if final:
                finals.append(error)
                done.set_result(None)

        stub_env.server.submit_stream(
            "cancel_wait_decoupled", IN, on_response, parameters={"marker": str(marker)}
        )
        await _file(Path(f"{marker}.started"), 20, "the model never started")
        assert old.cancel.in_use == 1
        os.kill(old.proc.pid, signal.SIGKILL)
        await asyncio.wait_for(done, 20)

    asyncio.run(run())
    assert finals[0] is not None and "is not healthy" in str(finals[0])
    assert old.cancel.in_use == 0 and not instance.pending
    _wait_for(lambda: instance.healthy, 60, "the stub was not restarted")
    assert instance._stub.cancel is not old.cancel
    assert _not_cancelled(stub_env, "cancel_wait_decoupled") == [0.0, 0.0]
    _settled(backend, "stub")


def test_the_stub_rejects_a_slot_outside_its_board(stub_env: Env) -> None:
    backend = stub_env.model("cancel_wait")
    stub = backend.instances[0]._stub
    pid = stub.proc.pid
    send = stub.ctl.send

    def corrupt(message: Any, fds: Any = ()) -> None:  # this one EXEC names a slot too far
        stub.ctl.send = send
        batch = tuple((*request[:8], stub.cancel.slots, *request[9:]) for request in message[1])
        send((message[0], batch, *message[2:]), fds)

    stub.ctl.send = corrupt
    with pytest.raises(TritonError) as info:
        stub_env.server.infer("cancel_wait", IN, parameters={"wait": False})
    assert "outside the board's" in info.value.message
    assert backend.instances[0]._stub.proc.pid == pid  # the stub carried on
    _settled(backend, "stub")
    assert _not_cancelled(stub_env, "cancel_wait") == [0.0, 0.0]


def test_a_request_without_a_slot_still_runs(stub_env: Env) -> None:
    backend = stub_env.model("cancel_wait")
    stub = backend.instances[0]._stub
    stub.cancel.mirror = lambda request: cancel.NO_SLOT  # every slot taken
    try:
        assert _not_cancelled(stub_env, "cancel_wait") == [0.0, 0.0]
    finally:
        del stub.cancel.mirror
    _settled(backend, "stub")


# ---- the slots themselves --------------------------------------------------------------------


class _Hold:
    """A per-request backend that keeps the core requests it gets, unanswered."""

    per_request_execution = True

    def __init__(self) -> None:
        self.got: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def create_instance(self, index: int, kind: str, device_id: int) -> _Hold:
        return self

    def execute_requests(self, requests: list[Any]) -> None:
        for r in requests:
            self.got.put(r)

    def close(self) -> None:
        pass


def test_slots_are_freed_reused_and_start_at_zero(tmp_path: Path) -> None:
    model_dir = tmp_path / "hold"
    model_dir.mkdir()
    (model_dir / "config.pbtxt").write_text(
        'name: "hold"\nbackend: "python"\nmax_batch_size: 0\n'
        'input [{ name: "IN" data_type: TYPE_FP32 dims: [ -1 ] }]\n'
        'output [{ name: "OUT" data_type: TYPE_FP32 dims: [ -1 ] }]\n'
    )
    hold = _Hold()
    slots = cancel.CancelSlots(2, name="hold")
    board = slots.board
    view = cancel.map_board(os.dup(slots.stub_fd), 2)  # what a stub maps
    slots.close_stub_fd()

    def word(slot: int) -> int:
        from tritonlite import _core

        return int(_core.atomic_load_u32(view, slot * cancel.SLOT_BYTES))

    with Server() as server:
        server.add_model(model_config.load_model_config(model_dir), hold)

        async def run() -> None:
            futures = [server.infer_async("hold", IN) for _ in range(3)]
            a, b, c = [await asyncio.to_thread(hold.got.get, True, 10) for _ in range(3)]
            assert (slots.mirror(a), slots.mirror(b)) == (0, 1)
            assert slots.mirror(c) == cancel.NO_SLOT  # full: c runs without a slot
            assert slots.in_use == 2 and not board.is_set(0) and word(0) == 0
            a.cancel()
            assert a.cancelled and board.is_set(0) and word(0) == 1 and word(1) == 0
            slots.release(a, 0)  # cleared at once, and a never writes it again
            assert not board.is_set(0) and word(0) == 0 and slots.in_use == 1
            assert slots.mirror(c) == 0  # reused, and 0 although its last holder was cancelled
            assert word(0) == 0 and not c.cancelled
            a.cancel()
            assert word(0) == 0
            c.cancel()
            assert word(0) == 1
            slots.release(c, 0)
            slots.release(b, 1)
            assert slots.in_use == 0 and word(0) == 0 and word(1) == 0
            assert slots.mirror(a) == 1  # last freed first; a is cancelled: 1 at once
            assert word(1) == 1
            slots.release(a, 1)
            assert word(1) == 0 and slots.in_use == 0
            slots.release(a, cancel.NO_SLOT)  # nothing to free
            for r in (a, b, c):
                with contextlib.suppress(TritonError):
                    r.respond(None, ("INTERNAL", "done"), True)
            await asyncio.gather(*futures, return_exceptions=True)

        asyncio.run(run())
    with pytest.raises(TypeError):
        view[0] = 1  # the stub's mapping is read-only
    view.close()


def test_a_board_is_checked_on_both_sides() -> None:
    with pytest.raises(ValueError, match="between 1 and"):
        cancel.CancelSlots(0)
    fd = os.memfd_create("not-sealed")
    os.ftruncate(fd, 64)
    with pytest.raises(ValueError, match="not sealed"):
        cancel.map_board(fd, 16)  # closes fd
    slots = cancel.CancelSlots(4)
    try:
        with pytest.raises(ValueError, match="has 16 bytes"):
            cancel.map_board(os.dup(slots.stub_fd), 5)
        with pytest.raises(ValueError, match="cancel board of 0 slots"):
            cancel.map_board(os.dup(slots.stub_fd), 0)
        view = cancel.map_board(os.dup(slots.stub_fd), 4)
        assert len(view) == 16 and isinstance(view, mmap.mmap)
        view.close()
    finally:
        slots.close_stub_fd()


# ---- pb_utils --------------------------------------------------------------------------------


def test_pb_utils_is_cancelled_asks_the_host() -> None:
    state = {"cancelled": False}
    sender = pb_utils.InferenceResponseSender(
        lambda r, final: None, True, lambda: state["cancelled"]
    )
    request = pb_utils.InferenceRequest._incoming([], [], "id", 0, 0, 0, "m", 1, sender, "{}")
    assert not request.is_cancelled() and not sender.is_cancelled()
    state["cancelled"] = True
    assert request.is_cancelled() and sender.is_cancelled()
    # A sender without a probe, and a BLS request (no sender), are never cancelled.
    assert not pb_utils.InferenceResponseSender(lambda r, final: None, False).is_cancelled()
    bls = pb_utils.InferenceRequest(
        model_name="m", inputs=[], requested_output_names=[], request_id="x"
    )
    assert not bls.is_cancelled()
