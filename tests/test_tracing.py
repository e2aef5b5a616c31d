"""Tracing, as Triton 2.51 does it: ``--trace-config`` (and the deprecated ``--trace-*`` flags),
trace files of Triton's JSON records (timestamps with Triton's names, tensors at level TENSORS,
``parent_id`` for ensemble steps and BLS calls), ``rate`` / ``count`` / ``log-frequency`` and the
trace-setting APIs changing them at run time, OpenTelemetry spans exported over OTLP/HTTP with
the client's W3C ``traceparent`` as parent, and the native gRPC fast path stepping aside for
traced models. Everything through tritonclient (HTTP and gRPC) against a real server process.
"""

from __future__ import annotations

import asyncio
import functools
import http.server
import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from models import PYTHON_MODELS, make_add_sub_onnx
from serving import ServerProcess, write_config
from tritonclient.utils import InferenceServerException
from tritonlite import tracing
from tritonlite.cli import main

IN_PROCESS = '\nparameters { key: "EXECUTION_MODE" value { string_value: "in_process" } }\n'

ENSEMBLE = """name: "ens" platform: "ensemble" max_batch_size: 8
input [{ name: "A" data_type: TYPE_FP32 dims: [ 4 ] }, { name: "B" data_type: TYPE_FP32 dims: [ 4 ] }]
output [{ name: "S" data_type: TYPE_FP32 dims: [ 4 ] }]
ensemble_scheduling { step [
  { model_name: "add_sub" model_version: -1
    input_map [{ key: "INPUT0" value: "A" }, { key: "INPUT1" value: "B" }]
    output_map { key: "OUTPUT0" value: "S" } }
] }
"""

# Triton's BLS example, with the call made part of the request's trace (trace=request.trace()).
BLS_TRACE = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            a = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            b = pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy()
            context = request.trace().get_context()
            call = pb_utils.InferenceRequest(
                model_name="add_sub", requested_output_names=["OUTPUT0"],
                inputs=[pb_utils.Tensor("INPUT0", a[None]), pb_utils.Tensor("INPUT1", b[None])],
                trace=request.trace(),
            )
            result = call.exec()
            if result.has_error():
                raise pb_utils.TritonModelException(result.error().message())
            out = pb_utils.get_output_tensor_by_name(result, "OUTPUT0").as_numpy()[0]
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUTPUT0", out),
                pb_utils.Tensor("CONTEXT", __import__("numpy").array([context or ""], dtype=object)),
            ]))
        return responses
"""
BLS_CONFIG = """name: "{name}" backend: "python" max_batch_size: 0
input [{{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] }},
       {{ name: "INPUT1" data_type: TYPE_FP32 dims: [ 4 ] }}]
output [{{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] }},
        {{ name: "CONTEXT" data_type: TYPE_STRING dims: [ 1 ] }}]
"""

A = np.array([[0.5, 1.0, -2.0, 3e10]], dtype=np.float32)
B = np.ones((1, 4), dtype=np.float32)

FRONTEND_HTTP = ["HTTP_RECV_START", "HTTP_RECV_END"]
CORE = ["REQUEST_START", "QUEUE_START", "COMPUTE_START", "COMPUTE_INPUT_END",
        "COMPUTE_OUTPUT_START", "COMPUTE_END", "REQUEST_END"]  # fmt: skip


def python_model(root: Path, source: str, name: str, extra: str = IN_PROCESS) -> None:
    shutil.copytree(PYTHON_MODELS / source, root / name)
    config = root / name / "config.pbtxt"
    config.write_text(config.read_text().replace(f'name: "{source}"', f'name: "{name}"') + extra)


def repository(root: Path, bls: bool = True) -> Path:
    python_model(root, "add_sub", "add_sub")
    python_model(root, "add_sub", "counted")
    python_model(root, "add_sub", "tensors")
    python_model(root, "identity_string", "strings")
    python_model(root, "add_sub", "cached", IN_PROCESS + "response_cache { enable: true }\n")
    write_config(root / "ens", ENSEMBLE)
    (root / "ens" / "1").mkdir()
    if bls:
        python_model(root, "bls", "bls_plain")  # calls without trace=: not traced
        for name, extra in (("bls_trace", ""), ("bls_trace_ip", IN_PROCESS)):
            write_config(root / name, BLS_CONFIG.format(name=name) + extra)
            (root / name / "1").mkdir()
            (root / name / "1" / "model.py").write_text(BLS_TRACE)
    return root


def wait_ready(srv: ServerProcess, *names: str) -> None:
    client = grpcclient.InferenceServerClient(srv.grpc_url)
    deadline = time.monotonic() + 120
    while not all(client.is_model_ready(n) for n in names):
        assert time.monotonic() < deadline, srv.log()
        time.sleep(0.1)


def inputs(module: Any, names: tuple[str, str] = ("INPUT0", "INPUT1"), batch: bool = True) -> list[Any]:
    out = []
    for name, value in zip(names, (A, B), strict=True):
        value = value if batch else value[0]
        tensor = module.InferInput(name, list(value.shape), "FP32")
        tensor.set_data_from_numpy(value)
        out.append(tensor)
    return out


def bls_inputs(module: Any) -> list[Any]:
    return inputs(module, batch=False)


# ---- reading trace files ------------------------------------------------------------------------


def read_records(directory: Path, pattern: str = "trace.json*") -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for path in sorted(directory.glob(pattern)):
        records += json.loads(path.read_text())
    return records


def by_trace(records: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """{trace id: {"head": model record, "stamps": [(name, ns)], "tensors": [...]}}"""
    traces: dict[int, dict[str, Any]] = {}
    for r in records:
        t = traces.setdefault(r["id"], {"head": None, "stamps": [], "tensors": []})
        if "model_name" in r:
            assert t["head"] is None, f"two model records for trace {r['id']}"
            t["head"] = r
        elif "timestamps" in r:
            assert len(r["timestamps"]) == 1 and set(r) == {"id", "timestamps"}
            t["stamps"].append((r["timestamps"][0]["name"], r["timestamps"][0]["ns"]))
        else:
            assert set(r) == {"id", "activity", "tensor"}, r
            t["tensors"].append(r)
    return traces


def wait_for(read: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if value:
            return value
        assert time.monotonic() < deadline, f"no {what} within {timeout}s"
        time.sleep(0.05)


def find(directory: Path, model: str, request_id: str) -> tuple[int, dict[int, dict[str, Any]]]:
    """The id of the trace of ``request_id`` to ``model`` (waiting for it), and every trace."""

    def look() -> Any:
        traces = by_trace(read_records(directory))
        for trace_id, t in traces.items():
            head = t["head"]
            if head and head["model_name"] == model and head.get("request_id") == request_id:
                return trace_id, traces
        return None

    return wait_for(look, f"trace of {model} request {request_id!r}")  # type: ignore[no-any-return]


def traced_ids(directory: Path, model: str) -> list[str]:
    heads = [t["head"] for t in by_trace(read_records(directory)).values() if t["head"]]
    return sorted(h.get("request_id", "") for h in heads if h["model_name"] == model)


def names(trace: dict[str, Any]) -> list[str]:
    return [name for name, _ in trace["stamps"]]


def assert_monotonic(trace: dict[str, Any]) -> None:
    stamps = [ns for _, ns in trace["stamps"]]
    assert stamps == sorted(stamps) and all(ns > 0 for ns in stamps), trace["stamps"]


# ---- a server tracing every request, one index file per trace -----------------------------------


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    root = repository(tmp_path_factory.mktemp("trace_repo"))
    out = tmp_path_factory.mktemp("trace_out")
    args = (
        "--trace-config", "mode=triton", "--trace-config", f"triton,file={out / 'trace.json'}",
        "--trace-config", "level=TIMESTAMPS", "--trace-config", "rate=1",
        "--trace-config", "triton,log-frequency=1", "--cache-config", "local,size=1048576",
    )  # fmt: skip
    with ServerProcess(root, args=args) as srv:
        wait_ready(srv, "add_sub", "ens", "bls_trace", "bls_trace_ip", "bls_plain", "strings")
        yield srv, out


def test_http_request_is_traced_with_tritons_records(traced: tuple[ServerProcess, Path]) -> None:
    srv, out = traced
    client = httpclient.InferenceServerClient(srv.http_url)
    client.infer("add_sub", inputs(httpclient), request_id="http-plain")
    trace_id, traces = find(out, "add_sub", "http-plain")
    trace = traces[trace_id]
    assert trace["head"] == {"id": trace_id, "model_name": "add_sub", "model_version": 1,
                             "request_id": "http-plain"}  # fmt: skip
    assert names(trace) == FRONTEND_HTTP + CORE + [
        "INFER_RESPONSE_COMPLETE", "HTTP_SEND_START", "HTTP_SEND_END",
    ]  # fmt: skip
    assert_monotonic(trace)
    assert trace["tensors"] == []  # level TIMESTAMPS only


def test_grpc_request_is_traced_with_tritons_records(traced: tuple[ServerProcess, Path]) -> None:
    srv, out = traced
    client = grpcclient.InferenceServerClient(srv.grpc_url)
    client.infer("add_sub", inputs(grpcclient), request_id="grpc-plain")
    trace_id, traces = find(out, "add_sub", "grpc-plain")
    assert names(traces[trace_id]) == ["GRPC_WAITREAD_START", "GRPC_WAITREAD_END"] + CORE + [
        "INFER_RESPONSE_COMPLETE", "GRPC_SEND_START", "GRPC_SEND_END",
    ]  # fmt: skip
    assert_monotonic(traces[trace_id])
    # A streamed request too.
    done: list[Any] = []
    client.start_stream(callback=lambda result, error: done.append(error or result))
    client.async_stream_infer("add_sub", inputs(grpcclient), request_id="grpc-stream")
    wait_for(lambda: done, "the streamed response")
    client.stop_stream()
    trace_id, traces = find(out, "add_sub", "grpc-stream")
    assert names(traces[trace_id]) == ["GRPC_WAITREAD_START", "GRPC_WAITREAD_END"] + CORE + [
        "INFER_RESPONSE_COMPLETE", "GRPC_SEND_START", "GRPC_SEND_END",
    ]  # fmt: skip


def test_ensemble_steps_are_child_traces(traced: tuple[ServerProcess, Path]) -> None:
    srv, out = traced
    client = httpclient.InferenceServerClient(srv.http_url)
    result = client.infer("ens", inputs(httpclient, ("A", "B")), request_id="ens-1")
    np.testing.assert_allclose(result.as_numpy("S"), A + B)
    parent_id, traces = find(out, "ens", "ens-1")
    parent = traces[parent_id]
    # As Triton: the ensemble records no COMPUTE_* itself.
    assert names(parent) == FRONTEND_HTTP + ["REQUEST_START", "QUEUE_START", "REQUEST_END",
        "INFER_RESPONSE_COMPLETE", "HTTP_SEND_START", "HTTP_SEND_END"]  # fmt: skip
    children = [i for i, t in traces.items() if t["head"] and t["head"].get("parent_id") == parent_id]
    assert len(children) == 1
    child = traces[children[0]]
    assert child["head"] == {"id": children[0], "model_name": "add_sub", "model_version": 1,
                             "request_id": "ens-1", "parent_id": parent_id}  # fmt: skip
    assert names(child) == CORE
    assert_monotonic(child)
    stamps, child_stamps = dict(parent["stamps"]), dict(child["stamps"])
    assert stamps["REQUEST_START"] <= child_stamps["REQUEST_START"]
    assert child_stamps["REQUEST_END"] <= stamps["REQUEST_END"]


@pytest.mark.parametrize("model", ["bls_trace", "bls_trace_ip"])  # stub process, in-process
def test_bls_call_with_trace_is_a_child_trace(
    traced: tuple[ServerProcess, Path], model: str
) -> None:
    srv, out = traced
    client = grpcclient.InferenceServerClient(srv.grpc_url)
    result = client.infer(model, bls_inputs(grpcclient), request_id=f"{model}-1")
    np.testing.assert_allclose(result.as_numpy("OUTPUT0"), A[0] + B[0])
    assert result.as_numpy("CONTEXT")[0] == b""  # get_context(): None in triton mode
    parent_id, traces = find(out, model, f"{model}-1")
    children = [t for t in traces.values() if t["head"] and t["head"].get("parent_id") == parent_id]
    assert len(children) == 1
    # As Triton: a BLS request has its own (empty) request id.
    assert children[0]["head"] == {"id": children[0]["head"]["id"], "model_name": "add_sub",
                                   "model_version": 1, "parent_id": parent_id}  # fmt: skip
    assert names(children[0]) == CORE


def test_a_response_cache_hit_is_traced_without_compute(traced: tuple[ServerProcess, Path]) -> None:
    srv, out = traced
    client = httpclient.InferenceServerClient(srv.http_url)
    for request_id in ("miss", "hit"):
        client.infer("cached", inputs(httpclient), request_id=request_id)
    trace_id, traces = find(out, "cached", "miss")
    assert names(traces[trace_id]) == FRONTEND_HTTP + CORE + [
        "INFER_RESPONSE_COMPLETE", "HTTP_SEND_START", "HTTP_SEND_END"]  # fmt: skip
    trace_id, traces = find(out, "cached", "hit")
    assert names(traces[trace_id]) == FRONTEND_HTTP + [
        "REQUEST_START", "QUEUE_START", "REQUEST_END", "INFER_RESPONSE_COMPLETE",
        "HTTP_SEND_START", "HTTP_SEND_END"]  # fmt: skip
    assert_monotonic(traces[trace_id])


def test_bls_call_without_trace_is_not_traced(traced: tuple[ServerProcess, Path]) -> None:
    srv, out = traced
    client = httpclient.InferenceServerClient(srv.http_url)
    name = httpclient.InferInput("MODEL_NAME", [1], "BYTES")
    name.set_data_from_numpy(np.array([b"add_sub"], dtype=object))
    client.infer("bls_plain", [name, *bls_inputs(httpclient)], request_id="bls-plain")
    parent_id, traces = find(out, "bls_plain", "bls-plain")
    assert not [t for t in traces.values() if t["head"] and t["head"].get("parent_id") == parent_id]


def test_rate_and_count_change_at_run_time(traced: tuple[ServerProcess, Path]) -> None:
    srv, out = traced
    http = httpclient.InferenceServerClient(srv.http_url)
    grpc = grpcclient.InferenceServerClient(srv.grpc_url)
    settings = http.update_trace_settings("counted", {"trace_rate": "2"})
    assert settings == {"trace_level": ["TIMESTAMPS"], "trace_rate": "2", "trace_count": "-1",
                        "log_frequency": "1", "trace_file": str(out / "trace.json"),
                        "trace_mode": "triton"}  # fmt: skip
    for i in range(1, 5):  # every 2nd request
        http.infer("counted", inputs(httpclient), request_id=f"r{i}")
    find(out, "counted", "r4")
    assert traced_ids(out, "counted") == ["r2", "r4"]
    # gRPC: every request, but only 2 more.
    grpc.update_trace_settings("counted", {"trace_rate": "1", "trace_count": "2"})
    for i in range(1, 4):
        grpc.infer("counted", inputs(grpcclient), request_id=f"g{i}")
    find(out, "counted", "g2")
    assert http.get_trace_settings("counted")["trace_count"] == "0"  # as Triton: what is left
    grpc.update_trace_settings("counted", {"trace_count": "1"})
    grpc.infer("counted", inputs(grpcclient), request_id="g4")
    find(out, "counted", "g4")
    assert traced_ids(out, "counted") == ["g1", "g2", "g4", "r2", "r4"]  # not g3
    # The model's level OFF: nothing; then its settings cleared: the global ones again.
    http.update_trace_settings("counted", {"trace_level": ["OFF"]})
    http.infer("counted", inputs(httpclient), request_id="off")
    http.update_trace_settings("counted", {"trace_level": None, "trace_rate": None,
                                           "trace_count": None})  # fmt: skip
    assert http.get_trace_settings("counted") == http.get_trace_settings()
    http.infer("counted", inputs(httpclient), request_id="back")
    find(out, "counted", "back")
    assert "off" not in traced_ids(out, "counted")


def test_level_tensors_records_the_tensors(traced: tuple[ServerProcess, Path]) -> None:
    srv, out = traced
    client = httpclient.InferenceServerClient(srv.http_url)
    client.update_trace_settings("tensors", {"trace_level": ["TIMESTAMPS", "TENSORS"]})
    client.infer("tensors", inputs(httpclient), request_id="t1",
                 outputs=[httpclient.InferRequestedOutput("OUTPUT1")])  # fmt: skip
    trace_id, traces = find(out, "tensors", "t1")
    assert [(t["activity"], t["tensor"]) for t in traces[trace_id]["tensors"]] == [
        ("TENSOR_QUEUE_INPUT",
         {"name": "INPUT0", "data": "0.5,1,-2,3e+10", "shape": "1,4", "dtype": "FP32"}),
        ("TENSOR_QUEUE_INPUT", {"name": "INPUT1", "data": "1,1,1,1", "shape": "1,4", "dtype": "FP32"}),
        ("TENSOR_BACKEND_OUTPUT",
         {"name": "OUTPUT1", "data": "-0.5,0,-3,3e+10", "shape": "1,4", "dtype": "FP32"}),
    ]  # fmt: skip
    assert names(traces[trace_id]) == FRONTEND_HTTP + CORE + [
        "INFER_RESPONSE_COMPLETE", "HTTP_SEND_START", "HTTP_SEND_END",
    ]  # fmt: skip
    # BYTES elements are quoted (as Triton), and the record stays valid JSON whatever they hold.
    client.update_trace_settings("strings", {"trace_level": ["TENSORS"]})
    text = httpclient.InferInput("INPUT0", [2], "BYTES")
    text.set_data_from_numpy(np.array([b"ab", b'q"\\x'], dtype=object))
    client.infer("strings", [text], request_id="s1")

    def strings_trace() -> Any:
        for t in by_trace(read_records(out)).values():
            if t["tensors"] and t["tensors"][0]["tensor"]["dtype"] == "BYTES":
                return t
        return None

    trace = wait_for(strings_trace, "the BYTES tensors trace")
    assert trace["head"] is None and trace["stamps"] == []  # TENSORS only: no timestamps
    assert [t["tensor"]["data"] for t in trace["tensors"]] == ['"ab","q"\\x"'] * 2


def test_trace_setting_errors_are_tritons(traced: tuple[ServerProcess, Path]) -> None:
    srv, _ = traced
    http = httpclient.InferenceServerClient(srv.http_url)
    grpc = grpcclient.InferenceServerClient(srv.grpc_url)
    before = http.get_trace_settings()
    for settings, error in [
        ({"trace_level": ["OFF", "TIMESTAMPS"]}, "Expect only one trace level 'OFF' is specified"),
        ({"trace_rate": "0"}, "Attempting to set invalid trace setting :sample rate must be non-zero"),
        ({"trace_rate": "abc"}, "Unable to parse 'trace_rate', got: abc"),
        ({"trace_rate": "99999999999"}, ("Unable to parse 'trace_rate', value is out of range "
                                          "[ 0, 4294967295 ], got: 99999999999")),
        ({"log_frequency": "x"}, "Unable to parse 'log_frequency', got: x"),
        ({"trace_file": "/tmp/elsewhere"},
         "trace file location can not be updated through network protocol"),
    ]:  # fmt: skip
        with pytest.raises(InferenceServerException) as http_error:
            http.update_trace_settings(settings=settings)
        assert http_error.value.message() == error
        with pytest.raises(InferenceServerException) as grpc_error:
            grpc.update_trace_settings(settings=settings)
        assert error in grpc_error.value.message()
    with pytest.raises(InferenceServerException, match=r"got:-2$"):
        http.update_trace_settings(settings={"trace_count": "-2"})
    with pytest.raises(InferenceServerException, match=r"got: -2$"):  # gRPC's text
        grpc.update_trace_settings(settings={"trace_count": "-2"})
    with pytest.raises(InferenceServerException, match="non-string as string") as e:
        http.update_trace_settings(settings={"trace_rate": 5})
    assert e.value.status() == "500"  # as Triton
    for client in (http, grpc):
        with pytest.raises(InferenceServerException, match=r"Request for unknown model : nope"):
            client.get_trace_settings("nope")
    assert http.get_trace_settings() == before
    # Level names Triton does not know are ignored: the level stays as it is.
    assert http.update_trace_settings(settings={"trace_level": ["LOUD"]}) == before
    assert grpc.update_trace_settings(settings={"trace_level": ["LOUD"]}, as_json=True)[
        "settings"]["trace_level"] == {"value": ["TIMESTAMPS"]}  # fmt: skip


# ---- the main trace file, rotation, the deprecated flags ----------------------------------------


def small_repository(root: Path) -> Path:
    python_model(root, "add_sub", "add_sub")
    return root


def test_traces_go_to_the_main_file_at_shutdown(tmp_path: Path) -> None:
    trace_file = tmp_path / "out" / "trace.json"
    trace_file.parent.mkdir()
    args = ("--trace-file", str(trace_file), "--trace-level", "TIMESTAMPS", "--trace-rate", "1")
    with ServerProcess(small_repository(tmp_path / "repo"), args=args) as srv:
        wait_ready(srv, "add_sub")
        client = httpclient.InferenceServerClient(srv.http_url)
        assert client.get_trace_settings()["trace_file"] == str(trace_file)
        for i in range(2):
            client.infer("add_sub", inputs(httpclient), request_id=f"m{i}")
        assert srv.terminate() == 0
        log = srv.log()
    assert ("Warning: '--trace-file' has been deprecated and will be removed in future releases. "
            "Please use '--trace-config triton,file=<filepath> instead.") in log  # fmt: skip
    assert [p.name for p in trace_file.parent.iterdir()] == ["trace.json"]
    assert traced_ids(trace_file.parent, "add_sub") == ["m0", "m1"]


def test_log_frequency_rotates_into_index_files(tmp_path: Path) -> None:
    trace_file = tmp_path / "out" / "trace.json"
    trace_file.parent.mkdir()
    args = (
        "--trace-config", f"triton,file={trace_file}", "--trace-config", "triton,log-frequency=2",
        "--trace-config", "level=TIMESTAMPS", "--trace-config", "rate=1",
    )  # fmt: skip
    with ServerProcess(small_repository(tmp_path / "repo"), args=args) as srv:
        wait_ready(srv, "add_sub")
        client = grpcclient.InferenceServerClient(srv.grpc_url)
        for i in range(5):
            client.infer("add_sub", inputs(grpcclient), request_id=f"f{i}")
        wait_for(lambda: (trace_file.parent / "trace.json.1").exists(), "trace.json.1")
        for index, expected in ((0, ["f0", "f1"]), (1, ["f2", "f3"])):
            heads = [r for r in read_records(trace_file.parent, f"trace.json.{index}")
                     if "model_name" in r]  # fmt: skip
            assert sorted(r["request_id"] for r in heads) == expected
        assert srv.terminate() == 0
    # The rest at shutdown, into the next index file; no main file.
    assert sorted(p.name for p in trace_file.parent.iterdir()) == [
        "trace.json.0", "trace.json.1", "trace.json.2"
    ]
    assert traced_ids(trace_file.parent, "add_sub") == ["f0", "f1", "f2", "f3", "f4"]
    assert [r["request_id"] for r in read_records(trace_file.parent, "trace.json.2")
            if "model_name" in r] == ["f4"]  # fmt: skip


# ---- the command line ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["rate=abc"], 'Bad option: "--trace-config rate". Invalid option value. Got abc'),
        (["level=LOUD"], ('Bad option: "--trace-config level". invalid value for trace level '
                          "option: loud")),
        (["mode=zipkin"], ('Bad option: "--trace-config mode". invalid value for trace mode '
                           'option: zipkin. Available options are "triton" and "opentelemetry"')),
        ([",rate=1"], ("No trace mode specified. --trace-config option format is <trace mode>,"
                       "<setting>=<value> or <setting>=<value>. Got ,rate=1")),
        (["rate"], "--trace-config option format is '<trace mode>,<setting>=<value>'. Got rate"),
        (["jitter=1"], ('Bad option: "--trace-config jitter". tritonlite does not implement this '
                        "setting (global settings: rate, level, count, mode)")),
        (["triton,rotate=1"], ('Bad option: "--trace-config triton,rotate". tritonlite does not '
                               "implement this setting (triton settings: file, log-frequency)")),
        (["mode=opentelemetry", "opentelemetry,headers=x=y"],
         ('Bad option: "--trace-config opentelemetry,headers". tritonlite does not implement this '
          "setting (opentelemetry settings: url, resource, bsp_max_queue_size, "
          "bsp_schedule_delay, bsp_max_export_batch_size)")),
        (["mode=opentelemetry", "opentelemetry,bsp_max_queue_size=8"],
         ('Bad option: "--trace-config opentelemetry,bsp_max_export_batch_size". It must be less '
          "than or equal to bsp_max_queue_size")),
        (["mode=opentelemetry", "level=TENSORS"],
         ("Tensor level tracing is not supported by the mode: opentelemetry "
          "(--trace-config level=TENSORS)")),
        (["level=TIMESTAMPS"], ("--trace-config level=TIMESTAMPS needs a trace file in triton "
                                "mode: add --trace-config triton,file=<path>")),
        (["count=-2"], ('Bad option: "--trace-config count". Expected a value in [-1, 2147483647]'
                        ", got -2")),
    ],
)  # fmt: skip
def test_bad_trace_config_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], error: str
) -> None:
    argv = ["--model-repository", str(tmp_path)]
    for arg in args:
        argv += ["--trace-config", arg]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {error}"]


def test_opentelemetry_mode_without_the_sdk_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracing, "otel_available", lambda: False)
    with pytest.raises(ValueError, match=r"pip install 'tritonlite\[trace\]'"):
        tracing.parse_trace_config(["mode=opentelemetry"])


# ---- the writer is bounded ----------------------------------------------------------------------


def test_a_slow_writer_drops_traces_counted_never_grows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the writer is stuck (a slow disk), finished traces beyond the queue's bound are
    dropped and counted; nothing waits, and what was queued is written once it moves again."""
    monkeypatch.setattr(tracing, "WRITER_MAX_TRACES", 3)
    manager = tracing.TraceManager(tracing.TraceConfig(level=tracing.TIMESTAMPS, rate=1,
                                                       file=str(tmp_path / "trace.json")))  # fmt: skip
    stuck = threading.Event()
    write = manager._write

    def slow_write(group: Any) -> None:
        stuck.wait(30)
        write(group)

    monkeypatch.setattr(manager, "_write", slow_write)
    for i in range(10):
        group = manager.sample("m")
        assert group is not None
        request = group.start_request("m")
        request.begin(1, f"q{i}", [], ensemble=False)
        request.end()
        group.release()
    # One may be in the writer's hands already; at most 3 more wait.
    assert 6 <= manager.dropped <= 7
    stuck.set()
    manager.close()
    assert 3 <= len(traced_ids(tmp_path, "m")) <= 4


# ---- OpenTelemetry ------------------------------------------------------------------------------


class OtlpReceiver:
    """An OTLP/HTTP trace receiver: POST /v1/traces with an ExportTraceServiceRequest."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

        self.spans: list[Any] = []
        self.resources: list[Any] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's name for it
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
                for resource_spans in request.resource_spans:
                    receiver.resources.append(resource_spans.resource)
                    for scope_spans in resource_spans.scope_spans:
                        assert scope_spans.scope.name == "triton-server"
                        receiver.spans.extend(scope_spans.spans)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def attributes(span: Any) -> dict[str, Any]:
    out = {}
    for kv in span.attributes:
        kind = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, kind)
    return out


def test_opentelemetry_spans_have_the_clients_traceparent_as_parent(tmp_path: Path) -> None:
    pytest.importorskip("opentelemetry.sdk.trace")
    pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2")
    receiver = OtlpReceiver()
    try:
        root = repository(tmp_path / "repo", bls=False)
        write_config(root / "bls_trace", BLS_CONFIG.format(name="bls_trace") + IN_PROCESS)
        (root / "bls_trace" / "1").mkdir()
        (root / "bls_trace" / "1" / "model.py").write_text(BLS_TRACE)
        args = (
            "--trace-config", "mode=opentelemetry", "--trace-config", f"opentelemetry,url={receiver.url}",
            "--trace-config", "opentelemetry,resource=deployment=test",
            "--trace-config", "opentelemetry,bsp_schedule_delay=50",
            "--trace-config", "level=TIMESTAMPS",  # rate 1000: only requests with a context
        )  # fmt: skip
        trace_id = "0af7651916cd43dd8448eb211c80319c"
        parents = {"http": "b7ad6b7169203331", "grpc": "c7ad6b7169203332",
                   "ens": "d7ad6b7169203333", "bls": "e7ad6b7169203334"}  # fmt: skip

        def header(key: str) -> dict[str, str]:
            return {"traceparent": f"00-{trace_id}-{parents[key]}-01"}

        with ServerProcess(root, args=args) as srv:
            wait_ready(srv, "add_sub", "ens", "bls_trace")
            http = httpclient.InferenceServerClient(srv.http_url)
            grpc = grpcclient.InferenceServerClient(srv.grpc_url)
            settings = http.get_trace_settings()
            assert settings["trace_mode"] == "opentelemetry" and "trace_file" not in settings
            assert settings["url"] == receiver.url
            http.infer("add_sub", inputs(httpclient), request_id="o-http", headers=header("http"))
            grpc.infer("add_sub", inputs(grpcclient), request_id="o-grpc", headers=header("grpc"))
            http.infer("add_sub", inputs(httpclient), request_id="o-none")  # no context: rate 1000
            http.infer("ens", inputs(httpclient, ("A", "B")), request_id="o-ens", headers=header("ens"))
            result = grpc.infer("bls_trace", bls_inputs(grpcclient), request_id="o-bls",
                                headers=header("bls"))  # fmt: skip
            assert srv.terminate() == 0  # exports what is queued
    finally:
        receiver.close()

    spans = receiver.spans
    assert all(s.trace_id.hex() == trace_id for s in spans)
    by_id = {s.span_id: s for s in spans}

    def children(span: Any) -> list[Any]:
        return [s for s in spans if s.parent_span_id == span.span_id]

    roots = {s.parent_span_id.hex(): s for s in spans if s.parent_span_id not in by_id}
    assert set(roots) == set(parents.values())  # one tree per client span; none for "o-none"
    for key, span_id in parents.items():
        root = roots[span_id]
        assert root.name == "InferRequest" and root.kind == root.SPAN_KIND_SERVER
        prefix = "GRPC" if key in ("grpc", "bls") else "HTTP"
        events = [e.name for e in root.events]
        assert events[:2] == ([f"{prefix}_WAITREAD_START", f"{prefix}_WAITREAD_END"]
                              if prefix == "GRPC" else FRONTEND_HTTP)  # fmt: skip
        assert events[-3:] == ["INFER_RESPONSE_COMPLETE", f"{prefix}_SEND_START", f"{prefix}_SEND_END"]
        (model,) = children(root)
        attrs = attributes(model)
        assert attrs["triton.trace_parent_id"] == 0 and attrs["triton.model_version"] == 1
        assert [e.name for e in model.events] == ["REQUEST_START", "QUEUE_START", "REQUEST_END"]
        assert root.start_time_unix_nano <= model.start_time_unix_nano
        assert model.end_time_unix_nano <= root.end_time_unix_nano
        if key in ("http", "grpc"):
            assert model.name == "add_sub" and attrs["triton.request_id"] == f"o-{key}"
            (compute,) = children(model)
            assert compute.name == "compute"
            assert [e.name for e in compute.events] == [
                "COMPUTE_START", "COMPUTE_INPUT_END", "COMPUTE_OUTPUT_START", "COMPUTE_END"]
        elif key == "ens":  # the ensemble's span, its step's span below it
            assert model.name == "ens" and children(model)[0].name == "add_sub"
            (step,) = children(model)
            step_attrs = attributes(step)
            assert step_attrs["triton.trace_parent_id"] == attrs["triton.trace_id"]
            assert [c.name for c in children(step)] == ["compute"]
        else:  # BLS: the called model's span below the calling model's
            assert model.name == "bls_trace"
            assert sorted(c.name for c in children(model)) == ["add_sub", "compute"]
            (call,) = [c for c in children(model) if c.name == "add_sub"]
            assert attributes(call)["triton.trace_parent_id"] == attrs["triton.trace_id"]
            # request.trace().get_context(): the W3C context of the request's span
            context = json.loads(result.as_numpy("CONTEXT")[0])
            assert context == {"traceparent": f"00-{trace_id}-{model.span_id.hex()}-01"}
    resource = {kv.key: kv.value.string_value for kv in receiver.resources[0].attributes}
    assert resource["service.name"] == "triton-inference-server"
    assert resource["deployment"] == "test"


# ---- the native gRPC fast path steps aside for traced models ------------------------------------


def test_native_grpc_fast_path_serves_only_untraced_models(tmp_path: Path) -> None:
    from tritonlite import Server
    from tritonlite.frontends.grpc_native import start_native_grpc

    write_config(tmp_path / "repo" / "add_sub", """name: "add_sub" platform: "onnxruntime_onnx"
        max_batch_size: 4
        input [{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] },
               { name: "INPUT1" data_type: TYPE_FP32 dims: [ 4 ] }]
        output [{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] },
                { name: "OUTPUT1" data_type: TYPE_FP32 dims: [ 4 ] }]""")  # fmt: skip
    make_add_sub_onnx(tmp_path / "repo" / "add_sub" / "1" / "model.onnx", dtype="FP32", dims=[4])
    config = tracing.TraceConfig(file=str(tmp_path / "trace.json"), rate=1, log_frequency=1)

    async def run(server: Server) -> list[bool]:
        frontend = await start_native_grpc(server, "127.0.0.1", 0)
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{frontend.port}")
        loop = asyncio.get_running_loop()
        seen = []
        try:
            for level in (None, "TIMESTAMPS", "OFF"):
                if level is not None:
                    settings = {"trace_level": [level]}
                    await loop.run_in_executor(None, client.update_trace_settings, "", settings)
                seen.append("add_sub" in frontend.core.models())
                infer = functools.partial(client.infer, "add_sub", inputs(grpcclient),
                                          request_id=f"native-{level}")  # fmt: skip
                await loop.run_in_executor(None, infer)
        finally:
            await frontend.stop()
        return seen

    with Server(tmp_path / "repo", trace_config=config) as server:
        assert asyncio.run(run(server)) == [True, False, True]
    assert traced_ids(tmp_path, "add_sub") == ["native-TIMESTAMPS"]
