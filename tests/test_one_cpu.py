"""The native gRPC I/O thread runs ready batches itself (issue #20).

With a CPU budget below two (util/spin_wait.h: affinity, cgroup quota, or TRITONLITE_CPU_BUDGET),
the I/O thread that read a batch's requests runs the batch on an idle instance and writes the
responses in the same pass, instead of waking the instance's thread and being woken back (two
wakeups and two context switches per batch on a core both threads share). Only for backends
that may run on any thread (``runs_on_any_thread``: onnxruntime, the python backend's stub
mode); everything else, and anything that is not ready yet (a queue delay), still goes to the
instance's thread. A python (per-request) model's batches run there on any budget, but only
while its recent batches were short (``TRITONLITE_INLINE_BATCH_US``, default 500 us): its
worker only relays them to the stub process. ``TRITONLITE_INLINE_BATCHES=0`` switches it off
(``1``: all batches at any budget).

The budget is decided once per process, so each case runs a server in a child process (in-process
``Server`` and native gRPC frontend, tritonclient in the same child) and reports what it saw:
which thread ran each model's batches (its /proc name: ``grpc-io-0`` for the I/O thread,
``inst:<model>`` for an instance's own), the
answers, and the statistics.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("tritonclient.grpc")

HERE = Path(__file__).resolve().parent

CHILD = r'''
import asyncio, json, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
from google.protobuf import text_format

sys.path.insert(0, sys.argv[2])
from models import make_add_sub_onnx, serve_python_model
from tritonlite import Server, _core
from tritonlite._proto import model_config_pb2 as mc
from tritonlite.backends import onnxruntime as ort
from tritonlite.frontends.grpc_native import start_native_grpc

CONFIG = """name: "{name}" max_batch_size: 8
input [{{name: "IN" data_type: TYPE_INT32 dims: [4]}}]
output [{{name: "OUT" data_type: TYPE_INT32 dims: [4]}}]
dynamic_batching {{ {batching} }}"""

def thread_name():
    with open(f"/proc/self/task/{threading.get_native_id()}/comm") as f:
        return f.read().strip()

class Recorder:
    """OUT = 2 * IN; records the thread each batch ran on and the batch sizes."""
    def __init__(self, any_thread):
        self.any_thread = any_thread
        self.threads = set()
        self.batches = []
    def create_instance(self, index, kind, device_id):
        owner = self
        class Instance:
            runs_on_any_thread = owner.any_thread
            def execute(self, inputs, names):
                owner.threads.add(thread_name())
                owner.batches.append(int(inputs["IN"].shape[0]))
                return {"OUT": inputs["IN"] * 2}
            def close(self):
                pass
        return Instance()
    def close(self):
        pass

class Flooder:
    """OUT = 2 * IN (max_batch_size 1: a batch per request). Its request 999, running, queues
    six more in-process (other threads) and waits until they are queued: those arrive while
    the I/O thread runs a batch, and are a worker's, not the I/O thread's."""
    def __init__(self):
        self.server = None
        self.ran = []  # (value, thread)
        self.flood = []
    def create_instance(self, index, kind, device_id):
        owner = self
        class Instance:
            runs_on_any_thread = True
            def execute(self, inputs, names):
                value = int(inputs["IN"][0, 0])
                owner.ran.append((value, thread_name()))
                if value == 999:
                    for i in range(1, 7):
                        t = threading.Thread(target=owner.server.infer, args=(
                            "flood", {"IN": np.full((1, 4), i, dtype=np.int32)}))
                        t.start()
                        owner.flood.append(t)
                    time.sleep(0.5)
                return {"OUT": inputs["IN"] * 2}
            def close(self):
                pass
        return Instance()
    def close(self):
        pass

def main():
    work = Path(sys.argv[1])
    server = Server()
    flooder = Flooder()
    flooder.server = server
    server.add_model(text_format.Parse(CONFIG.format(name="flood", batching="").replace(
        "max_batch_size: 8", "max_batch_size: 1"), mc.ModelConfig()), flooder)
    recorders = {"any": Recorder(True), "own": Recorder(False),
                 "delayed": Recorder(True)}
    batching = {"any": "", "own": "", "delayed": "max_queue_delay_microseconds: 300000"}
    for name, rec in recorders.items():
        config = text_format.Parse(CONFIG.format(name=name, batching=batching[name]), mc.ModelConfig())
        server.add_model(config, rec)
    version_dir = work / "add_sub" / "1"
    make_add_sub_onnx(version_dir / "model.onnx", "INT32")
    config = text_format.Parse("""name: "add_sub" max_batch_size: 64
        input [{name: "INPUT0" data_type: TYPE_INT32 dims: [16]},
               {name: "INPUT1" data_type: TYPE_INT32 dims: [16]}]
        output [{name: "OUTPUT0" data_type: TYPE_INT32 dims: [16]},
                {name: "OUTPUT1" data_type: TYPE_INT32 dims: [16]}]
        dynamic_batching { }""", mc.ModelConfig())
    server.add_model(config, ort.create_backend(config, version_dir.parent, version_dir))
    # Python models in stub processes (no queue delay: a batch is ready when read); the thread
    # that runs each batch (that calls the instance's execute_requests) is recorded in order.
    # py_slow's batches take 0.6 s (a sleep on that thread): never short.
    py_threads = {}
    HOLD = {}  # model -> a delay for its next batch only
    no_delay = ("dynamic_batching { max_queue_delay_microseconds: 2000 }", "dynamic_batching { }")
    for name, delay in (("py_fast", 0.0), ("py_slow", 0.6)):
        backend = serve_python_model(server, work / "py", "add_sub", "stub", name=name,
                                     replace=no_delay)
        instance = backend.instances[0]
        seen = []
        def wrapped(requests, run=instance.execute_requests, seen=seen, delay=delay, name=name):
            seen.append((thread_name(), len(requests)))
            delay = delay or HOLD.pop(name, 0.0)
            if delay:
                time.sleep(delay)
            return run(requests)
        instance.execute_requests = wrapped
        py_threads[name] = seen

    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    frontend = asyncio.run_coroutine_threadsafe(
        start_native_grpc(server, "127.0.0.1", 0), loop).result(60)
    url = f"127.0.0.1:{frontend.port}"
    report = {"runs_batches_inline": _core.runs_batches_inline(), "cpu_budget": _core.cpu_budget(),
              "inline_batches": _core.inline_batches()}

    def one(model, i):
        client = grpcclient.InferenceServerClient(url)
        x = np.full((1, 4), i, dtype=np.int32)
        t = grpcclient.InferInput("IN", [1, 4], "INT32")
        t.set_data_from_numpy(x)
        out = client.infer(model, [t]).as_numpy("OUT")
        client.close()
        return bool((out == 2 * x).all())

    with ThreadPoolExecutor(8) as pool:
        for model in ("any", "own"):
            # A model's first request starts its instance's thread, which runs it (the I/O
            # thread runs batches only on an instance that is serving): recorded from here on.
            one(model, 0)
            recorders[model].threads.clear()
            recorders[model].batches.clear()
            report[model + "_correct"] = all(pool.map(lambda i: one(model, i), range(40)))
        one("flood", 0)  # starts its instance's thread
        report["flood_trigger"] = one("flood", 999)
        for t in flooder.flood:
            t.join(60)
        report["flood_threads"] = sorted({name for v, name in flooder.ran if 1 <= v <= 6})
        report["flood_ran"] = sorted(v for v, _ in flooder.ran if 1 <= v <= 6)
        t0 = time.monotonic()
        report["delayed_correct"] = all(pool.map(lambda i: one("delayed", i), range(4)))
        report["delayed_s"] = time.monotonic() - t0

    # add_sub (onnxruntime): many in flight on one connection, every answer right.
    client = grpcclient.InferenceServerClient(url)
    rng = np.random.default_rng(0)
    pending, results = [], []
    done = threading.Semaphore(0)
    for i in range(200):
        a = rng.integers(-100, 100, (1, 16), dtype=np.int32)
        b = rng.integers(-100, 100, (1, 16), dtype=np.int32)
        inputs = [grpcclient.InferInput("INPUT0", [1, 16], "INT32"),
                  grpcclient.InferInput("INPUT1", [1, 16], "INT32")]
        inputs[0].set_data_from_numpy(a)
        inputs[1].set_data_from_numpy(b)
        def callback(result, error, a=a, b=b):
            results.append(error is None and (result.as_numpy("OUTPUT0") == a + b).all()
                           and (result.as_numpy("OUTPUT1") == a - b).all())
            done.release()
        client.async_infer("add_sub", inputs, callback)
    for _ in range(200):
        done.acquire(timeout=60)
    report["add_sub_correct"] = len(results) == 200 and all(results)
    stats = client.get_inference_statistics("add_sub", as_json=True)["model_stats"][0]
    report["add_sub_inferences"] = int(stats["inference_count"])
    report["add_sub_executions"] = int(stats["execution_count"])

    # The python models: one request at a time on one connection.
    for name, count in (("py_fast", 30), ("py_slow", 3)):
        ok = True
        for i in range(count):
            a = np.full((1, 4), i, np.float32)
            b = np.full((1, 4), 0.5, np.float32)
            ins = [grpcclient.InferInput("INPUT0", [1, 4], "FP32"),
                   grpcclient.InferInput("INPUT1", [1, 4], "FP32")]
            ins[0].set_data_from_numpy(a)
            ins[1].set_data_from_numpy(b)
            res = client.infer(name, ins)
            ok = ok and bool((res.as_numpy("OUTPUT0") == a + b).all()
                             and (res.as_numpy("OUTPUT1") == a - b).all())
        report[name + "_correct"] = ok
        report[name + "_threads"] = [t for t, _ in py_threads[name]]

    # A stream, not lone requests: one py_fast batch held 0.3 s while four more requests come
    # (they wait, and form one batch of four), then one request alone.
    def fast(i):
        c = grpcclient.InferenceServerClient(url)
        a = grpcclient.InferInput("INPUT0", [1, 4], "FP32")
        b = grpcclient.InferInput("INPUT1", [1, 4], "FP32")
        a.set_data_from_numpy(np.full((1, 4), i, np.float32))
        b.set_data_from_numpy(np.zeros((1, 4), np.float32))
        out = c.infer("py_fast", [a, b]).as_numpy("OUTPUT0")
        c.close()
        return bool((out == i).all())
    before = len(py_threads["py_fast"])
    HOLD["py_fast"] = 0.3
    with ThreadPoolExecutor(5) as pool:
        held = pool.submit(fast, 100)
        time.sleep(0.1)
        rest = list(pool.map(fast, range(101, 105)))
        report["stream_correct"] = held.result() and all(rest)
    report["stream_correct"] = report["stream_correct"] and fast(105)
    report["stream_batches"] = py_threads["py_fast"][before:]
    client.close()

    for name, rec in recorders.items():
        report[name + "_threads"] = sorted(rec.threads)
        report[name + "_batches"] = rec.batches
    asyncio.run_coroutine_threadsafe(frontend.stop(1.0), loop).result(60)
    server.close()
    loop.call_soon_threadsafe(loop.stop)
    print("REPORT " + json.dumps(report), flush=True)

main()
'''


def run_child(tmp_path: Path, budget: str, extra: dict[str, str] | None = None) -> dict[str, Any]:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "TRITONLITE_CPU_BUDGET": budget}
    env.pop("TRITONLITE_SPIN_US", None)
    env.pop("TRITONLITE_INLINE_BATCHES", None)
    env.update(extra or {})
    out = subprocess.run([sys.executable, str(script), str(tmp_path), str(HERE)], capture_output=True,
                         text=True, env=env, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-4000:]
    line = next(x for x in out.stdout.splitlines() if x.startswith("REPORT "))
    return json.loads(line.removeprefix("REPORT "))


def test_one_cpu_runs_ready_batches_on_the_io_thread(tmp_path: Path) -> None:
    r = run_child(tmp_path, "1")
    assert r["runs_batches_inline"] and r["cpu_budget"] == 1.0
    assert r["any_correct"] and r["own_correct"] and r["delayed_correct"] and r["add_sub_correct"]
    # A backend that may run on any thread: its batches ran on the I/O thread.
    assert r["any_threads"] == ["grpc-io-0"], r
    # One that may not: on its instance's own thread (named after the model), never the I/O thread.
    assert r["own_threads"] == ["inst:own"], r
    # A batch waiting for its queue delay is not ready when its requests are read: the
    # instance's thread waits the delay out and runs the four requests as one batch.
    assert r["delayed_threads"] == ["inst:delayed"], r
    assert r["delayed_batches"] == [4] and r["delayed_s"] >= 0.25, r
    # Requests queued by other threads while the I/O thread runs a batch are not its to run
    # (it runs what was pending when it started, then gets back to its connections): they
    # run on the instance's thread.
    assert r["flood_trigger"] and r["flood_ran"] == [1, 2, 3, 4, 5, 6], r
    assert r["flood_threads"] == ["inst:flood"], r
    # Statistics count every request and batch as on the instance's thread.
    assert r["add_sub_inferences"] == 200
    assert 1 <= r["add_sub_executions"] <= 200
    # A python model whose batches are long stays on its instance's thread even here: the I/O
    # thread's other connections would wait for it.
    assert r["py_slow_correct"] and r["py_slow_threads"] == ["inst:py_slow"] * 3, r
    assert r["py_fast_correct"], r


def test_two_cpus_run_short_python_batches_on_the_io_thread(tmp_path: Path) -> None:
    # 0.5 s is "short" here, so that the stub round trip qualifies however loaded the machine
    # is; py_slow's 0.6 s batches do not.
    r = run_child(tmp_path, "2", {"TRITONLITE_INLINE_BATCH_US": "500000"})
    assert not r["runs_batches_inline"] and r["inline_batches"] == "short", r
    assert r["py_fast_correct"] and r["py_slow_correct"], r
    # The first batch runs on the instance's thread (nothing is known of its length yet), the
    # rest on the I/O thread that read them: no hand-off to the worker, no wakeup back.
    assert r["py_fast_threads"] == ["inst:py_fast"] + ["grpc-io-0"] * 29, r
    assert r["py_slow_threads"] == ["inst:py_slow"] * 3, r
    # In a stream the worker batches the requests, and the next lone one stays there too (the
    # model's recent batches held more than one request): single-request batches run on the
    # I/O thread would break up the worker's batches.
    assert r["stream_correct"], r
    assert r["stream_batches"] == [["grpc-io-0", 1], ["inst:py_fast", 4], ["inst:py_fast", 1]], r
    # Gathered batches (onnxruntime, custom backends) stay on their instances' threads with
    # two CPUs: there the I/O thread keeps reading while the worker runs.
    assert r["any_threads"] == ["inst:any"], r
    assert r["add_sub_correct"] and r["add_sub_inferences"] == 200


def test_inline_batches_0_keeps_python_batches_on_the_instance_thread(tmp_path: Path) -> None:
    r = run_child(tmp_path, "2", {"TRITONLITE_INLINE_BATCHES": "0",
                                  "TRITONLITE_INLINE_BATCH_US": "500000"})  # fmt: skip
    assert r["inline_batches"] == "none", r
    assert r["py_fast_correct"] and r["py_fast_threads"] == ["inst:py_fast"] * 30, r


def test_two_cpus_hand_batches_to_the_instance_thread(tmp_path: Path) -> None:
    r = run_child(tmp_path, "2")
    assert not r["runs_batches_inline"] and r["cpu_budget"] == 2.0
    assert r["inline_batches"] == "short"
    assert r["py_slow_threads"] == ["inst:py_slow"] * 3, r
    assert r["any_correct"] and r["own_correct"] and r["add_sub_correct"]
    assert r["any_threads"] == ["inst:any"], r
    assert r["add_sub_inferences"] == 200


def test_inline_batches_can_be_switched_off_on_one_cpu(tmp_path: Path) -> None:
    r = run_child(tmp_path, "1", {"TRITONLITE_INLINE_BATCHES": "0"})
    assert not r["runs_batches_inline"] and r["cpu_budget"] == 1.0
    assert r["any_correct"] and r["add_sub_correct"]
    assert r["any_threads"] == ["inst:any"], r


def test_invalid_inline_setting_is_refused_at_start() -> None:
    env = {**os.environ, "TRITONLITE_INLINE_BATCHES": "yes"}
    out = subprocess.run([sys.executable, "-c", "from tritonlite import Server; Server()"],
                         capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert out.returncode != 0
    assert "TRITONLITE_INLINE_BATCHES must be 'auto', '0' or '1', got 'yes'" in out.stderr


@pytest.mark.parametrize("value", ["-1", "1.5", "lots", "10000001"])
def test_invalid_inline_batch_us_is_refused_at_start(value: str) -> None:
    env = {**os.environ, "TRITONLITE_INLINE_BATCH_US": value}
    out = subprocess.run([sys.executable, "-c", "from tritonlite import Server; Server()"],
                         capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert out.returncode != 0
    assert ("TRITONLITE_INLINE_BATCH_US must be 'auto' or a whole number of microseconds up to "
            f"10000000, got '{value}'") in out.stderr  # fmt: skip


@pytest.mark.parametrize("value", ["0", "-1", "one", "2cpus"])
def test_invalid_budget_is_refused_at_start(value: str) -> None:
    env = {**os.environ, "TRITONLITE_CPU_BUDGET": value}
    out = subprocess.run([sys.executable, "-c", "from tritonlite import Server; Server()"],
                         capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert out.returncode != 0
    assert (f"TRITONLITE_CPU_BUDGET must be 'auto' or a number of CPUs greater than 0 and at most "
            f"65536, got '{value}'") in out.stderr  # fmt: skip


HANDOFF_CHILD = r'''
import asyncio, json, os, sys, threading, time
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

sys.path.insert(0, sys.argv[2])
from models import serve_python_model
from tritonlite import Server
from tritonlite.backends.python.process import HANDOFF_S
from tritonlite.frontends.grpc_native import start_native_grpc

def thread_name():
    with open(f"/proc/self/task/{threading.get_native_id()}/comm") as f:
        return f.read().strip()

def main():
    work = Path(sys.argv[1])
    server = Server()
    os.environ["CANCEL_MARKER"] = str(work / "waiting")  # the stub inherits it
    backend = serve_python_model(server, work / "py", "cancel_wait_input", "stub")
    instance = backend.instances[0]
    seen = []
    def wrapped(requests, run=instance.execute_requests):
        seen.append(thread_name())
        return run(requests)
    instance.execute_requests = wrapped
    serve_python_model(server, work / "py", "add_sub", "stub", name="py_fast", replace=(
        "dynamic_batching { max_queue_delay_microseconds: 2000 }", "dynamic_batching { }"))
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    frontend = asyncio.run_coroutine_threadsafe(
        start_native_grpc(server, "127.0.0.1", 0), loop).result(60)
    url = f"127.0.0.1:{frontend.port}"
    report = {"handoff_s": HANDOFF_S}
    client = grpcclient.InferenceServerClient(url)
    x = grpcclient.InferInput("IN", [1], "FP32")
    x.set_data_from_numpy(np.zeros(1, np.float32))
    for _ in range(5):  # short batches: the I/O thread runs the next ones itself
        out = client.infer("cancel_wait_input", [x]).as_numpy("OUT")
    report["quick"] = out.tolist()
    # One that waits for its cancellation, which only the I/O thread can read from the socket.
    marker = str(work / "waiting")
    wait = grpcclient.InferInput("IN", [1], "FP32")
    wait.set_data_from_numpy(np.ones(1, np.float32))
    errors = []
    call = client.async_infer("cancel_wait_input", [wait],
                              lambda result, error: errors.append(str(error)))
    deadline = time.monotonic() + 30
    while not Path(marker + ".started").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    report["started"] = Path(marker + ".started").exists()
    time.sleep(HANDOFF_S + 0.3)
    # Another connection, served by the same I/O thread meanwhile.
    other = grpcclient.InferenceServerClient(url)
    a = grpcclient.InferInput("INPUT0", [1, 4], "FP32")
    b = grpcclient.InferInput("INPUT1", [1, 4], "FP32")
    a.set_data_from_numpy(np.full((1, 4), 3, np.float32))
    b.set_data_from_numpy(np.ones((1, 4), np.float32))
    t0 = time.monotonic()
    result = other.infer("py_fast", [a, b])
    report["other_s"] = time.monotonic() - t0
    report["other_ok"] = result.as_numpy("OUTPUT0").tolist() == [[4.0] * 4]
    other.close()
    call.cancel()
    deadline = time.monotonic() + 8
    while not Path(marker + ".seen").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    report["cancel_seen"] = Path(marker + ".seen").exists()
    # The instance serves again once the handed-off batch is answered.
    out = client.infer("cancel_wait_input", [x]).as_numpy("OUT")
    report["after"] = out.tolist()
    report["threads"] = list(seen)
    # The stub dies while a handed-off batch waits for it: the batch fails, the stub restarts.
    for _ in range(40):  # short again: the next lone request runs on the I/O thread
        client.infer("cancel_wait_input", [x])
    Path(marker + ".started").unlink()
    died = []
    client.async_infer("cancel_wait_input", [wait], lambda result, error: died.append(str(error)))
    deadline = time.monotonic() + 30
    while not Path(marker + ".started").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(HANDOFF_S + 0.3)
    report["died_on"] = seen[-1]
    os.kill(instance._stub.proc.pid, 9)
    deadline = time.monotonic() + 30
    while not died and time.monotonic() < deadline:
        time.sleep(0.01)
    report["died"] = died
    client.close()
    asyncio.run_coroutine_threadsafe(frontend.stop(1.0), loop).result(60)
    server.close()
    loop.call_soon_threadsafe(loop.stop)
    print("REPORT " + json.dumps(report), flush=True)

main()
'''


def test_a_python_batch_that_turns_long_is_handed_off_the_io_thread(tmp_path: Path) -> None:
    """A python model whose batches were short, then one that waits for its own cancellation:
    the I/O thread that runs it waits for the stub at most HANDOFF_S (twice
    TRITONLITE_INLINE_BATCH_US), then a thread of the instance takes the wait over, so the I/O
    thread reads the client's cancellation (and serves other connections) meanwhile. Without
    the hand-off the model would wait its full 10 s and never see the cancellation."""
    script = tmp_path / "child.py"
    script.write_text(HANDOFF_CHILD)
    env = {**os.environ, "TRITONLITE_CPU_BUDGET": "2", "TRITONLITE_INLINE_BATCH_US": "200000"}
    env.pop("TRITONLITE_INLINE_BATCHES", None)
    out = subprocess.run([sys.executable, str(script), str(tmp_path), str(HERE)], capture_output=True,
                         text=True, env=env, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-4000:]
    line = next(x for x in out.stdout.splitlines() if x.startswith("REPORT "))
    r = json.loads(line.removeprefix("REPORT "))
    assert r["handoff_s"] == 0.4 and r["quick"] == [0.0, 0.0] and r["started"], r
    # The first batch on the instance's thread, the short ones and the waiting one on the I/O
    # thread; after the hand-off (a 0.4 s batch: not short) the next on the instance's thread
    # (named "inst:" + the model, 15 bytes at most).
    assert r["threads"][0] == "inst:cancel_wai", r
    assert r["threads"][1:6] == ["grpc-io-0"] * 5, r
    assert r["threads"][6:] == ["inst:cancel_wai"], r
    assert r["other_ok"] and r["other_s"] < 2.0, r
    assert r["cancel_seen"], r
    assert r["after"] == [0.0, 0.0], r
    # A handed-off batch whose stub dies is failed by the thread that took the wait over.
    assert r["died_on"] == "grpc-io-0", r
    assert len(r["died"]) == 1 and "is not healthy" in r["died"][0], r
