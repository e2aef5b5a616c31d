"""tritonlite.ray on a local two-node Ray cluster (``ray.cluster_utils.Cluster``, one CPU per
node, no dashboard, a small object store): KServe v2 REST through Serve's HTTP proxy with the real
``tritonclient.http``, requests spread over replicas on both nodes, a replica killed under load
replaced with only its in-flight requests failing, the numpy handle API, multiplexing (models
loaded on demand and evicted least recently used first), the queue-time autoscaling metric and
policy, and ``serve run tritonlite.ray:app``. The whole module is bounded (every wait has a
deadline) and shuts the cluster down in its fixture's teardown."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
from models import make_add_sub_onnx
from serving import free_port, write_config

ray = pytest.importorskip("ray", reason="the [ray] extra (ray[serve]) is not installed")
from ray import serve  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

import tritonlite.ray as tray  # noqa: E402

# Starting two Ray nodes and Serve takes 20-60 s on a busy 2-core machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ADD_SUB = """name: "{name}"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  {{ name: "INPUT0" data_type: TYPE_INT32 dims: [ 16 ] }},
  {{ name: "INPUT1" data_type: TYPE_INT32 dims: [ 16 ] }}
]
output [
  {{ name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 16 ] }},
  {{ name: "OUTPUT1" data_type: TYPE_INT32 dims: [ 16 ] }}
]
dynamic_batching {{ max_queue_delay_microseconds: 100 }}
"""
A = np.arange(16, dtype=np.int32).reshape(1, 16)
B = np.ones((1, 16), dtype=np.int32)
INFER_BODY = json.dumps({"inputs": [
    {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "data": A.ravel().tolist()},
    {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "data": B.ravel().tolist()},
]}).encode()  # fmt: skip


def _repo(root: Path, names: list[str]) -> Path:
    for name in names:
        write_config(root / name, ADD_SUB.format(name=name))
        make_add_sub_onnx(root / name / "1" / "model.onnx", "INT32")
    return root


class _Serve(SimpleNamespace):
    port: int
    nodes: set[str]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Serve]:
    started = time.monotonic()
    # One proxy (on the head node) for the whole cluster: it routes over every node's replicas
    # instead of preferring its own node's (Serve's default, made for a proxy on every node).
    # The Ray processes inherit the variable.
    saved = os.environ.get("RAY_SERVE_PROXY_PREFER_LOCAL_NODE_ROUTING")
    os.environ["RAY_SERVE_PROXY_PREFER_LOCAL_NODE_ROUTING"] = "0"
    small = {"num_cpus": 1, "object_store_memory": 80 * 1024 * 1024}
    c = Cluster(initialize_head=True, head_node_args={**small, "include_dashboard": False})
    c.add_node(**small)
    port = free_port()
    try:
        ray.init(address=c.address, include_dashboard=False, log_to_driver=False)
        c.wait_for_nodes()
        serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
        nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
        assert len(nodes) == 2, ray.nodes()
        print(f"\nRay cluster (2 nodes) + Serve up in {time.monotonic() - started:.1f}s")
        yield _Serve(port=port, nodes=nodes, address=c.address)
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            c.shutdown()
            if saved is None:
                os.environ.pop("RAY_SERVE_PROXY_PREFER_LOCAL_NODE_ROUTING", None)
            else:
                os.environ["RAY_SERVE_PROXY_PREFER_LOCAL_NODE_ROUTING"] = saved
        print(f"\ntest_ray module: {time.monotonic() - started:.1f}s with cluster teardown")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _repo(tmp_path_factory.mktemp("ray_repo"), ["add_sub"])


@pytest.fixture(scope="module")
def many_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _repo(tmp_path_factory.mktemp("ray_many"), ["m1", "m2", "m3"])


def _post(port: int, path: str, body: bytes = INFER_BODY,
          headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, body, {"Content-Type": "application/json", **(headers or {})})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def _wait_ready(port: int, model: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    client = httpclient.InferenceServerClient(f"127.0.0.1:{port}")
    while True:
        try:
            if client.is_model_ready(model):
                return
        except Exception:  # noqa: BLE001 - the proxy answers 404/503 until the app is up
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"model {model} not ready through Serve after {timeout}s")
        time.sleep(0.5)


def _deploy(app: Any, name: str, port: int, model: str | None) -> Any:
    handle = serve.run(app, name=name, route_prefix="/", blocking=False)
    if model is not None:
        _wait_ready(port, model)
    return handle


def _check_outputs(out0: np.ndarray, out1: np.ndarray) -> None:
    np.testing.assert_array_equal(out0, A + B)
    np.testing.assert_array_equal(out1, A - B)


# ---- no cluster needed ---------------------------------------------------------------------------


def test_queue_time_policy_scales_on_queue_time_and_on_ongoing_requests() -> None:
    policy = tray.QueueTimePolicy(target_queue_time_ms=10)
    config = SimpleNamespace(get_target_ongoing_requests=lambda: 2.0)

    def ctx(replicas: int, ongoing: float, queue_us: list[float] | None) -> Any:
        metrics = None if queue_us is None else {
            tray.QUEUE_TIME_METRIC: {f"r{i}": q for i, q in enumerate(queue_us)}
        }  # fmt: skip
        return SimpleNamespace(current_num_replicas=replicas, target_num_replicas=replicas,
                               total_num_requests=ongoing, config=config,
                               aggregated_metrics=metrics)  # fmt: skip

    assert policy(ctx(2, 4, [30_000, 10_000]))[0] == pytest.approx(4)  # mean 20 ms: twice
    assert policy(ctx(2, 12, [0, 0]))[0] == pytest.approx(6)  # ongoing requests rule
    assert policy(ctx(2, 1, None))[0] == pytest.approx(0.5)  # no report yet: Serve's rule
    assert policy(ctx(0, 5, None)) == (0, {})
    with pytest.raises(ValueError, match="target_queue_time_ms must be > 0"):
        tray.QueueTimePolicy(target_queue_time_ms=0)


def test_build_app_refuses_bad_arguments_by_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="model_repository=<path> is required"):
        tray.build_app({})
    with pytest.raises(ValueError, match="model_repository '/nonexistent' is not a directory"):
        tray.build_app({"model_repository": "/nonexistent"})
    with pytest.raises(ValueError, match=r"unknown argument\(s\) replicas"):
        tray.build_app({"model_repository": str(tmp_path), "replicas": "2"})
    with pytest.raises(ValueError, match="num_replicas: must be at least 1, got 0"):
        tray.build_app({"model_repository": str(tmp_path), "num_replicas": "0"})
    with pytest.raises(ValueError, match="multiplex: expected true or false, got 'maybe'"):
        tray.build_app({"model_repository": str(tmp_path), "multiplex": "maybe"})
    with pytest.raises(ValueError, match="num_replicas or min_replicas/max_replicas, not both"):
        tray.build_app({"model_repository": str(tmp_path), "num_replicas": "2",
                        "max_replicas": "3"})  # fmt: skip
    built = tray.build_app({"model_repository": str(tmp_path), "min_replicas": "1",
                            "max_replicas": "3", "target_queue_time_ms": "15"})  # fmt: skip
    config = built._bound_deployment._deployment_config.autoscaling_config
    assert (config.min_replicas, config.max_replicas) == (1, 3)
    assert config.policy.policy_function == "tritonlite.ray:QueueTimePolicy"
    assert config.policy.policy_kwargs == {"target_queue_time_ms": 15.0}


# ---- on the cluster --------------------------------------------------------------------------------


def test_kserve_v2_over_serve_spreads_over_replicas_on_both_nodes(
    cluster: _Serve, repo: Path
) -> None:
    started = time.monotonic()
    app = tray.build_app({"model_repository": str(repo), "num_replicas": "2", "num_cpus": "1"})
    _deploy(app, "spread", cluster.port, "add_sub")
    try:
        # tritonclient.http against the Serve address, unchanged: health, metadata, binary infer.
        client = httpclient.InferenceServerClient(f"127.0.0.1:{cluster.port}", concurrency=4)
        assert client.is_server_live() and client.is_server_ready()
        meta = client.get_model_metadata("add_sub")
        assert meta["name"] == "add_sub" and meta["inputs"][0]["datatype"] == "INT32"
        inputs = [httpclient.InferInput("INPUT0", [1, 16], "INT32"),
                  httpclient.InferInput("INPUT1", [1, 16], "INT32")]  # fmt: skip
        inputs[0].set_data_from_numpy(A, binary_data=True)
        inputs[1].set_data_from_numpy(B, binary_data=True)
        outputs = [httpclient.InferRequestedOutput("OUTPUT0", binary_data=True),
                   httpclient.InferRequestedOutput("OUTPUT1", binary_data=False)]  # fmt: skip
        pending = [client.async_infer("add_sub", inputs, outputs=outputs) for _ in range(16)]
        for p in pending:
            result = p.get_result(timeout=60)
            _check_outputs(result.as_numpy("OUTPUT0"), result.as_numpy("OUTPUT1"))
        with pytest.raises(Exception, match="Request for unknown model: 'nope' is not found"):
            client.infer("nope", inputs)
        client.close()

        # Requests spread over both replicas, one on each node (one CPU per node and replica).
        served: Counter[str] = Counter()
        for _ in range(60):
            status, headers, body = _post(cluster.port, "/v2/models/add_sub/infer")
            assert status == 200, body
            served[headers[tray.REPLICA_HEADER]] += 1
        nodes = {value.split("node=")[1] for value in served}
        print(f"\nrequests per replica: {dict(served)}")
        assert len(served) == 2 and nodes == cluster.nodes, served
        assert min(served.values()) >= 5, served
    finally:
        serve.delete("spread")
        print(f"\nspread test: {time.monotonic() - started:.1f}s")


def test_handle_api_numpy_in_numpy_out_and_autoscaling_metric(
    cluster: _Serve, repo: Path
) -> None:
    app = tray.build_app({"model_repository": str(repo), "num_replicas": "1", "num_cpus": "0.5",
                          "max_body_bytes": "4096"})  # fmt: skip
    handle = _deploy(app, "handle", cluster.port, "add_sub")
    try:
        out = handle.infer.remote("add_sub", {"INPUT0": A, "INPUT1": B}).result(timeout_s=60)
        assert set(out) == {"OUTPUT0", "OUTPUT1"} and out["OUTPUT0"].dtype == np.int32
        _check_outputs(out["OUTPUT0"], out["OUTPUT1"])
        only = handle.infer.remote("add_sub", {"INPUT0": A, "INPUT1": B}, ["OUTPUT1"])
        assert set(only.result(timeout_s=60)) == {"OUTPUT1"}
        with pytest.raises(Exception, match="unexpected shape for input 'INPUT0'"):
            handle.infer.remote("add_sub", {"INPUT0": A[:, :3], "INPUT1": B}).result(timeout_s=60)
        with pytest.raises(Exception, match="Request for unknown model: 'nope' is not found"):
            handle.infer.remote("nope", {"INPUT0": A}).result(timeout_s=60)
        meta = handle.model_metadata.remote("add_sub").result(timeout_s=60)
        assert [t["name"] for t in meta["outputs"]] == ["OUTPUT0", "OUTPUT1"]
        # The HTTP body limit (--http-max-input-size) holds behind Serve's proxy too.
        status, _, body = _post(cluster.port, "/v2/models/add_sub/infer", b"x" * 5000)
        assert status == 400 and b"request size of 5000 bytes exceeds the maximum allowed " \
            b"input size of 4096 bytes" in body, body
        # The custom autoscaling metric Serve collects from each replica: queue time in µs.
        stats = handle.record_autoscaling_stats.remote().result(timeout_s=60)
        assert set(stats) == {tray.QUEUE_TIME_METRIC} and stats[tray.QUEUE_TIME_METRIC] >= 0
    finally:
        serve.delete("handle")


def test_killed_replica_is_replaced_and_only_in_flight_requests_fail(
    cluster: _Serve, repo: Path
) -> None:
    started = time.monotonic()
    app = tray.build_app({"model_repository": str(repo), "num_replicas": "2", "num_cpus": "1"})
    _deploy(app, "kill", cluster.port, "add_sub")
    clients, stop = 4, threading.Event()
    lock = threading.Lock()
    log: list[tuple[float, str | None]] = []  # (finished at, replica or None on failure)

    def load() -> None:
        for _ in range(5000):  # bounded; the test stops it far earlier
            if stop.is_set():
                return
            try:
                status, headers, _ = _post(cluster.port, "/v2/models/add_sub/infer")
                replica = headers.get(tray.REPLICA_HEADER) if status == 200 else None
            except OSError:
                replica = None
            with lock:
                log.append((time.monotonic(), replica))

    threads = [threading.Thread(target=load) for _ in range(clients)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 60
        while len({r for _, r in log if r}) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        before = {r for _, r in log if r}
        assert len(before) == 2, "load never reached both replicas"
        victim_id = sorted(before)[0].split(" ")[0]
        names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                 if a["name"].startswith("SERVE_REPLICA::kill#")]  # fmt: skip
        (victim,) = [n for n in names if n.endswith(victim_id)]
        killed_at = time.monotonic()
        ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
        # Serve's controller starts a replacement: wait until a new replica serves.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with lock:
                new = {r for t, r in log if r and t > killed_at} - before
            if new:
                break
            time.sleep(0.5)
        replaced_at = time.monotonic()
        assert new, f"no replacement replica served within 120 s of the kill ({victim})"
        time.sleep(2)  # load goes on over both replicas
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        serve.delete("kill")
    failures = [t for t, r in log if r is None]
    ok = len(log) - len(failures)
    print(f"\nkill test: {ok} ok, {len(failures)} failed of {len(log)}; replacement serving "
          f"{replaced_at - killed_at:.1f}s after the kill; {time.monotonic() - started:.1f}s")
    # Only the requests in flight on the killed replica fail: at most one per client thread.
    assert len(failures) <= clients, failures
    assert all(t >= killed_at for t in failures)
    survivors = {r for t, r in log if r and t > killed_at} & before
    assert survivors, "the surviving replica stopped serving"


def test_models_multiplexed_in_and_out_lru(cluster: _Serve, many_repo: Path) -> None:
    app = tray.build_app({"model_repository": str(many_repo), "multiplex": "true",
                          "max_models_per_replica": "2", "num_cpus": "0.5"})  # fmt: skip
    handle = serve.run(app, name="mux", route_prefix="/", blocking=False)
    try:
        deadline = time.monotonic() + 120
        while True:  # up, with nothing loaded
            try:
                if handle.replica.remote().result(timeout_s=30)["models"] == []:
                    break
            except Exception:  # noqa: BLE001 - still deploying
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.5)
        client = httpclient.InferenceServerClient(f"127.0.0.1:{cluster.port}")
        inputs = [httpclient.InferInput("INPUT0", [1, 16], "INT32"),
                  httpclient.InferInput("INPUT1", [1, 16], "INT32")]  # fmt: skip
        inputs[0].set_data_from_numpy(A)
        inputs[1].set_data_from_numpy(B)

        def models() -> list[str]:
            return sorted(handle.replica.remote().result(timeout_s=30)["models"])

        # Loaded on demand by plain tritonclient requests (no multiplexing header).
        for name in ("m1", "m2"):
            _check_outputs(*(client.infer(name, inputs).as_numpy(o) for o in ("OUTPUT0", "OUTPUT1")))
        assert models() == ["m1", "m2"]
        client.infer("m1", inputs)  # m1 used last: m2 is now the least recently used
        # m3 (with Serve's routing header) evicts m2; the handle's multiplexed id loads m2 again.
        client.infer("m3", inputs, headers={"serve_multiplexed_model_id": "m3"})
        assert models() == ["m1", "m3"]
        out = handle.options(multiplexed_model_id="m2").infer.remote(
            None, {"INPUT0": A, "INPUT1": B}).result(timeout_s=60)  # fmt: skip
        _check_outputs(out["OUTPUT0"], out["OUTPUT1"])
        assert models() == ["m2", "m3"]
        # A model the repository does not have: the unknown-model answer, nothing evicted.
        status, _, body = _post(cluster.port, "/v2/models/nope/infer")
        assert status == 404 and b"Request for unknown model: 'nope' is not found" in body, body
        with pytest.raises(Exception, match="Request for unknown model: 'nope' is not found"):
            handle.options(multiplexed_model_id="nope").infer.remote(
                None, {"INPUT0": A}).result(timeout_s=60)  # fmt: skip
        assert models() == ["m2", "m3"]
        # The LRU owns loading: the repository API refuses it.
        status, _, body = _post(cluster.port, "/v2/repository/models/m1/load", b"{}")
        assert status == 400 and b"managed by Ray Serve's multiplexing" in body, body
        client.close()
    finally:
        serve.delete("mux")


SLOW_MODEL = """
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for request in requests:
            time.sleep(0.05)
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", x)]))
        return out
"""


def test_autoscales_on_tritonlite_queue_time(cluster: _Serve, tmp_path: Path) -> None:
    """QueueTimePolicy, with Serve's ongoing-requests rule out of the way (a target of 1000):
    a 50 ms model on one instance, 6 clients -> requests queue for ~250 ms, over the 5 ms
    target, and Serve starts a second replica on that metric alone."""
    write_config(tmp_path / "slow", """name: "slow"
backend: "python"
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 2 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 2 ] } ]
""")
    (tmp_path / "slow" / "1").mkdir()
    (tmp_path / "slow" / "1" / "model.py").write_text(SLOW_MODEL)
    app = tray.build_app({
        "model_repository": str(tmp_path), "min_replicas": "1", "max_replicas": "2",
        "target_ongoing_requests": "1000", "target_queue_time_ms": "5", "num_cpus": "0.5",
        "autoscaling_config": {"upscale_delay_s": 0},
    })  # fmt: skip
    _deploy(app, "autoscale", cluster.port, "slow")
    body = json.dumps({"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [2],
                                   "data": [1.0, 2.0]}]}).encode()  # fmt: skip
    stop = threading.Event()
    errors: list[str] = []

    def load() -> None:
        for _ in range(2000):  # bounded; stopped far earlier
            if stop.is_set():
                return
            status, _, text = _post(cluster.port, "/v2/models/slow/infer", body)
            if status != 200:
                errors.append(text.decode(errors="replace"))

    def running() -> int:
        app_status = serve.status().applications["autoscale"]
        (deployment,) = app_status.deployments.values()
        return int(deployment.replica_states.get("RUNNING", 0))

    threads = [threading.Thread(target=load) for _ in range(6)]
    started = time.monotonic()
    for t in threads:
        t.start()
    try:
        deadline = started + 90
        while running() < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        scaled = running()
        took = time.monotonic() - started
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        serve.delete("autoscale")
    print(f"\nautoscale: {scaled} replicas {took:.1f}s after the load started")
    assert scaled == 2, "no scale-up on the queue-time metric within 90 s"
    assert not errors, errors[:3]


def test_serve_run_one_command_start(cluster: _Serve, repo: Path) -> None:
    """``serve run tritonlite.ray:app model_repository=...`` against the running cluster
    (``--non-blocking``: it returns once the app is deployed; the test deletes it after)."""
    serve_cli = Path(sys.executable).parent / "serve"
    env = {**os.environ, "RAY_ADDRESS": cluster.address}
    try:
        done = subprocess.run(
            [str(serve_cli), "run", "--non-blocking", "--address", cluster.address,
             "--name", "from-cli", "tritonlite.ray:app", f"model_repository={repo}",
             "num_cpus=0.5"],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
        _wait_ready(cluster.port, "add_sub", timeout=120)
        client = httpclient.InferenceServerClient(f"127.0.0.1:{cluster.port}")
        inputs = [httpclient.InferInput("INPUT0", [1, 16], "INT32"),
                  httpclient.InferInput("INPUT1", [1, 16], "INT32")]  # fmt: skip
        inputs[0].set_data_from_numpy(A)
        inputs[1].set_data_from_numpy(B)
        result = client.infer("add_sub", inputs)
        _check_outputs(result.as_numpy("OUTPUT0"), result.as_numpy("OUTPUT1"))
        client.close()
        assert "from-cli" in serve.status().applications
    finally:
        serve.delete("from-cli")
