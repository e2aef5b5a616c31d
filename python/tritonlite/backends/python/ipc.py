"""Control messages between the server and a stub process.

This module owns the wire between the two: ``Channel`` sends and receives small pickled tuples
(with file descriptors when a message carries a dedicated shared-memory segment) over one end of
an ``AF_UNIX``/``SOCK_SEQPACKET`` socket pair, so every send is one record and every receive
returns exactly one. Tensor bytes never travel here (see ``shm.py``); a message too large for
one record (a big config, a long traceback) goes through a memfd.

A stub has two socket pairs:

* ``ctl``: the execute path. The server sends INIT, EXEC and FINALIZE and the instance's worker
  thread reads the one reply to each (INIT_OK / INIT_ERROR, DONE, FINALIZED) itself, so the hot
  path is one message each way and no thread hand-off on either side.
* ``async``: everything else, in both directions: responses sent through a response sender,
  BLS requests and their responses, log records, custom-metric updates and calls that need a
  reply. Each side has one thread reading it.

Both processes are the same Python from the same installation, so pickle is safe and fast here.
"""

from __future__ import annotations

import mmap
import os
import pickle
import socket
import threading
from collections.abc import Sequence
from typing import Any

from .shm import new_memfd

__all__ = ["Channel", "socket_pair"]

# Opcodes. Server -> stub on ctl.
INIT = 1
EXEC = 2
FINALIZE = 3
# Stub -> server on ctl.
INIT_OK = 10
INIT_ERROR = 11
DONE = 12
FINALIZED = 13
# Stub -> server on async.
SEND = 20  # a response sender's response
BLS = 21  # start a BLS request
LOG = 22
METRIC = 23  # fire-and-forget metric update
CALL = 24  # a call that wants a REPLY (metric creation and reads, model control)
# Server -> stub on async.
BLS_RESPONSE = 30
REPLY = 31

_BIG = 99  # the real message is in the memfd passed with this one
_TRUNCATED = int(socket.MSG_TRUNC | socket.MSG_CTRUNC)
MAX_RECORD = 1 << 16
_MAX_FDS = 8


def socket_pair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


class Channel:
    """One end of a message socket. ``send`` may be called from any thread; ``recv`` from one
    thread at a time."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._lock = threading.Lock()
        self._buffer = bytearray(MAX_RECORD)
        self._view = memoryview(self._buffer)
        self._fdsize = socket.CMSG_SPACE(_MAX_FDS * 4)

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, message: tuple[Any, ...], fds: Sequence[int] = ()) -> None:
        """Send one message; raises OSError (BrokenPipeError...) if the peer is gone."""
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        if len(data) > MAX_RECORD:
            fd = new_memfd("tritonlite-python-message", len(data))
            try:
                with mmap.mmap(fd, len(data)) as mm:
                    mm[:] = data
                with self._lock:
                    socket.send_fds(
                        self.sock,
                        [pickle.dumps((_BIG, len(data), len(fds)))],
                        [fd, *fds],
                    )
            finally:
                os.close(fd)
            return
        with self._lock:
            if fds:
                socket.send_fds(self.sock, [data], list(fds))
            else:
                self.sock.send(data)

    def recv(self) -> tuple[tuple[Any, ...], list[int]]:
        """The next message and the fds that came with it; EOFError when the peer is gone."""
        try:
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
        if flags & _TRUNCATED:
            for fd in fds:
                os.close(fd)
            raise OSError("tritonlite python backend: a control message was truncated")
        message = pickle.loads(self._view[:n])
        if message[0] == _BIG:
            _, size, _count = message
            fd, fds = fds[0], fds[1:]
            try:
                with mmap.mmap(fd, size, prot=mmap.PROT_READ) as mm:
                    message = pickle.loads(mm[:size])
            finally:
                os.close(fd)
        return message, fds

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
