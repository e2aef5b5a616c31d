"""How a thread waits for the next message of the stub round trip: a bounded spin, then a block.

This module owns the waiting policy of the two ``ctl`` receives on the hot path (the server's
worker waiting for DONE, the stub waiting for the next EXEC; ``ipc.Channel.recv``). Waking a
thread that sleeps in ``recvmsg`` costs a context switch on each side and, on a virtual machine,
tens of microseconds of wakeup latency (measured on the 2-core dev VM: p50 of a c=1 round trip
through the in-process Server 166 us blocking, 84 us spinning, issue #20). So a waiter that
expects its message soon polls the socket for a while with the GIL released
(``_core.spin_readable``) and blocks only if nothing came.

Spinning takes a CPU from whoever else could use it, so it happens only

* with a CPU to spare: ``_core.spin_wait_ns()`` is not zero (a budget of two or more CPUs,
  or ``TRITONLITE_SPIN_US`` set), never on a one-CPU budget (affinity or cgroup quota), where
  the process we wait for needs that very CPU;
* when the waits are short: each waiter keeps a moving average of how long its recent waits
  took and spins for at most twice that, and not at all once the average is over the cap
  (``SPIN_CAP_NS`` for the worker's wait for DONE, ``EXEC_SPIN_CAP_NS`` for the stub's wait
  for the next EXEC, or ``TRITONLITE_SPIN_US`` for both when set). A big batch that keeps the
  stub busy for milliseconds, or a model that is called now and then, is waited for asleep;
* when no other process needs the CPU: the budget says what the process may use, not what
  others leave idle. On a machine whose CPUs are busy (a load generator, other tenants), a
  spinner takes the CPU the very process it waits for needs (measured on the shared dev VM at
  a CPU pressure of 84%: c=1 p50 195-209 us blocking, 252-435 us spinning). So spinning stops
  while the *other* processes' CPU time over the last ``LOAD_WINDOW_S`` leaves fewer than
  ``MIN_FREE_CPUS`` of the machine's CPUs idle: the machine's busy time (``/proc/stat``) less
  this process's own (``os.times``) and that of the peer at the other end of the round trip
  (``/proc/<pid>/stat``: the stub for the worker, the server for the stub), each waiter reading
  them at most every ``LOAD_WINDOW_S``. Discounting the two ends of the round trip is the point:
  Linux's CPU pressure (``/proc/pressure/cpu``, "some") cannot tell a lone request's own
  threads and spinner (13-30% on two CPUs) from a busy loop on the other CPU (33-43%), so a
  threshold on it either shut the spin at c=1 or kept it on under foreign load (issue #20).
  The pressure over the same window still stops the spin above ``MAX_PRESSURE``, a backstop for
  a server whose own threads fill the CPUs (its clients elsewhere). A window longer than
  ``PRESSURE_STALE_S`` (the waits were rare) says nothing about now: that read only starts a
  new window. Where a file is missing, its signal is left out (neither: the budget decides
  alone).

A message that arrives after the spin is received by the blocking ``recvmsg`` as before: the
spin changes when a thread sleeps, never what it receives (a dead peer reads as EOF either
way).
"""

from __future__ import annotations

import os
import time

from ... import _core

__all__ = [
    "EXEC_SPIN_CAP_NS",
    "SPIN_CAP_NS",
    "SpinWait",
    "cpu_busy_ticks",
    "cpu_pressure",
    "cpu_stall_us",
    "process_ticks",
    "spin_cap_ns",
]

#: The longest spin of the worker's wait for DONE when TRITONLITE_SPIN_US is "auto" or unset
#: and the budget allows spinning (the stub's execute of a small batch: ~40-120 us at c=1).
SPIN_CAP_NS = 250_000
#: The same for the stub's wait for the next EXEC. At c=1 over gRPC that wait is the rest of
#: the round trip (the response out through the I/O thread, the client's next request in and
#: to the worker: ~230-350 us measured on the 2-core dev VM, issue #20), so under the 250 us
#: cap its average was over the cap and the stub never spun: every request paid a wakeup of
#: the sleeping stub (the worker's wait for DONE, p50 ~90-120 us, fell to ~40-75 us with the
#: stub spinning). It is the one waiter that spins while a lone request is away; the worker's
#: wait for DONE spins while the stub runs: one spinner at a time at c=1.
EXEC_SPIN_CAP_NS = 500_000
#: No spinning while the CPU pressure ("some", percent of the last window) is over this: the
#: backstop for a server whose own threads keep the CPUs busy (its load generator elsewhere).
#: Measured on the 2-core dev VM with perf_analyzer (issue #20): a c=1 python request's own
#: threads (client, I/O thread, worker, stub hopping between two CPUs) make 13-16% with no
#: other load, 23-30% while the stub spins; c=32 ~50%; a busy loop on one CPU 33-43%. At 30 (the
#: only gate until the foreign load below) the spin flickered off at c=1 in the windows where
#: its own threads went over 30; foreign load is now judged by ``MIN_FREE_CPUS``.
MAX_PRESSURE = 50.0
#: No spinning unless the other processes (all but this one and its peer) leave at least this
#: many CPUs idle over the last window: one for the spinner, and half of one for the thread it
#: waits for to share with the rest. On two CPUs: a c=1 perf_analyzer takes ~0.1-0.3 of a CPU
#: (spin on), a busy loop on one CPU 1.0 or a c=32 perf_analyzer ~1.0 (spin off).
MIN_FREE_CPUS = 1.5
#: The foreign-load window: each waiter re-reads the CPU times at most this often (the kernel
#: counts them in ticks of 10 ms: 0.2 s on two CPUs is 40 ticks, 0.025 CPU each).
LOAD_WINDOW_S = 0.2
#: The pressure window: each process re-reads the pressure at most this often.
PRESSURE_WINDOW_S = 0.1
#: A window longer than this is too old to judge the CPUs by (the waits were rare).
PRESSURE_STALE_S = 1.0
PRESSURE_FILE = "/proc/pressure/cpu"
STAT_FILE = "/proc/stat"
_TICKS_PER_S = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0

_now = time.perf_counter_ns
_spin_readable = _core.spin_readable


def _some_line(path: str | None) -> bytes | None:
    try:
        with open(path or PRESSURE_FILE, "rb") as f:
            return f.readline()
    except OSError:
        return None


def _field(line: bytes | None, name: bytes) -> float | None:
    if line is None:
        return None
    for field in line.split():
        if field.startswith(name):
            try:
                return float(field[len(name) :])
            except ValueError:
                return None
    return None


def cpu_pressure(path: str | None = None) -> float | None:
    """The "some avg10" CPU pressure in percent (a ~10 s moving average, for logs), None when
    unknown (no PSI: an older kernel, or one booted without it)."""
    return _field(_some_line(path), b"avg10=")


def cpu_stall_us(path: str | None = None) -> float | None:
    """The cumulative "some" CPU stall time in microseconds (``total=``), None when unknown."""
    return _field(_some_line(path), b"total=")


class _Pressure:
    """Whether the machine's CPUs are contended now: the "some" CPU stall share over the last
    window (re-read at most every PRESSURE_WINDOW_S)."""

    def __init__(self) -> None:
        self.busy = False
        self.next_check = 0.0
        self.last_at = 0.0  # monotonic time of the last read, 0: none yet
        self.last_total = 0.0
        self.share = 0.0  # percent of the last window, for tests and benchmarks

    def contended(self) -> bool:
        now = time.monotonic()
        if now >= self.next_check:
            self.next_check = now + PRESSURE_WINDOW_S
            self.update(now, cpu_stall_us())
        return self.busy

    def update(self, now: float, total: float | None) -> None:
        """Judge the window that ends at ``now`` with the cumulative stall ``total``."""
        if total is None:  # no PSI: the budget decides alone
            self.busy, self.last_at = False, 0.0
            return
        elapsed = now - self.last_at
        if self.last_at and elapsed <= PRESSURE_STALE_S and elapsed > 0:
            self.share = (total - self.last_total) / (elapsed * 1e4)  # us / (s * 1e6) * 100
            self.busy = self.share > MAX_PRESSURE
        # else: no window yet, or too old to say anything about now: keep the last verdict
        # for one more window (a first read: not contended).
        self.last_at, self.last_total = now, total


_PRESSURE = _Pressure()


def cpu_busy_ticks(path: str | None = None) -> int | None:
    """The machine's cumulative busy CPU time in clock ticks (``/proc/stat``'s "cpu" line: all
    but idle and iowait; steal counts as busy), None when unknown."""
    try:
        with open(path or STAT_FILE, "rb") as f:
            fields = f.readline().split()
        if len(fields) < 6 or fields[0] != b"cpu":
            return None
        ticks = [int(v) for v in fields[1:9]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal (guest time is inside user/nice)
    return sum(ticks) - ticks[3] - ticks[4]


def process_ticks(pid: int | None = None) -> int | None:
    """A process's cumulative CPU time (user + system, all its threads) in clock ticks, None
    when unknown (gone, or no /proc). ``pid`` None: this process."""
    if pid is None:
        t = os.times()
        return round((t.user + t.system) * _TICKS_PER_S)
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        fields = data[data.rindex(b")") + 2 :].split()
        return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    except (OSError, ValueError, IndexError):
        return None


class _ForeignLoad:
    """Whether other processes keep the CPUs busy: over the last window (re-read at most every
    LOAD_WINDOW_S), the machine's busy CPU time less this process's and its peer's."""

    __slots__ = ("busy", "cpus", "last", "last_at", "next_check")

    def __init__(self) -> None:
        self.busy = False
        self.next_check = 0.0
        self.last_at = 0.0  # monotonic time of the last read, 0: none yet
        self.last: tuple[int, int, int | None] = (0, 0, None)  # machine, ours, the peer's pid
        self.cpus = 0.0  # the other processes' CPUs in the last window (tests, benchmarks)

    def contended(self, peer: int | None) -> bool:
        now = time.monotonic()
        if now >= self.next_check:
            self.next_check = now + LOAD_WINDOW_S
            total = cpu_busy_ticks()
            own = process_ticks()
            peer_ticks = process_ticks(peer) if peer else 0
            if total is None or own is None or peer_ticks is None:
                self.update(now, None, 0, peer)
            else:
                self.update(now, total, own + peer_ticks, peer)
        return self.busy

    def update(self, now: float, total: int | None, ours: int, peer: int | None = None) -> None:
        """Judge the window that ends at ``now``: ``total`` the machine's busy ticks, ``ours``
        this process's plus those of ``peer`` (cumulative). ``total`` None: no verdict."""
        if total is None:
            self.busy, self.last_at = False, 0.0
            return
        elapsed = now - self.last_at
        if self.last_at and 0 < elapsed <= PRESSURE_STALE_S and peer == self.last[2]:
            foreign = (total - self.last[0]) - (ours - self.last[1])
            self.cpus = max(0, foreign) / (elapsed * _TICKS_PER_S)
            self.busy = (os.cpu_count() or 1) - self.cpus < MIN_FREE_CPUS
        # else: no window yet, too old (rare waits) or another peer (a restarted stub): keep
        # the last verdict for one more window (a first read: not contended).
        self.last_at, self.last = now, (total, ours, peer)


def spin_cap_ns(default_ns: int = SPIN_CAP_NS) -> tuple[int, bool]:
    """This process's cap and whether it was set explicitly: 0 (never spin) on a one-CPU
    budget or with TRITONLITE_SPIN_US=0, TRITONLITE_SPIN_US when set to a number (explicit),
    else ``default_ns`` (the waiter's own cap: SPIN_CAP_NS, EXEC_SPIN_CAP_NS)."""
    setting = os.environ.get("TRITONLITE_SPIN_US", "auto")
    if setting not in ("", "auto"):
        try:
            return int(setting) * 1000, True
        except ValueError:  # the server refuses it at start (_core.spin_wait_ns raises)
            return 0, True
    return (default_ns if _core.spin_wait_ns() > 0 else 0), False


class SpinWait:
    """One waiter's spin policy (one thread uses it: not thread-safe)."""

    __slots__ = ("average_ns", "cap_ns", "forced", "load", "peer", "spins")

    def __init__(
        self, cap_ns: int | None = None, forced: bool = False, default_ns: int = SPIN_CAP_NS
    ) -> None:
        if cap_ns is None:
            cap_ns, forced = spin_cap_ns(default_ns)
        self.cap_ns = cap_ns
        self.forced = forced  # spin whatever the CPU pressure (TRITONLITE_SPIN_US set)
        self.average_ns = 0  # moving average (1/8 weight for the newest) of recent waits
        self.spins = 0  # waits that spun (for tests and benchmarks)
        self.peer: int | None = None  # the pid at the other end (its CPU time is not foreign)
        self.load = _ForeignLoad()

    def next_spin_ns(self) -> int:
        """How long the next wait spins: up to twice the recent average; 0 over the cap or
        while the CPUs are contended."""
        average = self.average_ns
        if average > self.cap_ns or (
            not self.forced and (self.load.contended(self.peer) or _PRESSURE.contended())
        ):
            return 0
        return min(self.cap_ns, 2 * average + 10_000)

    def wait(self, fd: int) -> int:
        """Spin for ``fd`` to become readable (as ``next_spin_ns`` says); returns the start
        time to pass to ``done`` once the message was received."""
        start = _now()
        spin = self.next_spin_ns()
        if spin:
            self.spins += 1
            _spin_readable(fd, spin)
        return start

    def done(self, start: int) -> None:
        """The message came (after a spin or a block): remember how long the wait took."""
        self.average_ns += (_now() - start - self.average_ns) >> 3
