"""Control messages between the server and a stub process, and their schema.

This module owns the wire between the two: ``Channel`` sends and receives small msgpack arrays
(with file descriptors when a message carries a dedicated shared-memory segment) over one end of
an ``AF_UNIX``/``SOCK_SEQPACKET`` socket pair, so every send is one record and every receive
returns exactly one. Tensor bytes never travel here (see ``shm.py``); a message too large for
one record (a big config, a long traceback) goes through a sealed memfd (``memfd.py``).

A stub has two socket pairs:

* ``ctl``: the execute path. The server sends INIT, EXEC and FINALIZE and the instance's worker
  thread reads the one reply to each (INIT_OK / INIT_ERROR, DONE or REJECTED, FINALIZED)
  itself, so the hot path is one message each way and no thread hand-off on either side.
* ``async``: everything else, in both directions: responses sent through a response sender,
  BLS requests and their responses, log records, custom-metric updates and calls that need a
  reply. Each side has one thread reading it.

The stub runs model code, so the server treats every byte from it as hostile. Nothing here can
run code: msgpack decodes to None, bool, int, float, str, bytes, tuples and dicts with string
keys, and nothing else (no pickle in either direction). Each channel accepts a fixed set of
opcodes, and every message is checked against its opcode's schema below (arity and the type of
every field, recursively) before ``recv`` returns it; anything else raises ``ProtocolError``
naming what was wrong, and the fds that came with it are closed. What the schema cannot say
(tensor bounds, memfd seals) ``shm.read_tensors`` checks. The server answers a protocol error
by killing that stub (its requests fail, it is restarted); the stub answers one by failing the
request it was for (REJECTED) and carrying on.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgpack

from .memfd import map_received, new_memfd
from .spin import SpinWait

__all__ = ["Channel", "ProtocolError", "socket_pair"]

# Opcodes. Server -> stub on ctl.
INIT = 1
EXEC = 2
FINALIZE = 3
# Stub -> server on ctl.
INIT_OK = 10
INIT_ERROR = 11
DONE = 12
FINALIZED = 13
REJECTED = 14  # the EXEC was malformed: its requests fail, the stub carries on
# Stub -> server on async.
SEND = 20  # a response sender's response
BLS = 21  # start a BLS request (naming the requests it is cancelled with: see bls.py)
LOG = 22
METRIC = 23  # fire-and-forget metric update
CALL = 24  # a call that wants a REPLY (metric creation and reads, model control)
FAIL = 25  # a request fails without the model's answer (dropped, or its execute failed)
# Server -> stub on async.
BLS_RESPONSE = 30
REPLY = 31

_BIG = 99  # the real message is in the memfd passed with this one
_TRUNCATED = int(socket.MSG_TRUNC | socket.MSG_CTRUNC)
MAX_RECORD = 1 << 16
#: The largest message accepted through a memfd (a load_model call carries model files).
MAX_MESSAGE = 1 << 30
_MAX_FDS = 8


class ProtocolError(Exception):
    """A message that breaks the protocol: undecodable, an opcode this channel does not take,
    a field of the wrong type, or tensor descriptors outside their shared memory. ``message``
    is what was decoded (None if nothing was)."""

    def __init__(self, text: str, message: Any = None) -> None:
        super().__init__(text)
        self.message = message


# ---- the schema -----------------------------------------------------------------------------
# A check is a predicate over a decoded value. msgpack gives arrays as tuples (use_list=False).

Check = Callable[[Any], bool]


def _is(*types: type) -> Check:
    if len(types) == 1:
        only = types[0]
        return lambda v: type(v) is only
    return lambda v: type(v) in types


INT = _is(int)
STR = _is(str)
BOOL = _is(bool)
BYTES = _is(bytes)
NUMBER = _is(int, float)
NONE = _is(type(None))


def opt(check: Check) -> Check:
    return lambda v: v is None or check(v)


def one_of(*checks: Check) -> Check:
    return lambda v: any(c(v) for c in checks)


def seq(check: Check) -> Check:
    """A tuple of any length, every item passing ``check``."""
    return lambda v: type(v) is tuple and all(map(check, v))


def tup(*checks: Check) -> Check:
    """A tuple of exactly these fields."""
    n = len(checks)

    def check(v: Any) -> bool:
        if type(v) is not tuple or len(v) != n:
            return False
        for c, x in zip(checks, v):  # a loop: faster than all() here
            if not c(x):
                return False
        return True

    return check


def dict_of(key: Check, value: Check) -> Check:
    return lambda v: type(v) is dict and all(key(k) and value(x) for k, x in v.items())


def record(**fields: Check) -> Check:
    """A dict with exactly these keys."""
    names = set(fields)
    return lambda v: (
        type(v) is dict and v.keys() == names and all(c(v[k]) for k, c in fields.items())
    )


_STATUSES = frozenset(
    ("INVALID_ARG", "NOT_FOUND", "UNAVAILABLE", "INTERNAL", "UNSUPPORTED", "ALREADY_EXISTS",
     "CANCELLED", "UNKNOWN")
)  # fmt: skip


def STATUS(v: Any) -> bool:  # a check, named like the others
    return type(v) is str and v in _STATUSES


#: (status kind, message) of a failed response or BLS call.
ERROR = tup(STATUS, STR)
#: (name, datatype, shape, offset in the block's data, byte size); bounds are shm.py's to check.
# The hot path's checks (EXEC, DONE, SEND, BLS_RESPONSE) are written out by hand: the generic
# combinators cost several microseconds per tensor.
def METAS(v: Any) -> bool:  # a tuple of META (unpacked and compared field by field: the
    # fastest form measured, ~0.2 us per tensor)
    if type(v) is not tuple:
        return False
    for meta in v:
        if type(meta) is not tuple or len(meta) != 5:
            return False
        name, datatype, shape, off, n = meta
        if (type(name) is not str or type(datatype) is not str or type(shape) is not tuple
                or type(off) is not int or type(n) is not int):  # fmt: skip
            return False
        for d in shape:
            if type(d) is not int:
                return False
    return True


#: None, ("a", header offset) or ("s", fd index, size): see shm.Location.
def LOCATION(v: Any) -> bool:
    if v is None:
        return True
    if type(v) is not tuple:
        return False
    if len(v) == 2:
        return v[0] == "a" and type(v[1]) is int
    return len(v) == 3 and v[0] == "s" and type(v[1]) is int and type(v[2]) is int


#: bls.BlsSpec
BLS_SPEC = tup(STR, opt(INT), opt(seq(STR)), STR, one_of(INT, STR), INT, INT, STR, INT)
#: The most parents a BLS message may name (the keys of the batch whose execute() made the
#: call); a stub running a bigger batch names none.
MAX_BLS_PARENTS = 1 << 16


def BLS_PARENTS(v: Any) -> bool:  # a tuple of at most MAX_BLS_PARENTS request keys
    if type(v) is not tuple or len(v) > MAX_BLS_PARENTS:
        return False
    for key in v:
        if type(key) is not int:
            return False
    return True


#: One request of an EXEC batch: key, id, correlation id, flags, timeout (us), requested
#: outputs, number of inputs, parameters (JSON text), cancel slot (an index into the stub's
#: cancel board, or -1 for none: the stub checks the range, see ``cancel.py``), trace (the
#: request's OpenTelemetry context as JSON, "{}" when traced without one, "" when not traced).
_REQUEST_TYPES = (
    (int, str, int, int, int, tuple, int, str, int, str),
    (int, str, str, int, int, tuple, int, str, int, str),
)


def EXEC_BATCH(v: Any) -> bool:  # a tuple of EXEC requests
    if type(v) is not tuple:
        return False
    for request in v:
        if type(request) is not tuple or tuple(map(type, request)) not in _REQUEST_TYPES:
            return False
        for name in request[5]:
            if type(name) is not str:
                return False
    return True


def DONE_RESPONSES(v: Any) -> bool:  # a tuple of (key, ERROR or None, output count)
    if type(v) is not tuple:
        return False
    for response in v:
        if type(response) is not tuple or len(response) != 3:
            return False
        key, error, count = response
        if type(key) is not int or type(count) is not int:
            return False
        if error is not None and not ERROR(error):
            return False
    return True


INIT_INFO = record(
    instance_name=STR,
    model_name=STR,
    model_dir=STR,
    version_dir=STR,
    model_path=STR,
    paths=seq(STR),
    decoupled=BOOL,
    version_number=INT,
    arena_bytes=INT,
    args=dict_of(STR, STR),
)
#: The arguments of each CALL, by name.
CALL_ARGS: dict[str, Check] = {
    "metric_family": tup(STR, STR, INT),
    "metric": tup(INT, dict_of(STR, STR), opt(seq(NUMBER))),
    "metric_value": tup(INT),
    "model_control": tup(STR, dict_of(STR, one_of(STR, BOOL, INT, dict_of(STR, BYTES)))),
}


def _call(v: Any) -> bool:
    if type(v) is not tuple or len(v) != 4 or type(v[1]) is not int:
        return False
    args = CALL_ARGS.get(v[2]) if type(v[2]) is str else None
    return args is not None and args(v[3])


def _op(code: int) -> Check:
    return lambda v: v == code


#: Every message, by opcode: the whole tuple, opcode included.
SCHEMA: dict[int, Check] = {
    INIT: tup(_op(INIT), INIT_INFO),
    EXEC: tup(_op(EXEC), EXEC_BATCH, METAS, LOCATION),
    FINALIZE: tup(_op(FINALIZE)),
    INIT_OK: tup(_op(INIT_OK)),
    INIT_ERROR: tup(_op(INIT_ERROR), STR),
    DONE: tup(_op(DONE), DONE_RESPONSES, METAS, LOCATION, seq(INT), opt(STR)),
    REJECTED: tup(_op(REJECTED), STR),
    FINALIZED: tup(_op(FINALIZED), opt(STR)),
    SEND: tup(_op(SEND), INT, opt(ERROR), METAS, LOCATION, BOOL),
    BLS: tup(_op(BLS), INT, BLS_SPEC, METAS, LOCATION, BLS_PARENTS),
    LOG: tup(_op(LOG), INT, STR, STR, INT),  # level, message, the model's file and line
    METRIC: tup(_op(METRIC), INT, STR, NUMBER),
    CALL: _call,
    BLS_RESPONSE: tup(_op(BLS_RESPONSE), INT, opt(ERROR), METAS, LOCATION, BOOL),
    REPLY: tup(_op(REPLY), INT, BOOL, one_of(NONE, BOOL, NUMBER, STR)),
    FAIL: tup(_op(FAIL), INT, ERROR),
}
#: Messages that may carry fds (one dedicated segment at most).
WITH_FDS = frozenset({EXEC, DONE, SEND, BLS, BLS_RESPONSE})

#: What each end of each socket accepts.
SERVER_CTL = frozenset({INIT_OK, INIT_ERROR, DONE, REJECTED, FINALIZED})
SERVER_ASYNC = frozenset({SEND, BLS, LOG, METRIC, CALL, FAIL})
STUB_CTL = frozenset({INIT, EXEC, FINALIZE})
STUB_ASYNC = frozenset({BLS_RESPONSE, REPLY})

_BIG_HEADER = tup(_op(_BIG), INT, INT)


def _unpack(data: Any) -> Any:
    return msgpack.unpackb(data, raw=False, use_list=False, strict_map_key=True)


def socket_pair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


class Channel:
    """One end of a message socket. ``send`` may be called from any thread; ``recv`` from one
    thread at a time. ``accepts``: the opcodes ``recv`` lets through."""

    def __init__(
        self, sock: socket.socket, accepts: frozenset[int], schema: Mapping[int, Check] = SCHEMA
    ) -> None:
        self.sock = sock
        self._lock = threading.Lock()
        self._buffer = bytearray(MAX_RECORD)
        self._view = memoryview(self._buffer)
        self._fdsize = socket.CMSG_SPACE(_MAX_FDS * 4)
        self._checks = {op: schema[op] for op in accepts}

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, message: tuple[Any, ...], fds: Sequence[int] = ()) -> None:
        """Send one message; raises OSError (BrokenPipeError...) if the peer is gone, and
        TypeError/ValueError/OverflowError if it holds something msgpack cannot encode."""
        data = msgpack.packb(message, use_bin_type=True)
        if len(data) > MAX_RECORD:
            if len(data) > MAX_MESSAGE:
                raise ValueError(f"a message of {len(data)} bytes is over {MAX_MESSAGE}")
            fd = new_memfd("tritonlite-python-message", len(data))
            try:
                os.pwrite(fd, data, 0)
                header = msgpack.packb((_BIG, len(data), len(fds)))
                with self._lock:
                    socket.send_fds(self.sock, [header], [fd, *fds])
            finally:
                os.close(fd)
            return
        with self._lock:
            if fds:
                socket.send_fds(self.sock, [data], list(fds))
            else:
                self.sock.send(data)

    def recv(self, spin: SpinWait | None = None) -> tuple[tuple[Any, ...], list[int]]:
        """The next message and the fds that came with it. EOFError when the peer is gone;
        ProtocolError (the fds closed) when the message breaks the protocol. ``spin``: spin
        for the message before blocking, as that waiter's policy says (``spin.py``)."""
        try:
            if spin is not None and spin.cap_ns:
                start = spin.wait(self.sock.fileno())
                n, ancdata, flags, _ = self.sock.recvmsg_into([self._buffer], self._fdsize)
                spin.done(start)
            else:
                n, ancdata, flags, _ = self.sock.recvmsg_into([self._buffer], self._fdsize)
        except ConnectionResetError:
            raise EOFError from None
        if n == 0:
            raise EOFError
        fds: list[int] = []
        for level, kind, data in ancdata:  # empty unless the message carries fds
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                usable = len(data) - len(data) % 4
                fds.extend(memoryview(data)[:usable].cast("i"))
        message: Any = None
        try:
            if flags & _TRUNCATED:
                raise ProtocolError("a control message was truncated")
            try:
                message = _unpack(self._view[:n])
            except Exception as e:
                raise ProtocolError(f"undecodable message ({type(e).__name__}: {e})") from None
            if type(message) is tuple and message and message[0] == _BIG:
                message = self._read_big(message, fds.pop(0) if fds else -1, len(fds))
            check = (
                self._checks.get(message[0])
                if type(message) is tuple and message and type(message[0]) is int
                else None
            )
            if check is None:
                raise ProtocolError(f"unexpected message {_describe(message)}", message)
            if not check(message):
                raise ProtocolError(
                    f"malformed message {_describe(message)}: its fields do not match the protocol",
                    message,
                )
            if fds and (message[0] not in WITH_FDS or len(fds) > 1):
                raise ProtocolError(f"message {_describe(message)} came with {len(fds)} fds")
        except ProtocolError:
            for fd in fds:
                os.close(fd)
            raise
        return message, fds

    def _read_big(self, header: Any, fd: int, more_fds: int) -> Any:
        """The message in memfd ``fd`` (closed here), sent with ``more_fds`` other fds."""
        try:
            if fd < 0 or not _BIG_HEADER(header) or header[2] != more_fds:
                raise ProtocolError("malformed large-message header")
            size = header[1]
            if not 0 < size <= MAX_MESSAGE:
                raise ProtocolError(f"a large message of {size} bytes (the limit is {MAX_MESSAGE})")
            try:
                mm = map_received(fd, size, writable=False)
            except (ValueError, OSError) as e:
                raise ProtocolError(f"large message: {e}") from None
        finally:
            if fd >= 0:
                os.close(fd)
        try:
            message = _unpack(mm)  # mapped to exactly `size` bytes
        except Exception as e:
            raise ProtocolError(f"undecodable large message ({type(e).__name__}: {e})") from None
        finally:
            mm.close()
        if type(message) is tuple and message and message[0] == _BIG:
            raise ProtocolError("a large message inside a large message")
        return message

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def shutdown(self) -> None:
        """Wake a thread blocked in ``recv`` (it gets EOFError) without closing the fd."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _describe(message: Any) -> str:
    """A short, safe description of a decoded message for error texts."""
    if type(message) is tuple and message and type(message[0]) is int:
        return f"(opcode {message[0]}, {len(message)} fields)"
    return f"of type {type(message).__name__}"
