"""tritonlite.pytriton clients: ModelClient's config, FuturesModelClient, AsyncioModelClient
(gRPC and HTTP), DecoupledModelClient and AsyncioDecoupledModelClient (gRPC; HTTP refused)
against functions bound with Triton (issue #22)."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from tritonlite.pytriton.client import (
    AsyncioDecoupledModelClient,
    AsyncioModelClient,
    DecoupledModelClient,
    FuturesModelClient,
    ModelClient,
)
from tritonlite.pytriton.decorators import batch
from tritonlite.pytriton.exceptions import (
    PyTritonClientClosedError,
    PyTritonClientInferenceServerError,
    PyTritonClientInvalidUrlError,
    PyTritonClientModelDoesntSupportBatchingError,
    PyTritonClientQueueFullError,
    PyTritonClientValueError,
)
from tritonlite.pytriton.model_config import ModelConfig, Tensor
from tritonlite.pytriton.triton import Triton, TritonConfig

IO = dict(
    inputs=[Tensor(name="a", dtype=np.float32, shape=(-1,)),
            Tensor(name="b", dtype=np.float32, shape=(-1,))],
    outputs=[Tensor(name="sum", dtype=np.float32, shape=(-1,))],
)  # fmt: skip


@pytest.fixture(scope="module")
def served():
    release = threading.Event()

    @batch
    def add(a, b):
        if float(a.flat[0]) < 0:
            raise ValueError("negative input")
        return {"sum": a + b}

    @batch
    def slow(a, b):
        release.wait(30)
        return {"sum": a + b}

    def stream(requests):  # decoupled: n responses, then the final flag
        n = int(requests[0]["a"].flat[0])
        for i in range(n):
            yield [{"sum": np.full((1, 2), i, np.float32)} for _ in requests]

    def unbatched(requests):
        return [{"sum": r["a"] + r["b"]} for r in requests]

    config = TritonConfig(grpc_port=0, http_port=0, grpc_address="127.0.0.1",
                          http_address="127.0.0.1", allow_metrics=False)  # fmt: skip
    with Triton(config=config) as t:
        t.bind("add", add, config=ModelConfig(max_batch_size=8), **IO)
        t.bind("slow", slow, config=ModelConfig(max_batch_size=8), **IO)
        t.bind("stream", stream, config=ModelConfig(max_batch_size=8, decoupled=True), **IO)
        t.bind("unbatched", unbatched, config=ModelConfig(batching=False), **IO)
        t.run()
        t.release = release
        yield t
    release.set()


def _url(t: Triton, scheme: str) -> str:
    return f"{scheme}://127.0.0.1:{t.grpc_port if scheme == 'grpc' else t.http_port}"


ONE = np.ones((2, 3), np.float32)


@pytest.mark.parametrize("scheme", ["grpc", "http"])
def test_model_client_config_and_batching(served, scheme):
    with ModelClient(_url(served, scheme), "add", lazy_init=False) as c:
        config = c.model_config
        assert (config.model_name, config.max_batch_size, config.batching) == ("add", 8, True)
        assert [s.name for s in config.inputs] == ["a", "b"]
        assert config.inputs[0].dtype == np.float32 and config.outputs[0].name == "sum"
        np.testing.assert_array_equal(c.infer_batch(ONE, ONE)["sum"], ONE * 2)
    with ModelClient(_url(served, scheme), "unbatched") as c:
        with pytest.raises(PyTritonClientModelDoesntSupportBatchingError):
            c.infer_batch(ONE, ONE)
        np.testing.assert_array_equal(c.infer_sample(a=ONE[0], b=ONE[0])["sum"], ONE[0] * 2)
    with pytest.raises(PyTritonClientInvalidUrlError):
        ModelClient("ftp://127.0.0.1:1", "add")


@pytest.mark.parametrize("scheme", ["grpc", "http"])
def test_futures_model_client(served, scheme):
    with FuturesModelClient(_url(served, scheme), "add", max_workers=4) as c:
        assert c.model_config().result(30).max_batch_size == 8
        futures = [c.infer_sample(a=np.full(3, i, np.float32), b=np.ones(3, np.float32))
                   for i in range(8)]  # fmt: skip
        for i, f in enumerate(futures):
            np.testing.assert_array_equal(f.result(30)["sum"], np.full(3, i + 1, np.float32))
        np.testing.assert_array_equal(c.infer_batch(ONE, ONE).result(30)["sum"], ONE * 2)
        with pytest.raises(PyTritonClientInferenceServerError, match="negative input"):
            c.infer_batch(-ONE, ONE).result(30)
    with pytest.raises(PyTritonClientClosedError):
        c.infer_batch(ONE, ONE)


def test_futures_model_client_non_blocking_queue_full(served):
    c = FuturesModelClient(_url(served, "grpc"), "slow", max_workers=1, max_queue_size=1,
                           non_blocking=True)  # fmt: skip
    try:
        first = c.infer_batch(ONE, ONE)  # taken by the only worker, which then blocks
        deadline = 50
        while c._queue.qsize() and deadline:  # wait until the worker took it
            threading.Event().wait(0.1)
            deadline -= 1
        second = c.infer_batch(ONE, ONE)  # fills the queue
        with pytest.raises(PyTritonClientQueueFullError, match="Queue is full"):
            c.infer_batch(ONE, ONE)
    finally:
        served.release.set()
        c.close()
    np.testing.assert_array_equal(first.result(30)["sum"], ONE * 2)
    np.testing.assert_array_equal(second.result(30)["sum"], ONE * 2)


@pytest.mark.parametrize("scheme", ["grpc", "http"])
def test_asyncio_model_client(served, scheme):
    async def main():
        async with AsyncioModelClient(_url(served, scheme), "add", lazy_init=False) as c:
            assert (await c.model_config).max_batch_size == 8
            results = await asyncio.gather(*(
                c.infer_sample(np.full(2, i, np.float32), np.ones(2, np.float32))
                for i in range(5)))  # fmt: skip
            for i, r in enumerate(results):
                np.testing.assert_array_equal(r["sum"], np.full(2, i + 1, np.float32))
            np.testing.assert_array_equal((await c.infer_batch(a=ONE, b=ONE))["sum"], ONE * 2)
            with pytest.raises(PyTritonClientInferenceServerError, match="negative input"):
                await c.infer_batch(-ONE, ONE)
        with pytest.raises(PyTritonClientClosedError):
            await c.infer_batch(ONE, ONE)

    asyncio.run(main())


def test_decoupled_model_client_streams(served):
    three = np.full((1, 2), 3, np.float32)
    with DecoupledModelClient(_url(served, "grpc"), "stream") as c:
        got = [r["sum"].tolist() for r in c.infer_batch(three, three)]
        assert got == [[[0.0, 0.0]], [[1.0, 1.0]], [[2.0, 2.0]]]
        got = [r["sum"].tolist() for r in c.infer_sample(np.full(2, 2, np.float32), three[0])]
        assert got == [[0.0, 0.0], [1.0, 1.0]]  # again on the same stream, batch dim taken off
    with DecoupledModelClient(_url(served, "grpc"), "add") as c:
        with pytest.raises(PyTritonClientInferenceServerError, match="coupled"):
            c.infer_batch(ONE, ONE)
    with pytest.raises(PyTritonClientValueError, match="only supported for grpc"):
        DecoupledModelClient(_url(served, "http"), "stream")


def test_asyncio_decoupled_model_client_streams(served):
    async def main():
        async with AsyncioDecoupledModelClient(_url(served, "grpc"), "stream") as c:
            three = np.full((1, 2), 3, np.float32)
            got = [r["sum"].tolist() async for r in c.infer_batch(three, three)]
            assert got == [[[0.0, 0.0]], [[1.0, 1.0]], [[2.0, 2.0]]]

    asyncio.run(main())
    with pytest.raises(PyTritonClientValueError, match="only supported for grpc"):
        AsyncioDecoupledModelClient(_url(served, "http"), "stream")


@pytest.mark.parametrize("scheme", ["grpc", "http"])
def test_model_client_model_control_is_refused_for_bound_functions(served, scheme):
    """ModelClient.load_model/unload_model reach the server; bound functions have no
    repository, so both fail with PyTriton's model-control error and the model keeps serving."""
    with ModelClient(_url(served, scheme), "add") as c:
        for call in (c.load_model, c.unload_model):
            with pytest.raises(PyTritonClientInferenceServerError, match="Error occurred during "
                               "model control request. Message: the server has no model "
                               "repository"):  # fmt: skip
                call()
        np.testing.assert_array_equal(c.infer_batch(ONE, ONE)["sum"], ONE * 2)
