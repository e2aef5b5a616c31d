"""tritonlite.pytriton decorators beyond @batch/@sample: group_by_values (+ ConstantPadder),
pad_batch, triton_context, fill_optionals/group_by_keys over @batch, list outputs; served by a
bound Triton and called through tritonclient gRPC and HTTP (issue #22)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonlite.pytriton.decorators import (
    ConstantPadder,
    batch,
    fill_optionals,
    group_by_keys,
    group_by_values,
    pad_batch,
    triton_context,
)
from tritonlite.pytriton.exceptions import PyTritonRuntimeError, PyTritonValidationError
from tritonlite.pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from tritonlite.pytriton.triton import Triton, TritonConfig


@pytest.fixture
def triton():
    config = TritonConfig(grpc_port=0, http_port=0, grpc_address="127.0.0.1",
                          http_address="127.0.0.1", allow_metrics=False)  # fmt: skip
    with Triton(config=config) as t:
        yield t


def _clients(t: Triton):
    return [
        (grpcclient, grpcclient.InferenceServerClient(f"127.0.0.1:{t.grpc_port}")),
        (httpclient, httpclient.InferenceServerClient(f"127.0.0.1:{t.http_port}")),
    ]


def _new_client(t: Triton, module):
    if module is grpcclient:
        return grpcclient.InferenceServerClient(f"127.0.0.1:{t.grpc_port}")
    return httpclient.InferenceServerClient(f"127.0.0.1:{t.http_port}")


def _infer(module, client, model, **arrays):
    inputs = []
    for name, a in arrays.items():
        dtype = "BYTES" if a.dtype.kind in "OS" else {"i": "INT32", "f": "FP32"}[a.dtype.kind]
        i = module.InferInput(name, list(a.shape), dtype)
        i.set_data_from_numpy(a)
        inputs.append(i)
    return client.infer(model, inputs)


def _together(calls):
    """Run the calls at once (so that the dynamic batcher can gather them); their results."""
    results: dict[int, object] = {}

    def run(i, call):
        try:
            results[i] = call()
        except Exception as e:  # reported by the assertion below
            results[i] = e

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for r in results.values():
        if isinstance(r, Exception):
            raise r
    return [results[i] for i in range(len(calls))]


def _gathering(n: int) -> ModelConfig:
    return ModelConfig(max_batch_size=16, batcher=DynamicBatcher(
        max_queue_delay_microseconds=3_000_000, preferred_batch_size=[n]))  # fmt: skip


def test_group_by_values_calls_once_per_value_and_pads(triton):
    calls: list[tuple[int, ...]] = []

    @batch
    @group_by_values("n", pad_fn=ConstantPadder(-1))
    def repeat(x, n):
        calls.append(tuple(int(v) for v in n[:, 0]))
        k = int(n[0, 0])
        return {"y": np.repeat(x, k, axis=1).astype(np.float32)}

    triton.bind(
        "repeat", repeat,
        inputs=[Tensor(name="x", dtype=np.float32, shape=(1,)),
                Tensor(name="n", dtype=np.int32, shape=(1,))],
        outputs=[Tensor(name="y", dtype=np.float32, shape=(-1,))],
        config=_gathering(3),
    )  # fmt: skip
    triton.run()
    for module, _ in _clients(triton):
        calls.clear()
        values = [(1.0, 2), (2.0, 1), (3.0, 2)]
        results = _together([
            (lambda x=x, n=n: _infer(module, _new_client(triton, module), "repeat",
                                     x=np.array([[x]], np.float32), n=np.array([[n]], np.int32)))
            for x, n in values
        ])  # fmt: skip
        assert sorted(calls) == [(1,), (2, 2)]  # one batch of 3, two groups
        outs = [r.as_numpy("y") for r in results]
        np.testing.assert_array_equal(outs[0], [[1.0, 1.0]])
        np.testing.assert_array_equal(outs[1], [[2.0, -1.0]])  # padded by ConstantPadder(-1)
        np.testing.assert_array_equal(outs[2], [[3.0, 3.0]])


def test_group_by_values_without_padder_refuses_ragged_outputs():
    @group_by_values("n")
    def ragged(x, n):
        return {"y": np.repeat(x, int(n[0, 0]), axis=1)}

    x = np.ones((2, 1), np.float32)
    with pytest.raises(PyTritonValidationError, match="ConstantPadder"):
        ragged(x=x, n=np.array([[1], [2]], np.int32))
    np.testing.assert_array_equal(ragged(x=x, n=np.array([[2], [2]]))["y"], np.ones((2, 2)))


def test_group_by_values_must_be_under_batch():
    @group_by_values("x")
    @batch
    def wrong(x):
        return {"y": x}

    with pytest.raises(PyTritonRuntimeError, match="after the @batch"):
        wrong(x=np.ones((1, 1)))


def test_constant_padder_pads_bytes_and_numbers():
    padded = ConstantPadder(0)([
        {"a": np.array([[1, 2]], np.int32), "s": np.array([[b"ab"]], np.bytes_)},
        {"a": np.array([[3]], np.int32), "s": np.array([[b"abcd"]], np.bytes_)},
    ])  # fmt: skip
    np.testing.assert_array_equal(padded[1]["a"], [[3, 0]])
    assert padded[0]["s"].dtype == np.dtype("S4")
    with pytest.raises(PyTritonRuntimeError, match="same dtype"):
        ConstantPadder()([{"a": np.ones((1, 1), np.int32)}, {"a": np.ones((1, 1), np.int64)}])


def test_pad_batch_pads_to_preferred_size_and_triton_context(triton):
    sizes: list[int] = []
    contexts: list[object] = []

    @batch
    @triton_context
    @pad_batch
    def infer(x, triton_context):
        sizes.append(len(x))
        config = triton_context.model_configs[infer]
        contexts.append((config.model_name, config.max_batch_size, config.batcher))
        return [x * 2]  # a list: outputs in the config's order, as PyTriton allows

    triton.bind(
        "padded", infer,
        inputs=[Tensor(name="x", dtype=np.float32, shape=(2,))],
        outputs=[Tensor(name="y", dtype=np.float32, shape=(2,))],
        config=ModelConfig(max_batch_size=8,
                           batcher=DynamicBatcher(preferred_batch_size=[4, 6])),
    )  # fmt: skip
    triton.run()
    for module, client in _clients(triton):
        sizes.clear()
        x = np.arange(6, dtype=np.float32).reshape(3, 2)
        out = _infer(module, client, "padded", x=x).as_numpy("y")
        np.testing.assert_array_equal(out, x * 2)  # the padding rows are not returned
        assert sizes == [4]  # 3 -> the next preferred size
        out = _infer(module, client, "padded", x=np.ones((7, 2), np.float32)).as_numpy("y")
        assert out.shape == (7, 2) and sizes[-1] == 8  # past the preferred sizes: max_batch_size
    name, max_batch_size, batcher = contexts[-1]
    assert (name, max_batch_size, batcher.preferred_batch_size) == ("padded", 8, [4, 6])


def test_triton_context_on_a_callable_object_and_unbound():
    class Model:
        @triton_context
        def __call__(self, requests, triton_context):
            return [{"y": r["x"]} for r in requests]

    with pytest.raises(PyTritonValidationError, match="bound with triton"):
        Model()([{"x": np.ones(1)}])
    config = TritonConfig(grpc_port=0, http_port=0, grpc_address="127.0.0.1",
                          http_address="127.0.0.1", allow_metrics=False)  # fmt: skip
    model = Model()
    with Triton(config=config) as t:
        t.bind("obj", model, inputs=[Tensor(name="x", dtype=np.float32, shape=(1,))],
               outputs=[Tensor(name="y", dtype=np.float32, shape=(1,))],
               config=ModelConfig(batching=False))  # fmt: skip
        t.run()
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{t.grpc_port}")
        out = _infer(grpcclient, client, "obj", x=np.array([4.0], np.float32))
        np.testing.assert_array_equal(out.as_numpy("y"), [4.0])
    assert model.__triton_context__.model_configs[model].model_name == "obj"


def test_triton_context_over_batch_passes_through(triton):
    """PyTriton's order, @triton_context outside @batch: @batch passes the keyword on."""

    @triton_context
    @batch
    def infer(x, triton_context):
        return {"y": x + triton_context.model_configs[infer].max_batch_size}

    triton.bind("ctx_over_batch", infer, inputs=[Tensor(name="x", dtype=np.float32, shape=(1,))],
                outputs=[Tensor(name="y", dtype=np.float32, shape=(1,))],
                config=ModelConfig(max_batch_size=5))  # fmt: skip
    triton.run()
    for module, client in _clients(triton):
        out = _infer(module, client, "ctx_over_batch", x=np.array([[1.0]], np.float32))
        np.testing.assert_array_equal(out.as_numpy("y"), [[6.0]])


def test_batch_on_a_method(triton):
    class Model:
        offset = 3.0

        @batch
        def __call__(self, x):
            return {"y": x + self.offset}

    io = dict(inputs=[Tensor(name="x", dtype=np.float32, shape=(1,))],
              outputs=[Tensor(name="y", dtype=np.float32, shape=(1,))],
              config=ModelConfig(max_batch_size=4))  # fmt: skip
    triton.bind("method", Model(), **io)  # the object: per-request path
    triton.bind("bound_method", Model().__call__, **io)  # a bound method: the gathered path
    triton.run()
    for module, client in _clients(triton):
        for model in ("method", "bound_method"):
            out = _infer(module, client, model, x=np.array([[1.0], [2.0]], np.float32))
            np.testing.assert_array_equal(out.as_numpy("y"), [[4.0], [5.0]])


def test_fill_optionals_and_group_by_keys_run_before_batch(triton):
    """@fill_optionals and @group_by_keys over @batch must run: the backend calls @batch's
    function directly only when @batch is the outermost decorator."""
    groups: list[list[str]] = []

    @fill_optionals(scale=np.array([10], np.int32))
    @group_by_keys
    @batch
    def scaled(x, scale):
        groups.append(sorted(["x", "scale"]))
        return {"y": x * scale}

    triton.bind(
        "scaled", scaled,
        inputs=[Tensor(name="x", dtype=np.int32, shape=(1,)),
                Tensor(name="scale", dtype=np.int32, shape=(1,), optional=True)],
        outputs=[Tensor(name="y", dtype=np.int32, shape=(1,))],
        config=ModelConfig(max_batch_size=4),
    )  # fmt: skip
    assert getattr(scaled, "__tritonlite_batched__", None) is None
    triton.run()
    for module, client in _clients(triton):
        out = _infer(module, client, "scaled", x=np.array([[3]], np.int32))
        np.testing.assert_array_equal(out.as_numpy("y"), [[30]])
        out = _infer(module, client, "scaled", x=np.array([[3]], np.int32),
                     scale=np.array([[2]], np.int32))  # fmt: skip
        np.testing.assert_array_equal(out.as_numpy("y"), [[6]])
