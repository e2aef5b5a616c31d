"""The stub process: one python model instance in its own interpreter, as Triton runs them.

Started by ``process.StubProcess`` with ``command(CTL, ASYNC, SERVER_ARENA, STUB_ARENA,
ARENA_BYTES, CANCEL_BOARD, CANCEL_SLOTS)`` (inherited fds; the server made both arenas and the
cancel board). This module owns the stub side of the protocol in ``ipc.py``: the main thread
reads the control socket and runs ``initialize``, each ``execute`` batch (one EXEC in, one DONE
out) and ``finalize``; a reader thread takes BLS responses and call replies from the async
socket; any thread may send (response senders, BLS, logs, metrics).
Input tensors are zero-copy views of the server's arena; outputs are written to this process's
own arena (see ``shm.py``). A request's ``is_cancelled()`` reads its slot of the cancel board,
mapped read-only (see ``cancel.py``), until the stub sends its final response. A BLS message
names the requests whose execute() made the call (``_BATCH``, a context variable set around
execute, so an ``async def execute``'s tasks keep their batch's): the server cancels the call
with them (``bls.py``).

The process ends when the server tells it to (FINALIZE) or dies (EOF on either socket). It runs
in its own process group and ignores SIGINT and SIGTERM (a no-op handler, so the model's own child
processes start with the default dispositions): a signal sent to the server's process group or
cgroup (Ctrl-C, ``timeout``, systemd's default ``KillMode``) is the server's to handle, and the
server finishes in-flight requests before it ends its stubs. A message from the server that
breaks the protocol (``ipc.ProtocolError``) fails the one request it was for (REJECTED for an
EXEC, an error response for a BLS call) and the stub carries on.
``command("--auto-complete")`` instead runs one model's ``auto_complete_config`` (JSON in on
stdin, JSON out on stdout).
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import json
import os
import queue
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

from ... import _core
from . import custom_metrics, ipc, loader, runtime
from .bls import BlsSpec, spec_of
from .cancel import NO_SLOT, SLOT_BYTES, map_board
from .executor import ExecuteError, ModelCaller, error_status, response_tensors
from .ipc import Channel, ProtocolError
from .pb_utils import (
    STATUS_ERROR,
    InferenceRequest,
    InferenceResponse,
    InferenceResponseSender,
    InferenceTrace,
    LogLevel,
    Tensor,
    TritonError,
    TritonModelException,
)
from .shm import Arena, ArenaMap, read_tensors, write_tensors
from .spin import EXEC_SPIN_CAP_NS, SpinWait

# How a stub starts: ``python -c BOOTSTRAP ARGS...``. The bootstrap installs a bare
# ``tritonlite`` package (its real __path__, without running its __init__), so a stub imports
# only the python backend and the core extension, not the server and its frontends.
BOOTSTRAP = (
    "import importlib.util, sys, types\n"
    "spec = importlib.util.find_spec('tritonlite')\n"
    "pkg = types.ModuleType('tritonlite')\n"
    "pkg.__path__ = list(spec.submodule_search_locations)\n"
    "pkg.__spec__ = spec\n"
    "pkg.__file__ = spec.origin\n"
    "sys.modules['tritonlite'] = pkg\n"
    "from tritonlite.backends.python.stub import main\n"
    "sys.exit(main(sys.argv))\n"
)


def command(*args: str) -> list[str]:
    """The command line that starts a stub (or, with ``--auto-complete``, an auto-complete)."""
    return [sys.executable, "-c", BOOTSTRAP, *args]


class _Call:
    """One BLS call or one call waiting for a REPLY."""

    __slots__ = ("async_done", "loop", "queue", "responses")

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.loop = loop
        self.responses: list[InferenceResponse] = []
        self.async_done: asyncio.Future[None] | None = loop.create_future() if loop else None

    def deliver(self, item: Any, final: bool) -> None:
        if self.loop is None:
            self.queue.put((item, final))
            return
        self.responses.append(item)
        if final:
            self.loop.call_soon_threadsafe(self._finish)

    def _finish(self) -> None:
        if self.async_done is not None and not self.async_done.done():
            self.async_done.set_result(None)


class _RemoteMetric:
    """A custom metric kept by the server; updates are checked here and sent one way."""

    __slots__ = ("id", "kind", "stub")

    def __init__(self, stub: Stub, metric_id: int, kind: int) -> None:
        self.stub = stub
        self.id = metric_id
        self.kind = kind

    def _update(self, op: str, value: float) -> None:
        custom_metrics.check_update(self.kind, op, value, self.stub.instance_name)
        self.stub.asy.send((ipc.METRIC, self.id, op, float(value)))

    def increment(self, value: float) -> None:
        self._update("increment", value)

    def set(self, value: float) -> None:
        self._update("set", value)

    def observe(self, value: float) -> None:
        self._update("observe", value)

    def value(self) -> float:
        custom_metrics.check_update(self.kind, "value", 0.0, self.stub.instance_name)
        return float(self.stub.call("metric_value", self.id))


_load = _core.atomic_load_u32

#: The keys of the requests whose execute() runs in this context: the parents of the BLS calls
#: made here (none in initialize, finalize or a thread the model started itself).
_BATCH: contextvars.ContextVar[tuple[int, ...]] = contextvars.ContextVar(
    "tritonlite_stub_batch", default=()
)


class _StubResponder:
    """A request's response sender, on the stub side (``inprocess._CoreResponder`` is the
    in-process one): every response is one SEND message.
    If the model drops a request without its final response, the server is told so.

    It also answers ``is_cancelled()``: one atomic load of the request's cancel slot, while the
    slot is the request's. The server frees the slot when it has the final response, so before
    sending that (or telling the server in DONE), the stub freezes the answer
    (``freeze``) and never reads the slot for this request again."""

    __slots__ = ("done", "frozen", "key", "offset", "requested", "stub")

    def __init__(self, stub: Stub, key: int, requested: list[str], slot: int = NO_SLOT) -> None:
        self.stub = stub
        self.key = key
        self.requested = requested
        self.done = False
        self.offset = slot * SLOT_BYTES if slot != NO_SLOT else -1
        self.frozen: bool | None = None  # is_cancelled() once the slot is no longer ours

    def cancelled(self) -> bool:
        frozen = self.frozen
        if frozen is not None:
            return frozen
        if self.offset < 0:
            return False
        value = _load(self.stub.board, self.offset) != 0
        frozen = self.frozen  # frozen meanwhile: the slot may be another request's by now
        return value if frozen is None else frozen

    def freeze(self) -> None:
        """Keep what ``is_cancelled()`` says now: the server may free the slot from here on."""
        if self.frozen is None:
            self.frozen = self.offset >= 0 and _load(self.stub.board, self.offset) != 0

    def finish(self) -> None:
        """The request's final response goes to the server in DONE."""
        self.freeze()
        self.done = True

    def send(self, response: InferenceResponse | None, final: bool) -> None:
        """One response through the sender (an error response is the model's answer)."""
        error = None
        tensors: list[Any] = []
        if response is not None:
            if response._error is not None:
                error = error_status(response._error)
            else:
                tensors = response_tensors(response, self.requested)
        metas, location, fds = self.stub.write(tensors)
        if final:
            self.freeze()
        try:
            self.stub.asy.send((ipc.SEND, self.key, error, metas, location, final), fds)
        finally:
            for fd in fds:
                os.close(fd)
        if final:
            self.done = True

    def fail(self, message: str) -> None:
        """The request fails without the model's answer: a failure (BACKEND) in the server's
        statistics, where an error response the model sent is a success, as in Triton."""
        self.freeze()
        try:
            self.stub.asy.send((ipc.FAIL, self.key, ("INTERNAL", message)))
        finally:
            self.done = True

    def __del__(self) -> None:
        if self.done or self.stub.exiting:
            return
        try:
            self.fail(
                f"model '{self.stub.instance_name}' released a request without sending its "
                "final response"
            )
        except OSError:  # the server is gone
            pass


class Stub:
    """The stub's state, and pb_utils' runtime in this process."""

    def __init__(
        self,
        ctl: Channel,
        asy: Channel,
        peer: ArenaMap,
        info: dict[str, Any],
        board: Any = b"",
        board_slots: int = 0,
    ) -> None:
        self.ctl = ctl
        self.asy = asy
        self.peer = peer
        self.board = board  # the cancel board (read-only mmap), board_slots uint32 slots
        self.board_slots = board_slots
        self.info = info
        self.instance_name: str = info["instance_name"]
        self.model_name: str = info["model_name"]
        self.version_dir: str = info["version_dir"]
        self.decoupled: bool = info["decoupled"]
        self.arena = Arena(info["arena_bytes"], fd=info["arena_fd"])
        self.arena_lock = threading.Lock()
        self.calls: dict[int, _Call] = {}
        self.call_ids = itertools.count(1)
        self.exiting = False
        self.caller: ModelCaller | None = None

    # ---- shared memory ----------------------------------------------------------------------

    def write(self, tensors: list[Any]) -> tuple[Any, Any, list[int]]:
        if not tensors:
            return [], None, []
        for name, _, _, payload in tensors:
            if not hasattr(payload, "dtype"):
                raise TritonModelException(
                    f"output '{name}' is not in CPU memory: a model running in a stub process "
                    "must return CPU tensors (or use EXECUTION_MODE in_process)"
                )
        with self.arena_lock:
            return write_tensors(self.arena, tensors)

    # ---- lifecycle --------------------------------------------------------------------------

    def initialize(self) -> None:
        info = self.info
        cls = loader.import_model_class(info["model_path"], self.model_name, info["paths"])
        self.caller = ModelCaller(self.instance_name, cls(), self.decoupled)
        self.caller.initialize(info["args"])

    def serve(self) -> None:
        ctl = self.ctl
        spin = SpinWait(default_ns=EXEC_SPIN_CAP_NS)  # waiting for the next EXEC (spin.py)
        spin.peer = os.getppid()  # the server: its CPU time is not foreign load
        while True:
            try:
                message, fds = ctl.recv(spin)
            except EOFError:
                return
            except ProtocolError as e:
                self.reject(str(e))
                continue
            op = message[0]
            if op == ipc.EXEC:
                try:
                    tensors = read_tensors(self.peer, message[2], message[3], fds)
                except ProtocolError as e:
                    self.reject(str(e))
                    continue
                self.execute(message, tensors)
            elif op == ipc.FINALIZE:
                error = None
                try:
                    assert self.caller is not None
                    self.caller.finalize()
                except Exception as e:
                    error = loader.format_exception(e)
                self.exiting = True
                ctl.send((ipc.FINALIZED, error))
                return

    def reject(self, text: str) -> None:
        """Answer an EXEC we could not read: its requests fail, the stub carries on."""
        try:
            self.asy.send(
                (
                    ipc.LOG,
                    LogLevel.ERROR,
                    f"rejected a malformed message from the server: {text}",
                    "stub.py",
                    0,
                )
            )
        except OSError:
            pass
        self.ctl.send((ipc.REJECTED, text))

    def execute(self, message: tuple[Any, ...], tensors: list[tuple[str, Any]]) -> None:
        _, batch, metas, _ = message
        if sum(request[6] for request in batch) != len(tensors) or any(
            request[6] < 0 for request in batch
        ):
            self.reject("the batch's input counts do not match its tensors")
            return
        slots = self.board_slots
        for request in batch:
            if not NO_SLOT <= request[8] < slots:
                self.reject(f"cancel slot {request[8]} is outside the board's {slots} slots")
                return
        decoupled = self.decoupled
        model_name = self.model_name
        version = self.info["version_number"]
        wrap = Tensor._wrap
        incoming = InferenceRequest._incoming
        requests: list[InferenceRequest] = []
        responders: list[_StubResponder] = []
        i = 0
        for key, request_id, correlation, flags, timeout, requested, n_in, params, slot, trace in batch:
            end = i + n_in
            inputs = [
                wrap(name, array, meta[1])
                for (name, array), meta in zip(tensors[i:end], metas[i:end], strict=True)
            ]
            i = end
            responder = _StubResponder(self, key, requested, slot)
            responders.append(responder)
            requests.append(
                incoming(
                    inputs,
                    requested,
                    request_id,
                    correlation,
                    flags,
                    timeout,
                    model_name,
                    version,
                    InferenceResponseSender(
                        responder.send, decoupled, responder.cancelled, responder.fail
                    ),
                    params,
                    # BLS calls name the traced request by its key (process.py maps it back)
                    InferenceTrace(key, "" if trace == "{}" else trace) if trace else None,
                )
            )
        del tensors
        assert self.caller is not None
        error = None
        failed: list[int] = []
        out: list[tuple[int, Any, int]] = []
        outputs: list[Any] = []
        batch_keys = _BATCH.set(tuple(r.key for r in responders))
        try:
            responses = self.caller.execute(requests)
            for request, responder, response in zip(
                requests, responders, responses or (), strict=False
            ):
                if response is None:
                    continue
                request._sender._closed = True  # type: ignore[union-attr]
                responder.finish()
                if response._error is not None:
                    out.append((responder.key, error_status(response._error), 0))
                    continue
                tensors_out = response_tensors(response, responder.requested)
                out.append((responder.key, None, len(tensors_out)))
                outputs.extend(tensors_out)
        except ExecuteError as e:
            error = str(e)
        finally:
            _BATCH.reset(batch_keys)
        try:
            out_metas, out_location, out_fds = self.write(outputs)
        except Exception as e:  # an output we cannot send fails the batch, not the stub
            error = self.caller.failure(loader.format_exception(e))
            failed = [key for key, _, _ in out]
            out, out_metas, out_location, out_fds = [], [], None, []
        if error is not None:
            for request, responder in zip(requests, responders, strict=True):
                sender = request._sender
                if sender is not None and not sender._closed:
                    sender._closed = True
                    responder.finish()
                    failed.append(responder.key)
        del requests, outputs
        try:
            self.ctl.send((ipc.DONE, out, out_metas, out_location, failed, error), out_fds)
        except (TypeError, ValueError, OverflowError) as e:  # not encodable: fail the batch
            error = self.caller.failure(f"a response could not be sent: {e}")
            failed = list(dict.fromkeys([*failed, *(key for key, _, _ in out)]))
            failed += [key for key, *_ in batch if key not in failed]
            for responder in responders:  # all of them end: the server frees their slots
                responder.freeze()
            self.ctl.send((ipc.DONE, [], [], None, failed, error))
        finally:
            for fd in out_fds:
                os.close(fd)

    # ---- the async socket -------------------------------------------------------------------

    def read_async(self) -> None:
        while True:
            try:
                message, fds = self.asy.recv()
            except ProtocolError as e:
                self.fail_call(e)
                continue
            except (EOFError, OSError):
                if not self.exiting:  # the server is gone: so are we
                    os._exit(0)
                return
            op = message[0]
            if op == ipc.BLS_RESPONSE:
                _, call_id, error, metas, location, final = message
                call = self.calls.get(call_id)
                if final:
                    self.calls.pop(call_id, None)
                pairs: list[tuple[str, Any]] = []
                if error is None:
                    try:
                        pairs = read_tensors(self.peer, metas, location, fds)
                    except ProtocolError as e:
                        error = ("INTERNAL", f"malformed BLS response from the server: {e}")
                        final = True
                        self.calls.pop(call_id, None)
                else:
                    for fd in fds:
                        os.close(fd)
                if error is not None:
                    status = STATUS_ERROR.get(error[0], TritonError.INTERNAL)
                    response = InferenceResponse(error=TritonError(error[1], status))
                else:
                    response = InferenceResponse(
                        [Tensor._wrap(n, a, m[1]) for (n, a), m in zip(pairs, metas, strict=True)]
                    )
                if call is not None:
                    call.deliver(response, final)
            elif op == ipc.REPLY:
                _, call_id, ok, value = message
                call = self.calls.pop(call_id, None)
                if call is not None:
                    call.deliver((ok, value), True)

    def fail_call(self, e: ProtocolError) -> None:
        """A malformed message from the server: fail the call it names, if it names one."""
        message = e.message
        call_id = message[1] if type(message) is tuple and len(message) > 1 else None
        call = self.calls.pop(call_id, None) if type(call_id) is int else None
        text = f"malformed message from the server: {e}"
        try:
            self.asy.send((ipc.LOG, LogLevel.ERROR, text, "stub.py", 0))
        except OSError:
            pass
        if call is None:
            return
        if call.loop is None and message[0] == ipc.REPLY:
            call.deliver((False, text), True)
        else:
            call.deliver(InferenceResponse(error=TritonError(text, TritonError.INTERNAL)), True)

    def call(self, op: str, *args: Any) -> Any:
        """A request to the server that waits for its reply; errors raise
        TritonModelException."""
        call_id = next(self.call_ids)
        call = self.calls[call_id] = _Call()
        self.asy.send((ipc.CALL, call_id, op, args))
        (ok, value), _ = call.queue.get()
        if not ok:
            raise TritonModelException(value)
        return value

    # ---- pb_utils runtime -------------------------------------------------------------------

    def _start_bls(self, request: InferenceRequest, call: _Call) -> None:
        spec: BlsSpec = spec_of(request)
        tensors = [(t._name, t._datatype, t.shape(), t._payload()) for t in request._inputs]
        parents = _BATCH.get()
        if len(parents) > ipc.MAX_BLS_PARENTS:  # a batch that big: not cancelled with it
            parents = ()
        call_id = next(self.call_ids)
        self.calls[call_id] = call
        metas, location, fds = self.write(tensors)
        try:
            self.asy.send((ipc.BLS, call_id, spec, metas, location, parents), fds)
        finally:
            for fd in fds:
                os.close(fd)

    def bls(self, request: InferenceRequest, decoupled: bool) -> Any:
        call = _Call()
        self._start_bls(request, call)
        if decoupled:
            return self._iterate(call)
        first: InferenceResponse | None = None
        while True:
            response, final = call.queue.get()
            if first is None and (response.has_error() or response.output_tensors()):
                first = response
            if final:
                return first or response

    @staticmethod
    def _iterate(call: _Call) -> Iterator[InferenceResponse]:
        while True:
            response, final = call.queue.get()
            yield response
            if final:
                return

    async def bls_async(self, request: InferenceRequest, decoupled: bool) -> Any:
        call = _Call(asyncio.get_running_loop())
        self._start_bls(request, call)
        assert call.async_done is not None
        await call.async_done
        if decoupled:
            return iter(call.responses)
        for response in call.responses:
            if response.has_error() or response.output_tensors():
                return response
        return call.responses[-1]

    def log(self, level: int, message: str, where: tuple[str, int]) -> None:
        self.asy.send((ipc.LOG, level, message, where[0], where[1]))

    def metric_family(self, name: str, description: str, kind: int) -> Any:
        return (self.call("metric_family", name, description, kind), kind)

    def metric(self, family: Any, labels: dict[str, str], buckets: list[float] | None) -> Any:
        family_id, kind = family
        return _RemoteMetric(self, self.call("metric", family_id, labels, buckets), kind)

    def metric_family_delete(self, family: Any) -> None:
        self._delete(family[0])

    def metric_delete(self, metric: Any) -> None:
        self._delete(metric.id)

    def _delete(self, object_id: int) -> None:
        if not self.exiting:
            self.asy.send((ipc.METRIC, object_id, "delete", 0.0))

    def model_control(self, op: str, **kwargs: Any) -> Any:
        return self.call("model_control", op, kwargs)


def main(argv: list[str]) -> int:
    if len(argv) > 1 and argv[1] == "--auto-complete":
        return auto_complete_main()
    for sig in (signal.SIGINT, signal.SIGTERM):  # the server ends us (see the module docstring)
        signal.signal(sig, _ignore_signal)
    from ... import _core
    from ...errors import TritonError as CoreError

    _core.set_error_class(CoreError)
    ctl = Channel(socket.socket(fileno=int(argv[1])), ipc.STUB_CTL)
    asy = Channel(socket.socket(fileno=int(argv[2])), ipc.STUB_ASYNC)
    peer = ArenaMap(int(argv[3]), int(argv[5]))
    board: Any = None
    board_slots = 0
    board_error = ""
    try:
        board_slots = int(argv[7])
        board = map_board(int(argv[6]), board_slots)
    except (IndexError, ValueError, OSError) as e:
        board_error = f"unusable cancel board from the server: {e}"
    try:
        message, _ = ctl.recv()
    except EOFError:
        return 1
    except ProtocolError as e:
        ctl.send((ipc.INIT_ERROR, f"malformed INIT message from the server: {e}"))
        return 1
    if message[0] != ipc.INIT:
        ctl.send((ipc.INIT_ERROR, f"expected INIT from the server, got opcode {message[0]}"))
        return 1
    if board_error:
        ctl.send((ipc.INIT_ERROR, board_error))
        return 1
    info = dict(message[1], arena_fd=int(argv[4]))
    stub = Stub(ctl, asy, peer, info, board, board_slots)
    runtime.set_process_runtime(stub)
    reader = threading.Thread(target=stub.read_async, name="tritonlite-stub-reader", daemon=True)
    reader.start()
    try:
        stub.initialize()
    except Exception as e:
        stub.exiting = True
        ctl.send((ipc.INIT_ERROR, loader.format_exception(e)))
        return 1
    ctl.send((ipc.INIT_OK,))
    stub.serve()
    stub.exiting = True
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # no interpreter teardown: model threads and leases go with the process


def _ignore_signal(signum: int, frame: FrameType | None) -> None:
    """SIGINT/SIGTERM: the server's to act on, not ours."""


def auto_complete_main() -> int:
    """Run one model's auto_complete_config: stdin {"model_path", "paths", "config"}, stdout
    {"config"} or {"error"}."""
    request = json.loads(sys.stdin.read())
    stdout, sys.stdout = sys.stdout, sys.stderr  # what the model prints is not the reply
    out: dict[str, Any]
    try:
        out = {
            "config": run_auto_complete(request["model_path"], request["paths"], request["config"])
        }
    except Exception as e:
        out = {"error": loader.format_exception(e)}
    stdout.write(json.dumps(out) + "\n")
    stdout.flush()
    return 0


def run_auto_complete(model_path: str, paths: list[str], config: dict[str, Any]) -> dict[str, Any]:
    from .pb_utils import ModelConfig

    name = str(config.get("name", ""))
    cls = loader.import_model_class(model_path, name, paths)  # type: ignore[arg-type]
    auto_complete = getattr(cls, "auto_complete_config", None)
    if auto_complete is None:
        return config
    result = auto_complete(ModelConfig(config))
    if not isinstance(result, ModelConfig):
        raise TritonModelException(
            f"auto_complete_config function in model '{name}' must return a valid pb.ModelConfig "
            "object."
        )
    return result.as_dict()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
