"""Waiting threads spin only with a CPU to spare (csrc/util/spin_wait.h, issue #20).

The choice is made once per process, so each case runs in a fresh interpreter: pinned to one
CPU (taskset) it never spins, with two or more CPUs it spins 50 µs, and TRITONLITE_SPIN_US
overrides both; an invalid value stops the server at start with a message naming the variable.
The cgroup quota parsing is covered by the C++ unit tests (tests/cpp: spin_*).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

PROBE = "import tritonlite._core as c; print(c.spin_wait_ns(), c.cpu_budget())"


def probe(env: dict[str, str] | None = None, cpus: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", PROBE]
    if cpus is not None:
        cmd = ["taskset", "-c", cpus, *cmd]
    full_env = {k: v for k, v in os.environ.items() if k not in ("TRITONLITE_SPIN_US", "TRITONLITE_CPU_BUDGET")}
    full_env.update(env or {})
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=60)


def spin_and_budget(env: dict[str, str] | None = None, cpus: str | None = None) -> tuple[int, float]:
    out = probe(env, cpus)
    assert out.returncode == 0, out.stderr
    ns, budget = out.stdout.split()
    return int(ns), float(budget)


needs_taskset = pytest.mark.skipif(shutil.which("taskset") is None, reason="taskset not installed")
first_cpu = str(min(os.sched_getaffinity(0)))


@needs_taskset
def test_one_cpu_never_spins() -> None:
    assert spin_and_budget(cpus=first_cpu) == (0, 1.0)
    assert spin_and_budget({"TRITONLITE_SPIN_US": "auto"}, cpus=first_cpu) == (0, 1.0)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_two_cpus_spin_unless_a_quota_says_otherwise() -> None:
    ns, budget = spin_and_budget()
    assert ns == (50_000 if budget >= 2 else 0)


@needs_taskset
def test_environment_overrides_the_budget() -> None:
    assert spin_and_budget({"TRITONLITE_SPIN_US": "20"}, cpus=first_cpu)[0] == 20_000
    assert spin_and_budget({"TRITONLITE_SPIN_US": "0"})[0] == 0


@needs_taskset
def test_cpu_budget_override_decides_spinning() -> None:
    # TRITONLITE_CPU_BUDGET stands in for the measured budget (a cgroup quota the process
    # cannot see, a test of the one-CPU paths on a bigger machine).
    assert spin_and_budget({"TRITONLITE_CPU_BUDGET": "3"}, cpus=first_cpu) == (50_000, 3.0)
    assert spin_and_budget({"TRITONLITE_CPU_BUDGET": "0.5"}) == (0, 0.5)
    assert spin_and_budget({"TRITONLITE_CPU_BUDGET": "auto"}, cpus=first_cpu) == (0, 1.0)


@pytest.mark.parametrize("value", ["on", "-1", "2000000", "5us"])
def test_invalid_setting_is_refused_at_start(value: str) -> None:
    code = "from tritonlite import Server; Server()"
    env = {**os.environ, "TRITONLITE_SPIN_US": value}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode != 0
    assert (f"TRITONLITE_SPIN_US must be 'auto' or a whole number of microseconds from 0 to 1000000, "
            f"got '{value}'") in out.stderr  # fmt: skip
