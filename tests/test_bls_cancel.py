"""BLS requests made by a cancelled request are cancelled with it (``backends/python/bls.py``).

In both execution modes, a python model's BLS call (``exec()``, ``exec(decoupled=True)``,
``await async_exec()`` from a plain, async or decoupled async ``execute``) is cancelled once the
request whose execute() made it is cancelled: a running python callee sees ``is_cancelled()``
(tests/python_models/bls_cancel*), a queued one never runs. A call whose request nobody cancels
completes normally. Unit tests: when a call's parents count as cancelled, the watch that polls
them (cancel once, stop at the final response, no timer when idle), and the BLS message's parent
keys in the stub protocol's schema."""

from __future__ import annotations

import asyncio
import functools
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from models import serve_python_model
from tritonlite import Server
from tritonlite.backends.python import bls, ipc

MODES = ["stub", "in_process"]
IN = {"IN": np.array([1.5, -2.0], np.float32)}
DECOUPLED = "\nmodel_transaction_policy { decoupled: true }\n"

#: (caller model, how it calls, callee, whether the caller is decoupled)
CASES = {
    "exec": ("bls_cancel", "exec", "bls_cancel_callee", False),
    "exec_decoupled": ("bls_cancel", "stream", "cancel_wait_decoupled", False),
    "async_exec": ("bls_cancel_async", "async", "bls_cancel_callee", False),
    "async_exec_in_a_decoupled_model": (
        "bls_cancel_async_decoupled",
        "async",
        "bls_cancel_callee",
        True,
    ),
}


class Env:
    """One Server per execution mode; models from tests/python_models, loaded on first use."""

    def __init__(self, mode: str, repo: Path) -> None:
        self.mode = mode
        self.repo = repo
        self.server = Server()
        self.backends: dict[str, Any] = {}

    def model(self, name: str) -> Any:
        if name in self.backends:
            return self.backends[name]
        source, extra = name, ""
        if name == "bls_cancel_async_decoupled":
            source, extra = "bls_cancel_async", DECOUPLED
        backend = serve_python_model(self.server, self.repo, source, self.mode, extra, name)
        self.backends[name] = backend
        return backend

    def case(self, name: str) -> tuple[str, str, str, bool]:
        caller, how, callee, decoupled = CASES[name]
        self.model(callee)
        self.model(caller)
        return caller, how, callee, decoupled


@pytest.fixture(scope="module", params=MODES)
def env(request: Any, tmp_path_factory: Any) -> Iterator[Env]:
    e = Env(request.param, tmp_path_factory.mktemp(f"bls_cancel_{request.param}"))
    yield e
    e.server.close()


async def _file(path: str, timeout: float, what: str) -> str:
    """The text of ``path`` once it exists (the models write markers atomically)."""
    deadline = time.monotonic() + timeout
    while not Path(path).exists():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)
    return Path(path).read_text()


def _wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def _settled(env: Env) -> None:
    """No BLS call is watched any more and, in stub mode, no instance holds a request or a
    cancel slot."""
    watch = bls.BlsLoop.get().watch
    _wait_for(lambda: len(watch) == 0, 10, "BLS calls are still watched")
    if env.mode != "stub":
        return
    for backend in env.backends.values():
        for instance in backend.instances:
            _wait_for(
                lambda i=instance: not i.pending and i._stub.cancel.in_use == 0,
                10,
                f"{instance.name}: requests still pending: {instance.pending}",
            )


def _start(env: Env, model: str, params: dict[str, Any], decoupled: bool) -> tuple[Any, Any]:
    """Send one request (from the running loop): (its cancel function, an awaitable of
    (error, OUT))."""
    if not decoupled:
        future = env.server.infer_async(model, IN, parameters=params)

        async def result() -> tuple[Any, Any]:
            try:
                return None, (await future)["OUT"]
            except Exception as e:  # noqa: BLE001 - the error is the result here
                return e, None

        return future.cancel, result()
    loop = asyncio.get_running_loop()
    done: asyncio.Future[tuple[Any, Any]] = loop.create_future()
    got: list[Any] = []

    def on_response(error: Any, outputs: Any, final: bool) -> None:
        got.extend(t.numpy() for _, t in outputs or ())
        if final and not done.done():
            done.set_result((error, got[0] if got else None))

    handle = env.server.submit_stream(model, IN, on_response, parameters=params)
    return handle.cancel, done


def _call(env: Env, model: str, params: dict[str, Any], decoupled: bool) -> Any:
    """OUT of one request that nobody cancels."""

    async def run() -> tuple[Any, Any]:
        _, result = _start(env, model, params, decoupled)
        return await asyncio.wait_for(result, 20)

    error, out = asyncio.run(run())
    assert error is None, error
    return out


# ---- the BLS call is cancelled with its request ----------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
def test_cancelling_the_caller_cancels_its_bls_call(env: Env, tmp_path: Path, case: str) -> None:
    caller, how, callee, decoupled = env.case(case)
    marker = str(tmp_path / "m")
    params = {"marker": marker, "how": how, "callee": callee}

    async def run() -> str:
        cancel, result = _start(env, caller, params, decoupled)
        started = await _file(marker + ".started", 20, "the callee never started")
        assert json.loads(started) is False  # not cancelled before its caller was
        await asyncio.sleep(3 * bls.CANCEL_POLL_S)  # a few checks of a parent not cancelled
        assert not Path(marker + ".seen").exists() and not Path(marker + ".caller").exists()
        cancel()  # the outer request: the caller is blocked in its BLS call
        await _file(marker + ".seen", 5, "the BLS callee never saw is_cancelled()")
        said = await _file(marker + ".caller", 5, "the caller never got its BLS response")
        if decoupled:  # the caller's answer still goes out, through its sender
            error, _ = await asyncio.wait_for(result, 5)
            assert error is not None
        else:
            with pytest.raises(asyncio.CancelledError):
                await result
        return said

    answer = json.loads(asyncio.run(run()))
    assert answer["cancelled"] is True  # the caller's own request
    assert answer["error"] and "cancelled" in answer["error"]  # the callee's CANCELLED error
    _settled(env)
    # A request after it is not cancelled and answers normally.
    out = _call(env, caller, {"how": how, "callee": callee, "wait": False}, decoupled)
    expected = [0.0, 0.0] if callee == "cancel_wait_decoupled" else IN["IN"] * 2
    np.testing.assert_array_equal(out, expected)
    _settled(env)


def test_a_queued_bls_call_is_cancelled_without_running(env: Env, tmp_path: Path) -> None:
    env.case("exec")
    busy, queued = str(tmp_path / "busy"), str(tmp_path / "queued")

    async def run() -> str:
        # The callee has one instance: this request holds it until it is cancelled itself.
        cancel_busy, busy_result = _start(env, "bls_cancel_callee", {"marker": busy}, False)
        await _file(busy + ".started", 20, "the callee never started")
        cancel, result = _start(env, "bls_cancel", {"marker": queued}, False)
        await _file(queued + ".calling", 20, "the caller never started")
        await asyncio.sleep(0.3)  # its BLS request is queued behind the busy one
        assert not Path(queued + ".caller").exists()
        cancel()
        said = await _file(queued + ".caller", 5, "the queued BLS call was not answered")
        assert not Path(queued + ".started").exists()  # it never ran
        with pytest.raises(asyncio.CancelledError):
            await result
        cancel_busy()
        await _file(busy + ".seen", 5, "the busy callee never saw is_cancelled()")
        with pytest.raises(asyncio.CancelledError):
            await busy_result
        return said

    answer = json.loads(asyncio.run(run()))
    assert answer == {"cancelled": True, "error": "Request was cancelled"}
    assert not Path(queued + ".started").exists()
    _settled(env)


def test_a_bls_call_made_after_its_request_was_cancelled_never_runs(
    env: Env, tmp_path: Path
) -> None:
    env.case("exec")
    marker = str(tmp_path / "late")

    async def run() -> str:
        params = {"marker": marker, "cancelled_first": True}
        cancel, result = _start(env, "bls_cancel", params, False)
        await asyncio.sleep(0.2)
        cancel()  # the caller sees it, then makes its BLS call
        said = await _file(marker + ".caller", 5, "the BLS call was not answered")
        with pytest.raises(asyncio.CancelledError):
            await result
        return said

    answer = json.loads(asyncio.run(run()))
    assert answer == {"cancelled": True, "error": "Request was cancelled"}
    assert not Path(marker + ".started").exists()  # the callee never ran it
    _settled(env)


# ---- ... and only then -----------------------------------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
def test_bls_calls_of_requests_nobody_cancels_complete(env: Env, case: str) -> None:
    caller, how, callee, decoupled = env.case(case)
    for _ in range(2):
        if callee == "cancel_wait_decoupled":  # answers at once: [is_cancelled() x 2]
            out = _call(env, caller, {"how": how, "callee": callee, "wait": False}, decoupled)
            np.testing.assert_array_equal(out, [0.0, 0.0])
        else:  # runs through several checks of its parent, which is never cancelled
            wait = 6 * bls.CANCEL_POLL_S
            out = _call(env, caller, {"how": how, "callee": callee, "wait": wait}, decoupled)
            np.testing.assert_array_equal(out, IN["IN"] * 2)
    _settled(env)


def test_cancelling_one_caller_leaves_another_callers_bls_call_alone(
    env: Env, tmp_path: Path
) -> None:
    """Two callers at once (two instances): cancelling the first cancels its BLS call, not the
    second's, queued behind it at the callee's one instance."""
    env.case("exec")
    first, second = str(tmp_path / "first"), str(tmp_path / "second")

    async def run() -> Any:
        cancel_first, first_result = _start(env, "bls_cancel", {"marker": first}, False)
        await _file(first + ".started", 20, "the first callee never started")
        params = {"marker": second, "wait": 20 * bls.CANCEL_POLL_S}
        _, second_result = _start(env, "bls_cancel", params, False)
        await _file(second + ".calling", 20, "the second caller never started")
        cancel_first()
        await _file(first + ".seen", 5, "the first callee never saw is_cancelled()")
        with pytest.raises(asyncio.CancelledError):
            await first_result
        return await asyncio.wait_for(second_result, 20)

    error, out = asyncio.run(run())
    assert error is None, error
    np.testing.assert_array_equal(out, IN["IN"] * 2)
    assert json.loads(Path(second + ".started").read_text()) is False
    assert not Path(second + ".seen").exists()
    _settled(env)


# ---- the watch -------------------------------------------------------------------------------


class _Parent:
    """A stand-in for a core request: its cancel flag and whether it was answered."""

    def __init__(self, cancelled: bool = False, finished: bool = False) -> None:
        self.cancelled = cancelled
        self.finished = finished


class _Handle:
    def __init__(self) -> None:
        self.cancels = 0

    def cancel(self) -> None:
        self.cancels += 1


def test_when_parents_count_as_cancelled() -> None:
    P = _Parent
    assert not bls.parents_cancelled([])
    assert not bls.parents_cancelled([P()])
    assert bls.parents_cancelled([P(cancelled=True)])
    assert not bls.parents_cancelled([P(cancelled=True), P()])  # one of the batch still wants it
    assert bls.parents_cancelled([P(cancelled=True), P(cancelled=True)])
    assert bls.parents_cancelled([P(cancelled=True), P(finished=True)])  # answered: no claim
    assert not bls.parents_cancelled([P(finished=True), P(finished=True)])  # none cancelled


def test_the_watch_cancels_once_stops_at_the_final_response_and_idles() -> None:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        watch = bls.CancelWatch(loop)

        def call(parents: list[_Parent]) -> tuple[_Handle, Any]:
            handle = _Handle()
            entry = watch.watch(parents)  # before the request is made ...
            watch.attach(entry, handle)  # ... its handle after
            return handle, entry

        assert watch.watch([]) is None  # no parents: nothing to watch
        watch.attach(None, _Handle())
        assert len(watch) == 0 and not watch._armed

        already, _ = call([_Parent(cancelled=True)])  # parents cancelled already: at once
        assert already.cancels == 1 and len(watch) == 0 and not watch._armed

        a, b = _Parent(), _Parent()
        batch, _ = call([a, b])
        done, finished = call([b])
        alone, _ = call([a])
        assert len(watch) == 3 and watch._armed
        time.sleep(3 * bls.CANCEL_POLL_S)
        assert (batch.cancels, done.cancels, alone.cancels) == (0, 0, 0)
        watch.unwatch(finished)  # its final response came: never cancelled
        a.cancelled = True
        _wait_for(lambda: alone.cancels == 1, 5, "a call whose parent was cancelled was not")
        assert batch.cancels == 0  # b still wants it
        assert len(watch) == 1
        b.cancelled = True
        _wait_for(lambda: batch.cancels == 1, 5, "a call whose parents were cancelled was not")
        _wait_for(lambda: not watch._armed, 5, "the timer runs with nothing to watch")
        time.sleep(3 * bls.CANCEL_POLL_S)
        assert (batch.cancels, done.cancels, alone.cancels) == (1, 0, 1)  # once each
        assert len(watch) == 0

        # Cancelled between watch() and attach(): the check finds no handle yet, attach cancels.
        parent = _Parent()
        late = _Handle()
        entry = watch.watch([parent])
        assert watch._armed
        parent.cancelled = True
        _wait_for(lambda: len(watch) == 0, 5, "the timer was not armed again")
        assert late.cancels == 0
        watch.attach(entry, late)
        assert late.cancels == 1
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


# ---- the stub protocol -----------------------------------------------------------------------


def test_a_bls_message_names_its_parents_in_bounds() -> None:
    check = ipc.SCHEMA[ipc.BLS]
    spec = ("callee", None, None, "", 0, 0, 0, "{}", -1)
    assert check((ipc.BLS, 1, spec, (), None, ()))
    assert check((ipc.BLS, 1, spec, (), None, (1, 2, 3)))
    assert check((ipc.BLS, 1, spec, (), None, tuple(range(ipc.MAX_BLS_PARENTS))))
    assert not check((ipc.BLS, 1, spec, (), None))  # the parents are not optional
    assert not check((ipc.BLS, 1, spec, (), None, (1, "2")))
    assert not check((ipc.BLS, 1, spec, (), None, (1.0,)))
    assert not check((ipc.BLS, 1, spec, (), None, (True,)))
    assert not check((ipc.BLS, 1, spec, (), None, [1]))
    assert not check((ipc.BLS, 1, spec, (), None, tuple(range(ipc.MAX_BLS_PARENTS + 1))))


def test_parent_keys_name_only_requests_the_instance_holds(tmp_path: Path) -> None:
    """The server maps a stub's parent keys to the requests that instance holds: keys it never
    gave (or that were answered) name nothing, a key named again counts once."""
    env = Env("stub", tmp_path)
    named: list[tuple[int, ...]] = []  # what the stub named
    parents: list[int] = []  # how many parents the server found
    extra: list[int] = []  # keys added to the stub's

    def lying(message: Any, fds: Any, dispatch: Any) -> None:
        if message[0] == ipc.BLS:
            named.append(message[5])
            message = (*message[:5], (*extra, *message[5], *message[5]))
        dispatch(message, fds)

    start = bls.start

    def spy(*args: Any) -> None:
        parents.append(len(args[4]))
        start(*args)

    try:
        env.case("exec")
        for instance in env.model("bls_cancel").instances:
            instance._stub._dispatch = functools.partial(lying, dispatch=instance._stub._dispatch)
        bls.start = spy  # type: ignore[assignment]
        extra[:] = [10**12, -1, 0]
        out = _call(env, "bls_cancel", {"wait": 3 * bls.CANCEL_POLL_S}, False)
        np.testing.assert_array_equal(out, IN["IN"] * 2)
        assert len(named) == 1 and len(named[0]) == 1  # the stub named its one request
        assert parents == [1]  # made-up keys dropped, the real one counted once
        marker = str(tmp_path / "m")

        async def run() -> None:  # ... and the call is cancelled with it
            cancel, result = _start(env, "bls_cancel", {"marker": marker}, False)
            await _file(marker + ".started", 20, "the callee never started")
            cancel()
            await _file(marker + ".seen", 5, "the callee never saw is_cancelled()")
            with pytest.raises(asyncio.CancelledError):
                await result

        asyncio.run(run())
        assert parents == [1, 1]
        _settled(env)
    finally:
        bls.start = start  # type: ignore[assignment]
        env.server.close()
