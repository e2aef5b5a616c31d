"""tritonlite.pytriton: PyTriton-style scripts served by tritonlite, through tritonclient gRPC
and HTTP (issue #22)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TypedDict

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonlite
from numpy.typing import NDArray
from serving import free_port
from tritonclient.utils import InferenceServerException
from tritonlite.pytriton.client import ModelClient
from tritonlite.pytriton.decorators import batch, first_value, sample
from tritonlite.pytriton.exceptions import (
    PyTritonClientInferenceServerError,
    PyTritonUserError,
    PyTritonValidationError,
)
from tritonlite.pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from tritonlite.pytriton.triton import Triton, TritonConfig

SCRIPTS = Path(__file__).parent / "pytriton_scripts"
I32 = [Tensor(name="INPUT0", dtype=np.int32, shape=(16,)),
       Tensor(name="INPUT1", dtype=np.int32, shape=(16,))]  # fmt: skip
O32 = [Tensor(name="OUTPUT0", dtype=np.int32, shape=(16,)),
       Tensor(name="OUTPUT1", dtype=np.int32, shape=(16,))]  # fmt: skip


class AddSub(TypedDict):  # the short path's outputs, by the return hint
    total: NDArray[np.int32]
    diff: NDArray[np.int32]


def _config() -> TritonConfig:
    return TritonConfig(grpc_port=0, http_port=0, metrics_port=0, grpc_address="127.0.0.1",
                        http_address="127.0.0.1", allow_metrics=False)  # fmt: skip


@pytest.fixture
def triton():
    with Triton(config=_config()) as t:
        yield t


def _clients(t: Triton):
    return [
        (grpcclient, grpcclient.InferenceServerClient(f"127.0.0.1:{t.grpc_port}")),
        (httpclient, httpclient.InferenceServerClient(f"127.0.0.1:{t.http_port}")),
    ]


def _infer(module, client, model, **arrays):
    inputs = []
    for name, a in arrays.items():
        i = module.InferInput(name, list(a.shape), "INT32")
        i.set_data_from_numpy(a)
        inputs.append(i)
    return client.infer(model, inputs)


def test_add_sub_script_grpc_and_http():
    grpc_port, http_port, metrics_port = free_port(), free_port(), free_port()
    env = {**os.environ, "GRPC_PORT": str(grpc_port), "HTTP_PORT": str(http_port),
           "METRICS_PORT": str(metrics_port)}  # fmt: skip
    proc = subprocess.Popen([sys.executable, str(SCRIPTS / "add_sub.py")], env=env)
    try:
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        deadline = time.monotonic() + 60
        while True:
            try:
                if client.is_model_ready("add_sub"):
                    break
            except InferenceServerException:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "script did not start"
            time.sleep(0.1)
        a = np.arange(48, dtype=np.int32).reshape(3, 16)
        b = np.full((3, 16), 5, dtype=np.int32)
        for module, url in ((grpcclient, f"127.0.0.1:{grpc_port}"),
                            (httpclient, f"127.0.0.1:{http_port}")):  # fmt: skip
            c = module.InferenceServerClient(url)
            r = _infer(module, c, "add_sub", INPUT0=a, INPUT1=b)
            np.testing.assert_array_equal(r.as_numpy("OUTPUT0"), a + b)
            np.testing.assert_array_equal(r.as_numpy("OUTPUT1"), a - b)
            config = c.get_model_config("add_sub")
            config = config.config if module is grpcclient else config
            max_batch = config.max_batch_size if module is grpcclient else config["max_batch_size"]
            assert max_batch == 64
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0  # serve() stops cleanly on SIGTERM


def test_multi_instance_function_list(triton):
    seen: list[int] = []
    lock = threading.Lock()
    running = threading.Barrier(2, timeout=10)

    def make(index):
        @batch
        def infer(INPUT0, INPUT1):
            with lock:
                seen.append(index)
            running.wait()  # both instances must run at once, or this times out
            return {"OUTPUT0": INPUT0 + index, "OUTPUT1": INPUT1}

        return infer

    triton.bind("multi", [make(0), make(1)], I32, O32, config=ModelConfig(batching=False))
    triton.run()
    g = grpcclient.InferenceServerClient(f"127.0.0.1:{triton.grpc_port}")
    assert g.get_model_config("multi").config.instance_group[0].count == 2
    a = np.zeros(16, dtype=np.int32)
    results = []

    def call():
        results.append(_infer(grpcclient, g, "multi", INPUT0=a, INPUT1=a).as_numpy("OUTPUT0"))

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(seen) == [0, 1]
    assert sorted(int(r[0]) for r in results) == [0, 1]


def test_decoupled_generator_streams(triton):
    def count(requests):  # a PyTriton generator: one list of per-request dicts per step
        n = int(requests[0]["INPUT0"][0][0])
        for i in range(n):
            yield [{"OUTPUT0": np.full((1, 16), i, np.int32), "OUTPUT1": r["INPUT1"]}
                   for r in requests]  # fmt: skip

    triton.bind("count", count, I32, O32, config=ModelConfig(decoupled=True))
    triton.run()
    g = grpcclient.InferenceServerClient(f"127.0.0.1:{triton.grpc_port}")
    assert g.get_model_config("count").config.model_transaction_policy.decoupled
    got = []
    done = threading.Event()

    def callback(result, error):
        if error is not None:
            got.append(str(error))
            done.set()
            return
        if result.get_response().parameters["triton_final_response"].bool_param:
            done.set()
            return
        got.append(int(result.as_numpy("OUTPUT0")[0][0]))

    g.start_stream(callback)
    i = grpcclient.InferInput("INPUT0", [1, 16], "INT32")
    i.set_data_from_numpy(np.full((1, 16), 3, np.int32))
    j = grpcclient.InferInput("INPUT1", [1, 16], "INT32")
    j.set_data_from_numpy(np.zeros((1, 16), np.int32))
    g.async_stream_infer("count", [i, j], enable_empty_final_response=True)
    assert done.wait(30)
    g.stop_stream()
    assert got == [0, 1, 2]


@pytest.mark.parametrize("scheme", ["grpc", "http"])
def test_model_client_round_trip(triton, scheme):
    @batch
    @first_value("scale")
    def scaled(data, scale):
        return {"result": data * scale}

    triton.bind(
        "scaled", scaled,
        inputs=[Tensor(name="data", dtype=np.float32, shape=(-1,)),
                Tensor(name="scale", dtype=np.float32, shape=(1,))],
        outputs=[Tensor(name="result", dtype=np.float32, shape=(-1,))],
        config=ModelConfig(max_batch_size=8),
    )  # fmt: skip
    triton.run()
    port = triton.grpc_port if scheme == "grpc" else triton.http_port
    with ModelClient(f"{scheme}://127.0.0.1:{port}", "scaled") as client:
        data = np.arange(6, dtype=np.float32).reshape(2, 3)
        out = client.infer_batch(data=data, scale=np.full((2, 1), 2, np.float32))
        np.testing.assert_array_equal(out["result"], data * 2)
        out = client.infer_sample(np.ones(4, np.float32), np.array([3], np.float32))
        np.testing.assert_array_equal(out["result"], np.full(4, 3, np.float32))


def test_per_request_function_with_sample(triton):
    @sample
    def add_sub(INPUT0, INPUT1):
        return {"OUTPUT0": INPUT0 + INPUT1, "OUTPUT1": INPUT0 - INPUT1}

    triton.bind("sampled", add_sub, I32, O32, config=ModelConfig(batching=False))
    triton.run()
    a = np.arange(16, dtype=np.int32)
    for module, client in _clients(triton):
        r = _infer(module, client, "sampled", INPUT0=a, INPUT1=a)
        np.testing.assert_array_equal(r.as_numpy("OUTPUT1"), np.zeros(16, np.int32))


@pytest.mark.parametrize("path", ["gathered", "per_request"])
def test_error_raised_in_function(triton, path):
    def fail(INPUT0, INPUT1):
        if int(INPUT0.flat[0]) == 1:
            raise PyTritonUserError("first value must not be 1")
        raise ValueError("boom in the function")

    func = batch(fail) if path == "gathered" else sample(fail)
    triton.bind("fails", func, I32, O32, config=ModelConfig(max_batch_size=4))
    triton.run()
    ones, zeros = np.ones((1, 16), np.int32), np.zeros((1, 16), np.int32)
    for module, client in _clients(triton):
        with pytest.raises(InferenceServerException, match="boom in the function") as e:
            _infer(module, client, "fails", INPUT0=zeros, INPUT1=zeros)
        assert "ValueError" in str(e.value.message())
        with pytest.raises(InferenceServerException, match="first value must not be 1") as e:
            _infer(module, client, "fails", INPUT0=ones, INPUT1=ones)
        assert e.value.status() in ("StatusCode.INVALID_ARGUMENT", "400")
    with ModelClient(f"grpc://127.0.0.1:{triton.grpc_port}", "fails") as mc:
        with pytest.raises(PyTritonClientInferenceServerError, match="boom"):
            mc.infer_batch(INPUT0=zeros, INPUT1=zeros)


def test_unsupported_settings_are_refused(triton):
    with pytest.raises(PyTritonValidationError, match="grpc_use_ssl"):
        TritonConfig(grpc_use_ssl=True)
    with pytest.raises(PyTritonValidationError, match="strict=True"):
        triton.bind("m", batch(lambda **k: k), I32, O32, strict=True)
    with pytest.raises(PyTritonValidationError, match="response_cache"):
        triton.bind("m", batch(lambda **k: k), I32, O32, config=ModelConfig(response_cache=True))
    with pytest.raises(PyTritonValidationError, match="triton_lifecycle_policy"):
        Triton(triton_lifecycle_policy=object())


def test_typed_function_short_path(triton):
    from typing import TypedDict

    class AddSub(TypedDict):
        total: NDArray[np.int32]
        diff: NDArray[np.int32]

    @tritonlite.function(max_batch_size=8, shapes={"a": (16,), "b": (16,)})
    def add_sub(a: NDArray[np.int32], b: NDArray[np.int32]) -> AddSub:
        return {"total": a + b, "diff": a - b}

    @tritonlite.function
    def double(x: NDArray[np.float32]) -> NDArray[np.float32]:
        return x * 2

    add_sub.bind(triton)
    double.bind(triton)
    triton.run()
    a = np.arange(32, dtype=np.int32).reshape(2, 16)
    with ModelClient(f"grpc://127.0.0.1:{triton.grpc_port}", "add_sub") as client:
        out = client.infer_batch(a=a, b=a)
        np.testing.assert_array_equal(out["total"], a * 2)
        np.testing.assert_array_equal(out["diff"], 0 * a)
    with ModelClient(f"http://127.0.0.1:{triton.http_port}", "double") as client:
        out = client.infer_sample(x=np.ones(5, np.float32))
        np.testing.assert_array_equal(out["output"], np.full(5, 2, np.float32))
    with pytest.raises(PyTritonValidationError, match="NDArray"):

        @tritonlite.function
        def untyped(x: np.ndarray) -> np.ndarray:
            return x


def _address(a: np.ndarray) -> int:
    return int(a.__array_interface__["data"][0])


def test_gathered_path_numpy_in_and_out_without_copies(triton):
    """The @batch function gets the request's own buffers (one request: views, no copy; a
    gathered batch: the core's one batch buffer) and the arrays it returns go back without a
    copy: each request's output is a view into them (a slice of rows for a batch)."""
    seen: list[dict[str, np.ndarray]] = []
    returned: list[np.ndarray] = []

    @batch
    def add_sub(INPUT0, INPUT1):
        seen.append({"INPUT0": INPUT0, "INPUT1": INPUT1})
        total = INPUT0 + INPUT1
        returned.append(total)
        return {"OUTPUT0": total, "OUTPUT1": INPUT0 - INPUT1}

    triton.bind("zero_copy", add_sub, I32, O32, config=ModelConfig(max_batch_size=8))
    triton.bind(
        "zero_copy3", add_sub, I32, O32,
        config=ModelConfig(max_batch_size=8, batcher=DynamicBatcher(
            max_queue_delay_microseconds=5_000_000, preferred_batch_size=[3])),
    )  # fmt: skip
    triton.run()
    server = triton._server

    # one request, in-process: the function's inputs alias the caller's arrays, and the
    # caller's outputs alias the array the function returned
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.full((1, 16), 3, np.int32)
    out = server.infer("zero_copy", {"INPUT0": a, "INPUT1": b}, ["OUTPUT0"])
    np.testing.assert_array_equal(out["OUTPUT0"], a + b)
    assert _address(seen[-1]["INPUT0"]) == _address(a)
    assert _address(seen[-1]["INPUT1"]) == _address(b)
    assert np.shares_memory(seen[-1]["INPUT0"], a)
    assert _address(out["OUTPUT0"]) == _address(returned[-1])

    # three requests gathered into one batch (preferred size 3): the rows are the core's batch
    # buffer (one gather, no Python concatenation), each response a row view of the output
    rows = [np.full((1, 16), i, np.int32) for i in range(3)]
    results: dict[int, dict[str, np.ndarray]] = {}

    def call(i: int) -> None:
        results[i] = server.infer("zero_copy3", {"INPUT0": rows[i], "INPUT1": rows[i]})

    threads = [threading.Thread(target=call, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert seen[-1]["INPUT0"].shape == (3, 16)
    base = _address(returned[-1])
    offsets = sorted(_address(r["OUTPUT0"]) - base for r in results.values())
    assert offsets == [0, 64, 128]  # rows of the returned array: views, not copies
    for i, r in results.items():
        np.testing.assert_array_equal(r["OUTPUT0"], rows[i] * 2)
        assert np.shares_memory(r["OUTPUT0"], returned[-1])

    # over the network: the inputs are views of the received message, never arrays the
    # backend allocated and copied into
    for module, client in _clients(triton):
        seen.clear()
        _infer(module, client, "zero_copy", INPUT0=a, INPUT1=b)
        assert not seen[0]["INPUT0"].flags.owndata and not seen[0]["INPUT1"].flags.owndata
