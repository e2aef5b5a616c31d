"""Stress: 1,000 concurrent requests for 30 s mixing good, oversized and timing-out requests.
Every request gets exactly one response or error; nothing crashes, deadlocks or leaks. And the
paths where the core calls a response sink or releases a Python object: never under a lock.

A deadlock in the core can hold the GIL, and then nothing in the process runs Python any more
(no asyncio timeout, no pytest-timeout): each scenario runs in a child process that arms
faulthandler's watchdog (its own C thread: it dumps every thread's stack and exits) and is killed
by the parent after a bound of its own."""

from __future__ import annotations

import asyncio
import ctypes
import faulthandler
import os
import random
import subprocess
import sys
import threading
import time
from typing import Any

import numpy as np
import pytest
from google.protobuf import text_format
from serving import SANITIZED

from tritonlite import Server, TritonError, _core
from tritonlite._proto import model_config_pb2 as mc

SECONDS = float(os.environ.get("TRITONLITE_STRESS_SECONDS", "30"))
CONCURRENCY = 1000

CONFIG = """
name: "stress" max_batch_size: 8
input [{ name: "IN" data_type: TYPE_FP32 dims: [ 4 ] }]
output [{ name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] }]
instance_group [{ count: 2 }]
dynamic_batching {
  max_queue_delay_microseconds: 500
  default_queue_policy { allow_timeout_override: true max_queue_size: 800 }
}
"""


class Doubler:
    def create_instance(self, index: int, kind: str, device_id: int) -> Doubler:
        return self

    def execute(self, inputs: dict[str, np.ndarray], names: list[str]) -> dict[str, Any]:
        x = inputs["IN"]
        if (x == 13).any():
            raise ValueError("unlucky input")
        return {"OUT": x * 2}

    def close(self) -> None:
        pass


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_child(scenario: str, *args: Any, timeout: float) -> str:
    """Runs ``scenario`` of this file in a child process; fails the test when it deadlocks (its
    watchdog fires, or it outlives ``timeout``), crashes or fails. Returns its stdout."""
    cmd = [sys.executable, __file__, scenario, *map(str, args)]
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{scenario}: no answer within {timeout} s (deadlock?):\n{e.stderr!r}"[-6000:])
    assert proc.returncode == 0, (
        f"{scenario}: deadlocked, crashed or failed (exit {proc.returncode}):\n{proc.stderr[-6000:]}"
    )
    return proc.stdout


def test_stress_mixed_traffic_every_request_answered_once() -> None:
    print(run_child("mixed-traffic", SECONDS, timeout=SECONDS + 120))


def mixed_traffic() -> None:
    faulthandler.dump_traceback_later(SECONDS + 60, exit=True)  # a deadlock fails, not hangs
    server = Server()
    server.add_model(text_format.Parse(CONFIG, mc.ModelConfig()), Doubler())
    counts = {"ok": 0, "invalid": 0, "timeout": 0, "full": 0, "backend": 0, "wrong": 0}
    issued = 0
    rss: list[float] = []

    async def client(seed: int, deadline: float) -> None:
        nonlocal issued
        rng = random.Random(seed)
        while time.monotonic() < deadline:
            kind = rng.random()
            rows = rng.randint(1, 4)
            value = float(rng.randint(0, 12))
            timeout_us = 0
            if kind < 0.1:
                rows = 9  # over max_batch_size
            elif kind < 0.3:
                timeout_us = rng.choice([1, 50, 200])  # likely to time out in the queue
            elif kind < 0.35:
                value = 13.0  # the backend raises for this batch
            x = np.full((rows, 4), value, dtype=np.float32)
            issued += 1
            try:
                out = await server.infer_async("stress", {"IN": x}, timeout_us=timeout_us)
            except TritonError as e:
                if "batch-size must be <=" in e.message:
                    counts["invalid"] += 1
                elif "timeout" in e.message:
                    counts["timeout"] += 1
                elif "maximum queue size" in e.message:
                    counts["full"] += 1
                elif "unlucky" in e.message:
                    counts["backend"] += 1
                else:
                    raise
                continue
            if out["OUT"].shape != x.shape or not (out["OUT"] == 2 * value).all():
                counts["wrong"] += 1
            else:
                counts["ok"] += 1

    async def main() -> None:
        warm = time.monotonic() + min(3.0, SECONDS / 5)
        await asyncio.gather(*[client(i, warm) for i in range(CONCURRENCY)])
        rss.append(rss_mb())
        deadline = time.monotonic() + SECONDS
        await asyncio.gather(*[client(i + CONCURRENCY, deadline) for i in range(CONCURRENCY)])
        rss.append(rss_mb())
        completions = server._completions(asyncio.get_running_loop())
        assert completions.pending == {}
        assert completions.unmatched == 0

    asyncio.run(main())
    stats = server.statistics("stress")[0]
    server.close()
    faulthandler.cancel_dump_traceback_later()
    answered = sum(counts.values())
    print(
        f"\nstress: {issued} requests in {SECONDS:.0f}s: {counts}; rss {rss[0]:.0f}->{rss[1]:.0f} MB"
    )
    assert answered == issued
    assert counts["wrong"] == 0
    assert counts["ok"] > 1000 and counts["invalid"] > 0 and counts["backend"] > 0
    assert counts["timeout"] + counts["full"] > 0
    assert stats["inference_stats"]["success"]["count"] == counts["ok"]
    assert SANITIZED or rss[1] - rss[0] < 64, (
        f"memory grew {rss[1] - rss[0]:.0f} MB under steady load"
    )


SLOW = """
name: "slow" max_batch_size: 4
input [{ name: "IN" data_type: TYPE_FP32 dims: [ 4 ] }]
output [{ name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] }]
dynamic_batching { default_queue_policy { default_timeout_microseconds: 300 } }
"""


class SlowDoubler(Doubler):
    def execute(self, inputs: dict[str, np.ndarray], names: list[str]) -> dict[str, Any]:
        time.sleep(0.001)  # requests queue behind it and time out there
        return super().execute(inputs, names)


def closed_loop_with_queue_timeouts(seconds: float) -> None:
    faulthandler.dump_traceback_later(30 + seconds, exit=True)
    server = Server()
    server.add_model(text_format.Parse(SLOW, mc.ModelConfig()), SlowDoubler())
    x = np.ones((1, 4), np.float32)
    result = _core.closed_loop(server.get_model("slow").runner, {"IN": x}, 16, seconds)
    server.close()
    faulthandler.cancel_dump_traceback_later()
    print(f"completed {result['completed']} timed out {result['errors']}")
    assert result["completed"] > 0 and result["errors"] > 0


def test_a_sink_that_resubmits_when_a_request_times_out_in_the_queue() -> None:
    """The dynamic batcher failed timed-out requests while holding its lock. A sink that
    answers by queueing the next request (the core's closed-loop load generator does) then
    waited for that same lock: the worker deadlocked on the first queue timeout."""
    run_child("closed-loop-timeouts", 2, timeout=90)


OWNER = """
name: "owner" max_batch_size: 0
input [{ name: "IN" data_type: TYPE_FP32 dims: [ 4 ] }]
output [{ name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] }]
"""


class AnswersFromThreads:
    """Per-request execution (as the python backend): each request is answered on a thread of
    its own while another thread keeps reading the request's state (``finished``, inputs)."""

    per_request_execution = True

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []

    def create_instance(self, index: int, kind: str, device_id: int) -> AnswersFromThreads:
        return self

    def execute_requests(self, requests: list[Any]) -> None:
        for r in requests:
            done = threading.Event()

            def watch(r: Any = r, done: threading.Event = done) -> None:
                while not done.is_set() and not r.finished:
                    r.inputs()

            def answer(r: Any = r, done: threading.Event = done) -> None:
                x = dict(r.inputs())["IN"].numpy()
                r.respond({"OUT": x * 2})  # the outputs are Python's: released by the sink
                done.set()

            for target in (watch, answer):
                thread = threading.Thread(target=target, daemon=True)
                thread.start()
                self.threads.append(thread)

    def close(self) -> None:
        pass


def owned_request_answers_over_native_grpc(count: int) -> None:
    import tritonclient.grpc as grpcclient
    from tritonlite.frontends.grpc_native import start_native_grpc

    stall = 20.0  # seconds without an answer: a deadlock (re-armed on every answer)
    faulthandler.dump_traceback_later(stall, exit=True)
    server = Server()
    backend = AnswersFromThreads()
    server.add_model(text_format.Parse(OWNER, mc.ModelConfig()), backend)
    loop = asyncio.new_event_loop()
    loop_thread = threading.Thread(target=loop.run_forever, daemon=True)
    loop_thread.start()
    frontend = asyncio.run_coroutine_threadsafe(
        start_native_grpc(server, "127.0.0.1", 0), loop
    ).result(30)
    x = np.arange(4, dtype=np.float32)

    def client() -> None:
        c = grpcclient.InferenceServerClient(f"127.0.0.1:{frontend.port}")
        inp = grpcclient.InferInput("IN", [4], "FP32")
        inp.set_data_from_numpy(x)
        for _ in range(count):
            assert (c.infer("owner", [inp]).as_numpy("OUT") == 2 * x).all()
            faulthandler.dump_traceback_later(stall, exit=True)
        c.close()

    clients = [threading.Thread(target=client) for _ in range(4)]
    for t in clients:
        t.start()
    for t in clients:
        t.join()
    asyncio.run_coroutine_threadsafe(frontend.stop(1.0), loop).result(30)
    server.close()
    # Nothing of ours may still run when the interpreter finalizes: a thread that wants the
    # GIL then is ended by pthread_exit, which aborts when it unwinds through C++.
    for thread in backend.threads:
        thread.join(30)
    loop.call_soon_threadsafe(loop.stop)
    loop_thread.join(30)
    faulthandler.cancel_dump_traceback_later()
    print(f"answered {4 * count}")


def test_owned_request_answered_while_another_thread_reads_it() -> None:
    """A python_backend-style request sent its response to the sink while holding the request's
    lock; the native gRPC sink releases the (Python-owned) outputs and takes the GIL there,
    while another Python thread held the GIL waiting for that lock in ``request.finished``."""
    run_child("owned-request-threads", 150, timeout=120)


# ---- batch gathering ---------------------------------------------------------------------------


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p), ("device", _DLDevice), ("ndim", ctypes.c_int32),
        ("dtype", _DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64),
    ]  # fmt: skip


class _DLManagedTensor(ctypes.Structure):
    _fields_ = [("dl_tensor", _DLTensor), ("manager_ctx", ctypes.c_void_p),
                ("deleter", ctypes.c_void_p)]  # fmt: skip


class LabelledCuda:
    """A DLPack producer that labels host memory as CUDA device 0 (no GPU needed): what the
    server does with a device tensor, without touching device memory."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = np.ascontiguousarray(array, np.float32)
        self.shape = (ctypes.c_int64 * self.array.ndim)(*self.array.shape)
        self.managed = _DLManagedTensor()  # no deleter: this object owns the memory
        t = self.managed.dl_tensor
        t.data = self.array.ctypes.data
        t.device = _DLDevice(2, 0)  # kDLCUDA
        t.ndim = self.array.ndim
        t.dtype = _DLDataType(2, 32, 1)  # float32
        t.shape = self.shape

    def __dlpack__(self, **kwargs: Any) -> Any:
        new = ctypes.pythonapi.PyCapsule_New
        new.restype = ctypes.py_object
        new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
        return new(ctypes.addressof(self.managed), b"dltensor", None)

    def __dlpack_device__(self) -> tuple[int, int]:
        return (2, 0)


BATCHING = """
name: "batching" max_batch_size: 4
input [{ name: "IN" data_type: TYPE_FP32 dims: [ 4 ] }]
output [{ name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] }]
dynamic_batching { max_queue_delay_microseconds: 300000 }
"""


class RecordsBatches:
    def __init__(self) -> None:
        self.seen: list[tuple[tuple[int, ...], bool]] = []

    def create_instance(self, index: int, kind: str, device_id: int) -> RecordsBatches:
        return self

    def execute(self, inputs: dict[str, Any], names: list[str]) -> dict[str, Any]:
        x = inputs["IN"]
        on_host = isinstance(x, np.ndarray)
        self.seen.append((tuple(x.shape), on_host))
        return {"OUT": np.zeros((x.shape[0], 4), np.float32)}

    def close(self) -> None:
        pass


def test_device_tensors_are_never_gathered_on_the_host() -> None:
    """Gathering a batch copies every request's tensor with a host memcpy: a device (GPU)
    tensor there is read as host memory. Requests with device tensors now run one at a time,
    the backend getting each tensor as it came (and ConcatRows refuses a device part)."""
    server = Server()
    backend = RecordsBatches()
    server.add_model(text_format.Parse(BATCHING, mc.ModelConfig()), backend)
    keep = [LabelledCuda(np.full((1, 4), i, np.float32)) for i in range(3)]

    async def main() -> None:
        await asyncio.gather(*[server.infer_async("batching", {"IN": k}) for k in keep])
        host = np.ones((1, 4), np.float32)
        await asyncio.gather(*[server.infer_async("batching", {"IN": host}) for _ in range(2)])

    try:
        asyncio.run(main())
    finally:
        server.close()
    device_batches = [s for s in backend.seen if not s[1]]
    host_batches = [s for s in backend.seen if s[1]]
    assert device_batches == [((1, 4), False)] * 3, backend.seen
    assert host_batches == [((2, 4), True)], backend.seen  # host tensors still batch


if __name__ == "__main__":
    scenario = sys.argv[1]
    if scenario == "mixed-traffic":
        SECONDS = float(sys.argv[2])
        mixed_traffic()
    elif scenario == "closed-loop-timeouts":
        closed_loop_with_queue_timeouts(float(sys.argv[2]))
    elif scenario == "owned-request-threads":
        owned_request_answers_over_native_grpc(int(sys.argv[2]))
