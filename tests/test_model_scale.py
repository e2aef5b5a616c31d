"""Many models in one server (issue #20): a model that was never asked anything costs no thread
(its instance workers and its batcher's reaper start with its first request), a load pass scans
the repositories once (not once per model), and onnxruntime's global thread pools
(``--backend-config=onnxruntime,enable-global-threadpool=...``) keep the thread count flat."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from models import make_identity_onnx
from serving import ServerProcess
from tritonlite import Server
from tritonlite.cli import parse_backend_config, with_server_defaults
from tritonlite.errors import TritonError
from tritonlite.repository import ModelRepository

CONFIG = """max_batch_size: 8
input [{{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] }}]
output [{{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] }}]
dynamic_batching {{ }}
instance_group [{{ count: {instances} kind: KIND_CPU }}]
{extra}"""
ONE_THREAD = 'parameters { key: "intra_op_thread_count" value { string_value: "1" } }'


def _threads(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def _repository(root: Path, n: int, instances: int = 2, extra: str = ONE_THREAD) -> Path:
    for i in range(n):
        model = root / f"identity_{i:02d}"
        make_identity_onnx(model / "1" / "model.onnx", dims=(4,))
        (model / "config.pbtxt").write_text(CONFIG.format(instances=instances, extra=extra))
    return root


def test_idle_models_cost_no_thread_and_the_first_request_starts_their_workers(
    tmp_path: Path,
) -> None:
    repo = _repository(tmp_path, 20)  # 20 models x 2 instances, no onnxruntime pool threads
    before = _threads()
    with Server(repo, model_control_mode="explicit", load_models=["*"]) as server:
        loaded = _threads()
        # Before: a worker per instance and a reaper per model, 60 threads.
        assert loaded - before < 10, (before, loaded)
        x = np.arange(8, dtype=np.float32).reshape(2, 4)
        out = server.infer("identity_03", {"INPUT0": x})  # (starts what serving needs once)
        np.testing.assert_array_equal(out["OUTPUT0"], x)
        time.sleep(0.1)
        one = _threads()
        for _ in range(3):
            out = server.infer("identity_04", {"INPUT0": x})
            np.testing.assert_array_equal(out["OUTPUT0"], x)
        time.sleep(0.1)
        # That model's two workers and its reaper now run; the other 18 models still cost none.
        assert 2 <= _threads() - one <= 4, (one, _threads())
        for i in range(20):  # every model still serves
            out = server.infer(f"identity_{i:02d}", {"INPUT0": x})
            np.testing.assert_array_equal(out["OUTPUT0"], x)
        server.unload_model("identity_05")  # an unload joins the workers it started
    assert _threads() - before < 10


def test_a_first_request_over_native_grpc_starts_the_workers(tmp_path: Path) -> None:
    """The native gRPC transport enqueues without waking (EnqueueDeferred, then one Wake per
    read): a model whose first request comes that way must start its workers too (the merged
    lazy start and deferred enqueue once left such a request waiting forever)."""
    import tritonclient.grpc as grpcclient

    repo = _repository(tmp_path / "models", 2, instances=1)
    (tmp_path / "models" / "plain").mkdir()  # no batcher: the direct scheduler
    make_identity_onnx(tmp_path / "models" / "plain" / "1" / "model.onnx", dims=(4,), batch=False)
    (tmp_path / "models" / "plain" / "config.pbtxt").write_text(
        'max_batch_size: 0\ninput [{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] }]\n'
        'output [{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] }]\n')  # fmt: skip
    with ServerProcess(repo) as srv:
        client = grpcclient.InferenceServerClient(srv.grpc_url)
        try:
            for name, shape in (("identity_00", [1, 4]), ("plain", [4])):
                x = np.arange(4, dtype=np.float32).reshape(shape)
                tensor = grpcclient.InferInput("INPUT0", shape, "FP32")
                tensor.set_data_from_numpy(x)
                out = client.infer(name, [tensor], client_timeout=30)
                np.testing.assert_array_equal(out.as_numpy("OUTPUT0"), x)
        finally:
            client.close()


def test_a_model_unloaded_without_requests_finalizes_its_instances(tmp_path: Path) -> None:
    """A worker that never ran still closes its backend (on its own thread), as before."""
    model = tmp_path / "py"
    (model / "1").mkdir(parents=True)
    marker = tmp_path / "finalized"
    (model / "1" / "model.py").write_text(
        "import triton_python_backend_utils as pb_utils\n"
        "class TritonPythonModel:\n"
        "    def execute(self, requests):\n"
        "        return [pb_utils.InferenceResponse([]) for _ in requests]\n"
        "    def finalize(self):\n"
        f"        open({str(marker)!r}, 'a').write('x')\n"
    )
    (model / "config.pbtxt").write_text(
        'backend: "python"\ninput [{ name: "IN" data_type: TYPE_FP32 dims: [ 1 ] }]\n'
        'output [{ name: "OUT" data_type: TYPE_FP32 dims: [ 1 ] }]\n'
        "instance_group [{ count: 2 kind: KIND_CPU }]\n"
    )
    with Server(tmp_path, model_control_mode="explicit", load_models=["py"]) as server:
        server.unload_model("py")
    assert marker.read_text() == "xx"


def test_a_load_pass_scans_the_repository_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, each model's load scanned every repository again (twice): 1,000 models took 10 s."""
    repo = _repository(tmp_path, 12, instances=1)
    calls = []
    scan = ModelRepository.scan

    def counting(self: ModelRepository) -> object:
        calls.append(1)
        return scan(self)

    monkeypatch.setattr(ModelRepository, "scan", counting)
    with Server(repo, model_load_thread_count=4) as server:
        # One for the load pass, one for the index the server reads after it (before: 26).
        assert len(calls) <= 2, len(calls)
        assert len(server.repository.index(ready_only=True)) == 12


def test_backend_config_thread_pool_settings_are_checked() -> None:
    config = parse_backend_config([
        "onnxruntime,enable-global-threadpool=0", "onnxruntime,intra_op_thread_count=2",
        "onnxruntime,inter_op_thread_count=1",
    ])  # fmt: skip
    assert config == {"onnxruntime": {"enable-global-threadpool": "0",
                                      "intra_op_thread_count": "2", "inter_op_thread_count": "1"}}  # fmt: skip
    with pytest.raises(ValueError, match="expected 0 or 1"):
        parse_backend_config(["onnxruntime,enable-global-threadpool=2"])
    with pytest.raises(ValueError, match="expected a non-negative integer"):
        parse_backend_config(["onnxruntime,intra_op_thread_count=-1"])
    # The server command turns the global pools on unless told otherwise, for this backend or
    # for every backend.
    assert with_server_defaults({}) == {"onnxruntime": {"enable-global-threadpool": "1"}}
    assert with_server_defaults({"": {"enable-global-threadpool": "0"}}) == {
        "": {"enable-global-threadpool": "0"}
    }
    assert with_server_defaults({"onnxruntime": {"enable-global-threadpool": "0"}}) == {
        "onnxruntime": {"enable-global-threadpool": "0"}
    }
    # The in-process Server checks the values it is given too.
    with pytest.raises(TritonError, match="enable-global-threadpool=yes: expected 0 or 1"):
        Server(backend_config={"onnxruntime": {"enable-global-threadpool": "yes"}})
    with pytest.raises(TritonError, match="intra_op_thread_count=x: expected a non-negative"):
        Server(backend_config={"onnxruntime": {"intra_op_thread_count": "x"}})


def _served_threads(repo: Path, *args: str) -> tuple[int, str]:
    """Threads of a tritonlite-server serving ``repo`` once every model is ready, and its log."""
    import tritonclient.grpc as grpcclient

    with ServerProcess(repo, args=args) as srv:
        client = grpcclient.InferenceServerClient(srv.grpc_url)
        assert all(m.state == "READY" for m in client.get_model_repository_index().models)
        x = np.ones((1, 4), np.float32)
        inp = grpcclient.InferInput("INPUT0", [1, 4], "FP32")
        inp.set_data_from_numpy(x)
        result = client.infer("identity_00", [inp])
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), x)
        assert srv.proc is not None
        return _threads(srv.proc.pid), srv.log()


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="per-session pools need 2+ cores")
def test_the_server_shares_one_onnxruntime_pool_between_models(tmp_path: Path) -> None:
    # Models that leave the thread count to the server: per-session pools have
    # cores // instances - 1 threads each.
    cores = len(os.sched_getaffinity(0))
    repo = _repository(tmp_path, 12, instances=1, extra="")
    shared, log = _served_threads(repo)
    assert "onnxruntime thread pools: global" in log
    own, log = _served_threads(repo, "--backend-config=onnxruntime,enable-global-threadpool=0")
    assert "onnxruntime thread pools: per-session" in log
    assert own - shared >= 12 * (cores - 1) - cores, (shared, own)


def test_a_model_s_own_thread_count_is_ignored_with_the_global_pool(tmp_path: Path) -> None:
    repo = _repository(tmp_path, 1, instances=1, extra=ONE_THREAD)
    _, log = _served_threads(repo)
    assert ("model 'identity_00': its intra_op_thread_count / inter_op_thread_count / "
            "execution_mode parameters are ignored: onnxruntime's global thread pools are on "
            "(enable-global-threadpool=1)") in log  # fmt: skip


def test_a_session_made_before_by_other_code_decides_the_pools(tmp_path: Path) -> None:
    """An application that made an onnxruntime session of its own before starting a Server
    with global pools: the server's models still load and serve (should onnxruntime refuse
    their sessions, they follow the environment it has: ``ort_threads.follow_environment``)."""
    repo = _repository(tmp_path, 2, instances=1, extra="")
    script = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
import numpy as np, onnxruntime as ort
from tritonlite import Server
ort.InferenceSession({str(repo / "identity_00" / "1" / "model.onnx")!r})  # the app's own session
with Server({str(repo)!r}, backend_config={{"onnxruntime": {{"enable-global-threadpool": "1"}}}}) as s:
    x = np.ones((1, 4), np.float32)
    assert (s.infer("identity_01", {{"INPUT0": x}})["OUTPUT0"] == x).all()
print("served")
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "served" in proc.stdout


def test_the_shared_pool_defaults_to_the_cpus_the_process_may_use() -> None:
    """Pinned to one CPU, the shared intra-op pool has one thread (onnxruntime's own default
    counts the machine's cores, and a pinned server then ran a pool larger than its CPU)."""
    code = "from tritonlite.backends.ort_threads import default_intra_threads as d; print(d())"
    pinned = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", code],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert pinned.returncode == 0, pinned.stderr
    assert pinned.stdout.strip() == "1"
    free = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert 1 <= int(free.stdout.strip()) <= len(os.sched_getaffinity(0))  # a quota may cap it
