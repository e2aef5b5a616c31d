"""Response cache (Triton's --cache-config local,size=N and response_cache { enable: true }),
end to end through tritonclient gRPC and HTTP against a real server process.

The python model below reports how many times its execute() ran: a cached answer repeats the
count of the run that filled the entry, so the tests see that the backend was not called.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from models import make_add_sub_onnx
from serving import ServerProcess, write_config

COUNTED_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        self.calls = 0

    def execute(self, requests):
        out = []
        for r in requests:
            self.calls += 1
            x = pb_utils.get_input_tensor_by_name(r, "IN").as_numpy()
            if float(x.flat[0]) < 0:
                out.append(pb_utils.InferenceResponse(error=pb_utils.TritonError("negative")))
                continue
            calls = np.full((x.shape[0], 1), self.calls, np.int64)
            text = np.array([[r.parameters().encode()]] * x.shape[0], dtype=object)
            out.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUT", (x * 2).astype(np.float32)),
                pb_utils.Tensor("CALLS", calls),
                pb_utils.Tensor("PARAMS", text),
            ]))
        return out
"""

COUNTED_CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 8
input [ {{ name: "IN" data_type: TYPE_FP32 dims: [ -1 ] }} ]
output [
  {{ name: "OUT" data_type: TYPE_FP32 dims: [ -1 ] }},
  {{ name: "CALLS" data_type: TYPE_INT64 dims: [ 1 ] }},
  {{ name: "PARAMS" data_type: TYPE_STRING dims: [ 1 ] }}
]
{extra}
"""

ENSEMBLE_CONFIG = """
name: "cached_ensemble"
platform: "ensemble"
max_batch_size: 8
input [ { name: "X" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ -1 ] }, { name: "N" data_type: TYPE_INT64 dims: [ 1 ] } ]
ensemble_scheduling { step [ {
  model_name: "uncached" model_version: -1
  input_map { key: "IN" value: "X" }
  output_map [ { key: "OUT" value: "Y" }, { key: "CALLS" value: "N" } ]
} ] }
response_cache { enable: true }
"""

CACHE_ON = "response_cache { enable: true }"


def _counted(repo: Path, name: str, extra: str) -> None:
    write_config(repo / name, COUNTED_CONFIG.format(name=name, extra=extra))
    (repo / name / "1").mkdir()
    (repo / name / "1" / "model.py").write_text(COUNTED_MODEL)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("cache_repo")
    _counted(repo, "counted", CACHE_ON)
    _counted(repo, "uncached", "")
    write_config(repo / "cached_ensemble", ENSEMBLE_CONFIG)
    (repo / "cached_ensemble" / "1").mkdir()
    write_config(
        repo / "add_sub",
        'name: "add_sub"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 8\n'
        "dynamic_batching { }\n" + CACHE_ON,
    )
    make_add_sub_onnx(repo / "add_sub" / "1" / "model.onnx")
    return repo


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[ServerProcess]:
    # About 2.5 KiB: the tests that evict count on room for a few small entries only.
    with ServerProcess(repo, args=("--cache-config", "local,size=1048576")) as srv:
        yield srv


def _stats(client: grpcclient.InferenceServerClient, model: str) -> dict:
    s = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
    inf = s["inference_stats"]

    def count(key: str) -> int:
        return int(inf.get(key, {}).get("count", 0))

    return {
        "inference_count": int(s.get("inference_count", 0)),
        "execution_count": int(s.get("execution_count", 0)),
        "success": count("success"),
        "hit": count("cache_hit"),
        "miss": count("cache_miss"),
        "hit_ns": int(inf.get("cache_hit", {}).get("ns", 0)),
    }


def _grpc_infer(client, model, x, outputs=None, **kw):  # type: ignore[no-untyped-def]
    inp = grpcclient.InferInput("IN", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    req = [grpcclient.InferRequestedOutput(o) for o in outputs] if outputs else None
    return client.infer(model, [inp], outputs=req, **kw)


def _http_infer(client, model, x, **kw):  # type: ignore[no-untyped-def]
    inp = httpclient.InferInput("IN", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    return client.infer(model, [inp], **kw)


def test_a_repeated_request_is_answered_from_the_cache_without_running_the_model(server):
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    http = httpclient.InferenceServerClient(server.http_url)
    x = np.array([[1, 2, 3]], np.float32)
    first = _grpc_infer(grpc, "counted", x)
    calls = int(first.as_numpy("CALLS")[0, 0])
    before = _stats(grpc, "counted")
    for _ in range(3):  # gRPC unary (the native transport's C++ path), then HTTP
        again = _grpc_infer(grpc, "counted", x)
        np.testing.assert_array_equal(again.as_numpy("OUT"), x * 2)
        assert int(again.as_numpy("CALLS")[0, 0]) == calls  # the stored answer: no new run
    via_http = _http_infer(http, "counted", x)
    np.testing.assert_array_equal(via_http.as_numpy("OUT"), x * 2)
    assert int(via_http.as_numpy("CALLS")[0, 0]) == calls
    after = _stats(grpc, "counted")
    assert after["hit"] - before["hit"] == 4
    assert after["miss"] == before["miss"]
    assert after["execution_count"] == before["execution_count"]
    assert after["inference_count"] == before["inference_count"]  # as Triton: hits not counted
    assert after["success"] - before["success"] == 4  # ... but they are successes
    assert after["hit_ns"] > before["hit_ns"]
    # A different input runs the model: a miss, and a new call count.
    other = _grpc_infer(grpc, "counted", x + 1)
    assert int(other.as_numpy("CALLS")[0, 0]) > calls
    assert _stats(grpc, "counted")["miss"] == after["miss"] + 1


def test_streamed_requests_use_the_cache_too(server):
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    x = np.array([[7, 7]], np.float32)
    calls = int(_grpc_infer(grpc, "counted", x).as_numpy("CALLS")[0, 0])
    results: list = []
    grpc.start_stream(callback=lambda result, error: results.append((result, error)))
    try:
        inp = grpcclient.InferInput("IN", [1, 2], "FP32")
        inp.set_data_from_numpy(x)
        grpc.async_stream_infer("counted", [inp])
    finally:
        grpc.stop_stream()
    assert len(results) == 1 and results[0][1] is None
    assert int(results[0][0].as_numpy("CALLS")[0, 0]) == calls


@pytest.mark.parametrize(
    "change",
    ["shape", "requested_outputs", "parameters", "sequence_id"],
)
def test_what_changes_the_result_is_part_of_the_key(server, change):
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    base = np.array([[10, 20, 30, 40]], np.float32)
    seed = 100.0 + ["shape", "requested_outputs", "parameters", "sequence_id"].index(change)
    x = base + seed
    first = _grpc_infer(grpc, "counted", x)
    calls = int(first.as_numpy("CALLS")[0, 0])
    if change == "shape":
        second = _grpc_infer(grpc, "counted", x[:, :2])
    elif change == "requested_outputs":
        second = _grpc_infer(grpc, "counted", x, outputs=["CALLS"])
        assert second.as_numpy("OUT") is None
    elif change == "parameters":  # a python model reads them: they can change its answer
        second = _grpc_infer(grpc, "counted", x, parameters={"scale": 3})
        assert json.loads(second.as_numpy("PARAMS")[0, 0]) == {"scale": 3}
    else:  # requests of a sequence are never cached
        before = _stats(grpc, "counted")
        second = _grpc_infer(grpc, "counted", x, sequence_id=42)
        third = _grpc_infer(grpc, "counted", x, sequence_id=42)
        assert int(third.as_numpy("CALLS")[0, 0]) > int(second.as_numpy("CALLS")[0, 0])
        after = _stats(grpc, "counted")
        assert after["hit"] == before["hit"] and after["miss"] == before["miss"]
    assert int(second.as_numpy("CALLS")[0, 0]) > calls  # the model ran again
    # ...and the plain request is still a hit afterwards.
    assert int(_grpc_infer(grpc, "counted", x).as_numpy("CALLS")[0, 0]) == calls


def test_failures_are_not_cached(server):
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    x = np.array([[-1, 5]], np.float32)
    before = _stats(grpc, "counted")
    for _ in range(2):
        with pytest.raises(InferenceServerException, match="negative"):
            _grpc_infer(grpc, "counted", x)
    after = _stats(grpc, "counted")
    assert after["hit"] == before["hit"]
    assert after["miss"] == before["miss"] + 2


def test_a_model_without_response_cache_is_never_cached(server):
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    x = np.array([[3, 3]], np.float32)
    a = int(_grpc_infer(grpc, "uncached", x).as_numpy("CALLS")[0, 0])
    b = int(_grpc_infer(grpc, "uncached", x).as_numpy("CALLS")[0, 0])
    assert b == a + 1
    s = _stats(grpc, "uncached")
    assert s["hit"] == 0 and s["miss"] == 0


def test_an_ensemble_is_cached_at_the_ensemble_level(server):
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    http = httpclient.InferenceServerClient(server.http_url)
    x = np.array([[4, 5, 6]], np.float32)
    inp = grpcclient.InferInput("X", [1, 3], "FP32")
    inp.set_data_from_numpy(x)
    first = grpc.infer("cached_ensemble", [inp])
    step_runs = _stats(grpc, "uncached")["execution_count"]
    second = grpc.infer("cached_ensemble", [inp])
    hinp = httpclient.InferInput("X", [1, 3], "FP32")
    hinp.set_data_from_numpy(x)
    third = http.infer("cached_ensemble", [hinp])
    for r in (second, third):
        np.testing.assert_array_equal(r.as_numpy("Y"), x * 2)
        np.testing.assert_array_equal(r.as_numpy("N"), first.as_numpy("N"))
    assert _stats(grpc, "uncached")["execution_count"] == step_runs  # the step did not run
    s = _stats(grpc, "cached_ensemble")
    assert s["hit"] == 2 and s["miss"] == 1


def test_onnx_batched_responses_are_cached_per_request(server):
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    a = np.arange(32, dtype=np.float32).reshape(2, 16)
    b = np.ones((2, 16), np.float32)

    def run():  # type: ignore[no-untyped-def]
        ins = [grpcclient.InferInput("INPUT0", [2, 16], "FP32"),
               grpcclient.InferInput("INPUT1", [2, 16], "FP32")]  # fmt: skip
        ins[0].set_data_from_numpy(a)
        ins[1].set_data_from_numpy(b)
        return grpc.infer("add_sub", ins)

    first, second = run(), run()
    for r in (first, second):
        np.testing.assert_array_equal(r.as_numpy("OUTPUT0"), a + b)
        np.testing.assert_array_equal(r.as_numpy("OUTPUT1"), a - b)
    s = _stats(grpc, "add_sub")
    assert s["hit"] == 1 and s["miss"] == 1 and s["execution_count"] == 1


def test_cache_metrics_have_tritons_names(server):
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    x = np.array([[8, 8, 8]], np.float32)
    _grpc_infer(grpc, "counted", x)
    _grpc_infer(grpc, "counted", x)
    text = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    stats = _stats(grpc, "counted")
    assert samples['nv_cache_num_hits_per_model{model="counted",version="1"}'] == stats["hit"]
    assert samples['nv_cache_num_misses_per_model{model="counted",version="1"}'] == stats["miss"]
    assert 'nv_cache_hit_duration_per_model{model="counted",version="1"}' in samples
    assert 'nv_cache_miss_duration_per_model{model="counted",version="1"}' in samples
    # Only models that use the cache get the per-model families, as in Triton.
    assert not any("nv_cache" in k and 'model="uncached"' in k for k in samples)
    assert samples["nv_cache_num_entries"] >= 1
    assert 0 < samples["nv_cache_util"] < 1
    assert samples["nv_cache_num_hits"] >= stats["hit"]
    assert samples["nv_cache_num_lookups"] >= samples["nv_cache_num_hits"] + 1


# ---- budget and eviction (in-process: the cache's own counters) ---------------------------------


def test_least_recently_used_entries_are_evicted_within_the_budget(tmp_path):
    import tritonlite

    _counted(tmp_path, "counted", CACHE_ON)
    # Each entry of a [1, 64] FP32 request costs ~1.1 KiB (key + outputs + overhead): 4 KiB
    # holds three.
    with tritonlite.Server(
        model_repository=tmp_path, cache_config={"local": {"size": "4096"}}
    ) as s:

        def calls(v: float) -> int:
            out = s.infer("counted", {"IN": np.full((1, 64), v, np.float32)})
            return int(out["CALLS"][0, 0])

        first = {v: calls(v) for v in (1.0, 2.0, 3.0)}
        assert s.response_cache.usage()["entries"] == 3
        assert calls(1.0) == first[1.0]  # a hit: 1.0 becomes the most recently used
        calls(4.0)  # evicts 2.0, the least recently used
        usage = s.response_cache.usage()
        assert usage["evictions"] == 1 and usage["entries"] == 3
        assert usage["bytes"] <= usage["byte_size"] == 4096
        assert calls(1.0) == first[1.0] and calls(3.0) == first[3.0]
        assert calls(2.0) > first[3.0]  # evicted: ran again
        # An answer larger than the whole budget is served and never stored.
        big = s.infer("counted", {"IN": np.ones((1, 4096), np.float32)})
        np.testing.assert_array_equal(big["OUT"], np.full((1, 4096), 2, np.float32))
        assert s.response_cache.usage()["bytes"] <= 4096


def test_enabled_in_config_without_a_server_cache_warns_and_runs(tmp_path, caplog):
    import tritonlite

    _counted(tmp_path, "counted", CACHE_ON)
    with (
        caplog.at_level("WARNING", logger="tritonlite"),
        tritonlite.Server(model_repository=tmp_path) as s,
    ):
        x = np.ones((1, 2), np.float32)
        a = int(s.infer("counted", {"IN": x})["CALLS"][0, 0])
        assert int(s.infer("counted", {"IN": x})["CALLS"][0, 0]) == a + 1
        assert s.response_cache is None
    assert any(
        "response_cache is enabled" in r.getMessage() and "--cache-config" in r.getMessage()
        for r in caplog.records
    )


def test_decoupled_models_refuse_the_cache(tmp_path):
    import tritonlite
    from tritonlite.errors import TritonError

    _counted(tmp_path, "counted", CACHE_ON + "\nmodel_transaction_policy { decoupled: true }")
    with pytest.raises(TritonError, match="Response Cache does not currently support model "
                                          "counted with 'decoupled' transaction policy"):  # fmt: skip
        tritonlite.Server(model_repository=tmp_path, cache_config={"local": {"size": "4096"}})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cache-config", "redis,host=localhost"], "cache 'redis' is not available"),
        (["--cache-config", "local,size=abc"], "size must be a number of bytes"),
        (["--cache-config", "local,sizes=10"], "setting 'sizes' is not supported"),
        (["--cache-config", "local"], "expected <cache>,<setting>=<value>"),
    ],
)
def test_bad_cache_config_is_refused_at_start(tmp_path, args, message):
    proc = subprocess.run(
        [sys.executable, "-m", "tritonlite.cli", "--model-repository", str(tmp_path),
         "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0", *args],
        check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode != 0
    assert message in proc.stderr


def test_response_cache_byte_size_is_the_local_cache_size():
    from tritonlite.response_cache import parse_cache_config

    assert parse_cache_config([], 1024) == {"local": {"size": "1024"}}
    assert parse_cache_config(["local,size=5"]) == {"local": {"size": "5"}}


def test_concurrent_hits_misses_and_evictions_answer_every_request_right(tmp_path):
    """8 threads over 6 inputs with room for ~2 entries: lookups, insertions and evictions race
    (make test-tsan runs this), and every answer is its own request's."""
    import threading

    import tritonlite

    write_config(
        tmp_path / "add_sub",
        'name: "add_sub"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 8\n'
        "dynamic_batching { }\n" + CACHE_ON,
    )
    make_add_sub_onnx(tmp_path / "add_sub" / "1" / "model.onnx")
    inputs = [np.full((1, 16), float(i), np.float32) for i in range(6)]
    errors: list[str] = []
    with tritonlite.Server(tmp_path, cache_config={"local": {"size": "1200"}}) as server:

        def client(seed: int) -> None:
            for k in range(150):
                x = inputs[(seed * 7 + k) % len(inputs)]
                out = server.infer("add_sub", {"INPUT0": x, "INPUT1": x})
                if not (np.array_equal(out["OUTPUT0"], x + x) and not out["OUTPUT1"].any()):
                    errors.append(f"wrong answer for {x[0, 0]}")

        threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        usage = server.response_cache.usage()
    assert errors == []
    assert usage["hits"] > 0 and usage["evictions"] > 0
    assert usage["hits"] + usage["misses"] == 8 * 150
    assert usage["bytes"] <= 1200
