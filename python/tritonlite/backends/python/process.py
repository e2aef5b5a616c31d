"""Stub-process execution (the default): each model instance runs in its own Python process, as
in Triton, so a model that crashes, leaks or holds the GIL cannot take the server down.

This module owns the server side of a stub (``StubProcess``: spawning it, its sockets and arenas,
one reader thread for its async socket) and the instance the core drives (``StubInstance``):

* ``execute_requests`` runs on the instance's C++ worker thread: it packs the batch's inputs into
  the arena, sends one EXEC, and reads the one DONE itself (the GIL is released while it waits),
  then answers the requests: one message each way per batch, no thread hand-off;
* the reader thread answers responses sent through response senders (decoupled models), runs
  BLS calls on the server (``bls.BlsLoop``), logs, and applies custom-metric updates. A BLS
  message names the requests whose execute() made the call (their keys); those this instance
  still holds become the call's parents, and it is cancelled with them (``bls.py``);
* a stub that dies (crash, ``os._exit``, kill) is noticed by both (EOF, or its pidfd when a
  grandchild keeps the socket open): every request it held fails with ``Stub process '<name>' is
  not healthy: ...`` and a new stub is started in the background; requests that arrive while it
  starts wait for it. ``healthy`` says whether the instance has a live, initialized stub.
* a request's cancellation reaches the model without a message: each stub has a cancel board
  (``cancel.py``) and every request sent to it mirrors its cancel flag into a slot of it, from
  the EXEC until the server is done with the request (its final response, a failure, the stub's
  crash, an unload: every way out of ``pending`` goes through ``_take``, which frees the slot);
* a stub runs model code, so everything it sends is hostile: a message that breaks the protocol
  (``ipc.ProtocolError``: undecodable, unexpected, mistyped, tensors outside shared memory) is
  logged and the stub is killed, which then goes as a crash (``StubProcess.violation``).
  Nothing it sends can run code in the server (``ipc.py``).

Stubs run in their own process group and ignore SIGINT/SIGTERM (``stub.main``): a stop signal
sent to the server's process group or cgroup (Ctrl-C, ``timeout``, systemd's default
``KillMode``) is acted on by the server alone, which finishes in-flight requests and then ends
its stubs itself. A stub exits by itself
when the server dies (EOF on its sockets). No stub is restarted once the server is closing, and a
load that fails at one instance ends the stubs of the instances already started.
"""

from __future__ import annotations

import itertools
import logging
import os
import select
import signal
import subprocess
import threading
from typing import Any

from ... import _core
from ...errors import INTERNAL, INVALID_ARG, UNSUPPORTED, TritonError
from . import bls, custom_metrics, ipc, loader
from .cancel import CancelSlots
from .inprocess import model_control
from .ipc import Channel, ProtocolError, socket_pair
from .memfd import new_memfd
from .pb_utils import TritonModelException
from .runtime import emit_model_log
from .shm import Arena, ArenaMap, read_tensors, write_tensors
from .spin import SpinWait
from .stub import command as stub_command

__all__ = ["StubBackend", "StubInstance"]

_log = logging.getLogger("tritonlite.python")

#: How long a request waits for a restarting stub before it fails.
RESTART_WAIT_S = 60.0
#: How long an unloading instance waits for the model's finalize().
FINALIZE_WAIT_S = 30.0

#: Stubs are started (fork + exec) one at a time, whatever thread loads their model: models load
#: on several threads (--model-load-thread-count), and concurrent forks of this multi-threaded
#: process abort under ThreadSanitizer (make test-tsan). A fork + exec takes milliseconds; a
#: model's load takes far longer, so the loads still overlap. Process-wide, as fork is.
_SPAWN_LOCK = threading.Lock()
#: How long a thread other than the instance's worker (a gRPC I/O thread running a short batch
#: itself, ModelRunner::RunReady) waits for the stub's DONE before handing the wait to a thread
#: of the instance: twice what counts as a short batch, at least 1 ms. The I/O thread must get
#: back to its connections: a model.py that turns slow, or waits for a cancellation that only
#: that thread can read, would stall them all.
HANDOFF_S = max(0.001, 2 * _core.inline_batch_us() / 1e6)


def _server_closing(server: Any) -> bool:
    """The Server is shutting down (``Server.close`` has begun): stubs are not restarted."""
    return bool(getattr(server, "_closed", False))


def _exit_text(code: int | None) -> str:
    if code is None:
        return "it stopped responding"
    if code < 0:
        try:
            return f"it was killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"it was killed by signal {-code}"
    return f"it exited with code {code}"



def _readable(fd: int, timeout_s: float) -> bool:
    """Whether ``fd`` has something to read (a message, end of file or an error) within
    ``timeout_s``."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(timeout_s * 1000))  # EINTR is retried by Python (PEP 475)


def _trace_field(server: Any, trace_id: int) -> str:
    """An EXEC request's trace field (see ipc._REQUEST_TYPES): the OpenTelemetry context of a
    traced request, "{}" when it has none, "" when the request is not traced."""
    trace = server.tracing.live(trace_id) if trace_id and server is not None else None
    return "" if trace is None else trace.context() or "{}"

class StubProcess:
    """One running stub process and its channels."""

    def __init__(self, instance: StubInstance) -> None:
        self.instance = instance
        backend = instance.backend
        # A fresh cancel board per process: a restarted stub never sees its predecessor's slots.
        self.cancel = CancelSlots(name=instance.name)
        # Both arenas are made here: the stub fills the second one (see shm.py).
        self.arena = Arena(backend.arena_bytes, "tritonlite-python-server", keep_fd=True)
        self.arena_lock = threading.Lock()
        stub_arena_fd = new_memfd("tritonlite-python-stub", backend.arena_bytes)
        self.peer = ArenaMap(os.dup(stub_arena_fd), backend.arena_bytes)
        self.ready = False  # initialized: from then on, its death is a crash
        self.dead = False
        self.closing = False
        self.reason = ""
        self.broke_protocol = ""  # what the stub sent that broke the protocol
        ctl_here, ctl_there = socket_pair()
        asy_here, asy_there = socket_pair()
        fds = (ctl_there.fileno(), asy_there.fileno(), self.arena.fd, stub_arena_fd)
        board = (str(self.cancel.stub_fd), str(self.cancel.slots))
        try:
            with _SPAWN_LOCK:
                self.proc = subprocess.Popen(
                    stub_command(*map(str, fds), str(self.arena.size), *board),
                    pass_fds=(*fds, self.cancel.stub_fd),
                    stdin=subprocess.DEVNULL,
                    # Signals for the server's process group (a terminal's Ctrl-C) are not for
                    # it. Not a new session: that would put it in its own scheduler autogroup,
                    # which cost 10-20 us per round trip on a loaded machine.
                    process_group=0,
                )
        except BaseException:
            for s in (ctl_here, asy_here):
                s.close()
            self.arena.close()
            raise
        finally:
            ctl_there.close()
            asy_there.close()
            os.close(stub_arena_fd)
            self.arena.close_fd()  # the mapping stays until this object goes
            self.cancel.close_stub_fd()  # the core has its own mapping
        self.ctl = Channel(ctl_here, ipc.SERVER_CTL)
        self.asy = Channel(asy_here, ipc.SERVER_ASYNC)
        try:
            self.pidfd: int | None = os.pidfd_open(self.proc.pid)
        except (AttributeError, OSError):
            self.pidfd = None
        self.reader: threading.Thread | None = None

    def initialize(self, info: dict[str, Any]) -> None:
        """Load and initialize the model in the stub; TritonError if it fails. The reader
        starts first: initialize() may log, create metrics or make BLS calls."""
        self.reader = threading.Thread(
            target=self._read, name=f"tritonlite-python-{self.instance.name}", daemon=True
        )
        self.reader.start()
        try:
            self.ctl.send((ipc.INIT, info))
            message, _ = self.ctl.recv()
            if message[0] not in (ipc.INIT_OK, ipc.INIT_ERROR):
                raise ProtocolError(f"a reply with opcode {message[0]} to INIT")
        except ProtocolError as e:
            self.closing = True
            self.violation(str(e))
            self._end_after_failed_init()
            raise TritonError(
                f"Failed to initialize model instance '{self.instance.name}': the stub process "
                f"broke the IPC protocol: {e}",
                INTERNAL,
            ) from None
        except (EOFError, OSError):
            self.closing = True
            code = self._wait(5.0)
            self._end_after_failed_init()
            how = self.broke_protocol or _exit_text(code)
            raise TritonError(
                f"Failed to initialize model instance '{self.instance.name}': the stub process "
                f"ended during initialize ({how})",
                INTERNAL,
            ) from None
        if message[0] == ipc.INIT_ERROR:
            self.closing = True
            self._end_after_failed_init()
            raise TritonError(
                f"Failed to initialize model instance '{self.instance.name}': {message[1]}",
                INTERNAL,
            )
        self.ready = True
        if self.proc.poll() is not None and not self.dead:  # died right after initialize
            self.instance._crashed(self)

    def _wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def violation(self, text: str) -> None:
        """The stub sent something that breaks the protocol: log it and kill the stub (its
        requests then fail and it is restarted, as after a crash)."""
        if not self.broke_protocol:
            self.broke_protocol = f"it broke the IPC protocol: {text}"
            _log.error(
                "model instance '%s': the stub process (pid %d) broke the IPC protocol: %s; "
                "killing it",
                self.instance.name,
                self.proc.pid,
                text,
            )
        self.kill()

    def kill(self) -> None:
        """Kill the process. The sockets are left to the garbage collector: another thread may
        still be blocked on them (it wakes with EOF)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self._wait(5.0)

    def _end_after_failed_init(self) -> None:
        self.dead = True
        self.kill()
        assert self.reader is not None
        self.reader.join(timeout=5.0)
        self.ctl.close()
        self.asy.close()

    def _close_pidfd(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None

    def finalize(self) -> None:
        """Run the model's finalize() and let the stub exit (called by the instance's worker,
        or by a restart that finished after unload began)."""
        self.closing = True
        try:
            self.ctl.send((ipc.FINALIZE,))
            self.ctl.sock.settimeout(FINALIZE_WAIT_S)
            message, _ = self.ctl.recv()
            if message[0] != ipc.FINALIZED:
                raise ProtocolError(f"a reply with opcode {message[0]} to FINALIZE")
            if message[1]:
                _log.error(
                    "model instance '%s': finalize failed: %s", self.instance.name, message[1]
                )
        except ProtocolError as e:
            self.violation(str(e))
        except (EOFError, OSError):
            pass
        self.dead = True
        if self._wait(5.0) is None:
            _log.error("model instance '%s': the stub did not exit; killing it", self.instance.name)
            self.proc.kill()
            self._wait(5.0)
        if self.reader is not None and self.reader is not threading.current_thread():
            self.reader.join(timeout=5.0)  # it ends with the process (EOF or pidfd)
        self.ctl.close()
        self.asy.close()

    # ---- the async socket -------------------------------------------------------------------

    def _read(self) -> None:
        poller = select.poll()
        poller.register(self.asy.fileno(), select.POLLIN)
        if self.pidfd is not None:
            poller.register(self.pidfd, select.POLLIN)
        asy_fd = self.asy.fileno()
        try:
            while True:
                events = poller.poll()
                if any(fd == asy_fd for fd, _ in events):
                    self._dispatch_next()
                    continue
                # The process is gone but something still holds its socket: take what it sent.
                while select.select([asy_fd], [], [], 0)[0]:
                    self._dispatch_next()
                break
        except ProtocolError as e:
            self.violation(str(e))
        except (EOFError, OSError):
            pass
        finally:
            self._close_pidfd()  # the reader owns it: nobody else polls it
        if self.ready and not self.dead and not self.closing:
            self.instance._crashed(self)

    def _dispatch_next(self) -> None:
        message, fds = self.asy.recv()
        try:
            self._dispatch(message, fds)
        except ProtocolError:
            raise
        except Exception:  # a bug here must not stop the reader: log it, keep serving
            _log.exception(
                "model instance '%s': failed to handle a message from the stub", self.instance.name
            )

    def _dispatch(self, message: tuple[Any, ...], fds: list[int]) -> None:
        op = message[0]
        instance = self.instance
        if op == ipc.SEND:
            _, key, error, metas, location, final = message
            outputs = read_tensors(self.peer, metas, location, fds, copy=True)
            if final:
                request = instance._take(key)
            else:
                entry = instance.pending.get(key)
                request = entry[0] if entry is not None else None
            if request is not None and not request.finished:
                try:  # an error response is the model's answer: Triton counts it a success
                    request.respond(outputs or None, error, final, model_error=True)
                except TritonError:  # finished meanwhile (failed by a crash, or unloading)
                    pass
        elif op == ipc.FAIL:
            _, key, error = message
            request = instance._take(key)
            if request is not None and not request.finished:
                try:
                    request.respond(None, error, True)
                except TritonError:  # finished meanwhile
                    pass
        elif op == ipc.BLS:
            _, call_id, spec, metas, location, keys = message
            try:
                inputs = read_tensors(self.peer, metas, location, fds)
            except ProtocolError as e:  # the block and fds are released: answer the call alone
                error = TritonError(f"BLS request to model '{spec[0]}': {e}", INVALID_ARG)
                self._bls_response(call_id, error, None, True)
                return
            model, version, outputs, *rest, trace_key = spec
            # A traced call names the request whose trace it continues by its key: the trace
            # id of that request, if this instance still holds it.
            traced = instance.pending.get(trace_key) if trace_key >= 0 else None
            trace_id = traced[0].trace_id if traced is not None else 0
            spec = (model, version, list(outputs) if outputs is not None else None, *rest, trace_id)
            server = instance.backend.server
            if server is None:
                self._bls_response(call_id, bls.no_server_error(spec[0]), None, True)
                return

            def on_response(error: Any, outputs: Any, final: bool) -> None:
                self._bls_response(call_id, error, outputs, final)

            # The call's parents: the requests it names that this instance still holds (a key
            # it does not hold, answered meanwhile or made up, names nothing; one named twice
            # counts once), so a stub can tie its calls to its own requests only.
            pending = instance.pending
            found = map(pending.get, dict.fromkeys(keys))
            parents = [entry[0] for entry in found if entry is not None]
            bls.BlsLoop.get().call(lambda: bls.start(server, spec, inputs, on_response, parents))
        elif op == ipc.LOG:
            _, level, text, filename, lineno = message
            emit_model_log(level, text, os.path.basename(filename), lineno)
        elif op == ipc.METRIC:
            _, metric_id, update, value = message
            if update == "delete":
                instance.backend.delete_metric_object(metric_id)
                return
            metric = instance.backend.metric_objects.get(metric_id)
            if metric is not None:
                try:
                    metric.apply(update, value)
                except Exception as e:  # checked in the stub already; log what slips through
                    _log.error("model instance '%s': %s", instance.name, e)
        elif op == ipc.CALL:
            _, call_id, name, args = message  # name and args checked by ipc.CALL_ARGS
            if name == "model_control":  # may load models: not on this thread
                threading.Thread(
                    target=self._reply_call, args=(call_id, name, args), daemon=True
                ).start()
            else:
                self._reply_call(call_id, name, args)

    def _reply_call(self, call_id: int, name: str, args: tuple[Any, ...]) -> None:
        backend = self.instance.backend
        try:
            if name == "metric_family":
                value: Any = backend.new_metric_family(*args)
            elif name == "metric":
                family_id, labels, buckets = args
                buckets = list(buckets) if buckets is not None else None
                value = backend.new_metric(family_id, labels, buckets, self.instance.name)
            elif name == "metric_value":
                value = backend.metric_objects[args[0]].value()
            elif name == "model_control":
                value = model_control(backend.server, args[0], args[1])
            else:
                raise TritonModelException(f"unknown call '{name}'")
            reply: tuple[Any, ...] = (ipc.REPLY, call_id, True, value)
        except TritonModelException as e:
            reply = (ipc.REPLY, call_id, False, e.message())
        except Exception as e:
            reply = (ipc.REPLY, call_id, False, f"{type(e).__name__}: {e}")
        try:
            try:
                self.asy.send(reply)
            except (TypeError, ValueError, OverflowError) as e:  # a value msgpack cannot carry
                self.asy.send((ipc.REPLY, call_id, False, f"'{name}' returned {e}"))
        except OSError:
            pass

    def _bls_response(self, call_id: int, error: Any, outputs: Any, final: bool) -> None:
        """On the BLS loop: send one response of a BLS call back to the stub."""
        if self.dead:
            return
        err = None
        metas: Any = []
        location = None
        fds: list[int] = []
        if error is not None:
            err = (getattr(error, "status", "INTERNAL"), getattr(error, "message", str(error)))
        else:
            tensors = [(name, t.datatype, t.shape, t) for name, t in outputs or ()]
            gpu = [name for name, _, _, t in tensors if not t.is_cpu]
            if gpu:
                message = f"BLS output '{gpu[0]}' is in GPU memory; a model in a stub process takes CPU tensors"
                err = (UNSUPPORTED, message)
            else:
                with self.arena_lock:
                    metas, location, fds = write_tensors(self.arena, tensors)
        try:
            self.asy.send((ipc.BLS_RESPONSE, call_id, err, metas, location, final), fds)
        except OSError:
            pass
        finally:
            for fd in fds:
                os.close(fd)


class StubInstance:
    """A model instance whose model runs in a stub process."""

    #: ``execute_requests`` may be called from any thread, one call at a time (the core's
    #: instance lock): the model runs in the stub's own thread whoever sends EXEC, so a gRPC
    #: I/O thread may run a short batch itself instead of handing it to this instance's
    #: worker and being woken back (ModelRunner::RunReady; only while the model's batches are
    #: short, since the I/O thread's other connections wait meanwhile).
    runs_on_any_thread = True

    def __init__(self, backend: StubBackend, index: int, kind: str, device_id: int) -> None:
        self.backend = backend
        self.name = backend.instance_name(index)
        # key -> (core request without its final response, its cancel slot, that slot's board)
        self.pending: dict[int, tuple[Any, int, CancelSlots]] = {}
        self._keys = itertools.count(1)
        self._lock = threading.Lock()
        self._closing = False
        self._restarted = threading.Event()
        self._restarted.set()
        self._restarting = False
        self._stub: StubProcess | None = None
        self.restarts = 0
        # The wait for DONE of the thread running a batch (the worker, or a gRPC I/O thread:
        # one execute at a time per instance, so one waiter at a time).
        self._spin = SpinWait()
        # Held from an execute's start until its DONE is handled: by the calling thread, or,
        # after a hand-off (HANDOFF_S), by the thread that finishes it (released there).
        self._exec_lock = threading.Lock()
        self._info = {
            "instance_name": self.name,
            "model_name": backend.model_name,
            "model_dir": str(backend.model_dir),
            "version_dir": str(backend.version_dir),
            "model_path": str(backend.model_path),
            "paths": backend.paths,
            "decoupled": backend.decoupled,
            "version_number": backend.version_number,
            "arena_bytes": backend.arena_bytes,
            "args": backend.initialize_args(kind, device_id, self.name),
        }
        self._stub = self._start()

    def _start(self) -> StubProcess:
        stub = StubProcess(self)
        stub.initialize(self._info)
        return stub

    @property
    def healthy(self) -> bool:
        stub = self._stub
        return stub is not None and not stub.dead and stub.proc.poll() is None

    # ---- execute ----------------------------------------------------------------------------

    def execute_requests(self, requests: list[Any]) -> None:
        self._exec_lock.acquire()  # a handed-off batch of this instance may still be running
        handed_off = False
        try:
            handed_off = self._execute(requests)
        finally:
            if not handed_off:
                self._exec_lock.release()

    def _execute(self, requests: list[Any]) -> bool:
        """Send the batch and answer its requests; True when the wait for DONE was handed to
        a thread of ours (that thread answers them, and releases the exec lock)."""
        stub = self._stub or self._wait_for_stub()
        backend = self.backend
        batch: list[tuple[Any, ...]] = []
        tensors = []
        pending = self.pending
        cancel = stub.cancel
        keys = self._keys
        try:
            for r in requests:
                key = next(keys)
                inputs = r.inputs()
                for name, t in inputs:
                    if not t.is_cpu:
                        raise TritonError(
                            f"model '{backend.model_name}': input '{name}' is in GPU memory; a "
                            "model in a stub process takes CPU tensors (set EXECUTION_MODE to "
                            "in_process)",
                            UNSUPPORTED,
                        )
                    tensors.append((name, t.datatype, t.shape, t))
                trace_id = r.trace_id
                slot = cancel.mirror(r)
                pending[key] = (r, slot, cancel)
                batch.append(
                    (
                        key,
                        r.id,
                        r.correlation_id_str or r.correlation_id,
                        r.flags,
                        r.timeout_us,
                        # A sequence batcher's filler (Triton's null request) requests nothing.
                        [] if r.null_request else list(r.requested_outputs) or backend.output_names,
                        len(inputs),
                        r.parameters,
                        slot,
                        _trace_field(backend.server, trace_id) if trace_id else "",
                    )
                )
            with stub.arena_lock:
                metas, location, fds = write_tensors(stub.arena, tensors)
        except BaseException:  # nothing was sent: the core fails the batch
            self._forget(batch)
            raise
        try:
            stub.ctl.send((ipc.EXEC, batch, metas, location), fds)
            self._spin.peer = stub.proc.pid  # its CPU time is not foreign load (spin.py)
            if _core.on_instance_thread():
                message, out_fds = stub.ctl.recv(self._spin)
            else:
                fd = stub.ctl.sock.fileno()
                start = self._spin.wait(fd)
                if not _readable(fd, HANDOFF_S):
                    threading.Thread(
                        target=self._finish_late,
                        args=(stub, batch),
                        name=f"tritonlite-python-wait-{self.name}",
                        daemon=True,
                    ).start()
                    return True
                message, out_fds = stub.ctl.recv()
                self._spin.done(start)
            done = self._read_done(stub, batch, message, out_fds)
        except ProtocolError as e:
            stub.violation(str(e))
            self._crashed(stub)
            self._forget(batch)
            raise TritonError(self._unhealthy(stub), INTERNAL) from None
        except (EOFError, OSError):
            self._crashed(stub)
            self._forget(batch)
            raise TritonError(self._unhealthy(stub), INTERNAL) from None
        finally:
            for fd in fds:
                os.close(fd)
        if done is not None:
            self._answer(*done)
        return False

    def _read_done(
        self, stub: StubProcess, batch: list[Any], message: tuple[Any, ...], out_fds: list[int]
    ) -> tuple[Any, ...] | None:
        """The stub's reply to EXEC, checked: (responses, outputs, failed, error), or None
        when it rejected the batch (its requests answered). ProtocolError when it is neither."""
        if message[0] == ipc.REJECTED:
            self._rejected(batch, message[1])
            return None
        if message[0] != ipc.DONE:
            raise ProtocolError(f"a reply with opcode {message[0]} to EXEC")
        _, responses, out_metas, out_location, failed, error = message
        outputs = read_tensors(stub.peer, out_metas, out_location, out_fds, copy=True)
        if any(n < 0 for _, _, n in responses) or sum(n for _, _, n in responses) != len(outputs):
            raise ProtocolError("the response output counts do not match the outputs sent")
        return responses, outputs, failed, error

    def _finish_late(self, stub: StubProcess, batch: list[Any]) -> None:
        """A handed-off batch (see HANDOFF_S): wait for its DONE here and answer its
        requests, failing them if the stub broke or died meanwhile; then free the instance."""
        try:
            try:
                message, out_fds = stub.ctl.recv()
                done = self._read_done(stub, batch, message, out_fds)
            except ProtocolError as e:
                stub.violation(str(e))
                self._crashed(stub)
                self._fail_unanswered(batch, stub)
                return
            except (EOFError, OSError):
                self._crashed(stub)
                self._fail_unanswered(batch, stub)
                return
            if done is not None:
                self._answer(*done)
        except Exception:  # a bug here must not leave the batch unanswered or the lock held
            _log.exception("model instance '%s': failed to finish a batch", self.name)
            self._fail_unanswered(batch, None)
        finally:
            self._exec_lock.release()

    def _fail_unanswered(self, batch: list[Any], stub: StubProcess | None) -> None:
        message = self._unhealthy(stub)
        for key, *_ in batch:
            r = self._take(key)
            if r is not None and not r.finished:
                try:
                    r.respond(None, (INTERNAL, message), True)
                except TritonError:  # finished meanwhile
                    pass

    def _answer(self, responses: Any, outputs: Any, failed: Any, error: Any) -> None:
        """Answer a batch's requests from the stub's DONE."""
        i = 0
        for key, err, n in responses:
            r, start = self._take(key), i
            i += n  # every response's outputs are counted, whatever becomes of them
            if r is None:
                continue
            if err is not None:  # the model's error response: a success in the statistics
                r.respond(None, err, True, model_error=True)
            else:
                r.respond(outputs[start:i], None, True)
        if error is not None:
            for key in failed:
                r = self._take(key)
                if r is not None and not r.finished:
                    r.respond(None, (INTERNAL, error), True)

    def _take(self, key: int) -> Any:
        """The core request of ``key``, out of ``pending`` (the server is done with it: it is
        about to get or has got its final response), its cancel slot freed; None if it was not
        pending."""
        entry = self.pending.pop(key, None)
        if entry is None:
            return None
        r, slot, cancel = entry
        cancel.release(r, slot)
        return r

    def _forget(self, batch: list[tuple[Any, ...]]) -> None:
        """The batch failed as a whole (the core answers its requests): take whatever of it is
        still pending (``_crashed`` does nothing for a stub whose crash was seen already)."""
        for key, *_ in batch:
            self._take(key)

    def _rejected(self, batch: list[Any], text: str) -> None:
        """The stub could not read an EXEC: fail its requests, keep the stub."""
        _log.error("model instance '%s': the stub process rejected a batch: %s", self.name, text)
        message = (
            f"Failed to process the request(s) for model '{self.name}', message: the stub "
            f"process could not read the request: {text}"
        )
        for key, *_ in batch:
            r = self._take(key)
            if r is not None and not r.finished:
                r.respond(None, (INTERNAL, message), True)

    def _unhealthy(self, stub: StubProcess | None) -> str:
        text = f"Stub process '{self.name}' is not healthy."
        if stub is not None and stub.reason:
            text = text[:-1] + f": {stub.reason}; it is being restarted"
        return text

    def _wait_for_stub(self) -> StubProcess:
        """The stub to execute on: waits for a restart in progress, starts one if needed."""
        with self._lock:
            closing = self._closing or _server_closing(self.backend.server)
            if self._stub is None and not self._restarting and not closing:
                self._begin_restart()
        self._restarted.wait(RESTART_WAIT_S)
        stub = self._stub
        if stub is None:
            raise TritonError(self._unhealthy(None), INTERNAL)
        return stub

    # ---- crashes ----------------------------------------------------------------------------

    def _crashed(self, stub: StubProcess) -> None:
        """Called by the worker or the reader when the stub is gone (once per stub)."""
        with self._lock:
            if stub.dead:
                return
            stub.dead = True
            stub.reason = stub.broke_protocol or _exit_text(stub._wait(2.0))
            if self._stub is stub:
                self._stub = None
            closing = self._closing or _server_closing(self.backend.server)
        stub.ctl.shutdown()  # wakes the worker if it is waiting for DONE
        message = self._unhealthy(stub)
        _log.error("%s", message)
        for key in list(self.pending):
            r = self._take(key)
            if r is not None and not r.finished:
                try:
                    r.respond(None, (INTERNAL, message), True)
                except TritonError:
                    pass
        stub.kill()
        if not closing:
            with self._lock:
                if self._stub is None and not self._restarting:
                    self._begin_restart()

    def _begin_restart(self) -> None:
        """Start a new stub in the background (call with the lock held)."""
        self._restarting = True
        self._restarted.clear()
        threading.Thread(
            target=self._restart, name=f"tritonlite-python-restart-{self.name}", daemon=True
        ).start()

    def _restart(self) -> None:
        stub: StubProcess | None = None
        try:
            stub = self._start()
            _log.warning("model instance '%s': stub process restarted", self.name)
        except Exception as e:
            _log.error("model instance '%s': restarting the stub failed: %s", self.name, e)
        with self._lock:
            self._restarting = False
            if stub is not None:
                if self._closing or _server_closing(self.backend.server):
                    closing_stub: StubProcess | None = stub
                else:
                    self._stub, closing_stub = stub, None
                    self.restarts += 1
            else:
                closing_stub = None
            self._restarted.set()
        if closing_stub is not None:
            closing_stub.finalize()

    # ---- unload -----------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._closing = True
        self._restarted.wait(RESTART_WAIT_S)
        # A handed-off batch still waiting for its DONE reads the same socket as FINALIZE's
        # reply: let it end first (as the worker's own batch would), within FINALIZE_WAIT_S.
        locked = self._exec_lock.acquire(timeout=FINALIZE_WAIT_S)
        stub = self._stub
        self._stub = None
        if stub is not None and not stub.dead:
            stub.finalize()
        message = f"model instance '{self.name}' was unloaded before it answered this request"
        for key in list(self.pending):
            r = self._take(key)
            if r is not None and not r.finished:
                try:
                    r.respond(None, ("UNAVAILABLE", message), True)
                except TritonError:
                    pass
        if locked:
            self._exec_lock.release()


class StubBackend(loader.ModelInfo):
    """A python model version whose instances run in stub processes."""

    per_request_execution = True

    def __init__(self, config: Any, model_dir: Any, version_dir: Any, server: Any = None) -> None:
        super().__init__(config, model_dir, version_dir)
        self.server = server
        # The model's SHM_ARENA_BYTE_SIZE, else --backend-config python,shm-default-byte-size.
        setting = getattr(server, "backend_setting", lambda *_: None)
        default = setting("python", "shm-default-byte-size")
        self.arena_bytes = loader.arena_bytes(config, int(default) if default else None)
        self.instances: list[StubInstance] = []
        self.metric_objects: dict[int, Any] = {}
        self._metric_ids = itertools.count(1)
        self._metric_lock = threading.Lock()

    def create_instance(self, index: int, kind: str, device_id: int) -> StubInstance:
        """Start instance ``index``. If it fails, the model does not load: the stubs of the
        instances started before it are ended too (nothing else would end them)."""
        try:
            instance = StubInstance(self, index, kind, device_id)
        except BaseException:
            started, self.instances = self.instances, []
            for other in started:
                try:
                    other.close()
                except Exception:  # end the others whatever happens to one
                    _log.exception("model instance '%s': ending its stub failed", other.name)
            raise
        self.instances.append(instance)
        return instance

    @property
    def healthy(self) -> bool:
        """Every instance has a live, initialized stub."""
        return all(i.healthy for i in self.instances)

    def new_metric_family(self, name: str, description: str, kind: int) -> int:
        family = custom_metrics.registry().family(name, description, kind, self)
        with self._metric_lock:
            family_id = next(self._metric_ids)
            self.metric_objects[family_id] = family
        return family_id

    def new_metric(
        self, family_id: int, labels: dict[str, str], buckets: Any, instance: str
    ) -> int:
        family = self.metric_objects[family_id]
        metric = custom_metrics.registry().metric(family, labels, buckets, self, instance)
        with self._metric_lock:
            metric_id = next(self._metric_ids)
            self.metric_objects[metric_id] = metric
        return metric_id

    def delete_metric_object(self, object_id: int) -> None:
        """A model deleted a MetricFamily or Metric object."""
        with self._metric_lock:
            obj = self.metric_objects.pop(object_id, None)
        if isinstance(obj, custom_metrics.Metric):
            custom_metrics.registry().drop_metric(obj, self)
        elif obj is not None:
            custom_metrics.registry().drop_family(obj, self)

    def close(self) -> None:
        custom_metrics.registry().release(self)
