"""Request cancellation for models in stub processes: the cancel board behind ``is_cancelled()``.

This module owns the board of one stub process and the allocation of its slots. A board is a
sealed memfd of 4-byte words, one per slot. The server's core maps it (``_core.CancelBoard``) and
each request sent to the stub mirrors its cancel flag into a slot of its own
(``Request.mirror_cancel``): when the request is cancelled the core stores 1 there, at once and
without Python. The stub maps the board read-only (``map_board``) and a request's
``is_cancelled()`` is one atomic load of its slot (``stub._StubResponder.cancelled``): no message,
no round trip.

Lifetime of a slot (``CancelSlots``): taken when the request goes out in an EXEC (its number
travels in the request's tuple; the stub checks it is in range), given back when the server is
done with the request: its final response (in DONE, or later by a response sender of a
decoupled model), a failed or rejected batch, the stub's crash, or an unload. Giving it back
first ends the mirror (``Request.unmirror_cancel``: it stores 0, and after it returns the core
never writes that slot for that request again), so a reused slot starts at 0. The stub stops
reading a slot before it sends the request's final response: from then on ``is_cancelled()``
gives the value read at that moment (``stub._StubResponder.freeze``), so a slot the server hands to
another request is never read for the old one.

Why it does not run out in practice: a board has ``BOARD_SLOTS`` (2**20) slots, one per request
the stub holds at once (in the batch it executes, or, for a decoupled model, still streaming
responses after execute returned), and a million requests held by one instance at once is
beyond any real load. The memfd is sparse: 4 MiB of address space in each process, of which
only the pages of slots ever used take memory, and a freed slot is reused before a new one is
touched, so that is 4 bytes for each request of the most held at once. Should a stub hold more
anyway, a further request runs without a slot: its ``is_cancelled()`` stays False (logged
once). The count of slots in use is exact, not a high-water mark: every way a request leaves
``process.StubInstance.pending`` frees its slot.

The stub gets the board through a read-only fd (reopened through /proc; a plain duplicate
where there is no /proc) and maps it read-only. A stub that wrote it anyway would change only
what its own model reads: the server never reads the board. A restarted stub gets a fresh board; the old one is unmapped when the last
request mirroring into it is done.
"""

from __future__ import annotations

import logging
import mmap
import os
import threading
from typing import Any

from .memfd import map_received, new_memfd

__all__ = ["BOARD_SLOTS", "NO_SLOT", "SLOT_BYTES", "CancelSlots", "map_board"]

_log = logging.getLogger("tritonlite.python")

#: Slots per stub process: requests the stub can hold at once with their cancellation visible.
BOARD_SLOTS = 1 << 20
#: The most slots a board may have (the core's limit too: 64 MiB of address space).
MAX_SLOTS = 1 << 24
#: Bytes per slot: one uint32 (0: not cancelled, 1: cancelled).
SLOT_BYTES = 4
#: The slot of a request that has none (its is_cancelled() stays False).
NO_SLOT = -1


class CancelSlots:
    """The server's side of one stub's cancel board: the core's mapping of it and its free
    slots. ``mirror`` and ``release`` may be called from any thread."""

    def __init__(self, slots: int = BOARD_SLOTS, name: str = "") -> None:
        from ... import _core

        if not 0 < slots <= MAX_SLOTS:
            raise ValueError(f"a cancel board has between 1 and {MAX_SLOTS} slots, not {slots}")
        self.slots = slots
        self.name = name  # for the log
        fd = new_memfd("tritonlite-python-cancel", slots * SLOT_BYTES)
        try:
            self.board = _core.CancelBoard(fd, slots)  # its own mapping: fd may be closed
            self.stub_fd = _read_only(fd)
        finally:
            os.close(fd)
        self._free: list[int] = []  # given back, reused last-freed first
        self._next = 0  # slots from here on were never used (their pages never touched)
        self._lock = threading.Lock()
        self._warned = False

    def close_stub_fd(self) -> None:
        """The stub has its fd (or will never start): close ours."""
        if self.stub_fd >= 0:
            os.close(self.stub_fd)
            self.stub_fd = -1

    @property
    def in_use(self) -> int:
        """Slots taken and not given back."""
        with self._lock:
            return self._next - len(self._free)

    def mirror(self, request: Any) -> int:
        """Take a slot for ``request`` (a core Request) and mirror its cancel flag into it; the
        slot, or NO_SLOT when every slot is taken."""
        with self._lock:
            if self._free:
                slot = self._free.pop()
            elif self._next < self.slots:
                slot = self._next
                self._next += 1
            else:
                slot = NO_SLOT
        if slot == NO_SLOT:
            if not self._warned:
                self._warned = True
                _log.warning(
                    "model instance '%s': all %d cancel slots of its stub are taken; requests "
                    "over that run without is_cancelled()",
                    self.name,
                    self.slots,
                )
            return NO_SLOT
        try:
            request.mirror_cancel(self.board, slot)
        except BaseException:
            with self._lock:
                self._free.append(slot)
            raise
        return slot

    def release(self, request: Any, slot: int) -> None:
        """The server is done with ``request``: end its mirror and free its slot."""
        if slot == NO_SLOT:
            return
        request.unmirror_cancel()  # stores 0; the core never writes the slot for it again
        with self._lock:
            self._free.append(slot)


def _read_only(fd: int) -> int:
    """A new fd to the memfd ``fd`` opened read-only (so the stub cannot map it writable), or a
    plain duplicate where /proc is not there to reopen it through."""
    try:
        return os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return os.dup(fd)


def map_board(fd: int, slots: int) -> mmap.mmap:
    """In the stub: map the board the server passed (``fd`` is closed here). ValueError if
    ``slots`` is out of range or ``fd`` is not a sealed memfd big enough for them."""
    try:
        if not 0 < slots <= MAX_SLOTS:
            raise ValueError(f"a cancel board of {slots} slots (the limit is {MAX_SLOTS})")
        return map_received(fd, slots * SLOT_BYTES, writable=False)
    finally:
        os.close(fd)
