"""Model warmup (``model_warmup``): every sample runs on every instance before the version is
READY, with zero, random and file data of the right shapes and datatypes, through every backend;
a failing sample fails the load with the sample named; hostile data files and sizes are refused.
Triton 2.51's behaviour (checked against it): batch_size requests in one execute call, each
``[1] + dims`` when the model batches; batch_size 0 skipped; count 0 runs once; warmup counted
in the statistics; "failed to run warmup sample '<name>': <error>; <error>; "."""

from __future__ import annotations

import json
import os
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from google.protobuf import text_format
from models import PYTHON_MODELS, make_identity_onnx
from serving import ServerProcess, wait_http_live, write_config
from tritonclient.utils import InferenceServerException
from tritonlite import TritonError
from tritonlite._proto import model_config_pb2 as mc
from tritonlite.warmup import MAX_SAMPLE_BYTES, warmup_samples


def _input(name: str, dtype: str, dims: list[int], data: str) -> str:
    return f'inputs {{ key: "{name}" value {{ data_type: {dtype} dims: {dims} {data} }} }}'


def _sample(name: str, batch_size: int, inputs: list[str], count: int = 0) -> str:
    return f'{{ name: "{name}" batch_size: {batch_size} count: {count} {" ".join(inputs)} }}'


ZERO = "zero_data: true"
RANDOM = "random_data: true"

# Three samples that run (3 + 1 + 1 execute calls per instance, 2 + 1 + 1 requests each) and
# one that Triton skips (batch_size 0).
COUNTER_SAMPLES = "model_warmup [" + ", ".join([
    _sample("zero", 2, [_input("IN", "TYPE_FP32", [3], ZERO), _input("S", "TYPE_STRING", [2], ZERO),
                        _input("B", "TYPE_BOOL", [2], ZERO)], count=3),
    _sample("random", 1, [_input("IN", "TYPE_FP32", [3], RANDOM),
                          _input("S", "TYPE_STRING", [2], RANDOM),
                          _input("B", "TYPE_BOOL", [2], RANDOM)]),
    _sample("file", 1, [_input("IN", "TYPE_FP32", [3], 'input_data_file: "in.bin"'),
                        _input("S", "TYPE_STRING", [2], 'input_data_file: "strings/s.bin"'),
                        _input("B", "TYPE_BOOL", [2], ZERO)]),
    _sample("skipped", 0, [_input("IN", "TYPE_FP32", [3], ZERO)]),
]) + "]"  # fmt: skip
CALLS_PER_INSTANCE = 5  # 3 (zero, count 3) + 1 (random, count 0 runs once) + 1 (file)
REQUESTS_PER_INSTANCE = 3 * 2 + 1 + 1

NOBATCH_SAMPLES = "model_warmup [" + ", ".join([
    _sample("zero", 1, [_input("IN", "TYPE_FP32", [3], ZERO), _input("S", "TYPE_STRING", [2], ZERO),
                        _input("B", "TYPE_BOOL", [2], ZERO)], count=2),
    _sample("file", 1, [_input("IN", "TYPE_FP32", [3], 'input_data_file: "in.bin"'),
                        _input("S", "TYPE_STRING", [2], 'input_data_file: "strings/s.bin"'),
                        _input("B", "TYPE_BOOL", [2], RANDOM)]),
]) + "]"  # fmt: skip

STRINGS = struct.pack("<I", 3) + b"abc" + struct.pack("<I", 2) + b"xy"


def counter_model(repo: Path, logs: Path, name: str, mode: str, *, batching: bool = True,
                  samples: str = COUNTER_SAMPLES, fail: str = "") -> Path:  # fmt: skip
    """tests/python_models/warmup_counter as ``name``, logging its execute calls to
    ``logs/<name>.jsonl``, with the warmup data files the samples read."""
    model_dir = repo / name
    shutil.copytree(PYTHON_MODELS / "warmup_counter", model_dir)
    config = (model_dir / "config.pbtxt").read_text().replace('"warmup_counter"', f'"{name}"')
    if not batching:
        config = config.replace("max_batch_size: 8", "max_batch_size: 0")
    params = {"LOG_FILE": str(logs / f"{name}.jsonl"), "EXECUTION_MODE": mode, "FAIL": fail}
    for key, value in params.items():
        config += f'\nparameters {{ key: "{key}" value {{ string_value: "{value}" }} }}'
    (model_dir / "config.pbtxt").write_text(config + "\n" + samples + "\n")
    (model_dir / "warmup" / "strings").mkdir(parents=True)
    # A longer file is used from its start, as Triton does.
    (model_dir / "warmup" / "in.bin").write_bytes(np.array([1.5, 2.5, 3.5], np.float32).tobytes()
                                                  + b"unused")  # fmt: skip
    (model_dir / "warmup" / "strings" / "s.bin").write_bytes(STRINGS)
    return model_dir


def read_log(logs: Path, name: str) -> list[dict[str, Any]]:
    path = logs / f"{name}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def calls_by_instance(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if "call" in r:
            out.setdefault(r["instance"], []).append(r)
    return out


ONNX_CONFIG = """
name: "{name}" platform: "onnxruntime_onnx" max_batch_size: 4
input [{{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] }}]
output [{{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] }}]
instance_group [{{ count: 2 kind: KIND_CPU }}]
{samples}
"""

TORCH_CONFIG = """
name: "{name}" platform: "pytorch_libtorch" max_batch_size: 4
input [{{ name: "INPUT__0" data_type: TYPE_FP32 dims: [ 4 ] }}]
output [{{ name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 4 ] }}]
{samples}
"""


def onnx_model(repo: Path, name: str, samples: str) -> None:
    write_config(repo / name, ONNX_CONFIG.format(name=name, samples=samples))
    make_identity_onnx(repo / name / "1" / "model.onnx", dims=(4,))
    (repo / name / "warmup").mkdir()
    (repo / name / "warmup" / "x.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())


ONNX_SAMPLES = "model_warmup [" + ", ".join([
    _sample("full batch", 4, [_input("INPUT0", "TYPE_FP32", [4], ZERO)], count=2),
    _sample("from file", 1, [_input("INPUT0", "TYPE_FP32", [4], 'input_data_file: "x.bin"')]),
]) + "]"  # fmt: skip
# INT32 data for an FP32 input: onnxruntime refuses it when the sample runs.
ONNX_BAD_SAMPLES = "model_warmup [" + _sample("wrong type", 2, [
    _input("INPUT0", "TYPE_INT32", [4], RANDOM)]) + "]"  # fmt: skip


class Env:
    def __init__(self, server: ServerProcess, repo: Path, logs: Path) -> None:
        self.server, self.repo, self.logs = server, repo, logs
        self.grpc = grpcclient.InferenceServerClient(server.grpc_url)
        self.http = httpclient.InferenceServerClient(server.http_url)

    def client(self, protocol: str) -> Any:
        return self.grpc if protocol == "grpc" else self.http


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    repo = tmp_path_factory.mktemp("warmup_repo")
    logs = tmp_path_factory.mktemp("warmup_logs")
    counter_model(repo, logs, "counter_stub", "stub")
    counter_model(repo, logs, "counter_in_process", "in_process", batching=False,
                  samples=NOBATCH_SAMPLES)  # fmt: skip
    fail_samples = "model_warmup [" + _sample("bad sample", 2, [
        _input("IN", "TYPE_FP32", [3], ZERO), _input("S", "TYPE_STRING", [2], ZERO),
        _input("B", "TYPE_BOOL", [2], ZERO)]) + "]"  # fmt: skip
    counter_model(repo, logs, "fail_respond_stub", "stub", samples=fail_samples, fail="respond")
    counter_model(repo, logs, "fail_raise_in_process", "in_process", samples=fail_samples,
                  fail="raise")  # fmt: skip
    onnx_model(repo, "onnx_warm", ONNX_SAMPLES)
    onnx_model(repo, "onnx_bad", ONNX_BAD_SAMPLES)
    try:
        from models import make_identity_torchscript

        make_identity_torchscript(repo / "torch_warm" / "1" / "model.pt")
        write_config(repo / "torch_warm", TORCH_CONFIG.format(name="torch_warm", samples=(
            "model_warmup [" + _sample("torch", 3, [_input("INPUT__0", "TYPE_FP32", [4], RANDOM)])
            + "]")))  # fmt: skip
    except ImportError:
        pass  # torch is optional
    with ServerProcess(repo, args=("--model-control-mode=explicit",)) as server:
        wait_http_live(server)
        yield Env(server, repo, logs)


@pytest.mark.parametrize("model, protocol", [("counter_stub", "grpc"),
                                             ("counter_in_process", "http")])  # fmt: skip
def test_every_sample_runs_on_every_instance_before_ready(env: Env, model: str,
                                                          protocol: str) -> None:  # fmt: skip
    client = env.client(protocol)
    assert not client.is_model_ready(model)
    client.load_model(model)  # returns once the version is READY
    by_instance = calls_by_instance(read_log(env.logs, model))  # read before any inference
    assert sorted(by_instance) == [f"{model}_0_0", f"{model}_0_1"]
    batching = model == "counter_stub"
    per_instance = CALLS_PER_INSTANCE if batching else 3
    batch_sizes = [2, 2, 2, 1, 1] if batching else [1, 1, 1]
    for calls in by_instance.values():
        assert [c["call"] for c in calls] == list(range(1, per_instance + 1))
        assert [len(c["requests"]) for c in calls] == batch_sizes
    assert client.is_model_ready(model)

    # The first real request finds its instance with every warmup call behind it.
    mod = grpcclient if protocol == "grpc" else httpclient
    shape = [1, 3] if batching else [3]
    inputs = [mod.InferInput("IN", shape, "FP32"), mod.InferInput("S", shape[:-1] + [2], "BYTES"),
              mod.InferInput("B", shape[:-1] + [2], "BOOL")]  # fmt: skip
    inputs[0].set_data_from_numpy(np.ones(shape, np.float32))
    inputs[1].set_data_from_numpy(np.array([b"a", b"b"], dtype=object).reshape(shape[:-1] + [2]))
    inputs[2].set_data_from_numpy(np.ones(shape[:-1] + [2], bool))
    result = client.infer(model, inputs)
    assert result.as_numpy("CALLS_BEFORE").reshape(-1).tolist() == [per_instance]

    # Warmup is counted in the statistics, as Triton counts it.
    kwargs = {"as_json": True} if protocol == "grpc" else {}
    stats = client.get_inference_statistics(model, **kwargs)["model_stats"][0]
    requests = 2 * (REQUESTS_PER_INSTANCE if batching else 3)
    assert int(stats["inference_count"]) == requests + 1
    assert int(stats["execution_count"]) == 2 * per_instance + 1


def test_zero_random_and_file_data_reach_the_model(env: Env) -> None:
    for model in ("counter_stub", "counter_in_process"):
        if not env.grpc.is_model_ready(model):
            env.grpc.load_model(model)
    batched = calls_by_instance(read_log(env.logs, "counter_stub"))["counter_stub_0_0"]
    zero, random, from_file = (
        batched[0]["requests"][0],
        batched[3]["requests"][0],
        batched[4]["requests"][0],
    )
    assert zero == {
        "IN": {"shape": [1, 3], "dtype": "float32", "values": [0.0, 0.0, 0.0]},
        "S": {"shape": [1, 2], "dtype": "object", "values": ["", ""]},
        "B": {"shape": [1, 2], "dtype": "bool", "values": [False, False]},
    }
    assert random["IN"]["shape"] == [1, 3] and random["IN"]["dtype"] == "float32"
    assert random["S"] == {"shape": [1, 2], "dtype": "object", "values": ["", ""]}  # as Triton
    assert random["B"]["shape"] == [1, 2] and random["B"]["dtype"] == "bool"
    assert from_file["IN"]["values"] == [1.5, 2.5, 3.5]  # the file's first 12 bytes
    assert from_file["S"] == {"shape": [1, 2], "dtype": "object", "values": ["abc", "xy"]}
    # A model that does not batch gets dims as they are, no batch dim.
    plain = calls_by_instance(read_log(env.logs, "counter_in_process"))["counter_in_process_0_1"]
    assert plain[0]["requests"] == [{
        "IN": {"shape": [3], "dtype": "float32", "values": [0.0, 0.0, 0.0]},
        "S": {"shape": [2], "dtype": "object", "values": ["", ""]},
        "B": {"shape": [2], "dtype": "bool", "values": [False, False]},
    }]  # fmt: skip
    assert plain[2]["requests"][0]["S"]["values"] == ["abc", "xy"]


@pytest.mark.parametrize("model, protocol, error", [
    ("fail_respond_stub", "http", "fail_respond_stub_0_{i} answers call 1 with an error"),
    ("fail_raise_in_process", "grpc", "fail_raise_in_process_0_{i} refuses call 1"),
])  # fmt: skip
def test_a_failing_sample_fails_the_load(env: Env, model: str, protocol: str, error: str) -> None:
    client = env.client(protocol)
    with pytest.raises(InferenceServerException) as e:
        client.load_model(model)
    text = str(e.value)
    assert f"failed to load '{model}' version 1: failed to run warmup sample 'bad sample': " in text
    # Both requests of the sample were answered with the error (Triton joins them with "; ").
    failed = [i for i in (0, 1) if error.format(i=i) in text]
    assert len(failed) == 1 and text.count(error.format(i=failed[0])) == 2
    assert not client.is_model_ready(model)
    index = {m["name"]: m for m in env.http.get_model_repository_index()}
    assert index[model]["state"] == "UNAVAILABLE"
    assert index[model]["reason"].startswith("failed to run warmup sample 'bad sample': ")
    # No instance went on serving: each ran the sample and stopped.
    assert all(len(calls) == 1 for calls in calls_by_instance(read_log(env.logs, model)).values())


def test_onnxruntime_and_pytorch_models_run_their_samples(env: Env) -> None:
    env.grpc.load_model("onnx_warm")
    stats = env.grpc.get_inference_statistics("onnx_warm", as_json=True)["model_stats"][0]
    # 2 instances x (2 runs of a batch of 4 + 1 run of 1): counted as Triton counts them.
    assert int(stats["inference_count"]) == 2 * (2 * 4 + 1)
    assert int(stats["execution_count"]) == 2 * 3
    assert {int(b["batch_size"]) for b in stats["batch_stats"]} == {1, 4}
    with pytest.raises(InferenceServerException, match="failed to run warmup sample 'wrong type'"):
        env.http.load_model("onnx_bad")
    assert not env.http.is_model_ready("onnx_bad")
    if (env.repo / "torch_warm").exists():
        env.http.load_model("torch_warm")
        stats = env.http.get_inference_statistics("torch_warm")["model_stats"][0]
        assert (stats["inference_count"], stats["execution_count"]) == (3, 1)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_hostile_data_file_in_a_config_override_is_refused(env: Env, protocol: str) -> None:
    override = {
        "name": "onnx_warm", "platform": "onnxruntime_onnx", "max_batch_size": 4,
        "input": [{"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [4]}],
        "output": [{"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [4]}],
        "model_warmup": [{"name": "escape", "batch_size": 1, "inputs": {"INPUT0": {
            "data_type": "TYPE_FP32", "dims": [4], "input_data_file": "../config.pbtxt"}}}],
    }  # fmt: skip
    with pytest.raises(InferenceServerException) as e:
        env.client(protocol).load_model("onnx_warm", config=json.dumps(override))
    assert (
        "warmup sample 'escape': input 'INPUT0': input_data_file '../config.pbtxt' must name "
        "a file inside the model's 'warmup' directory"
    ) in str(e.value)


# ---- the samples themselves (no server): sizes and files are hostile -------------------------


def config_with(samples: str, max_batch_size: int = 8) -> mc.ModelConfig:
    text = (f'name: "m" backend: "python" max_batch_size: {max_batch_size}\n'
            'input [{ name: "IN" data_type: TYPE_FP32 dims: [ 3 ] }]\n' + samples)  # fmt: skip
    return text_format.Parse(text, mc.ModelConfig())


def file_sample(file_name: str, dtype: str = "TYPE_FP32", dims: tuple[int, ...] = (3,)) -> str:
    quoted = file_name.replace("\\", "\\\\")
    return "model_warmup [" + _sample("f", 1, [
        _input("IN", dtype, list(dims), f'input_data_file: "{quoted}"')]) + "]"  # fmt: skip


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    (tmp_path / "m" / "warmup").mkdir(parents=True)
    (tmp_path / "m" / "config.pbtxt").write_text("secret config\n")
    (tmp_path / "outside.bin").write_bytes(bytes(12))
    return tmp_path / "m"


@pytest.mark.parametrize("file_name", [
    "../config.pbtxt", "../../outside.bin", "/etc/hostname", "sub/../../config.pbtxt", "./x",
    "", "a\\..\\..\\config.pbtxt", "~/x",
])  # fmt: skip
def test_data_file_names_that_leave_the_warmup_directory_are_refused(
    model_dir: Path, file_name: str
) -> None:
    with pytest.raises(TritonError, match="must name a file inside the model's 'warmup' direc"):
        warmup_samples(config_with(file_sample(file_name)), model_dir)


def test_symlinks_out_of_the_warmup_directory_are_refused(model_dir: Path) -> None:
    (model_dir / "warmup" / "link.bin").symlink_to(model_dir.parent / "outside.bin")
    with pytest.raises(TritonError, match="resolves outside the model's 'warmup' directory"):
        warmup_samples(config_with(file_sample("link.bin")), model_dir)
    # A warmup directory that is itself a link out of the model directory.
    shutil.rmtree(model_dir / "warmup")
    (model_dir.parent / "elsewhere").mkdir()
    (model_dir.parent / "elsewhere" / "x.bin").write_bytes(bytes(12))
    (model_dir / "warmup").symlink_to(model_dir.parent / "elsewhere")
    with pytest.raises(TritonError, match="resolves outside the model's 'warmup' directory"):
        warmup_samples(config_with(file_sample("x.bin")), model_dir)


def test_a_symlink_inside_the_warmup_directory_is_followed(model_dir: Path) -> None:
    (model_dir / "warmup" / "real.bin").write_bytes(np.ones(3, np.float32).tobytes())
    (model_dir / "warmup" / "link.bin").symlink_to("real.bin")
    [sample] = warmup_samples(config_with(file_sample("link.bin")), model_dir)
    assert sample["inputs"]["IN"].numpy().tolist() == [[1.0, 1.0, 1.0]]


def test_only_regular_files_are_read(model_dir: Path) -> None:
    os.mkfifo(model_dir / "warmup" / "fifo")  # opening it must not wait for a writer
    with pytest.raises(TritonError, match="input_data_file 'fifo' is not a regular file"):
        warmup_samples(config_with(file_sample("fifo")), model_dir)
    (model_dir / "warmup" / "dir").mkdir()
    with pytest.raises(TritonError, match="input_data_file 'dir' is not a regular file"):
        warmup_samples(config_with(file_sample("dir")), model_dir)


def test_data_file_sizes(model_dir: Path) -> None:
    (model_dir / "warmup" / "short.bin").write_bytes(bytes(8))
    with pytest.raises(TritonError, match="warmup sample 'f': warmup setting expects 12 bytes, "
                       "but the data provided from short.bin only has 8 bytes"):  # fmt: skip
        warmup_samples(config_with(file_sample("short.bin")), model_dir)
    with pytest.raises(TritonError, match=r"failed to open text file for read .*/warmup/gone.bin:"
                       " No such file or directory"):  # fmt: skip
        warmup_samples(config_with(file_sample("gone.bin")), model_dir)
    # BYTES: exactly dims' element count of length-prefixed strings.
    (model_dir / "warmup" / "s.bin").write_bytes(STRINGS)
    [sample] = warmup_samples(config_with(file_sample("s.bin", "TYPE_STRING", (2,))), model_dir)
    assert tuple(sample["inputs"]["IN"].shape) == (1, 2)
    with pytest.raises(TritonError, match="holds 2 BYTES elements, dims ask for 3"):
        warmup_samples(config_with(file_sample("s.bin", "TYPE_STRING", (3,))), model_dir)
    (model_dir / "warmup" / "bad.bin").write_bytes(struct.pack("<I", 100) + b"abc")
    with pytest.raises(TritonError, match="input_data_file 'bad.bin' is not a BYTES serial"):
        warmup_samples(config_with(file_sample("bad.bin", "TYPE_STRING", (1,))), model_dir)


@pytest.mark.parametrize("dims, batch_size, error", [
    ([2**40, 2**40], 1, "makes the sample's data more than"),
    ([2**62, 2**62, 2**62], 1, "makes the sample's data more than"),
    ([1] * 65, 1, "more than the 64 a tensor may have"),
    ([1 << 28], 2, "makes the sample's data more than"),  # 1 GiB each: the batch is over
    ([-1], 1, "warmup setting expects all variable-size dimensions are specified for input 'IN'"),
    ([3], 9, "batch size 9 for model 'm', max allowed is 8"),
])  # fmt: skip
def test_sizes_from_the_config_are_bounded(dims: list[int], batch_size: int, error: str) -> None:
    samples = "model_warmup [" + _sample("big", batch_size, [
        _input("IN", "TYPE_FP32", dims, ZERO)]) + "]"  # fmt: skip
    with pytest.raises(TritonError, match=error):
        warmup_samples(config_with(samples), None)
    assert MAX_SAMPLE_BYTES == 1 << 30


def test_sample_settings_triton_refuses() -> None:
    no_data = "model_warmup [" + _sample("nodata", 1, [
        'inputs { key: "IN" value { data_type: TYPE_FP32 dims: [ 3 ] } }']) + "]"  # fmt: skip
    with pytest.raises(TritonError, match="warmup sample 'nodata': warmup setting expects input "
                       "'IN' to have input_data_type set"):  # fmt: skip
        warmup_samples(config_with(no_data), None)
    two = "model_warmup [" + _sample("two", 2, [_input("IN", "TYPE_FP32", [3], ZERO)]) + "]"
    with pytest.raises(TritonError, match="batch size 2 for model 'm', max allowed is 0"):
        warmup_samples(config_with(two, max_batch_size=0), None)
    with pytest.raises(TritonError, match="needs the model's directory"):
        warmup_samples(config_with(file_sample("x.bin")), None)


def test_warmup_never_touches_the_response_cache(tmp_path: Path) -> None:
    """Warmup runs straight on the instances, as Triton's: no lookup, nothing stored."""
    from tritonlite import Server

    onnx_model(tmp_path, "cached", ONNX_SAMPLES + "\nresponse_cache { enable: true }")
    with Server(tmp_path, cache_config={"local": {"size": str(1 << 20)}}) as server:
        [stats] = server.statistics("cached")
        assert stats["inference_count"] == 2 * (2 * 4 + 1)
        assert stats["inference_stats"]["cache_hit"]["count"] == 0
        assert stats["inference_stats"]["cache_miss"]["count"] == 0
        # The first request with the warmup's (zero) data is a miss, not a hit.
        server.infer("cached", {"INPUT0": np.zeros((1, 4), np.float32)})
        [stats] = server.statistics("cached")
        assert stats["inference_stats"]["cache_miss"]["count"] == 1
        assert stats["inference_stats"]["cache_hit"]["count"] == 0
