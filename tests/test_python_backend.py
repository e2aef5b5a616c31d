"""The python backend: Triton python_backend ``model.py`` files (tests/python_models/, written
against Triton's documented API) served through the in-process Server, in both execution modes
(stub process and in-process): add_sub (FP32, BYTES), string identity, auto_complete_config,
decoupled streaming, BLS (sync, async, decoupled; to ONNX and python models), errors, crashes
and restarts, custom metrics, what ``initialize`` and requests carry, shared-memory paths; and
unit tests of pb_utils, the shared-memory arena and auto-complete."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from models import serve_python_model

from tritonlite import Server, TritonError
from tritonlite import config as model_config
from tritonlite.backends import get_backend_factory
from tritonlite.backends.python import create_backend, pb_utils, python_auto_complete
from tritonlite.backends.python.shm import Arena, ArenaMap, read_tensors, write_tensors

MODES = ["stub", "in_process"]


class Env:
    """One Server per execution mode; models are copied from tests/python_models and loaded
    (through the config layer, with python auto-complete) on first use."""

    def __init__(self, mode: str, repo: Path) -> None:
        self.mode = mode
        self.repo = repo
        self.server = Server()
        self.backends: dict[str, Any] = {}

    def model(
        self,
        name: str,
        extra_config: str = "",
        source: str | None = None,
        replace: tuple[str, str] = ("", ""),
    ) -> Any:
        if name not in self.backends:
            self.backends[name] = serve_python_model(
                self.server, self.repo, source or name, self.mode, extra_config, name, replace
            )
        return self.backends[name]

    def onnx_add_sub(self) -> None:
        if "add_sub_onnx" in self.backends:
            return
        from models import make_add_sub_onnx

        model_dir = self.repo / "add_sub_onnx"
        make_add_sub_onnx(model_dir / "1" / "model.onnx", "FP32", dims=(4,))
        (model_dir / "config.pbtxt").write_text('platform: "onnxruntime_onnx"\nmax_batch_size: 8\n')
        config = model_config.load_model_config(model_dir)
        backend = get_backend_factory("onnxruntime", "add_sub_onnx")(
            config, model_dir, model_dir / "1", server=self.server
        )
        self.server.add_model(config, backend, 1)
        self.backends["add_sub_onnx"] = backend


@pytest.fixture(scope="module", params=MODES)
def env(request: Any, tmp_path_factory: Any) -> Iterator[Env]:
    e = Env(request.param, tmp_path_factory.mktemp(f"repo_{request.param}"))
    yield e
    e.server.close()


@pytest.fixture(scope="module")
def stub_env(tmp_path_factory: Any) -> Iterator[Env]:
    e = Env("stub", tmp_path_factory.mktemp("repo_stub_only"))
    yield e
    e.server.close()


def fp32(*rows: list[float]) -> np.ndarray:
    return np.array(rows, dtype=np.float32)


async def stream(server: Server, model: str, inputs: dict[str, Any]) -> list[tuple[Any, Any, bool]]:
    """Every response of one request to a decoupled model: (error, {name: array}, final)."""
    done = asyncio.get_running_loop().create_future()
    got: list[tuple[Any, Any, bool]] = []

    def on_response(error: Any, outputs: Any, final: bool) -> None:
        got.append((error, {n: t.numpy() for n, t in outputs or ()}, final))
        if final:
            done.set_result(None)

    server.submit_stream(model, inputs, on_response)
    await asyncio.wait_for(done, 10)
    return got


# ---- basic models ---------------------------------------------------------------------------


def test_add_sub_fp32_and_dynamic_batching(env: Env) -> None:
    # Eight requests make the preferred batch at once; the long delay only matters if they do
    # not arrive together (so the test does not depend on timing).
    model = "add_sub_batched"
    env.model(model, source="add_sub", replace=("2000", "5000000 preferred_batch_size: [ 8 ]"))
    a, b = fp32([1, 2, 3, 4]), fp32([10, 20, 30, 40])

    async def many() -> list[Any]:
        return await asyncio.gather(
            *[env.server.infer_async(model, {"INPUT0": a * i, "INPUT1": b}) for i in range(8)]
        )

    for i, result in enumerate(asyncio.run(many())):
        np.testing.assert_array_equal(result["OUTPUT0"], a * i + b)
        np.testing.assert_array_equal(result["OUTPUT1"], a * i - b)
    stats = env.server.statistics(model)[0]
    assert [s["batch_size"] for s in stats["batch_stats"]] == [8]  # execute got all 8 at once
    assert stats["inference_stats"]["success"]["count"] == 8


def test_add_sub_bytes(env: Env) -> None:
    env.model("add_sub_string")
    a = np.array([[b"1", b"2", b"3", b"-4"]], dtype=object)
    b = np.array([[b"10", b"20", b"30", b"40"]], dtype=object)
    out = env.server.infer("add_sub_string", {"INPUT0": a, "INPUT1": b})
    assert out["OUTPUT0"].tolist() == [[b"11", b"22", b"33", b"36"]]
    assert out["OUTPUT1"].tolist() == [[b"-9", b"-18", b"-27", b"-44"]]


def test_identity_string_keeps_any_bytes(env: Env) -> None:
    env.model("identity_string")
    values = np.array([b"", b"hello", "żółw".encode(), b"\x00\xff\x80", b"x" * 10000], dtype=object)
    out = env.server.infer("identity_string", {"INPUT0": values})
    assert out["OUTPUT0"].tolist() == values.tolist()
    empty = env.server.infer("identity_string", {"INPUT0": np.array([], dtype=object)})
    assert empty["OUTPUT0"].shape == (0,)


# ---- auto-complete --------------------------------------------------------------------------


def test_auto_complete_with_batching(env: Env) -> None:
    backend = env.model("auto_complete")
    config = env.server.model_config("auto_complete")
    assert config.max_batch_size == 4 and config.HasField("dynamic_batching")
    assert [(i.name, list(i.dims), i.optional) for i in config.input] == [
        ("INPUT0", [4], False),
        ("INPUT1", [4], True),
    ]
    assert [o.name for o in config.output] == ["OUTPUT0"]
    a = fp32([1, 2, 3, 4])
    out = env.server.infer("auto_complete", {"INPUT0": a, "INPUT1": a})
    np.testing.assert_array_equal(out["OUTPUT0"], a * 2)
    out = env.server.infer("auto_complete", {"INPUT0": a})  # the optional input left out
    np.testing.assert_array_equal(out["OUTPUT0"], a + 100)
    assert backend.healthy


def test_auto_complete_without_batching(env: Env) -> None:
    env.model("auto_complete_nobatch")
    config = env.server.model_config("auto_complete_nobatch")
    assert config.max_batch_size == 0 and not config.model_transaction_policy.decoupled
    x = np.arange(6, dtype=np.int64).reshape(2, 3)
    np.testing.assert_array_equal(
        env.server.infer("auto_complete_nobatch", {"IN": x})["OUT"], x * 10
    )


def _model_file(tmp_path: Path, body: str, config: str = 'backend: "python"') -> Path:
    model_dir = tmp_path / "m"
    (model_dir / "1").mkdir(parents=True)
    (model_dir / "1" / "model.py").write_text(
        "import triton_python_backend_utils as pb_utils\n\nclass TritonPythonModel:\n" + body
    )
    (model_dir / "config.pbtxt").write_text(config)
    return model_dir


@pytest.mark.parametrize("mode", MODES)
def test_auto_complete_errors_name_the_model(tmp_path: Path, mode: str) -> None:
    model_dir = _model_file(
        tmp_path,
        "    @staticmethod\n    def auto_complete_config(c):\n"
        "        c.add_input({'name': 'X', 'data_type': 'TYPE_FP32'})\n        return c\n",
    )
    config = model_config.parse_config_text(
        f'name: "m" backend: "python" parameters {{ key: "EXECUTION_MODE" value {{ string_value: '
        f'"{mode}" }} }}',
        "m",
    )
    with pytest.raises(
        TritonError,
        match="input 'X' in auto-complete-config function for model 'm' is missing 'dims' property",
    ) as info:
        python_auto_complete(config, model_dir)
    assert info.value.status == "INVALID_ARG"
    (model_dir / "1" / "model.py").write_text(
        "class TritonPythonModel:\n    @staticmethod\n    def auto_complete_config(c):\n"
        "        return None\n"
    )
    with pytest.raises(TritonError, match="must return a valid pb.ModelConfig object"):
        python_auto_complete(config, model_dir)


# ---- decoupled ------------------------------------------------------------------------------


def test_decoupled_repeat_streams_from_a_thread(env: Env) -> None:
    env.model("repeat")
    got = asyncio.run(stream(env.server, "repeat", {"IN": np.array([4, 5, 6], np.int32)}))
    assert [g[2] for g in got] == [False, False, False, True]
    assert [int(g[1]["OUT"][0]) for g in got[:3]] == [4, 5, 6]
    assert [int(g[1]["IDX"][0]) for g in got[:3]] == [0, 1, 2]
    assert got[3][1] == {} and all(g[0] is None for g in got)


def test_decoupled_square_async_execute(env: Env) -> None:
    env.model("square")

    async def main() -> list[list[Any]]:
        return await asyncio.gather(
            *[stream(env.server, "square", {"IN": np.array([n], np.int32)}) for n in (3, 0, 1, -1)]
        )

    three, zero, one, negative = asyncio.run(main())
    assert [(int(g[1]["OUT"][0]), g[2]) for g in three] == [(3, False), (3, False), (3, True)]
    assert zero == [(None, {}, True)]
    assert [(int(g[1]["OUT"][0]), g[2]) for g in one] == [(1, True)]
    assert len(negative) == 1 and negative[0][2]
    assert negative[0][0].status == "INVALID_ARG" and "IN must be >= 0" in negative[0][0].message


# ---- BLS ------------------------------------------------------------------------------------


def test_bls_sync_to_onnx_and_python_models(env: Env) -> None:
    env.onnx_add_sub()
    env.model("add_sub")
    env.model("bls")
    a, b = np.array([1, 2, 3, 4], np.float32), np.array([4, 3, 2, 1], np.float32)
    for callee in ("add_sub_onnx", "add_sub"):
        out = env.server.infer(
            "bls",
            {"MODEL_NAME": np.array([callee.encode()], dtype=object), "INPUT0": a, "INPUT1": b},
        )
        np.testing.assert_array_equal(out["OUTPUT0"], a + b)
        np.testing.assert_array_equal(out["OUTPUT1"], a - b)
    with pytest.raises(TritonError, match="unknown model") as info:
        env.server.infer(
            "bls", {"MODEL_NAME": np.array([b"nope"], dtype=object), "INPUT0": a, "INPUT1": b}
        )
    assert (
        info.value.status == "INTERNAL" and "Failed to process the request(s)" in info.value.message
    )


def test_bls_async_exec(env: Env) -> None:
    env.onnx_add_sub()
    env.model("add_sub")
    env.model("bls_async")
    a, b = np.array([5, 6, 7, 8], np.float32), np.array([1, 1, 1, 1], np.float32)
    out = env.server.infer(
        "bls_async", {"MODEL_NAME": np.array([b"add_sub"], dtype=object), "INPUT0": a, "INPUT1": b}
    )
    np.testing.assert_array_equal(out["OUTPUT0"], a + b)
    np.testing.assert_array_equal(out["OUTPUT1"], a - b)


def test_bls_to_a_decoupled_model(env: Env) -> None:
    env.model("square")
    env.model("bls_decoupled")
    for n in (3, 4, 0):
        out = env.server.infer("bls_decoupled", {"IN": np.array([n], np.int32)})
        assert (int(out["SUM"][0]), int(out["COUNT"][0])) == (n * n, n)


# ---- errors ---------------------------------------------------------------------------------


def test_exception_fails_the_request_and_the_model_keeps_serving(env: Env) -> None:
    env.model("raise_exception")
    with pytest.raises(TritonError) as info:
        env.server.infer("raise_exception", {"IN": fp32(*[[-1.0]])[0]})
    assert info.value.status == "INTERNAL"
    message = info.value.message
    assert message.startswith(
        "Failed to process the request(s) for model 'raise_exception_0', message: "
        "TritonModelException: negative input is not allowed\n\nAt:\n"
    )
    assert "raise_exception/1/model.py(" in message and "): execute" in message
    out = env.server.infer("raise_exception", {"IN": np.array([1.5, 2.5], np.float32)})
    np.testing.assert_array_equal(out["OUT"], [1.5, 2.5])


def test_error_response_fails_only_its_request(env: Env) -> None:
    env.model("error_response")

    async def main() -> list[Any]:
        return await asyncio.gather(
            *[
                env.server.infer_async("error_response", {"IN": np.array([v], np.float32)})
                for v in (1, -1, 2)
            ],
            return_exceptions=True,
        )

    ok1, bad, ok2 = asyncio.run(main())
    assert isinstance(bad, TritonError) and bad.status == "INVALID_ARG"
    assert bad.message == "IN must not be negative"
    assert float(ok1["OUT"][0]) == 1 and float(ok2["OUT"][0]) == 2


WRONG_RETURNS = {
    "    def execute(self, requests):\n        return []\n": "Number of InferenceResponse objects do not match the number of InferenceRequest objects. "
    "InferenceRequest(s) size is:1, and InferenceResponse(s) size is:0",
    "    def execute(self, requests):\n        return [1]\n": "Expected an 'InferenceResponse' object in the execute function return list, found type "
    "'<class 'int'>'.",
}

IO = """
max_batch_size: 0
input [{ name: "IN" data_type: TYPE_FP32 dims: [ -1 ] }]
output [{ name: "OUT" data_type: TYPE_FP32 dims: [ -1 ] }]
"""


@pytest.mark.parametrize("body", list(WRONG_RETURNS))
def test_wrong_execute_returns_are_clear_errors(env: Env, tmp_path: Path, body: str) -> None:
    model_dir = _model_file(tmp_path, body, 'backend: "python"' + IO)
    name = f"wrong_{list(WRONG_RETURNS).index(body)}"
    target = env.repo / name
    shutil.copytree(model_dir, target)
    (target / "config.pbtxt").write_text(
        f'backend: "python"{IO}parameters {{ key: "EXECUTION_MODE" value {{ string_value: '
        f'"{env.mode}" }} }}'
    )
    config = model_config.load_model_config(target)
    env.server.add_model(config, create_backend(config, target, target / "1", server=env.server))
    with pytest.raises(TritonError) as info:
        env.server.infer(name, {"IN": np.array([1], np.float32)})
    assert info.value.status == "INTERNAL"
    assert info.value.message.startswith(
        f"Failed to process the request(s) for model '{name}_0', message: {WRONG_RETURNS[body]}"
    )
    env.server.remove_model(name)


def test_none_without_a_response_fails_the_request(env: Env, tmp_path: Path) -> None:
    """execute may return None (the requests are answered through their senders, as in
    Triton): a request dropped without its response fails instead of waiting forever."""
    body = "    def execute(self, requests):\n        return None\n"
    model_dir = _model_file(tmp_path, body, 'backend: "python"' + IO)
    target = env.repo / "returns_none"
    shutil.copytree(model_dir, target)
    (target / "config.pbtxt").write_text(
        f'backend: "python"{IO}parameters {{ key: "EXECUTION_MODE" value {{ string_value: '
        f'"{env.mode}" }} }}'
    )
    config = model_config.load_model_config(target)
    env.server.add_model(config, create_backend(config, target, target / "1", server=env.server))
    with pytest.raises(TritonError) as info:
        env.server.infer("returns_none", {"IN": np.array([1], np.float32)})
    assert info.value.status == "INTERNAL"
    assert "released a request without sending its final response" in info.value.message
    env.server.remove_model("returns_none")


def test_non_contiguous_outputs_and_sys_exit(env: Env, tmp_path: Path) -> None:
    model_dir = _model_file(
        tmp_path,
        "    def execute(self, requests):\n"
        "        import sys\n"
        "        x = pb_utils.get_input_tensor_by_name(requests[0], 'IN').as_numpy()\n"
        "        if x.size == 1:\n"
        "            sys.exit(4)\n"
        "        return [pb_utils.InferenceResponse([pb_utils.Tensor('OUT', x.reshape(2, -1).T)])]\n",
        'backend: "python"\nmax_batch_size: 0\n'
        'input [{ name: "IN" data_type: TYPE_FP32 dims: [ -1 ] }]\n'
        'output [{ name: "OUT" data_type: TYPE_FP32 dims: [ -1, -1 ] }]\n'
        f'parameters {{ key: "EXECUTION_MODE" value {{ string_value: "{env.mode}" }} }}',
    )
    config = model_config.load_model_config(model_dir)
    env.server.add_model(config, create_backend(config, model_dir, model_dir / "1"))
    x = np.arange(6, dtype=np.float32)
    np.testing.assert_array_equal(env.server.infer("m", {"IN": x})["OUT"], x.reshape(2, 3).T)
    with pytest.raises(TritonError, match="message: SystemExit: 4"):
        env.server.infer("m", {"IN": x[:1]})
    np.testing.assert_array_equal(env.server.infer("m", {"IN": x})["OUT"], x.reshape(2, 3).T)
    env.server.remove_model("m")


@pytest.mark.parametrize("mode", MODES)
def test_initialize_failure_fails_the_load(tmp_path: Path, mode: str) -> None:
    model_dir = _model_file(
        tmp_path,
        "    def initialize(self, args):\n        raise pb_utils.TritonModelException('no weights')\n"
        "    def execute(self, requests):\n        return []\n",
        f'backend: "python"{IO}parameters {{ key: "EXECUTION_MODE" value {{ string_value: "{mode}" }} }}',
    )
    config = model_config.load_model_config(model_dir)
    backend = create_backend(config, model_dir, model_dir / "1")
    with pytest.raises(
        TritonError,
        match="Failed to initialize model instance 'm_0': TritonModelException: no weights",
    ):
        backend.create_instance(0, "KIND_CPU", 0)
    backend.close()


# ---- crashes --------------------------------------------------------------------------------


def _wait_healthy(backend: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not backend.healthy:
        assert time.monotonic() < deadline, "the stub was not restarted"
        time.sleep(0.02)


@pytest.mark.parametrize(
    "value, reason", [(1, "it exited with code 3"), (2, "it was killed by signal SIGSEGV")]
)
def test_crashing_stub_fails_its_request_restarts_and_serves(
    stub_env: Env, value: int, reason: str
) -> None:
    backend = stub_env.model("crash")
    server = stub_env.server
    restarts = backend.instances[0].restarts
    with pytest.raises(TritonError) as info:
        server.infer("crash", {"IN": np.array([value], np.float32)})
    assert info.value.status == "INTERNAL"
    assert info.value.message.startswith(f"Stub process 'crash_0' is not healthy: {reason}")
    # The next request waits for the new stub instead of failing.
    out = server.infer("crash", {"IN": np.array([7, 8], np.float32)})
    np.testing.assert_array_equal(out["OUT"], [7, 8])
    _wait_healthy(backend)
    assert backend.instances[0].restarts == restarts + 1
    assert server.statistics("crash")[0]["inference_stats"]["fail"]["count"] >= 1


def test_crash_fails_open_decoupled_requests_too(stub_env: Env, tmp_path: Path) -> None:
    model_dir = _model_file(
        tmp_path,
        "    def execute(self, requests):\n"
        "        import os, threading, time\n"
        "        self.keep = requests\n"
        "        threading.Timer(0.2, lambda: os._exit(5)).start()\n",
        'backend: "python"\nmodel_transaction_policy { decoupled: true }' + IO,
    )
    config = model_config.load_model_config(model_dir)
    backend = create_backend(config, model_dir, model_dir / "1", server=stub_env.server)
    stub_env.server.add_model(config, backend)
    got = asyncio.run(stream(stub_env.server, "m", {"IN": np.array([1], np.float32)}))
    assert len(got) == 1 and got[0][2]
    assert "Stub process 'm_0' is not healthy: it exited with code 5" in got[0][0].message
    _wait_healthy(backend)
    stub_env.server.remove_model("m")


# ---- custom metrics, logging ----------------------------------------------------------------


def test_custom_metrics(env: Env) -> None:
    from tritonlite import metrics

    env.model("custom_metrics")
    totals = [
        float(env.server.infer("custom_metrics", {"IN": np.array(v, np.float32)})["TOTAL"][0])
        for v in ([0.5, 2.0], [20.0], [3.0, 4.0, 5.0])
    ]
    assert totals == [2, 3, 6]  # the counter's value(), read back by the model
    frontend = metrics.MetricsFrontend(
        env.server,
        summary_latencies=False,
        counter_latencies=False,
        sampler=metrics.SystemSampler(cpu=False),
        interval_ms=1000,
    )
    text = frontend.render().decode()
    labels = 'model="custom_metrics",version="1"'
    assert "# HELP test_elements_total_count Input elements seen" in text
    assert "# TYPE test_elements_total_count counter" in text
    assert f"test_elements_total_count{{{labels}}} 6" in text
    assert f"test_last_sum{{{labels}}} 12" in text
    assert f'test_values_bucket{{{labels},le="10"}} 5' in text
    assert f'test_values_bucket{{{labels},le="+Inf"}} 6' in text
    assert f"test_values_sum{{{labels}}} 34.5" in text
    assert "test_temporary" not in text  # the model deleted that family at once

    env.server.remove_model("custom_metrics")  # unloading drops the model's metrics
    env.backends.pop("custom_metrics")
    assert "test_elements_total_count" not in frontend.render().decode()


# ---- what initialize and requests carry -----------------------------------------------------


def test_initialize_args_and_request_fields(env: Env) -> None:
    backend = env.model("inspect_args")
    model_dir = env.repo / "inspect_args"
    out = env.server.infer(
        "inspect_args", {"IN": np.array([[1]], np.int32)}, ["REQUEST", "ARGS"], request_id="r-7"
    )
    args = json.loads(out["ARGS"][0, 0])
    assert args["model_name"] == "inspect_args" and args["model_version"] == "1"
    assert args["model_instance_kind"] == "CPU" and args["model_instance_device_id"] == "0"
    assert args["model_instance_name"] in ("inspect_args_0_0", "inspect_args_0_1")  # group_n
    assert args["model_repository"] == str(model_dir)  # the model's directory, as in Triton
    assert args["model_dir"] == str(model_dir / "1")  # get_model_dir(): the version's
    assert args["sys_path_tail"] == [str(model_dir / "1"), str(model_dir)]
    assert args["greeting"] == "hello from the version directory"
    config = json.loads(args["model_config"])
    assert config["name"] == "inspect_args" and config["max_batch_size"] == 2
    assert config["input"][0]["dims"] == [1]  # 64-bit ints as numbers, as in Triton
    assert config["parameters"]["custom_key"] == {"string_value": "custom_value"}
    if env.mode == "stub":
        assert args["pid"] != os.getpid()
    else:
        assert args["pid"] == os.getpid()
    request = json.loads(out["REQUEST"][0, 0])
    assert request == {
        "request_id": "r-7",
        "correlation_id": 0,
        "flags": 0,
        "requested_output_names": ["REQUEST", "ARGS"],
        "parameters": "{}",
        "is_cancelled": False,
        "timeout": 0,
        "input_shape": [1, 1],
    }
    only = env.server.infer("inspect_args", {"IN": np.array([[1]], np.int32)}, ["REQUEST"])
    assert set(only) == {"REQUEST"}  # outputs not asked for are pruned
    everything = env.server.infer("inspect_args", {"IN": np.array([[1]], np.int32)})
    assert json.loads(everything["REQUEST"][0, 0])["requested_output_names"] == ["ARGS", "REQUEST"]
    assert backend.healthy


def test_request_parameters_reach_the_model_and_bls_calls(env: Env) -> None:
    env.model("inspect_args")
    env.model("bls_parameters")
    x = np.array([[1]], np.int32)

    def seen(out: dict[str, Any]) -> Any:
        return json.loads(json.loads(out["REQUEST"][0, 0])["parameters"])

    params = {"s": "x", "n": 3, "ok": True, "f": 1.5}
    out = env.server.infer("inspect_args", {"IN": x}, ["REQUEST"], parameters=params)
    assert seen(out) == params
    out = env.server.infer("bls_parameters", {"IN": x}, parameters={"s": "y"})
    assert seen(out) == {"s": "y", "via": "bls"}  # the BLS request's own parameters
    with pytest.raises(TritonError, match="request parameter 'bad' must be a string"):
        env.server.infer("inspect_args", {"IN": x}, parameters={"bad": [1]})


def test_unload_runs_finalize_and_ends_the_stubs(stub_env: Env) -> None:
    backend = stub_env.model("inspect_args_unload", source="inspect_args")
    pids = {instance._stub.proc.pid for instance in backend.instances}
    assert len(pids) == 2
    stub_env.server.remove_model("inspect_args_unload")
    for instance in backend.instances:
        assert not instance.healthy
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


# ---- shared memory --------------------------------------------------------------------------


def test_messages_larger_than_the_arena_use_dedicated_segments(stub_env: Env) -> None:
    backend = stub_env.model(
        "big",
        'parameters { key: "SHM_ARENA_BYTE_SIZE" value { string_value: "65536" } }\n',
        source="raise_exception",
    )
    stub = backend.instances[0]._stub
    for size in (10, 100_000, 3_000_000, 16, 70_000):
        x = np.random.default_rng(size).random(size, dtype=np.float32)
        np.testing.assert_array_equal(stub_env.server.infer("big", {"IN": x})["OUT"], x)
    assert stub.arena.in_use() == 0  # every input block was given back
    assert stub.peer.size == 65536


def test_channel_carries_big_messages_and_fds() -> None:
    from tritonlite.backends.python import ipc
    from tritonlite.backends.python.ipc import MAX_RECORD, Channel, socket_pair

    here, there = (Channel(s, ipc.STUB_CTL) for s in socket_pair())
    read_end, write_end = os.pipe()
    metas = tuple(("x" * 100, "FP32", (i,), 0, 4 * i) for i in range(MAX_RECORD // 50))
    big = (ipc.EXEC, (), metas, ("a", 0))  # over one record: it travels in a memfd
    here.send(big, [write_end])
    message, fds = there.recv()
    assert message == big and len(fds) == 1
    os.write(fds[0], b"!")
    assert os.read(read_end, 1) == b"!"
    for fd in (*fds, read_end, write_end):
        os.close(fd)
    here.close()
    with pytest.raises(EOFError):
        there.recv()
    there.close()


def test_arena_ring_reuses_blocks_freed_out_of_order() -> None:
    arena = Arena(4096, keep_fd=True)
    peer = ArenaMap(os.dup(arena.fd), 4096)
    blocks = [arena.alloc(900) for _ in range(4)]  # 964 -> 1024 bytes each with the header
    assert blocks == [0, 1024, 2048, 3072] and arena.alloc(10) == -1
    peer.release(blocks[1])
    assert arena.alloc(10) == -1  # the tail (block 0) is still in use
    peer.release(blocks[0])
    assert arena.alloc(1500) == 0  # wrapped into the two freed blocks: [0, 1600)
    assert arena.alloc(100) == 1600  # [1600, 1792); 256 bytes left before block 2
    assert arena.alloc(300) == -1
    for b in (blocks[2], blocks[3], 0, 1600):
        peer.release(b)
    assert arena.alloc(4000) == 0 and arena.in_use() == 1
    arena.close()


def test_zero_copy_views_free_their_block_when_dropped() -> None:
    arena = Arena(1 << 16, keep_fd=True)
    peer = ArenaMap(os.dup(arena.fd), 1 << 16)
    x = np.arange(12, dtype=np.int16).reshape(3, 4)
    s = np.array([b"a", b"bc"], dtype=object)
    metas, location, fds = write_tensors(
        arena, [("X", "INT16", x.shape, x), ("S", "BYTES", (2,), s)]
    )
    assert location == ("a", 0) and fds == []
    (_, got_x), (_, got_s) = read_tensors(peer, metas, location, fds)
    np.testing.assert_array_equal(got_x, x)
    assert got_s.tolist() == [b"a", b"bc"] and arena.in_use() == 1
    view = got_x[1:]
    del got_x
    assert arena.in_use() == 1  # a view of the block is still alive
    del view
    assert arena.in_use() == 0
    arena.close()


# ---- pb_utils -------------------------------------------------------------------------------


def test_top_level_triton_python_backend_utils_is_pb_utils() -> None:
    import importlib.util
    import sys

    path = Path(__file__).parent.parent / "python" / "triton_python_backend_utils.py"
    spec = importlib.util.spec_from_file_location("triton_python_backend_utils", path)
    assert spec is not None and spec.loader is not None
    saved = sys.modules.pop("triton_python_backend_utils", None)
    try:
        module = importlib.util.module_from_spec(spec)
        sys.modules["triton_python_backend_utils"] = module
        spec.loader.exec_module(module)
        assert sys.modules["triton_python_backend_utils"] is pb_utils
    finally:
        if saved is not None:
            sys.modules["triton_python_backend_utils"] = saved


def test_pb_utils_helpers_match_triton() -> None:
    t = pb_utils.Tensor("T", np.array([[1, 2]], np.int32))
    assert (t.name(), t.shape(), t.triton_dtype(), t.is_cpu()) == ("T", [1, 2], 8, True)
    assert np.from_dlpack(pb_utils.Tensor.from_dlpack("U", t.to_dlpack())).tolist() == [[1, 2]]
    with pytest.raises(pb_utils.TritonModelException, match="Please use np.object_ instead"):
        pb_utils.Tensor("S", np.array(["text"]))
    data = np.array([b"ab", "c", b""], dtype=object)
    assert pb_utils.deserialize_bytes_tensor(pb_utils.serialize_byte_tensor(data)).tolist() == [
        b"ab",
        b"c",
        b"",
    ]
    assert pb_utils.numpy_to_triton_type(np.float32) == 11
    assert pb_utils.triton_to_numpy_type(13) is np.object_
    assert pb_utils.triton_string_to_numpy("TYPE_FP16") is np.float16
    error = pb_utils.TritonError("nope", pb_utils.TritonError.NOT_FOUND)
    assert (error.message(), error.code()) == ("nope", 2)
    assert pb_utils.TritonError("x").code() == pb_utils.TritonError.INTERNAL
    config = {
        "input": [{"name": "A", "data_type": "TYPE_FP32"}],
        "model_transaction_policy": {"decoupled": True},
    }
    assert pb_utils.get_input_config_by_name(config, "A") == {"name": "A", "data_type": "TYPE_FP32"}
    assert pb_utils.get_output_config_by_name(config, "A") is None
    assert pb_utils.using_decoupled_model_transaction_policy(config)


def test_metric_errors_use_tritons_texts() -> None:
    from tritonlite.backends.python.custom_metrics import check_update

    with pytest.raises(pb_utils.TritonModelException) as info:
        check_update(pb_utils.MetricFamily.COUNTER, "set", 5, "m_0")
    assert str(info.value) == (
        "Failed to set metric value: Failed to process the request for model 'm_0', message: "
        "TRITONSERVER_METRIC_KIND_COUNTER does not support Set"
    )
    with pytest.raises(pb_utils.TritonModelException, match="incremented monotonically"):
        check_update(pb_utils.MetricFamily.COUNTER, "increment", -1, "m_0")
    with pytest.raises(pb_utils.TritonModelException, match="GAUGE does not support Observe"):
        check_update(pb_utils.MetricFamily.GAUGE, "observe", 1, "m_0")
    check_update(pb_utils.MetricFamily.GAUGE, "increment", -1, "m_0")


def test_response_sender_rules() -> None:
    sent: list[Any] = []
    response = pb_utils.InferenceResponse([])
    single = pb_utils.InferenceResponseSender(lambda r, final: sent.append(final), decoupled=False)
    with pytest.raises(pb_utils.TritonModelException, match="cannot send complete final before"):
        single.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
    single.send(response)
    with pytest.raises(pb_utils.TritonModelException, match="Response sender has been closed"):
        single.send(response)
    many = pb_utils.InferenceResponseSender(lambda r, final: sent.append(final), decoupled=True)
    with pytest.raises(pb_utils.TritonModelException, match="must be provided when the response"):
        many.send()
    many.send(response)
    many.send(response, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
    assert sent == [True, False, True]


def test_model_config_auto_complete_rules() -> None:
    config = pb_utils.ModelConfig(
        json.dumps(
            {
                "name": "m",
                "max_batch_size": 8,
                "input": [{"name": "A", "data_type": "TYPE_FP32", "dims": [2]}],
                "output": [],
            }
        )
    )
    with pytest.raises(
        ValueError,
        match="configuration specified max_batch_size 8, but in "
        "auto-complete-config function for model 'm' specified max_batch_size 4",
    ):
        config.set_max_batch_size(4)
    with pytest.raises(ValueError, match="configuration expects datatype TYPE_FP32 for input 'A'"):
        config.add_input({"name": "A", "data_type": "TYPE_INT32", "dims": [2]})
    with pytest.raises(
        ValueError, match="the model expects dims \\[3\\] but the model configuration"
    ):
        config.add_input({"name": "A", "data_type": "TYPE_FP32", "dims": [3]})
    with pytest.raises(
        ValueError, match="contains property other than 'name', 'data_type' and 'dims'"
    ):
        config.add_output({"name": "B", "data_type": "TYPE_FP32", "dims": [1], "format": "x"})
    config.set_model_transaction_policy({"decoupled": True})
    with pytest.raises(ValueError, match="trying to change decoupled property"):
        config.set_model_transaction_policy({"decoupled": False})
    config.set_dynamic_batching()
    assert config.as_dict()["dynamic_batching"] == {}


def test_backend_config_shm_default_byte_size_sizes_the_stub_arena(tmp_path: Path) -> None:
    """--backend-config python,shm-default-byte-size=N: the default arena of python models (a
    model's SHM_ARENA_BYTE_SIZE wins); a message larger than the arena still travels."""
    import shutil

    import tritonlite
    from models import PYTHON_MODELS

    for name, extra in (("small", ""), ("own", 'parameters { key: "SHM_ARENA_BYTE_SIZE" '
                                               'value { string_value: "131072" } }\n')):  # fmt: skip
        shutil.copytree(PYTHON_MODELS / "add_sub", tmp_path / name)
        config = tmp_path / name / "config.pbtxt"
        text = config.read_text().replace('name: "add_sub"', f'name: "{name}"')
        config.write_text(text.replace("dims: [ 4 ]", "dims: [ -1 ]") + extra)
    settings = {"python": {"shm-default-byte-size": "65536"}}
    with tritonlite.Server(tmp_path, backend_config=settings) as server:
        assert server.get_model("small").backend.arena_bytes == 65536
        assert server.get_model("own").backend.arena_bytes == 131072
        big = np.arange(64 * 1024, dtype=np.float32).reshape(1, -1)  # 256 KiB > the arena
        out = server.infer("small", {"INPUT0": big, "INPUT1": big})
        np.testing.assert_array_equal(out["OUTPUT0"], big + big)
