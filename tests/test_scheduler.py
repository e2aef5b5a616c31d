"""The C++ scheduling core through the in-process Server: dynamic batching, priorities, queue
policies, output slicing, ordering, failures and concurrent instances."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from google.protobuf import text_format

from tritonlite import Server, TritonError
from tritonlite._proto import model_config_pb2 as mc


def config(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())


IO = """
input [{ name: "IN" data_type: TYPE_FP32 dims: [ 2 ] }]
output [{ name: "OUT" data_type: TYPE_FP32 dims: [ 2 ] }]
"""


class Recorder:
    """A backend whose instances run `fn` and record what they executed and when."""

    def __init__(self, fn: Callable[[dict[str, np.ndarray]], dict[str, Any]] | None = None):
        self.fn = fn or (lambda inputs: {"OUT": inputs["IN"] * 2})
        self.batches: list[np.ndarray] = []
        self.intervals: list[tuple[float, float]] = []
        self.lock = threading.Lock()
        self.gate = threading.Event()
        self.gate.set()
        self.closed = 0

    def create_instance(self, index: int, kind: str, device_id: int) -> Recorder.Instance:
        return Recorder.Instance(self)

    def close(self) -> None:
        pass

    class Instance:
        def __init__(self, owner: Recorder) -> None:
            self.owner = owner

        def execute(self, inputs: dict[str, np.ndarray], names: list[str]) -> dict[str, Any]:
            start = time.monotonic()
            self.owner.gate.wait(10)
            out = self.owner.fn(inputs)
            with self.owner.lock:
                self.owner.batches.append(next(iter(inputs.values())).copy())
                self.owner.intervals.append((start, time.monotonic()))
            return out

        def close(self) -> None:
            self.owner.closed += 1


def batch_sizes(server: Server, model: str) -> dict[int, int]:
    stats = server.statistics(model)[0]
    return {b["batch_size"]: b["compute_infer"]["count"] for b in stats["batch_stats"]}


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def row(i: float, n: int = 1) -> np.ndarray:
    return np.full((n, 2), i, dtype=np.float32)


async def gather(server: Server, model: str, values: list[float], **kw: Any) -> list[Any]:
    return await asyncio.gather(
        *[server.infer_async(model, {"IN": row(v)}, **kw) for v in values], return_exceptions=True
    )


def test_concurrent_requests_are_batched(server: Server) -> None:
    rec = Recorder()
    server.add_model(
        config(f'name: "m" max_batch_size: 8 {IO} dynamic_batching {{ max_queue_delay_microseconds: 20000 }}'),
        rec,
    )
    results = asyncio.run(gather(server, "m", list(range(32))))
    for i, r in enumerate(results):
        np.testing.assert_array_equal(r["OUT"], row(2 * i))
    sizes = batch_sizes(server, "m")
    assert max(sizes) > 1
    stats = server.statistics("m")[0]
    assert stats["inference_count"] == 32
    assert stats["execution_count"] == sum(sizes.values()) < 32
    assert stats["inference_stats"]["success"]["count"] == 32


def test_preferred_batch_size_is_preferred(server: Server) -> None:
    rec = Recorder()
    server.add_model(
        config(
            f'name: "m" max_batch_size: 8 {IO} dynamic_batching '
            "{ preferred_batch_size: [ 4 ] max_queue_delay_microseconds: 5000000 }"
        ),
        rec,
    )
    t0 = time.monotonic()
    asyncio.run(gather(server, "m", list(range(16))))
    # Batches go out as soon as 4 are queued, not after the 5 s queue delay.
    assert time.monotonic() - t0 < 4
    assert batch_sizes(server, "m") == {4: 4}


def test_lone_request_waits_about_max_queue_delay_not_forever(server: Server) -> None:
    server.add_model(
        config(f'name: "m" max_batch_size: 8 {IO} dynamic_batching {{ max_queue_delay_microseconds: 100000 }}'),
        Recorder(),
    )
    t0 = time.monotonic()
    out = server.infer("m", {"IN": row(1)})
    elapsed = time.monotonic() - t0
    np.testing.assert_array_equal(out["OUT"], row(2))
    assert 0.09 <= elapsed < 2.0
    # Without dynamic batching nothing waits.
    server.add_model(config(f'name: "d" max_batch_size: 8 {IO}'), Recorder())
    t0 = time.monotonic()
    server.infer("d", {"IN": row(1)})
    assert time.monotonic() - t0 < 0.09


def test_priorities_order_execution(server: Server) -> None:
    rec = Recorder()
    server.add_model(
        config(
            f'name: "m" max_batch_size: 1 {IO} dynamic_batching '
            "{ priority_levels: 2 default_priority_level: 2 }"
        ),
        rec,
    )

    async def main() -> None:
        rec.gate.clear()
        first = server.infer_async("m", {"IN": row(-1)})
        task = asyncio.ensure_future(first)
        await asyncio.sleep(0.1)  # the worker now holds request -1 at the gate
        low = [server.infer_async("m", {"IN": row(i)}, priority=2) for i in (10, 11, 12)]
        high = [server.infer_async("m", {"IN": row(i)}, priority=1) for i in (1, 2)]
        tasks = [asyncio.ensure_future(c) for c in low + high]
        await asyncio.sleep(0.1)
        rec.gate.set()
        await asyncio.gather(task, *tasks)

    asyncio.run(main())
    order = [float(b[0, 0]) for b in rec.batches]
    assert order == [-1, 1, 2, 10, 11, 12]


def blocked_model(server: Server, rec: Recorder, policy: str) -> None:
    server.add_model(
        config(f'name: "m" max_batch_size: 1 {IO} dynamic_batching {{ {policy} }}'), rec
    )


def test_max_queue_size_rejects_with_unavailable(server: Server) -> None:
    rec = Recorder()
    blocked_model(server, rec, "default_queue_policy { max_queue_size: 2 }")

    async def main() -> list[Any]:
        rec.gate.clear()
        first = asyncio.ensure_future(server.infer_async("m", {"IN": row(0)}))
        await asyncio.sleep(0.1)
        queued = [asyncio.ensure_future(server.infer_async("m", {"IN": row(i)})) for i in (1, 2)]
        await asyncio.sleep(0)
        with pytest.raises(TritonError, match="Exceeds maximum queue size") as info:
            await server.infer_async("m", {"IN": row(3)})
        assert info.value.status == "UNAVAILABLE"
        rec.gate.set()
        return await asyncio.gather(first, *queued)

    results = asyncio.run(main())
    assert [float(r["OUT"][0, 0]) for r in results] == [0, 2, 4]


def test_queue_timeout_reject(server: Server) -> None:
    """A request that waits longer than its queue timeout is answered when the timeout passes
    (by the batcher's timer: every instance is busy, nobody asks for a batch), not later."""
    rec = Recorder()
    blocked_model(server, rec, "default_queue_policy { default_timeout_microseconds: 20000 }")

    async def main() -> tuple[Any, Any, float, bool]:
        rec.gate.clear()
        first = asyncio.ensure_future(server.infer_async("m", {"IN": row(0)}))
        await asyncio.sleep(0.05)
        start = time.monotonic()
        timed = asyncio.ensure_future(server.infer_async("m", {"IN": row(1)}))
        done, _ = await asyncio.wait([timed], timeout=5)
        waited = time.monotonic() - start
        gate_was_closed = not rec.gate.is_set()
        rec.gate.set()
        return await first, await asyncio.gather(timed, return_exceptions=True), waited, (
            gate_was_closed and timed in done
        )

    first, (timed,), waited, answered_while_blocked = asyncio.run(main())
    assert float(first["OUT"][0, 0]) == 0
    assert isinstance(timed, TritonError) and timed.status == "UNAVAILABLE"
    assert "Request timeout expired" in timed.message
    assert answered_while_blocked and waited < 1.0, waited
    stats = server.statistics("m")[0]
    assert stats["inference_stats"]["fail"]["count"] == 1
    assert stats["inference_stats"]["success"]["count"] == 1
    assert stats["fail_reasons"]["REJECTED"] == 1


def test_timeout_override_may_lower_the_default_never_raise_it(server: Server) -> None:
    """Triton's allow_timeout_override: a request's timeout counts only when it is below the
    policy's default."""
    rec = Recorder()
    blocked_model(
        server, rec,
        "default_queue_policy { default_timeout_microseconds: 150000 allow_timeout_override: true }",
    )  # fmt: skip

    async def main() -> list[Any]:
        rec.gate.clear()
        first = asyncio.ensure_future(server.infer_async("m", {"IN": row(0)}))
        await asyncio.sleep(0.05)
        lower = asyncio.ensure_future(server.infer_async("m", {"IN": row(1)}, timeout_us=10_000))
        higher = asyncio.ensure_future(
            server.infer_async("m", {"IN": row(2)}, timeout_us=60_000_000)
        )
        await asyncio.sleep(0.05)  # `lower` expired, `higher` (still 150 ms) not yet
        lower_done = lower.done()
        await asyncio.sleep(0.3)  # `higher` expired at the default, not after 60 s
        rec.gate.set()
        results = await asyncio.gather(first, lower, higher, return_exceptions=True)
        return [lower_done, *results]

    lower_done, first, lower, higher = asyncio.run(main())
    assert lower_done
    assert float(first["OUT"][0, 0]) == 0
    for r in (lower, higher):
        assert isinstance(r, TritonError) and "Request timeout expired" in r.message


def test_cancelled_queued_request_never_runs(server: Server) -> None:
    rec = Recorder()
    blocked_model(server, rec, "")

    async def main() -> Any:
        rec.gate.clear()
        first = asyncio.ensure_future(server.infer_async("m", {"IN": row(0)}))
        await asyncio.sleep(0.05)
        queued = asyncio.ensure_future(server.infer_async("m", {"IN": row(1)}))
        await asyncio.sleep(0.05)
        queued.cancel()
        for _ in range(100):  # answered by the batcher at once, while the instance is busy
            if server.statistics("m")[0]["fail_reasons"]["CANCELED"] == 1:
                break
            await asyncio.sleep(0.01)
        rec.gate.set()
        return await first

    first = asyncio.run(main())
    assert float(first["OUT"][0, 0]) == 0
    assert [float(b[0, 0]) for b in rec.batches] == [0]  # the cancelled one never ran
    stats = server.statistics("m")[0]
    assert stats["fail_reasons"]["CANCELED"] == 1
    assert stats["inference_stats"]["fail"]["count"] == 1
    assert stats["pending_request_count"] == 0


def test_queue_timeout_delay_runs_late_requests_after_the_others(server: Server) -> None:
    rec = Recorder()
    blocked_model(
        server,
        rec,
        "default_queue_policy { timeout_action: DELAY default_timeout_microseconds: 20000 }",
    )

    async def main() -> list[Any]:
        rec.gate.clear()
        first = asyncio.ensure_future(server.infer_async("m", {"IN": row(0)}))
        await asyncio.sleep(0.05)
        late = asyncio.ensure_future(server.infer_async("m", {"IN": row(1)}))
        await asyncio.sleep(0.1)  # `late` has timed out in the queue by now
        fresh = asyncio.ensure_future(server.infer_async("m", {"IN": row(2)}))
        await asyncio.sleep(0)
        rec.gate.set()
        return await asyncio.gather(first, late, fresh)

    results = asyncio.run(main())
    assert [float(r["OUT"][0, 0]) for r in results] == [0, 2, 4]  # delayed, not rejected
    order = [float(b[0, 0]) for b in rec.batches]
    assert order == [0, 2, 1]


def test_outputs_are_sliced_back_to_requests_of_batch_1_3_4(server: Server) -> None:
    rec = Recorder(lambda inputs: {"OUT": inputs["IN"] + np.arange(8, dtype=np.float32)[:, None]})
    server.add_model(
        config(
            f'name: "m" max_batch_size: 8 {IO} dynamic_batching '
            "{ preferred_batch_size: [ 8 ] max_queue_delay_microseconds: 5000000 }"
        ),
        rec,
    )

    async def main() -> list[Any]:
        return await asyncio.gather(
            server.infer_async("m", {"IN": row(100, 1)}),
            server.infer_async("m", {"IN": row(200, 3)}),
            server.infer_async("m", {"IN": row(300, 4)}),
        )

    a, b, c = asyncio.run(main())
    assert batch_sizes(server, "m") == {8: 1}
    np.testing.assert_array_equal(a["OUT"][:, 0], [100])
    np.testing.assert_array_equal(b["OUT"][:, 0], [201, 202, 203])
    np.testing.assert_array_equal(c["OUT"][:, 0], [304, 305, 306, 307])
    assert a["OUT"].shape == (1, 2) and b["OUT"].shape == (3, 2) and c["OUT"].shape == (4, 2)


def test_requests_with_different_shapes_are_not_batched_together(server: Server) -> None:
    rec = Recorder(lambda inputs: {"OUT": inputs["IN"]})
    server.add_model(
        config(
            'name: "m" max_batch_size: 8 '
            'input [{ name: "IN" data_type: TYPE_FP32 dims: [ -1 ] }] '
            'output [{ name: "OUT" data_type: TYPE_FP32 dims: [ -1 ] }] '
            "dynamic_batching { max_queue_delay_microseconds: 50000 }"
        ),
        rec,
    )

    async def main() -> list[Any]:
        return await asyncio.gather(
            server.infer_async("m", {"IN": np.ones((1, 2), np.float32)}),
            server.infer_async("m", {"IN": np.ones((1, 3), np.float32)}),
            server.infer_async("m", {"IN": np.ones((1, 2), np.float32)}),
        )

    a, b, c = asyncio.run(main())
    assert a["OUT"].shape == (1, 2) and b["OUT"].shape == (1, 3) and c["OUT"].shape == (1, 2)
    assert all(batch.shape[0] == 1 for batch in rec.batches)


@pytest.mark.parametrize("preserve", [True, False])
def test_preserve_ordering(server: Server, preserve: bool) -> None:
    # Two instances; the first request is slow, later ones fast: without preserve_ordering
    # the fast ones complete first.
    def slow_first(inputs: dict[str, np.ndarray]) -> dict[str, Any]:
        time.sleep(0.3 if inputs["IN"][0, 0] == 0 else 0.01)
        return {"OUT": inputs["IN"]}

    server.add_model(
        config(
            f'name: "m" max_batch_size: 1 {IO} instance_group [{{ count: 2 }}] '
            f"dynamic_batching {{ preserve_ordering: {str(preserve).lower()} }}"
        ),
        Recorder(slow_first),
    )
    done: list[int] = []

    async def main() -> None:
        futures = []
        for i in range(4):
            f = asyncio.ensure_future(server.infer_async("m", {"IN": row(i)}))
            f.add_done_callback(lambda _f, i=i: done.append(i))
            futures.append(f)
            await asyncio.sleep(0.02)
        await asyncio.gather(*futures)

    asyncio.run(main())
    if preserve:
        assert done == [0, 1, 2, 3]
    else:
        assert done[0] != 0


def test_raising_backend_fails_only_its_batch(server: Server) -> None:
    def maybe_raise(inputs: dict[str, np.ndarray]) -> dict[str, Any]:
        if (inputs["IN"] < 0).any():
            raise ValueError("negative input is not allowed")
        return {"OUT": inputs["IN"]}

    server.add_model(config(f'name: "m" max_batch_size: 4 {IO}'), Recorder(maybe_raise))
    with pytest.raises(TritonError, match="negative input is not allowed") as info:
        server.infer("m", {"IN": row(-1)})
    assert info.value.status == "INTERNAL"
    results = asyncio.run(gather(server, "m", [1, -2, 3]))
    assert float(results[0]["OUT"][0, 0]) == 1
    assert isinstance(results[1], TritonError)
    assert float(results[2]["OUT"][0, 0]) == 3
    np.testing.assert_array_equal(server.infer("m", {"IN": row(5)})["OUT"], row(5))
    stats = server.statistics("m")[0]["inference_stats"]
    assert stats["fail"]["count"] == 2 and stats["success"]["count"] == 3


def test_triton_error_from_backend_keeps_its_status(server: Server) -> None:
    def refuse(inputs: dict[str, np.ndarray]) -> dict[str, Any]:
        raise TritonError("not today", "UNAVAILABLE")

    server.add_model(config(f'name: "m" max_batch_size: 4 {IO}'), Recorder(refuse))
    with pytest.raises(TritonError, match="not today") as info:
        server.infer("m", {"IN": row(1)})
    assert info.value.status == "UNAVAILABLE"


def test_bad_backend_output_is_an_error_not_a_crash(server: Server) -> None:
    server.add_model(
        config(f'name: "m" max_batch_size: 4 {IO}'),
        Recorder(lambda inputs: {"OUT": np.zeros((7, 2), np.float32)}),
    )
    with pytest.raises(TritonError, match="its first dim must be the batch size"):
        server.infer("m", {"IN": row(1, 2)})
    server.add_model(config(f'name: "n" max_batch_size: 4 {IO}'), Recorder(lambda inputs: [1]))
    with pytest.raises(TritonError, match="must return a dict"):
        server.infer("n", {"IN": row(1)})
    server.add_model(config(f'name: "o" max_batch_size: 4 {IO}'), Recorder(lambda inputs: {}))
    with pytest.raises(TritonError, match="did not produce requested output 'OUT'"):
        server.infer("o", {"IN": row(1)}, outputs=["OUT"])


def test_n_instances_run_n_batches_at_once(server: Server) -> None:
    def sleepy(inputs: dict[str, np.ndarray]) -> dict[str, Any]:
        time.sleep(0.3)  # releases the GIL, like a real framework computing
        return {"OUT": inputs["IN"]}

    rec = Recorder(sleepy)
    server.add_model(config(f'name: "m" max_batch_size: 1 {IO} instance_group [{{ count: 3 }}]'), rec)
    t0 = time.monotonic()
    asyncio.run(gather(server, "m", [1, 2, 3]))
    elapsed = time.monotonic() - t0
    starts = sorted(s for s, _ in rec.intervals)
    ends = sorted(e for _, e in rec.intervals)
    assert len(starts) == 3
    assert starts[-1] < ends[0], "all three executions overlap in time"
    assert elapsed < 0.8


def test_sync_and_async_callers_mix(server: Server) -> None:
    server.add_model(
        config(f'name: "m" max_batch_size: 8 {IO} dynamic_batching {{ max_queue_delay_microseconds: 2000 }}'),
        Recorder(),
    )
    outs: list[float] = []

    def sync_client() -> None:
        for i in range(20):
            outs.append(float(server.infer("m", {"IN": row(i)})["OUT"][0, 0]))

    threads = [threading.Thread(target=sync_client) for _ in range(4)]
    for t in threads:
        t.start()
    results = asyncio.run(gather(server, "m", list(range(40))))
    for t in threads:
        t.join()
    assert sorted(outs) == sorted([2.0 * i for i in range(20)] * 4)
    assert [float(r["OUT"][0, 0]) for r in results] == [2.0 * i for i in range(40)]


def test_remove_model_waits_for_in_flight_requests(server: Server) -> None:
    def slow(inputs: dict[str, np.ndarray]) -> dict[str, Any]:
        time.sleep(0.05)
        return {"OUT": inputs["IN"]}

    rec = Recorder(slow)
    server.add_model(config(f'name: "m" max_batch_size: 1 {IO}'), rec)

    async def main() -> list[Any]:
        futures = [server.submit("m", {"IN": row(i)}) for i in range(5)]
        await asyncio.sleep(0.01)
        await asyncio.get_running_loop().run_in_executor(None, server.remove_model, "m")
        return await asyncio.gather(*futures)

    results = asyncio.run(main())
    assert len(results) == 5 and rec.closed == 1
    with pytest.raises(TritonError, match="unknown model") as info:
        server.infer("m", {"IN": row(1)})
    assert info.value.status == "NOT_FOUND"


def test_inputs_are_not_copied_for_a_single_request(server: Server) -> None:
    seen: list[int] = []

    def record_pointer(inputs: dict[str, np.ndarray]) -> dict[str, Any]:
        seen.append(inputs["IN"].ctypes.data)
        return {"OUT": inputs["IN"]}

    server.add_model(config(f'name: "m" max_batch_size: 4 {IO}'), Recorder(record_pointer))
    arr = row(3, 2)
    out = server.infer("m", {"IN": arr})
    assert seen == [arr.ctypes.data]
    assert out["OUT"].ctypes.data == arr.ctypes.data  # and the output is a view of it


# ---- request validation (Triton's messages) ----


@pytest.fixture
def two_input_server(server: Server) -> Server:
    server.add_model(
        config(
            'name: "simple" max_batch_size: 8 '
            'input [{ name: "INPUT0" data_type: TYPE_INT32 dims: [ 16 ] }, '
            '{ name: "INPUT1" data_type: TYPE_INT32 dims: [ 16 ] }] '
            'output [{ name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 16 ] }]'
        ),
        Recorder(lambda inputs: {"OUTPUT0": inputs["INPUT0"] + inputs["INPUT1"]}),
    )
    return server


@pytest.mark.parametrize(
    "inputs, outputs, message",
    [
        (  # more inputs than the model has: Triton counts before it looks at names
            {"INPUT0": np.zeros((1, 16), np.int32), "INPUT1": np.zeros((1, 16), np.int32), "X": np.zeros((1, 16), np.int32)},
            None,
            (
                "expected 2 inputs but got 3 inputs for model 'simple'. Got input(s) "
                "['X','INPUT1','INPUT0'], but missing required input(s) ]. Please provide all "
                "required input(s)."
            ),
        ),
        (
            {"INPUT0": np.zeros((1, 16), np.int32), "X": np.zeros((1, 16), np.int32)},
            None,
            "unexpected inference input 'X' for model 'simple'",
        ),
        (
            {"INPUT0": np.zeros((1, 16), np.int32)},
            None,
            "expected 2 inputs but got 1 inputs for model 'simple'. Got input(s) ['INPUT0'], "
            "but missing required input(s) ['INPUT1']. Please provide all required input(s).",
        ),
        (
            {"INPUT0": np.zeros((1, 16), np.float32), "INPUT1": np.zeros((1, 16), np.int32)},
            None,
            "inference input 'INPUT0' data-type is 'FP32', but model 'simple' expects 'INT32'",
        ),
        (
            {"INPUT0": np.zeros((1, 8), np.int32), "INPUT1": np.zeros((1, 16), np.int32)},
            None,
            "unexpected shape for input 'INPUT0' for model 'simple'. Expected [-1,16], got [1,8]",
        ),
        (
            {"INPUT0": np.zeros((9, 16), np.int32), "INPUT1": np.zeros((9, 16), np.int32)},
            None,
            "inference request batch-size must be <= 8 for 'simple'",
        ),
        (
            {"INPUT0": np.zeros((2, 16), np.int32), "INPUT1": np.zeros((1, 16), np.int32)},
            None,
            "[request id: <id_unknown>] input 'INPUT1' batch size does not match other inputs "
            "for 'simple'",
        ),
        (
            {"INPUT0": np.zeros((1, 16), np.int32), "INPUT1": np.zeros((1, 16), np.int32)},
            ["NOPE"],
            "unexpected inference output 'NOPE' for model 'simple'",
        ),
    ],
)
def test_validation_errors(
    two_input_server: Server, inputs: dict[str, Any], outputs: list[str] | None, message: str
) -> None:
    with pytest.raises(TritonError) as info:
        two_input_server.infer("simple", inputs, outputs)
    assert message in info.value.message
    assert info.value.status == "INVALID_ARG"
    # The model keeps serving.
    good = {"INPUT0": np.ones((1, 16), np.int32), "INPUT1": np.ones((1, 16), np.int32)}
    assert two_input_server.infer("simple", good)["OUTPUT0"].sum() == 32


def test_unknown_model_and_version(two_input_server: Server) -> None:
    with pytest.raises(TritonError, match="unknown model") as info:
        two_input_server.infer("nope", {})
    assert info.value.status == "NOT_FOUND"
    with pytest.raises(TritonError, match="version 3 is not found"):
        two_input_server.infer("simple", {}, version=3)


# ---- backends that answer each request themselves (python backend, decoupled) ----


class PerRequest:
    """A per-request backend: `answer(request)` decides what to send."""

    per_request_execution = True

    def __init__(self, answer: Callable[[Any], None]) -> None:
        self.answer = answer
        self.kept: list[Any] = []

    def create_instance(self, index: int, kind: str, device_id: int) -> PerRequest:
        return self

    def execute_requests(self, requests: list[Any]) -> None:
        for r in requests:
            self.answer(r)

    def close(self) -> None:
        pass


def _double(request: Any) -> dict[str, Any]:
    return {"OUT": dict(request.inputs())["IN"].numpy() * 2}


def test_per_request_backend_answers_each_request(server: Server) -> None:
    server.add_model(
        config(f'name: "m" max_batch_size: 4 {IO} dynamic_batching {{ max_queue_delay_microseconds: 20000 }}'),
        PerRequest(lambda r: r.respond(_double(r))),
    )
    results = asyncio.run(gather(server, "m", [1, 2, 3]))
    assert [float(r["OUT"][0, 0]) for r in results] == [2, 4, 6]
    stats = server.statistics("m")[0]
    assert stats["inference_stats"]["success"]["count"] == 3
    assert sum(b["compute_infer"]["count"] for b in stats["batch_stats"]) < 3  # batched


def test_decoupled_responses_stream_then_final(server: Server) -> None:
    def stream(r: Any) -> None:
        for i in range(3):
            r.respond({"OUT": np.full((1, 2), i, np.float32)}, final=False)
        r.respond(final=True)  # Triton's COMPLETE_FINAL flag without a response

    server.add_model(config(f'name: "m" max_batch_size: 1 {IO}'), PerRequest(stream))
    got: list[tuple[Any, Any, bool]] = []

    async def main() -> None:
        done = asyncio.get_running_loop().create_future()

        def on_response(error: Any, outputs: Any, final: bool) -> None:
            got.append((error, outputs, final))
            if final:
                done.set_result(None)

        server.submit_stream("m", {"IN": row(0)}, on_response)
        await done

    asyncio.run(main())
    assert [g[2] for g in got] == [False, False, False, True]
    assert [float(dict(g[1])["OUT"].numpy()[0, 0]) for g in got[:3]] == [0, 1, 2]
    assert got[3][1] == [] and got[3][0] is None
    # The sync API collects every response; the last one wins.
    assert server.infer("m", {"IN": row(0)}) == {}


def test_request_answered_later_from_another_thread(server: Server) -> None:
    backend = PerRequest(lambda r: threading.Timer(0.05, lambda: r.respond(_double(r))).start())
    server.add_model(config(f'name: "m" max_batch_size: 1 {IO}'), backend)
    np.testing.assert_array_equal(server.infer("m", {"IN": row(4)})["OUT"], row(8))


def test_request_dropped_without_final_response_fails_cleanly(server: Server) -> None:
    server.add_model(config(f'name: "m" max_batch_size: 1 {IO}'), PerRequest(lambda r: None))
    with pytest.raises(TritonError, match="released a request without sending its final response"):
        server.infer("m", {"IN": row(1)})


def test_second_final_response_is_refused(server: Server) -> None:
    errors: list[str] = []
    tried = threading.Event()

    def twice(r: Any) -> None:
        out = _double(r)  # inputs are released with the final response
        r.respond(out)
        try:
            r.respond(out)
        except TritonError as e:
            errors.append(e.message)
        tried.set()

    server.add_model(config(f'name: "m" max_batch_size: 1 {IO}'), PerRequest(twice))
    np.testing.assert_array_equal(server.infer("m", {"IN": row(1)})["OUT"], row(2))
    assert tried.wait(30)  # the caller is answered by the first respond, before the second
    assert errors and "final response was already sent" in errors[0]


def test_per_request_backend_exception_fails_unanswered_requests(server: Server) -> None:
    def boom(r: Any) -> None:
        raise RuntimeError("model exploded")

    server.add_model(config(f'name: "m" max_batch_size: 1 {IO}'), PerRequest(boom))
    with pytest.raises(TritonError, match="model exploded"):
        server.infer("m", {"IN": row(1)})
    stats = server.statistics("m")[0]["inference_stats"]
    assert stats["fail"]["count"] == 1
