"""Model repository: layout, version policies, control modes, auto-complete, broken models,
name checks, and reloads under load."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from models import make_add_sub_onnx, make_plus_onnx
from serving import write_config
from tritonlite import Server, TritonError

IDENTITY = """
name: "{name}" platform: "onnxruntime_onnx" max_batch_size: 4
{policy}
input [{{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] }}]
output [{{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] }}]
"""


def plus_model(repo: Path, name: str, versions: dict[int, float], policy: str = "") -> Path:
    write_config(repo / name, IDENTITY.format(name=name, policy=policy))
    for v, plus in versions.items():
        make_plus_onnx(repo / name / str(v) / "model.onnx", plus)
    return repo / name


X = np.zeros((1, 4), np.float32)


def served_value(server: Server, name: str, version: int | None = None) -> float:
    return float(server.infer(name, {"INPUT0": X}, version=version)["OUTPUT0"][0, 0])


@pytest.mark.parametrize(
    "policy, expected",
    [
        ("", [3]),
        ("version_policy { latest { num_versions: 2 } }", [2, 3]),
        ("version_policy { all { } }", [1, 2, 3]),
        ("version_policy { specific { versions: [ 1, 3 ] } }", [1, 3]),
    ],
)
def test_version_policies(tmp_path: Path, policy: str, expected: list[int]) -> None:
    plus_model(tmp_path, "m", {1: 1.0, 2: 2.0, 3: 3.0}, policy)
    with Server(tmp_path) as server:
        assert server.model_metadata("m")["versions"] == [str(v) for v in expected]
        for v in expected:
            assert served_value(server, "m", v) == v
        assert served_value(server, "m") == max(expected)  # no version: the latest
        for v in {1, 2, 3} - set(expected):
            assert not server.model_ready("m", v)


def test_control_mode_none_loads_everything(tmp_path: Path) -> None:
    plus_model(tmp_path, "a", {1: 1.0})
    plus_model(tmp_path, "b", {1: 2.0})
    with Server(tmp_path) as server:
        assert server.model_names() == ["a", "b"]
        # Triton's text in every mode but explicit.
        with pytest.raises(TritonError, match="not allowed if polling is enabled"):
            server.load_model("a")


def test_control_mode_explicit(tmp_path: Path) -> None:
    plus_model(tmp_path, "a", {1: 1.0})
    plus_model(tmp_path, "b", {1: 2.0})
    with Server(tmp_path, model_control_mode="explicit", load_models=["a"]) as server:
        assert server.model_names() == ["a"]
        index = {m["name"]: m for m in server.repository_index()}
        assert index["b"] == {"name": "b"}  # known, never loaded
        server.load_model("b")
        assert served_value(server, "b") == 2.0
        server.unload_model("a")
        assert server.model_names() == ["b"]
        assert {m["name"]: m for m in server.repository_index()}["a"]["reason"] == "unloaded"
        assert server.is_ready()  # unloaded on purpose does not make the server unready
    with Server(tmp_path, model_control_mode="explicit", load_models=["*"]) as server:
        assert server.model_names() == ["a", "b"]


def test_explicit_load_with_config_override(tmp_path: Path) -> None:
    plus_model(tmp_path, "a", {1: 1.0, 2: 2.0})
    with Server(tmp_path, model_control_mode="explicit") as server:
        override = (
            '{"name": "a", "platform": "onnxruntime_onnx", "max_batch_size": 4,'
            ' "version_policy": {"specific": {"versions": [1]}},'
            ' "input": [{"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [4]}],'
            ' "output": [{"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [4]}]}'
        )
        server.load_model("a", config=override)
        assert server.model_metadata("a")["versions"] == ["1"]
        assert served_value(server, "a") == 1.0


def test_control_mode_poll_loads_new_unloads_removed(tmp_path: Path) -> None:
    plus_model(tmp_path, "a", {1: 1.0})
    with Server(tmp_path, model_control_mode="poll", repository_poll_secs=0.2) as server:
        assert server.model_names() == ["a"]
        with pytest.raises(TritonError, match="polling is enabled"):
            server.load_model("a")
        plus_model(tmp_path, "b", {1: 2.0})
        deadline = time.monotonic() + 10
        while "b" not in server.model_names() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert served_value(server, "b") == 2.0
        shutil.rmtree(tmp_path / "a")
        while "a" in server.model_names() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.model_names() == ["b"]


def test_multiple_repositories_and_duplicates(tmp_path: Path) -> None:
    r1, r2 = tmp_path / "r1", tmp_path / "r2"
    plus_model(r1, "a", {1: 1.0})
    plus_model(r2, "b", {1: 2.0})
    plus_model(r1, "dup", {1: 3.0})
    plus_model(r2, "dup", {1: 4.0})
    with Server([r1, r2], exit_on_error=False) as server:
        assert server.model_names() == ["a", "b"]
        dup = {m["name"]: m for m in server.repository_index()}["dup"]
        assert dup["state"] == "UNAVAILABLE"
        assert "appears in more than one model repository" in dup["reason"]
        assert not server.is_ready()  # strict readiness: a model failed


def test_auto_complete_from_onnx(tmp_path: Path) -> None:
    make_add_sub_onnx(tmp_path / "simple" / "1" / "model.onnx", dtype="INT32")  # no config.pbtxt
    with Server(tmp_path) as server:
        meta = server.model_metadata("simple")
        assert [i["name"] for i in meta["inputs"]] == ["INPUT0", "INPUT1"]
        assert meta["inputs"][0] == {"name": "INPUT0", "datatype": "INT32", "shape": [-1, 16]}
        assert server.model_config("simple").max_batch_size == 4
        a = np.ones((1, 16), np.int32)
        assert server.infer("simple", {"INPUT0": a, "INPUT1": a})["OUTPUT0"].sum() == 32
    with pytest.raises(TritonError, match="config.pbtxt"):
        Server(tmp_path, auto_complete_config=False)


def test_broken_config_does_not_stop_the_others(tmp_path: Path) -> None:
    plus_model(tmp_path, "good", {1: 1.0})
    write_config(tmp_path / "bad", IDENTITY.format(name="bad", policy="").replace("max_batch_size: 4", "max_batch_size: -3"))
    make_plus_onnx(tmp_path / "bad" / "1" / "model.onnx", 1.0)
    write_config(tmp_path / "syntax", 'name: "syntax"\ninput [ { name: "x" ')
    with Server(tmp_path, exit_on_error=False) as server:
        assert served_value(server, "good") == 1.0
        index = {m["name"]: m for m in server.repository_index()}
        assert index["bad"]["state"] == "UNAVAILABLE"
        assert "max_batch_size" in index["bad"]["reason"]
        assert index["syntax"]["state"] == "UNAVAILABLE"
        assert "2:" in index["syntax"]["reason"]  # the line of the syntax error
        assert not server.model_ready("bad")
        assert not server.is_ready()
    # Triton's default --exit-on-error=true refuses to start.
    with pytest.raises(TritonError, match="failed to load all models"):
        Server(tmp_path)
    with Server(tmp_path, exit_on_error=False, strict_readiness=False) as server:
        assert server.is_ready()


@pytest.mark.parametrize("name", ["..", "../good", "/etc", "a/b", "a\\b", "bad\x00name", ""])
def test_names_that_escape_the_repository_are_rejected(tmp_path: Path, name: str) -> None:
    plus_model(tmp_path, "good", {1: 1.0})
    with Server(tmp_path, model_control_mode="explicit") as server:
        with pytest.raises(TritonError, match="invalid model name") as info:
            server.load_model(name)
        assert info.value.status == "INVALID_ARG"
        with pytest.raises(TritonError, match="invalid model name"):
            server.unload_model(name)


def test_file_override_cannot_escape(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    plus_model(tmp_path, "good", {1: 1.0})
    with Server(tmp_path, model_control_mode="explicit") as server:
        with pytest.raises(TritonError, match="failed to poll from model repository") as info:
            server.load_model("up", config='{"name": "up"}', files={"file:../../x": b"1"})
        assert info.value.status == "INTERNAL"  # Triton's answer; the reason is logged
    assert not (tmp_path.parent / "x").exists()
    assert any("outside the model directory" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "override",
    ['{"name": ', '{"name": "other", "backend": "python"}', "[1, 2]"],
)
def test_a_malformed_config_override_gets_tritons_answer(
    tmp_path: Path, override: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Triton 2.51 answers a load whose config override is not JSON, not an object, or names
    another model with INTERNAL "failed to load '<m>', failed to poll from model repository"."""
    plus_model(tmp_path, "good", {1: 1.0})
    with Server(tmp_path, model_control_mode="explicit") as server:
        with pytest.raises(TritonError) as info:
            server.load_model("good", config=override)
    assert info.value.status == "INTERNAL"
    assert info.value.message == "failed to load 'good', failed to poll from model repository"
    assert any("good" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")


def test_poll_reload_under_load_has_zero_failures(tmp_path: Path) -> None:
    """16 clients send continuously while a new version appears and the old one goes: no
    request fails and responses switch to the new version."""
    plus_model(tmp_path, "m", {1: 1.0})
    server = Server(tmp_path, model_control_mode="poll", repository_poll_secs=0.1)
    seen: list[float] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    async def clients() -> None:
        async def client() -> None:
            while not stop.is_set():
                try:
                    out = await server.infer_async("m", {"INPUT0": X})
                    seen.append(float(out["OUTPUT0"][0, 0]))
                except BaseException as e:  # noqa: BLE001 - every failure counts
                    failures.append(e)
                await asyncio.sleep(0)

        await asyncio.gather(*[client() for _ in range(16)])

    thread = threading.Thread(target=lambda: asyncio.run(clients()))
    thread.start()
    try:
        time.sleep(0.5)
        make_plus_onnx(tmp_path / "m" / "2" / "model.onnx", 2.0)  # new latest version
        deadline = time.monotonic() + 15
        while (not seen or seen[-1] != 2.0) and time.monotonic() < deadline:
            time.sleep(0.05)
        # Change version 2's file in place: a reload of the same version.
        time.sleep(0.3)
        make_plus_onnx(tmp_path / "m" / "2" / "model.onnx", 5.0)
        os.utime(tmp_path / "m" / "2" / "model.onnx")
        while seen[-1] != 5.0 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join()
        server.close()
    assert failures == []
    assert seen[0] == 1.0 and seen[-1] == 5.0
    assert 2.0 in seen
    assert len(seen) > 100


def _identity_ensemble(
    repo: Path, name: str, step: str, io: tuple[str, str] = ("INPUT0", "OUTPUT0")
) -> None:
    write_config(
        repo / name,
        f'name: "{name}"\nplatform: "ensemble"\nmax_batch_size: 8\n'
        'input [ { name: "X" data_type: TYPE_FP32 dims: [ 16 ] } ]\n'
        'output [ { name: "Y" data_type: TYPE_FP32 dims: [ 16 ] } ]\n'
        f'ensemble_scheduling {{ step [ {{ model_name: "{step}" model_version: -1\n'
        f'  input_map {{ key: "{io[0]}" value: "X" }} output_map {{ key: "{io[1]}" value: "Y" }} }} ] }}\n',
    )
    (repo / name / "1").mkdir()


def test_unload_dependents_unloads_composing_models_no_other_ensemble_uses(tmp_path: Path) -> None:
    """As Triton 2.51 (checked): unloading an ensemble with unload_dependents also unloads its
    composing models, recursively, except one another loaded ensemble still uses; without it
    they stay loaded."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from models import make_identity_onnx
    from serving import ServerProcess

    for name in ("shared", "own"):
        config = f'name: "{name}"\nbackend: "onnxruntime"\nmax_batch_size: 8\n'
        write_config(tmp_path / name, config)
        make_identity_onnx(tmp_path / name / "1" / "model.onnx")
    _identity_ensemble(tmp_path, "ens_a", "shared")
    _identity_ensemble(tmp_path, "ens_b", "shared")
    _identity_ensemble(tmp_path, "ens_own", "own")
    # nested: ens_outer -> ens_own -> own
    _identity_ensemble(tmp_path, "ens_outer", "ens_own", io=("X", "Y"))
    with ServerProcess(tmp_path, args=("--model-control-mode=explicit",)) as srv:
        http = httpclient.InferenceServerClient(srv.http_url)
        grpc = grpcclient.InferenceServerClient(srv.grpc_url)
        for name in ("shared", "own", "ens_a", "ens_b", "ens_own", "ens_outer"):
            http.load_model(name)
        http.unload_model("ens_a", unload_dependents=True)
        assert not http.is_model_ready("ens_a")
        assert http.is_model_ready("shared")  # ens_b still uses it
        grpc.unload_model("ens_outer", unload_dependents=True)
        for name in ("ens_outer", "ens_own", "own"):
            assert not grpc.is_model_ready(name), name
        assert grpc.is_model_ready("ens_b")
        http.unload_model("ens_b")  # without the flag its composing model stays
        assert http.is_model_ready("shared")
        grpc.unload_model("shared", unload_dependents=False)
        assert not grpc.is_model_ready("shared")


def test_model_config_name_reads_the_custom_config_where_there_is_one(tmp_path: Path) -> None:
    """--model-config-name=NAME: <model>/configs/NAME.pbtxt, else config.pbtxt (Triton's rule)."""
    import tritonclient.grpc as grpcclient
    from serving import ServerProcess

    plus_model(tmp_path, "custom", {1: 1.0})
    plus_model(tmp_path, "plain", {1: 2.0})
    text = (tmp_path / "custom" / "config.pbtxt").read_text()
    (tmp_path / "custom" / "configs").mkdir()
    (tmp_path / "custom" / "configs" / "small.pbtxt").write_text(
        text.replace("max_batch_size: 4", "max_batch_size: 2")
    )
    with ServerProcess(tmp_path, args=("--model-config-name", "small")) as srv:
        client = grpcclient.InferenceServerClient(srv.grpc_url)
        assert client.get_model_config("custom").config.max_batch_size == 2
        assert client.get_model_config("plain").config.max_batch_size == 4
    with Server(tmp_path) as server:  # without the flag: config.pbtxt
        assert server.model_config("custom").max_batch_size == 4
    with pytest.raises(TritonError, match="must be a file name without spaces"):
        Server(tmp_path, model_config_name="a b")


FLAKY_INIT = '''
import os
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        marker = os.path.join(args["model_repository"], "tries")
        tries = int(open(marker).read()) if os.path.exists(marker) else 0
        open(marker, "w").write(str(tries + 1))
        if tries < 2:
            raise RuntimeError(f"not yet ({tries})")

    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.ones(1, np.float32))])
                for _ in requests]
'''


@pytest.mark.parametrize(("retries", "ready"), [(0, False), (1, False), (2, True)])
def test_model_load_retry_count(tmp_path: Path, retries: int, ready: bool) -> None:
    model = tmp_path / "flaky"
    write_config(
        model,
        'name: "flaky"\nbackend: "python"\n'
        'output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 1 ] } ]\n',
    )
    (model / "1").mkdir()
    (model / "1" / "model.py").write_text(FLAKY_INIT)
    with Server(tmp_path, exit_on_error=False, model_load_retry_count=retries) as server:
        assert server.model_ready("flaky") is ready
        assert (model / "tries").read_text() == str(min(retries + 1, 3))
        if not ready:
            [entry] = server.repository_index()
            assert "not yet" in entry["reason"]
