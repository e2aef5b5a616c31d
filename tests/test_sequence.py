"""Sequence batching: correlation IDs, control inputs, implicit state, strategies, idle
release, backlog, and errors."""

from __future__ import annotations

import asyncio
import faulthandler
import itertools
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from google.protobuf import text_format

from models import make_accumulator_onnx
from tritonlite import Server, TritonError
from tritonlite._proto import model_config_pb2 as mc
from tritonlite.backends import onnxruntime as ort_backend

START, END = 1, 2

ACCUMULATOR = """
name: "acc" platform: "onnxruntime_onnx" max_batch_size: 8
input [{{ name: "INPUT" data_type: TYPE_FP32 dims: [ 1 ] }}]
output [{{ name: "OUTPUT" data_type: TYPE_FP32 dims: [ 1 ] }}]
instance_group [{{ count: {instances} }}]
sequence_batching {{
  max_sequence_idle_microseconds: {idle}
  {strategy}
  state [{{ input_name: "STATE_IN" output_name: "STATE_OUT" data_type: TYPE_FP32 dims: [ 1 ]
            initial_state {{ data_type: TYPE_FP32 dims: [ 1 ] zero_data: true name: "zeros" }} }}]
}}
"""


def accumulator_model(tmp_path: Path, strategy: str = "direct { }", instances: int = 1,
                      idle: int = 5_000_000, max_batch_size: int = 8,
                      extra: str = "") -> tuple[mc.ModelConfig, Path]:  # fmt: skip
    """The accumulator's config and version directory (model written there)."""
    version_dir = tmp_path / "acc" / "1"
    make_accumulator_onnx(version_dir / "model.onnx")
    text = ACCUMULATOR.format(strategy=strategy, instances=instances, idle=idle).replace(
        "max_batch_size: 8", f"max_batch_size: {max_batch_size}"
    )
    return text_format.Parse(text + extra, mc.ModelConfig()), version_dir


def serve(config: mc.ModelConfig, version_dir: Path) -> Server:
    server = Server()
    server.add_model(config, ort_backend.create_backend(config, version_dir.parent, version_dir))
    return server


def accumulator(tmp_path: Path, strategy: str = "direct { }", instances: int = 1,
                idle: int = 5_000_000, max_batch_size: int = 8,
                extra: str = "") -> tuple[Server, mc.ModelConfig]:  # fmt: skip
    config, version_dir = accumulator_model(tmp_path, strategy, instances, idle, max_batch_size,
                                            extra)  # fmt: skip
    return serve(config, version_dir), config


def step(server: Server, corr: Any, value: float, flags: int = 0) -> Any:
    kw = {"correlation_id_str": corr} if isinstance(corr, str) else {"correlation_id": corr}
    return server.submit("acc", {"INPUT": np.array([[value]], np.float32)}, flags=flags, **kw)


async def run_sequence(server: Server, corr: Any, values: list[float]) -> list[float]:
    sums = []
    for i, v in enumerate(values):
        flags = (START if i == 0 else 0) | (END if i == len(values) - 1 else 0)
        out = dict(await step(server, corr, v, flags))
        sums.append(float(out["OUTPUT"].numpy()[0, 0]))
        await asyncio.sleep(random.random() * 0.002)
    return sums


@pytest.mark.parametrize(
    "strategy, instances",
    [("direct { }", 1), ("direct { max_queue_delay_microseconds: 2000 }", 2),
     ("oldest { max_candidate_sequences: 32 preferred_batch_size: [ 4 ] "
      "max_queue_delay_microseconds: 2000 }", 1)],
)  # fmt: skip
def test_32_interleaved_sequences_get_their_own_running_sums(
    tmp_path: Path, strategy: str, instances: int
) -> None:
    server, _ = accumulator(tmp_path, strategy, instances)
    random.seed(1)
    plans = {corr: [float(random.randint(1, 9)) for _ in range(6)] for corr in range(1, 33)}

    async def main() -> dict[int, list[float]]:
        results = await asyncio.gather(*[run_sequence(server, c, v) for c, v in plans.items()])
        return dict(zip(plans, results))

    try:
        results = asyncio.run(main())
        for corr, values in plans.items():
            assert results[corr] == list(np.cumsum(values)), corr
        stats = server.statistics("acc")[0]
        assert stats["inference_count"] == 32 * 6
        if "oldest" in strategy or instances == 1:
            # Batches form across sequences (one request per sequence per batch).
            assert max(b["batch_size"] for b in stats["batch_stats"]) > 1
    finally:
        server.close()


def test_string_correlation_ids_and_restart(tmp_path: Path) -> None:
    server, _ = accumulator(tmp_path)

    async def main() -> None:
        assert await run_sequence(server, "user-a", [1, 2, 3]) == [1, 3, 6]
        assert await run_sequence(server, "user-b", [5, 5]) == [5, 10]
        # The same ID again after END is a new sequence with fresh state.
        assert await run_sequence(server, "user-a", [4, 4]) == [4, 8]

    try:
        asyncio.run(main())
    finally:
        server.close()


def test_missing_correlation_id_and_unstarted_sequence(tmp_path: Path) -> None:
    server, _ = accumulator(tmp_path)

    async def main() -> None:
        with pytest.raises(TritonError, match="must specify a non-zero or non-empty correlation ID") as info:
            server.submit("acc", {"INPUT": np.ones((1, 1), np.float32)})
        assert info.value.status == "INVALID_ARG"
        with pytest.raises(TritonError, match="must specify the START flag"):
            step(server, 77, 1.0)
        with pytest.raises(TritonError, match="sequence x to model 'acc' must specify the START"):
            step(server, "x", 1.0)

    try:
        asyncio.run(main())
    finally:
        server.close()


def test_idle_sequence_is_released(tmp_path: Path) -> None:
    server, _ = accumulator(tmp_path, idle=100_000)

    async def main() -> None:
        await step(server, 9, 1.0, START)
        await asyncio.sleep(0.4)  # longer than max_sequence_idle_microseconds
        with pytest.raises(TritonError, match="sequence 9 to model 'acc' must specify the START"):
            step(server, 9, 1.0)

    try:
        asyncio.run(main())
    finally:
        server.close()


def test_more_sequences_than_slots_wait_for_a_free_slot(tmp_path: Path) -> None:
    # max_batch_size 2 and one instance: two slots; six sequences at once.
    server, _ = accumulator(tmp_path, max_batch_size=2)

    async def main() -> list[list[float]]:
        return await asyncio.gather(*[run_sequence(server, c, [c, c, c]) for c in range(1, 7)])

    try:
        results = asyncio.run(main())
        assert results == [[c, 2 * c, 3 * c] for c in range(1, 7)]
    finally:
        server.close()


class ControlRecorder:
    """A gathered-batch backend that records the control inputs the server fills in."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def create_instance(self, index: int, kind: str, device_id: int) -> ControlRecorder:
        return self

    def execute(self, inputs: dict[str, np.ndarray], names: list[str]) -> dict[str, Any]:
        with self.lock:
            for row in range(inputs["INPUT"].shape[0]):
                self.seen.append({k: v[row].tolist() for k, v in inputs.items()})
        return {"OUTPUT": inputs["INPUT"]}

    def close(self) -> None:
        pass


CONTROLS = """
name: "ctl" max_batch_size: 4
input [{ name: "INPUT" data_type: TYPE_FP32 dims: [ 1 ] }]
output [{ name: "OUTPUT" data_type: TYPE_FP32 dims: [ 1 ] }]
sequence_batching {
  control_input [
    { name: "START" control [{ kind: CONTROL_SEQUENCE_START fp32_false_true: [ 0, 1 ] }] },
    { name: "END" control [{ kind: CONTROL_SEQUENCE_END int32_false_true: [ 0, 1 ] }] },
    { name: "READY" control [{ kind: CONTROL_SEQUENCE_READY bool_false_true: [ false, true ] }] },
    { name: "CORRID" control [{ kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 }] }
  ]
}
"""


def test_control_inputs_are_filled_in() -> None:
    server = Server()
    rec = ControlRecorder()
    server.add_model(text_format.Parse(CONTROLS, mc.ModelConfig()), rec)

    async def main() -> None:
        for i, flags in enumerate([START, 0, END]):
            await server.submit("ctl", {"INPUT": np.array([[i]], np.float32)},
                                correlation_id=1234, flags=flags)  # fmt: skip

    try:
        asyncio.run(main())
    finally:
        server.close()
    assert [s["START"] for s in rec.seen] == [[1.0], [0.0], [0.0]]
    assert [s["END"] for s in rec.seen] == [[0], [0], [1]]
    assert [s["READY"] for s in rec.seen] == [[True]] * 3
    assert [s["CORRID"] for s in rec.seen] == [[1234]] * 3


def test_direct_batches_are_laid_out_by_slot_with_filler_rows() -> None:
    """As Triton (tests/parity/cases/sequence_slots.py shows it with python models): a sequence
    keeps its slot, slot i is row i of a gathered batch, and a slot below the highest ready one
    without a ready request is a filler row (READY, START, END false, CORRID 0, zero data) that
    counts in the batch size but not as an inference."""
    server = Server()
    rec = ControlRecorder()
    server.add_model(text_format.Parse(CONTROLS, mc.ModelConfig()), rec)

    async def main() -> list[float]:
        out = []
        for corr, value, flags in ((1, 1.0, START), (2, 2.0, START), (1, 3.0, END),
                                   (2, 4.0, END)):  # fmt: skip
            result = await server.submit("ctl", {"INPUT": np.array([[value]], np.float32)},
                                         correlation_id=corr, flags=flags)  # fmt: skip
            out.append(float(dict(result)["OUTPUT"].numpy()[0, 0]))
        return out

    try:
        assert asyncio.run(main()) == [1.0, 2.0, 3.0, 4.0]
        stats = server.statistics("ctl")[0]
    finally:
        server.close()
    filler = {"INPUT": [0.0], "START": [0.0], "END": [0], "READY": [False], "CORRID": [0]}
    assert rec.seen == [
        {"INPUT": [1.0], "START": [1.0], "END": [0], "READY": [True], "CORRID": [1]},
        filler,  # slot 0: sequence 1 has nothing ready
        {"INPUT": [2.0], "START": [1.0], "END": [0], "READY": [True], "CORRID": [2]},
        {"INPUT": [3.0], "START": [0.0], "END": [1], "READY": [True], "CORRID": [1]},
        filler,  # slot 0 is free now, but below sequence 2's slot 1
        {"INPUT": [4.0], "START": [0.0], "END": [1], "READY": [True], "CORRID": [2]},
    ]
    assert stats["inference_count"] == 4 and stats["execution_count"] == 4
    assert sorted((b["batch_size"], b["compute_infer"]["count"]) for b in stats["batch_stats"]) == [
        (1, 2), (2, 2)
    ]  # fmt: skip


class SlotSums:
    """A model that keeps its state inside itself, per batch slot (row), as Triton's direct
    strategy allows: READY rows add INPUT to their slot's sum (START resets it)."""

    def __init__(self) -> None:
        self.sums: list[float] = []
        self.lock = threading.Lock()
        self.max_rows = 0

    def create_instance(self, index: int, kind: str, device_id: int) -> SlotSums:
        return self

    def execute(self, inputs: dict[str, np.ndarray], names: list[str]) -> dict[str, Any]:
        rows = inputs["INPUT"].shape[0]
        out = np.zeros_like(inputs["INPUT"])
        with self.lock:
            self.max_rows = max(self.max_rows, rows)
            self.sums += [0.0] * (rows - len(self.sums))
            for i in range(rows):
                if not inputs["READY"][i, 0]:
                    continue
                if inputs["START"][i, 0]:
                    self.sums[i] = 0.0
                self.sums[i] += float(inputs["INPUT"][i, 0])
                out[i, 0] = self.sums[i]
        return {"OUTPUT": out}

    def close(self) -> None:
        pass


def test_a_model_keeping_state_per_slot_gets_every_sequence_right() -> None:
    """Twelve interleaved sequences over four slots (the rest wait for a free slot): a model
    that keeps each slot's running sum inside itself sees each sequence in one row throughout."""
    server = Server()
    model = SlotSums()
    server.add_model(text_format.Parse(CONTROLS, mc.ModelConfig()), model)
    random.seed(3)
    plans = {corr: [float(random.randint(1, 9)) for _ in range(5)] for corr in range(1, 13)}

    async def run(corr: int, values: list[float]) -> list[float]:
        sums = []
        for i, v in enumerate(values):
            flags = (START if i == 0 else 0) | (END if i == len(values) - 1 else 0)
            result = await server.submit("ctl", {"INPUT": np.array([[v]], np.float32)},
                                         correlation_id=corr, flags=flags)  # fmt: skip
            sums.append(float(dict(result)["OUTPUT"].numpy()[0, 0]))
            await asyncio.sleep(random.random() * 0.002)
        return sums

    async def main() -> list[list[float]]:
        return await asyncio.gather(*[run(c, v) for c, v in plans.items()])

    try:
        results = asyncio.run(main())
    finally:
        server.close()
    assert results == [list(np.cumsum(v)) for v in plans.values()]
    assert model.max_rows <= 4


def test_max_candidate_sequences_is_per_instance_and_bounded() -> None:
    """As Triton, oldest's max_candidate_sequences is each instance's slot count (two instances
    with two candidates run four sequences at once; tests/parity shows it with Triton); a count
    tritonlite cannot hold is a load error, not an allocation of that size."""
    text = CONTROLS.replace("sequence_batching {", "sequence_batching { oldest { "
                            "max_candidate_sequences: 2 } max_sequence_idle_microseconds: "
                            "60000000") + "instance_group [{ count: 2 }]"  # fmt: skip
    server = Server()
    server.add_model(text_format.Parse(text, mc.ModelConfig()), ControlRecorder())

    async def main() -> None:
        for corr in (1, 2, 3, 4):  # none ends: each holds a slot
            await server.submit("ctl", {"INPUT": np.array([[corr]], np.float32)},
                                correlation_id=corr, flags=START)  # fmt: skip

    try:
        asyncio.run(asyncio.wait_for(main(), 30))
    finally:
        server.close()
    huge = text.replace("max_candidate_sequences: 2", "max_candidate_sequences: 2000000000")
    with pytest.raises(TritonError, match="supports at most 65536") as info:
        Server().add_model(text_format.Parse(huge, mc.ModelConfig()), ControlRecorder())
    assert info.value.status == "INVALID_ARG"


def test_string_corrid_control() -> None:
    server = Server()
    rec = ControlRecorder()
    server.add_model(
        text_format.Parse(CONTROLS.replace("TYPE_UINT64", "TYPE_STRING"), mc.ModelConfig()), rec
    )

    async def main() -> None:
        await server.submit("ctl", {"INPUT": np.zeros((1, 1), np.float32)},
                            correlation_id_str="abc", flags=START | END)  # fmt: skip

    try:
        asyncio.run(main())
    finally:
        server.close()
    assert rec.seen[0]["CORRID"] == [b"abc"]


def test_open_sequence_does_not_hold_up_unload(tmp_path: Path) -> None:
    server, _ = accumulator(tmp_path)

    async def main() -> None:
        await step(server, 1, 1.0, START)
        assert server.statistics("acc")[0]["pending_request_count"] == 0

    asyncio.run(main())
    t0 = time.monotonic()
    server.close()  # an open sequence does not hold up the unload
    assert time.monotonic() - t0 < 5


def test_sequences_beyond_slots_and_backlog_are_refused(tmp_path: Path) -> None:
    backlog = 'parameters { key: "sequence_backlog_limit" value { string_value: "1" } }'
    server, _ = accumulator(tmp_path, max_batch_size=2, extra=backlog)

    async def main() -> None:
        await step(server, 1, 1.0, START)  # slot 1
        await step(server, 2, 1.0, START)  # slot 2
        waiting = step(server, 3, 1.0, START)  # waits for a slot
        with pytest.raises(TritonError, match="all 2 sequence slots are in use and 1 sequences already wait") as info:
            step(server, 4, 1.0, START)
        assert info.value.status == "UNAVAILABLE"
        await step(server, 1, 1.0, END)  # frees a slot: sequence 3 runs
        assert float(dict(await waiting)["OUTPUT"].numpy()[0, 0]) == 1.0

    try:
        asyncio.run(main())
    finally:
        server.close()


def test_bad_backlog_parameter_is_a_load_error(tmp_path: Path) -> None:
    text = ACCUMULATOR.format(strategy="direct { }", instances=1, idle=1) + (
        'parameters { key: "sequence_backlog_limit" value { string_value: "lots" } }'
    )
    config = text_format.Parse(text, mc.ModelConfig())
    with pytest.raises(TritonError, match="parameter 'sequence_backlog_limit' must be a non-negative integer"):
        Server().add_model(config, ControlRecorder())


def test_infer_and_infer_async_take_sequence_fields(tmp_path: Path) -> None:
    server, _ = accumulator(tmp_path)
    x = {"INPUT": np.array([[2.0]], np.float32)}
    try:
        assert server.infer("acc", x, correlation_id=5, flags=START)["OUTPUT"][0, 0] == 2.0

        async def main() -> float:
            out = await server.infer_async("acc", x, correlation_id=5, flags=END)
            return float(out["OUTPUT"][0, 0])

        assert asyncio.run(main()) == 4.0
    finally:
        server.close()


def test_unload_fails_sequences_still_waiting_for_a_slot(tmp_path: Path) -> None:
    server, _ = accumulator(tmp_path, max_batch_size=1)
    outcome: list[Any] = []

    async def main() -> None:
        await step(server, 1, 1.0, START)  # takes the only slot and keeps it
        waiting = step(server, 2, 1.0, START)  # waits for that slot
        await asyncio.sleep(0.05)
        await asyncio.get_running_loop().run_in_executor(None, server.close)
        try:
            outcome.append(await waiting)
        except TritonError as e:
            outcome.append(e)

    asyncio.run(main())
    assert isinstance(outcome[0], TritonError) and outcome[0].status == "UNAVAILABLE"
    assert "was released before this request ran" in outcome[0].message


def test_close_on_another_thread_still_answers_on_the_loop(tmp_path: Path) -> None:
    """Server.close() on a worker thread fails the waiting request and must not stop the loop
    from seeing that answer (it removed the loop's readers first, about 1 run in 15)."""
    config, version_dir = accumulator_model(tmp_path, max_batch_size=1)

    async def once() -> None:
        server = serve(config, version_dir)
        await step(server, 1, 1.0, START)
        waiting = step(server, 2, 1.0, START)
        await asyncio.get_running_loop().run_in_executor(None, server.close)
        with pytest.raises(TritonError, match="was released before this request ran"):
            await asyncio.wait_for(waiting, 10)  # never answered: TimeoutError

    for _ in range(40):
        asyncio.run(once())


# ---- locks, the GIL and implicit state ----------------------------------------------------------

STATEFUL = """
name: "stateful" max_batch_size: 4
input [{ name: "INPUT" data_type: TYPE_FP32 dims: [ 1 ] }]
output [{ name: "OUTPUT" data_type: TYPE_FP32 dims: [ 1 ] }]
instance_group [{ count: 2 }]
sequence_batching {
  max_sequence_idle_microseconds: 1000
  direct { max_queue_delay_microseconds: 200 }
  state [{ input_name: "STATE_IN" output_name: "STATE_OUT" data_type: TYPE_FP32 dims: [ 1 ]
            initial_state { data_type: TYPE_FP32 dims: [ 1 ] zero_data: true name: "zeros" } }]
}
"""


class StateAdder:
    """A running sum whose state is a numpy array: Python owns every state the server keeps.
    ``INPUT == 99`` makes it return a state of the wrong width (8 instead of 1)."""

    def __init__(self) -> None:
        self.batches: list[dict[str, tuple[int, ...]]] = []
        self.lock = threading.Lock()

    def create_instance(self, index: int, kind: str, device_id: int) -> StateAdder:
        return self

    def execute(self, inputs: dict[str, np.ndarray], names: list[str]) -> dict[str, Any]:
        with self.lock:
            self.batches.append({k: v.shape for k, v in inputs.items()})
        total = inputs["INPUT"] + inputs["STATE_IN"][:, :1]
        state = total.copy()
        if (inputs["INPUT"] == 99).any():
            state = np.repeat(total, 8, axis=1)
        return {"OUTPUT": total, "STATE_OUT": state}

    def close(self) -> None:
        pass


# Errors a sequence request may get when its sequence was released for being idle (1 ms).
RELEASED = ("must specify the START flag", "was released before this request ran")


def idle_release_stress(seconds: float, stall: float) -> None:
    """Many short sequences from several threads, in-process (asyncio and blocking) and over the
    native gRPC transport, with a 1 ms idle release: sequences and their Python-owned states are
    released, replaced and restarted all the time. Exits the process with a traceback when no
    request is answered for ``stall`` seconds (a deadlock holds the GIL: only faulthandler's own
    thread still runs then)."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException
    from tritonlite.frontends.grpc_native import start_native_grpc

    faulthandler.dump_traceback_later(stall, exit=True)
    server = Server()
    server.add_model(text_format.Parse(STATEFUL, mc.ModelConfig()), StateAdder())
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    frontend = asyncio.run_coroutine_threadsafe(
        start_native_grpc(server, "127.0.0.1", 0), loop
    ).result(30)
    answered = itertools.count()
    unexpected: list[str] = []
    deadline = time.monotonic() + seconds
    ids = itertools.count(1)
    x = np.ones((1, 1), np.float32)

    def plan() -> list[int]:
        n = random.randint(1, 3)
        ended = random.random() < 0.7  # the others are left to the idle release
        return [(START if i == 0 else 0) | (END if ended and i == n - 1 else 0) for i in range(n)]

    def outcome(error: str | None) -> None:
        next(answered)
        if error is not None and not any(r in error for r in RELEASED):
            unexpected.append(error)

    async def in_process() -> None:
        async def sequence(corr: int) -> None:
            for flags in plan():
                try:
                    await server.infer_async("stateful", {"INPUT": x}, correlation_id=corr,
                                             flags=flags)  # fmt: skip
                    outcome(None)
                except TritonError as e:
                    outcome(e.message)

        while time.monotonic() < deadline:
            await asyncio.gather(*[sequence(next(ids)) for _ in range(16)])

    def blocking() -> None:
        while time.monotonic() < deadline:
            corr = next(ids)
            for flags in plan():
                try:
                    server.infer("stateful", {"INPUT": x}, correlation_id=corr, flags=flags)
                    outcome(None)
                except TritonError as e:
                    outcome(e.message)

    def over_grpc() -> None:
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{frontend.port}")
        inp = grpcclient.InferInput("INPUT", [1, 1], "FP32")
        inp.set_data_from_numpy(x)
        while time.monotonic() < deadline:
            corr = next(ids)
            for flags in plan():
                try:
                    client.infer("stateful", [inp], sequence_id=corr,
                                 sequence_start=bool(flags & START),
                                 sequence_end=bool(flags & END))  # fmt: skip
                    outcome(None)
                except InferenceServerException as e:
                    outcome(str(e.message()))
        client.close()

    workers = [threading.Thread(target=lambda: asyncio.run(in_process())) for _ in range(2)]
    workers += [threading.Thread(target=blocking), threading.Thread(target=over_grpc),
                threading.Thread(target=over_grpc)]  # fmt: skip
    for w in workers:
        w.start()
    last = -1
    while any(w.is_alive() for w in workers):
        time.sleep(0.5)
        now = next(answered)  # counts itself too: progress is "now > last + 1"
        if now > last + 1:
            faulthandler.dump_traceback_later(stall, exit=True)  # progress: re-arm
        last = now
    asyncio.run_coroutine_threadsafe(frontend.stop(1.0), loop).result(30)
    server.close()
    faulthandler.cancel_dump_traceback_later()
    print(f"answered {next(answered)} unexpected {unexpected[:3]}", flush=True)
    if unexpected:
        sys.exit(2)


def test_idle_release_of_python_owned_state_does_not_deadlock() -> None:
    """Releasing a sequence's Python-owned state took the GIL while the sequence batcher's lock
    was held, and the event loop held the GIL waiting for that lock to queue a request: the
    server froze (in-process and native gRPC alike) within seconds. The scenario runs in a
    child process with a watchdog, so a deadlock fails the test instead of hanging it."""
    cmd = [sys.executable, __file__, "idle-release-stress", "6", "15"]
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired as e:  # the child's own watchdog did not fire either
        pytest.fail(f"the server deadlocked (child killed after 120 s):\n{e.stderr!r}"[-4000:])
    assert proc.returncode == 0, (
        f"the server deadlocked or crashed (exit {proc.returncode}):\n{proc.stderr[-6000:]}"
    )
    assert "answered" in proc.stdout


def test_wrong_state_shape_from_the_model_fails_clearly_and_never_batches() -> None:
    """A model returned a state of another width for one sequence; the server kept it, and the
    next batch across sequences gave the backend a (2, 8) view over 36 bytes. The state output
    is now checked against the configured state before it is stored."""
    server = Server()
    backend = StateAdder()
    config = text_format.Parse(
        STATEFUL.replace("max_sequence_idle_microseconds: 1000", "max_sequence_idle_microseconds: 60000000")
        .replace("max_queue_delay_microseconds: 200", "max_queue_delay_microseconds: 300000")
        .replace("count: 2", "count: 1"),
        mc.ModelConfig(),
    )  # fmt: skip
    server.add_model(config, backend)

    def run(corr: int, value: float, flags: int) -> Any:
        return server.infer("stateful", {"INPUT": np.array([[value]], np.float32)},
                            correlation_id=corr, flags=flags)  # fmt: skip

    try:
        assert run(1, 1.0, START)["OUTPUT"][0, 0] == 1.0
        with pytest.raises(TritonError) as info:
            # Sequence 2 has slot 1: its batch is a filler row for slot 0 (sequence 1 has no
            # request ready) and its own row, as in Triton; the model answers with a [2, 8] state.
            run(2, 99.0, START)
        assert info.value.status == "INTERNAL"
        assert ("model 'stateful' returned implicit state output 'STATE_OUT' as FP32 [2,8], but "
                "sequence_batching state 'STATE_IN' needs FP32 [2,1]") in info.value.message
        # Both sequences go on, batched together (queued back to back; the batcher waits up to
        # 300 ms for the other sequence): sequence 2 kept no state of the wrong width.

        async def both() -> list[Any]:
            return await asyncio.gather(*[
                server.infer_async("stateful", {"INPUT": np.array([[v]], np.float32)},
                                   correlation_id=corr, flags=END)
                for corr, v in ((1, 2.0), (2, 5.0))
            ])  # fmt: skip

        a, b = asyncio.run(both())
        assert a["OUTPUT"][0, 0] == 3.0
        assert b["OUTPUT"][0, 0] == 5.0
    finally:
        server.close()
    assert all(shapes["STATE_IN"][1:] == (1,) for shapes in backend.batches), backend.batches
    assert max(shapes["STATE_IN"][0] for shapes in backend.batches) == 2  # the last ran batched


if __name__ == "__main__":
    if sys.argv[1:2] == ["idle-release-stress"]:
        idle_release_stress(float(sys.argv[2]), float(sys.argv[3]))


class GatedRecorder(ControlRecorder):
    """ControlRecorder that holds each batch until `gate` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def execute(self, inputs: dict[str, np.ndarray], names: list[str]) -> dict[str, Any]:
        self.gate.wait(10)
        return super().execute(inputs, names)


@pytest.mark.parametrize("strategy", ["direct { }", "oldest { max_candidate_sequences: 4 }"])
def test_cancelling_a_queued_request_cancels_its_sequence_queue(strategy: str) -> None:
    """As Triton: a cancelled queued request of a sequence is answered CANCELLED without
    running, and so are the requests queued behind it, and the sequence ends (its slot frees);
    a sequence waiting for a slot (backlog) is cancelled the same way. The running request and
    other sequences are unaffected."""
    rec = GatedRecorder()
    text = CONTROLS.replace("max_batch_size: 4", "max_batch_size: 1").replace(
        "sequence_batching {", f"sequence_batching {{ {strategy}"
    )
    server = Server()
    server.add_model(text_format.Parse(text, mc.ModelConfig()), rec)

    def send(corr: int, value: float, flags: int = 0) -> Any:
        return server.submit("ctl", {"INPUT": np.array([[value]], np.float32)},
                             correlation_id=corr, flags=flags)  # fmt: skip

    async def main() -> list[Any]:
        running = send(1, 1.0, START)
        await asyncio.sleep(0.1)  # sequence 1 holds the only slot, its first request runs
        cancelled = send(1, 2.0)
        behind = send(1, 3.0, END)
        waiting = send(2, 4.0, START)  # no free slot: in the backlog
        await asyncio.sleep(0.05)
        cancelled.cancel()
        waiting.cancel()
        await asyncio.sleep(0.05)
        rec.gate.set()
        results = await asyncio.gather(running, behind, return_exceptions=True)
        # The cancelled sequence has ended (its slot is free): a next step needs START again.
        with pytest.raises(TritonError, match="must specify the START flag"):
            await send(1, 6.0)
        later = await send(3, 5.0, START | END)  # the model still serves
        return [*results, later]

    try:
        first, behind, later = asyncio.run(main())
        assert float(dict(first)["OUTPUT"].numpy()[0, 0]) == 1.0
        assert isinstance(behind, TritonError) and behind.status == "CANCELLED", behind
        assert float(dict(later)["OUTPUT"].numpy()[0, 0]) == 5.0
        ran = sorted(s["INPUT"][0] for s in rec.seen)
        assert ran == [1.0, 5.0], ran  # 2, 3 and 4 never ran
        stats = server.statistics("ctl")[0]
        assert stats["fail_reasons"]["CANCELED"] == 3
    finally:
        server.close()
