"""ModelConfig(isolated=True): the bound function runs in a stub process per instance (the
python backend's machinery); a crash there fails that request, not the server (issue #22)."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from pytriton_scripts import isolated_funcs
from tritonclient.utils import InferenceServerException
from tritonlite.pytriton.decorators import batch
from tritonlite.pytriton.exceptions import PyTritonValidationError
from tritonlite.pytriton.model_config import ModelConfig, Tensor
from tritonlite.pytriton.triton import Triton, TritonConfig

IO = dict(
    inputs=[Tensor(name="x", dtype=np.int32, shape=(1,))],
    outputs=[Tensor(name="y", dtype=np.int32, shape=(1,)),
             Tensor(name="pid", dtype=np.int64, shape=(1,))],
)  # fmt: skip


@pytest.fixture(scope="module")
def triton():
    config = TritonConfig(grpc_port=0, http_port=0, grpc_address="127.0.0.1",
                          http_address="127.0.0.1", allow_metrics=False)  # fmt: skip
    with Triton(config=config) as t:
        t.bind("isolated", [isolated_funcs.add_pid, isolated_funcs.add_pid],
               config=ModelConfig(max_batch_size=8, isolated=True), **IO)  # fmt: skip
        t.bind("isolated_stream", isolated_funcs.count,
               config=ModelConfig(max_batch_size=8, decoupled=True, isolated=True), **IO)
        t.bind("isolated_context", isolated_funcs.max_batch,
               config=ModelConfig(max_batch_size=6, isolated=True), **IO)  # fmt: skip
        t.run()
        yield t


def _infer(module, client, value: int, model: str = "isolated"):
    i = module.InferInput("x", [1, 1], "INT32")
    i.set_data_from_numpy(np.array([[value]], np.int32))
    return client.infer(model, [i])


def _clients(t: Triton):
    return [(grpcclient, grpcclient.InferenceServerClient(f"127.0.0.1:{t.grpc_port}")),
            (httpclient, httpclient.InferenceServerClient(f"127.0.0.1:{t.http_port}"))]  # fmt: skip


def test_function_runs_in_other_processes(triton):
    pids = set()
    for module, client in _clients(triton):
        for v in range(4):
            r = _infer(module, client, v)
            assert int(r.as_numpy("y")[0, 0]) == v + 1
            pids.add(int(r.as_numpy("pid")[0, 0]))
    assert os.getpid() not in pids
    g = grpcclient.InferenceServerClient(f"127.0.0.1:{triton.grpc_port}")
    assert g.get_model_config("isolated").config.instance_group[0].count == 2


def test_triton_context_reaches_the_stub(triton):
    g = grpcclient.InferenceServerClient(f"127.0.0.1:{triton.grpc_port}")
    r = _infer(grpcclient, g, 0, "isolated_context")
    assert int(r.as_numpy("y")[0, 0]) == 6 and int(r.as_numpy("pid")[0, 0]) != os.getpid()
    # the model's settings for its stubs stay out of the config clients read
    assert not any(k.startswith("PYTRITON") for k in
                   g.get_model_config("isolated").config.parameters)  # fmt: skip


def test_user_error_and_crash_fail_the_request_not_the_server(triton):
    for module, client in _clients(triton):
        with pytest.raises(InferenceServerException, match="x must not be -2") as e:
            _infer(module, client, -2)
        assert e.value.status() in ("StatusCode.INVALID_ARGUMENT", "400")
    g = grpcclient.InferenceServerClient(f"127.0.0.1:{triton.grpc_port}")
    with pytest.raises(InferenceServerException, match="not healthy"):
        _infer(grpcclient, g, -1)  # the stub exits in the middle of the request
    assert g.is_server_live()
    deadline = time.monotonic() + 60
    while True:  # the server restarts the instance's stub; requests wait for it
        try:
            r = _infer(grpcclient, g, 5)
            break
        except InferenceServerException:
            assert time.monotonic() < deadline, "the instance did not come back"
            time.sleep(0.2)
    assert int(r.as_numpy("y")[0, 0]) == 6 and int(r.as_numpy("pid")[0, 0]) != os.getpid()


def test_decoupled_generator_streams_from_the_stub(triton):
    import queue

    got: queue.Queue = queue.Queue()
    g = grpcclient.InferenceServerClient(f"127.0.0.1:{triton.grpc_port}")
    g.start_stream(lambda result, error: got.put((result, error)))
    i = grpcclient.InferInput("x", [1, 1], "INT32")
    i.set_data_from_numpy(np.array([[3]], np.int32))
    g.async_stream_infer("isolated_stream", [i], enable_empty_final_response=True)
    values = []
    while True:
        result, error = got.get(timeout=30)
        assert error is None, error
        response = result.get_response()
        if response.outputs:
            values.append(int(result.as_numpy("y")[0, 0]))
            assert int(result.as_numpy("pid")[0, 0]) != os.getpid()
        if response.parameters["triton_final_response"].bool_param:
            break
    g.stop_stream()
    assert values == [0, 1, 2]


def test_functions_that_cannot_be_imported_are_refused():
    def closure(requests):
        return requests

    config = ModelConfig(max_batch_size=8, isolated=True)
    with Triton(config=TritonConfig(allow_grpc=False, allow_http=False,
                                    allow_metrics=False)) as t:  # fmt: skip
        with pytest.raises(PyTritonValidationError, match="lambda or a function defined inside"):
            t.bind("m", batch(lambda x: {"y": x}), config=config, **IO)
        with pytest.raises(PyTritonValidationError, match="defined inside another function"):
            t.bind("m", closure, config=config, **IO)

        class Callable:
            def __call__(self, requests):
                return requests

        with pytest.raises(PyTritonValidationError, match="module-level function"):
            t.bind("m", Callable(), config=config, **IO)
        main_func = batch(lambda x: x)
        main_func.__module__, main_func.__qualname__ = "__main__", "infer"
        with pytest.raises(PyTritonValidationError, match="move it to a module"):
            t.bind("m", main_func, config=config, **IO)
