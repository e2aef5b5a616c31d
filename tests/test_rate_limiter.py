"""The rate limiter (``--rate-limit execution_count``, ``--rate-limit-resource``, instance_group
``rate_limiter``) through a real ``tritonlite-server`` and tritonclient.

The python models below record what they saw, not how long anything took: on entering
``execute`` an instance takes a shared file lock without waiting (``lock=busy`` when another
instance holds it: two executions overlapped) and then waits up to ``WAIT`` seconds for another
instance to be inside ``execute`` too (``met=True``). Instances sharing one unit of a resource
must never report ``busy`` nor ``met``; with two units they must meet.
"""

from __future__ import annotations

import queue
import re
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serving import ServerProcess, write_config
from tritonclient.utils import InferenceServerException
from tritonlite import Server, TritonError

MODEL_PY = """
import fcntl
import json
import os
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.dir = params["DIR"]
        self.wait = float(params.get("WAIT", "0.5"))
        self.name = args["model_instance_name"]
        open(os.path.join(self.dir, "init_" + self.name), "w").close()

    def execute(self, requests):
        # A request may ask to be held until a file appears (the resource stays taken).
        for r in requests:
            hold = pb_utils.get_input_tensor_by_name(r, "HOLD")
            if hold is not None and hold.as_numpy()[0]:
                release = os.path.join(self.dir, "release")
                open(os.path.join(self.dir, "holding"), "w").close()
                deadline = time.monotonic() + 60
                while not os.path.exists(release) and time.monotonic() < deadline:
                    time.sleep(0.01)
        fd = os.open(os.path.join(self.dir, "lock"), os.O_RDWR | os.O_CREAT)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                locked = "ok"
            except BlockingIOError:
                locked = "busy"
            mark = os.path.join(self.dir, "in_" + self.name)
            open(mark, "w").close()
            met = False
            deadline = time.monotonic() + self.wait
            while not met and time.monotonic() < deadline:
                met = any(f.startswith("in_") and f != "in_" + self.name
                          for f in os.listdir(self.dir))
                time.sleep(0.005)
            os.unlink(mark)
        finally:
            os.close(fd)  # releases the lock
        with open(os.path.join(self.dir, "log"), "a") as f:
            f.write(f"{self.name} lock={locked} met={met}\\n")
        return [
            pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy())]
            )
            for r in requests
        ]
"""


def _model(repo: Path, name: str, state: Path, *, count: int = 1, rate_limiter: str = "",
           wait: float = 0.5, groups: str = "", extra: str = "") -> None:  # fmt: skip
    """A model of MODEL_PY: one instance group of ``count`` instances with ``rate_limiter``, or
    the instance groups ``groups`` (text inside instance_group [...])."""
    model_dir = repo / name
    groups = groups or f"{{ count: {count} kind: KIND_CPU {rate_limiter} }}"
    write_config(
        model_dir,
        f"""
name: "{name}"
backend: "python"
max_batch_size: 0
input [{{ name: "IN" data_type: TYPE_FP32 dims: [ 1 ] }},
       {{ name: "HOLD" data_type: TYPE_BOOL dims: [ 1 ] optional: true }}]
output [{{ name: "OUT" data_type: TYPE_FP32 dims: [ 1 ] }}]
instance_group [{groups}]
parameters {{ key: "DIR" value {{ string_value: "{state}" }} }}
parameters {{ key: "WAIT" value {{ string_value: "{wait}" }} }}
{extra}
""",
    )
    (model_dir / "1").mkdir(exist_ok=True)
    (model_dir / "1" / "model.py").write_text(MODEL_PY)


def _limiter(*resources: str, priority: int = 0) -> str:
    listed = ", ".join(resources)
    return f"rate_limiter {{ resources [{listed}] priority: {priority} }}"


R1 = '{ name: "R" count: 1 }'


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir()
    return path


def _log(state: Path) -> list[str]:
    log = state / "log"
    return log.read_text().splitlines() if log.exists() else []


def _infer_all(url: str, models: list[str], hold: bool = False) -> None:
    """One request per entry of ``models``, all at once (each on its own gRPC client)."""

    def one(model: str) -> None:
        client = grpcclient.InferenceServerClient(url)
        x = grpcclient.InferInput("IN", [1], "FP32")
        x.set_data_from_numpy(np.ones(1, np.float32))
        out = client.infer(model, [x])
        assert out.as_numpy("OUT").tolist() == [1.0]

    with ThreadPoolExecutor(len(models)) as pool:
        for f in [pool.submit(one, m) for m in models]:
            f.result()


def test_one_unit_is_never_shared_across_instances_and_models(tmp_path: Path, state: Path) -> None:
    repo = tmp_path / "repo"
    _model(repo, "a", state, count=2, rate_limiter=_limiter(R1))
    _model(repo, "b", state, rate_limiter=_limiter(R1, priority=2))
    with ServerProcess(repo, args=("--rate-limit=execution_count",)) as srv:
        _infer_all(srv.grpc_url, ["a", "a", "b", "b", "a", "b"])
    lines = _log(state)
    assert len(lines) == 6
    # Every instance ran, and no two executions ever overlapped.
    assert {line.split()[0] for line in lines} == {"a_0_0", "a_0_1", "b_0_0"}
    assert all(line.endswith("lock=ok met=False") for line in lines), lines


def test_without_rate_limit_the_config_is_ignored(tmp_path: Path, state: Path) -> None:
    """The same configuration with Triton's default --rate-limit off: the instances overlap
    (the check above can fail), and the log says why the rate_limiter has no effect."""
    repo = tmp_path / "repo"
    _model(repo, "a", state, count=2, rate_limiter=_limiter(R1), wait=20)
    with ServerProcess(repo) as srv:
        _infer_all(srv.grpc_url, ["a", "a"])
        log = srv.log()
    assert sorted(line.split(" ", 1)[1] for line in _log(state)) == [
        "lock=busy met=True",
        "lock=ok met=True",
    ]
    assert "model 'a': instance_group rate_limiter is ignored" in log


def test_two_units_let_two_instances_run(tmp_path: Path, state: Path) -> None:
    """--rate-limit-resource R:2 gives two units: the two instances (each asking for one) run
    at once."""
    repo = tmp_path / "repo"
    _model(repo, "a", state, rate_limiter=_limiter(R1), wait=20)
    _model(repo, "b", state, rate_limiter=_limiter(R1), wait=20)
    args = ("--rate-limit", "EXECUTION_COUNT", "--rate-limit-resource", "R:2")
    with ServerProcess(repo, args=args) as srv:
        _infer_all(srv.grpc_url, ["a", "b"])
    assert sorted(line.split(" ", 1)[1] for line in _log(state)) == [
        "lock=busy met=True",
        "lock=ok met=True",
    ]


def test_global_resource_is_one_copy(tmp_path: Path, state: Path) -> None:
    repo = tmp_path / "repo"
    g1 = '{ name: "G" global: true count: 1 }'
    _model(repo, "a", state, count=2, rate_limiter=_limiter(g1))
    with ServerProcess(repo, args=("--rate-limit=execution_count", "--rate-limit-resource=G:1:3"))\
            as srv:  # fmt: skip
        _infer_all(srv.grpc_url, ["a"] * 4)
    lines = _log(state)
    assert len(lines) == 4 and all(line.endswith("lock=ok met=False") for line in lines), lines


def _load_error(srv: ServerProcess, model: str) -> tuple[str, str]:
    """The gRPC and HTTP clients' error texts for loading ``model``."""
    texts = []
    for client in (grpcclient.InferenceServerClient(srv.grpc_url),
                   httpclient.InferenceServerClient(srv.http_url)):  # fmt: skip
        with pytest.raises(InferenceServerException) as e:
            client.load_model(model)
        texts.append(str(e.value.message()))
    return texts[0], texts[1]


def test_asking_for_more_than_the_server_has_fails_the_load(tmp_path: Path, state: Path) -> None:
    repo = tmp_path / "repo"
    _model(repo, "big", state, rate_limiter=_limiter('{ name: "R" count: 2 }'))
    _model(repo, "other_device", state, rate_limiter=_limiter(R1))
    _model(repo, "unnamed", state, rate_limiter=_limiter('{ name: "S" count: 1 }'))
    _model(repo, "fits", state, rate_limiter=_limiter(R1))
    _model(repo, "dev1", state, rate_limiter=_limiter('{ name: "T" count: 1 }'))
    args = ("--model-control-mode=explicit", "--rate-limit=execution_count",
            "--rate-limit-resource=R:1", "--rate-limit-resource=T:4:1")  # fmt: skip
    with ServerProcess(repo, args=args) as srv:
        want = ('Resource count for "R" is limited to 1 which will prevent scheduling of one or '
                "more model instances, the minimum required count is 2")  # fmt: skip
        for text in _load_error(srv, "big"):
            assert text == f"failed to load 'big' version 1: {want}"
        for text in _load_error(srv, "unnamed"):
            assert 'Resource count for "S" is limited to 0' in text
        grpcclient.InferenceServerClient(srv.grpc_url).load_model("fits")
        _infer_all(srv.grpc_url, ["fits"])
        index = {m["name"]: m for m in httpclient.InferenceServerClient(srv.http_url)
                 .get_model_repository_index()}  # fmt: skip
        assert index["big"]["state"] == "UNAVAILABLE" and want in index["big"]["reason"]
        # A device's own count does not serve another device (CPU instances are on device 0).
        for text in _load_error(srv, "dev1"):
            assert 'Resource count for "T" is limited to 0' in text


def test_global_and_device_resource_of_one_name_conflict(tmp_path: Path, state: Path) -> None:
    repo = tmp_path / "repo"
    _model(repo, "g", state, rate_limiter=_limiter('{ name: "R" global: true count: 1 }'))
    _model(repo, "d", state, rate_limiter=_limiter(R1))
    args = ("--model-control-mode=explicit", "--rate-limit=execution_count", "--load-model=g")
    with ServerProcess(repo, args=args) as srv:
        for text in _load_error(srv, "d"):
            assert text == (
                "failed to load 'd' version 1: Resource \"R\" is present as both global and "
                "device-specific resource in the model configuration."
            )


def test_rate_limit_off_does_not_check_resources(tmp_path: Path, state: Path) -> None:
    repo = tmp_path / "repo"
    _model(repo, "big", state, rate_limiter=_limiter('{ name: "R" count: 5 }'))
    with ServerProcess(repo, args=("--rate-limit=off", "--rate-limit-resource=R:1")) as srv:
        _infer_all(srv.grpc_url, ["big"])
        log = srv.log()
    assert "--rate-limit-resource has no effect with --rate-limit off" in log


def _pending(srv: ServerProcess, model: str) -> int:
    text = urllib.request.urlopen(srv.metrics_url, timeout=10).read().decode()
    m = re.search(r'nv_inference_pending_request_count\{model="' + model + r'",version="1"\} (\d+)',
                  text)  # fmt: skip
    assert m is not None, text
    return int(m.group(1))


def _wait_for(predicate: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def _waiting_request(
    srv: ServerProcess, client: Any, model: str
) -> tuple[Any, queue.Queue[Any], queue.Queue[Any]]:
    """Two requests to ``model`` while its resource is held: the first is taken by the instance
    (which waits for the resource), the second waits in the queue. Seeing the second pending is
    what proves the first reached the instance (pending == 0 alone is also true before the first
    has arrived, which a slow server - a sanitizer build - makes visible). Returns the first's
    call and both result queues (each gets (result, error))."""
    x = grpcclient.InferInput("IN", [1], "FP32")
    x.set_data_from_numpy(np.ones(1, np.float32))
    first: queue.Queue[Any] = queue.Queue()
    second: queue.Queue[Any] = queue.Queue()
    call = client.async_infer(model, [x], callback=lambda result, error: first.put((result, error)))
    _wait_for(lambda: _pending(srv, model) == 0, "the first request never left the queue")
    client.async_infer(model, [x], callback=lambda result, error: second.put((result, error)))
    _wait_for(lambda: _pending(srv, model) == 1, "the second request never reached the queue")
    return call, first, second


def _hold(srv: ServerProcess, state: Path, model: str) -> threading.Thread:
    """A request to ``model`` that keeps its resource until ``state/release`` exists."""

    def run() -> None:
        client = grpcclient.InferenceServerClient(srv.grpc_url)
        x = grpcclient.InferInput("IN", [1], "FP32")
        x.set_data_from_numpy(np.ones(1, np.float32))
        h = grpcclient.InferInput("HOLD", [1], "BOOL")
        h.set_data_from_numpy(np.ones(1, bool))
        client.infer(model, [x, h])

    t = threading.Thread(target=run)
    t.start()
    _wait_for(lambda: (state / "holding").exists(), "the holding request never ran")
    return t


@pytest.fixture
def holder_and_waiter(tmp_path: Path, state: Path) -> Iterator[ServerProcess]:
    repo = tmp_path / "repo"
    _model(repo, "holder", state, rate_limiter=_limiter(R1))
    _model(repo, "waiter", state, rate_limiter=_limiter(R1))
    args = ("--model-control-mode=explicit", "--load-model=*", "--rate-limit=execution_count")
    with ServerProcess(repo, args=args) as srv:
        yield srv
    (state / "release").touch()


def test_a_request_cancelled_while_its_instance_waits_is_answered(
    holder_and_waiter: ServerProcess, state: Path
) -> None:
    srv = holder_and_waiter
    held = _hold(srv, state, "holder")
    client = grpcclient.InferenceServerClient(srv.grpc_url)
    # The first is out of the queue and not answered: its instance has it and waits for R.
    call, results, queued = _waiting_request(srv, client, "waiter")
    assert results.empty()
    call.cancel()
    _, error = results.get(timeout=30)
    assert error is not None and "CANCELLED" in str(error.status())

    def failed() -> int:
        stats = client.get_inference_statistics("waiter", as_json=True)
        return int(stats["model_stats"][0]["inference_stats"]["fail"].get("count", 0))

    # The server answered it (counted as failed) while the holder still holds R.
    _wait_for(lambda: failed() == 1, "the server never answered the cancelled request")
    assert not (state / "release").exists()
    (state / "release").touch()
    held.join(30)
    # The waiter never ran the cancelled request: it serves the queued one, then the next.
    result, error = queued.get(timeout=30)
    assert error is None and result.as_numpy("OUT").tolist() == [1.0]
    _infer_all(srv.grpc_url, ["waiter"])
    assert [line.split()[0] for line in _log(state)] == ["holder_0_0", "waiter_0_0", "waiter_0_0"]


def test_unloading_a_model_whose_instance_waits_completes(
    holder_and_waiter: ServerProcess, state: Path
) -> None:
    """Unload finishes what the model holds (as Triton): the waiting request runs once the
    holder lets go, then the unload returns; nothing hangs."""
    srv = holder_and_waiter
    held = _hold(srv, state, "holder")
    client = grpcclient.InferenceServerClient(srv.grpc_url)
    _, results, queued = _waiting_request(srv, client, "waiter")
    unloaded = threading.Event()

    def unload() -> None:
        httpclient.InferenceServerClient(srv.http_url, network_timeout=120).unload_model("waiter")
        unloaded.set()

    unloader = threading.Thread(target=unload)
    unloader.start()
    assert results.empty() and not unloaded.is_set()
    (state / "release").touch()
    held.join(30)
    for answers in (results, queued):  # the waiting and the queued request both run
        result, error = answers.get(timeout=30)
        assert error is None and result.as_numpy("OUT").tolist() == [1.0]
    unloader.join(30)
    assert unloaded.is_set()
    assert not client.is_model_ready("waiter")
    # Its instance is gone from the limiter: the holder still runs.
    _infer_all(srv.grpc_url, ["holder"])


def test_server_stop_with_a_waiting_instance(holder_and_waiter: ServerProcess, state: Path) -> None:
    srv = holder_and_waiter
    held = _hold(srv, state, "holder")
    client = grpcclient.InferenceServerClient(srv.grpc_url)
    _, results, queued = _waiting_request(srv, client, "waiter")
    assert srv.proc is not None
    srv.proc.send_signal(signal.SIGTERM)
    (state / "release").touch()
    held.join(30)
    for answers in (results, queued):  # both were accepted before the stop: both run
        _, error = answers.get(timeout=30)
        assert error is None, error
    assert srv.proc.wait(60) == 0


# ---- the flags and the in-process Server ------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (("--rate-limit", "sometimes"), "invalid argument for --rate-limit: 'sometimes'"),
        (("--rate-limit-resource", "R"), ("--rate-limit-resource option format is "
         "'<resource_name>:<count>:<device>' or '<resource_name>:<count>'. Got R")),
        (("--rate-limit-resource", "R:1:2:3"), "Got R:1:2:3"),
        (("--rate-limit-resource", "R:x"), "'x' is not an integer"),
        (("--rate-limit-resource", "R:-1"), "the count must not be negative"),
        (("--rate-limit-resource", "R:1:-2"), "the device must be a device id"),
        (("--rate-limit-resource", "R:99999999999"), "out of range"),
    ],
)  # fmt: skip
def test_bad_flags_are_refused_by_name(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "tritonlite.cli", "--model-repository", str(tmp_path), *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert message in proc.stderr and args[0] in proc.stderr
    assert "Traceback" not in proc.stderr


def test_in_process_server_keywords(tmp_path: Path, state: Path) -> None:
    repo = tmp_path / "repo"
    _model(repo, "big", state, rate_limiter=_limiter('{ name: "R" count: 2 }'))
    with pytest.raises(TritonError, match="is limited to 1"):
        Server(repo, rate_limit="execution_count", rate_limit_resources=["R:1"])
    with Server(repo, rate_limit="execution_count", rate_limit_resources=[("R", 3)]) as server:
        assert server.rate_limiter.available() == {"R@0": 3}
    with Server(repo) as server:
        assert server.rate_limiter is None
    with pytest.raises(TritonError, match="invalid argument for --rate-limit"):
        Server(rate_limit="on")
    with pytest.raises(TritonError, match="option format"):
        Server(rate_limit_resources=["R"])


def test_passive_instances_count_toward_the_limits(tmp_path: Path, state: Path) -> None:
    """A passive instance never runs, but its ask counts as in Triton: toward the default count,
    and against --rate-limit-resource."""
    repo = tmp_path / "repo"
    big = _limiter('{ name: "R" count: 3 }')
    groups = f"{{ kind: KIND_CPU {_limiter(R1)} }}, {{ kind: KIND_CPU passive: true {big} }}"
    _model(repo, "p", state, groups=groups)
    with Server(repo, rate_limit="execution_count") as server:
        assert server.rate_limiter.available() == {"R@0": 3}
        assert server.model_ready("p")
    with pytest.raises(TritonError, match="minimum required count is 3"):
        Server(repo, rate_limit="execution_count", rate_limit_resources=["R:2"])


def test_warmup_waits_for_the_resources(tmp_path: Path, state: Path) -> None:
    """model_warmup runs take the instance's resources like requests do (Triton schedules
    warmup through its rate limiter): a model loading while another holds the one unit warms
    up only after it is given back."""
    repo = tmp_path / "repo"
    _model(repo, "holder", state, rate_limiter=_limiter(R1))
    warmup = (
        'model_warmup [{ name: "zeros" batch_size: 1 '
        'inputs { key: "IN" value: { data_type: TYPE_FP32 dims: [ 1 ] zero_data: true } } }]'
    )
    _model(repo, "warm", state, rate_limiter=_limiter(R1), extra=warmup)
    args = ("--model-control-mode=explicit", "--load-model=holder", "--rate-limit=execution_count")
    with ServerProcess(repo, args=args) as srv:
        held = _hold(srv, state, "holder")
        loader = threading.Thread(
            target=lambda: grpcclient.InferenceServerClient(srv.grpc_url).load_model("warm")
        )
        loader.start()
        # Its instance is up; its warmup run is next, and must wait for R.
        _wait_for(lambda: (state / "init_warm_0_0").exists(), "the instance never started")
        (state / "release").touch()
        held.join(30)
        loader.join(60)
        assert grpcclient.InferenceServerClient(srv.grpc_url).is_model_ready("warm")
    lines = _log(state)
    assert [line.split()[0] for line in lines] == ["holder_0_0", "warm_0_0"]
    assert all(line.endswith("lock=ok met=False") for line in lines), lines  # never overlapped
