"""Request cancellation from every source, end to end with tritonclient.

One slow python model (stub mode, one instance) notes in a log when a request starts, when it
sees ``request.is_cancelled()`` and when it finishes. For each source of cancellation — gRPC
``async_infer`` cancelled, gRPC ``client_timeout``, a cancelled ModelStreamInfer stream, an
HTTP client that disconnects, an in-process task cancelled — a running request must see
``is_cancelled()`` and stop, a queued one must never start and is counted as a failure with
reason CANCELED (ModelStatistics' fail count and ``nv_inference_request_failure``). The running
one, which the model answers with its own error response, counts as a success, as Triton's
python backend counts a model's error responses (tests/parity: pymodel_cancelled_error_response).
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from serving import SANITIZED, ServerProcess, write_config

MODEL = "slow"

SLOW_MODEL = """
import os
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.log = os.path.join(args["model_repository"], "events.log")

    def note(self, text):
        with open(self.log, "a") as f:
            f.write(text + "\\n")

    def execute(self, requests):
        responses = []
        for request in requests:
            rid = request.request_id()
            self.note(f"started {rid}")
            x = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            deadline = time.monotonic() + float(x.reshape(-1)[0])
            cancelled = False
            while time.monotonic() < deadline:
                if request.is_cancelled():
                    cancelled = True
                    break
                time.sleep(0.01)
            if cancelled:
                self.note(f"cancelled {rid}")
                error = pb_utils.TritonError("stopped: cancelled", pb_utils.TritonError.CANCELLED)
                responses.append(pb_utils.InferenceResponse(error=error))
            else:
                self.note(f"finished {rid}")
                responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", x)]))
        return responses
"""

SLOW_CONFIG = """
name: "slow"
backend: "python"
max_batch_size: 0
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 1 ] } ]
instance_group [ { count: 1 kind: KIND_CPU } ]
"""

RUN_S = 20.0  # how long the model runs a request nobody cancels: far beyond every wait here


IDENT_MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [
            pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy())]
            )
            for r in requests
        ]
"""

IDENT_CONFIG = """
name: "ident"
backend: "python"
max_batch_size: 0
input [ { name: "IN" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ -1 ] } ]
"""


ENSEMBLE_CONFIG = """
name: "slow_ensemble"
platform: "ensemble"
max_batch_size: 0
input [ { name: "X" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ 1 ] } ]
ensemble_scheduling { step [ {
  model_name: "slow" model_version: -1
  input_map { key: "IN" value: "X" } output_map { key: "OUT" value: "Y" }
} ] }
"""


def make_repository(root: Path) -> Path:
    for name, code, config in (
        (MODEL, SLOW_MODEL, SLOW_CONFIG),
        ("ident", IDENT_MODEL, IDENT_CONFIG),
    ):
        model = root / name
        (model / "1").mkdir(parents=True)
        (model / "1" / "model.py").write_text(code)
        write_config(model, config)
    (root / "slow_ensemble" / "1").mkdir(parents=True)
    write_config(root / "slow_ensemble", ENSEMBLE_CONFIG)
    return root


def wait_for(predicate: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what or predicate}")


class Events:
    def __init__(self, path: Path) -> None:
        self.path = path

    def text(self) -> str:
        return self.path.read_text() if self.path.exists() else ""

    def has(self, line: str) -> bool:
        return line in self.text().splitlines()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = make_repository(tmp_path_factory.mktemp("cancel_repo"))
    with ServerProcess(repo) as srv:
        wait_for(lambda: grpcclient.InferenceServerClient(srv.grpc_url).is_model_ready(MODEL),
                 what="model ready")  # fmt: skip
        srv.events = Events(repo / MODEL / "events.log")  # type: ignore[attr-defined]
        yield srv


def events(srv: ServerProcess) -> Events:
    return srv.events  # type: ignore[attr-defined,no-any-return]


def inputs(seconds: float) -> list[grpcclient.InferInput]:
    i = grpcclient.InferInput("IN", [1], "FP32")
    i.set_data_from_numpy(np.array([seconds], np.float32))
    return [i]


def fail_count(srv: ServerProcess, kind: str = "fail") -> int:
    c = grpcclient.InferenceServerClient(srv.grpc_url)
    stats = c.get_inference_statistics(MODEL, as_json=True)
    return int(stats["model_stats"][0]["inference_stats"][kind].get("count", 0))


def canceled_metric(srv: ServerProcess) -> int:
    text = urllib.request.urlopen(srv.metrics_url, timeout=10).read().decode()
    m = re.search(
        r'^nv_inference_request_failure\{model="slow",reason="CANCELED",version="1"\} (\d+)',
        text, re.MULTILINE,
    )  # fmt: skip
    return int(m.group(1)) if m else 0


class Counted:
    """The counters before a test; `check(n, answered)` waits until both failure counters grew
    by n and the successes by `answered` (the running request the model answered with its
    error: a success, as Triton counts it)."""

    def __init__(self, srv: ServerProcess) -> None:
        self.srv = srv
        self.fail, self.canceled = fail_count(srv), canceled_metric(srv)
        self.success = fail_count(srv, "success")

    def check(self, n: int, answered: int = 1) -> None:
        wait_for(lambda: fail_count(self.srv) - self.fail == n, what=f"{n} more failures")
        wait_for(lambda: fail_count(self.srv, "success") - self.success == answered,
                 what=f"{answered} more successes")  # fmt: skip
        assert canceled_metric(self.srv) - self.canceled == n
        assert fail_count(self.srv) - self.fail == n


def assert_served_after(srv: ServerProcess, rid: str) -> None:
    """The model is free again, and a request that nobody cancels still runs to its end."""
    c = grpcclient.InferenceServerClient(srv.grpc_url)
    out = c.infer(MODEL, inputs(0.0), request_id=rid).as_numpy("OUT")
    assert out.tolist() == [0.0]
    assert events(srv).has(f"finished {rid}")


def test_grpc_async_infer_cancelled(server: ServerProcess) -> None:
    ev, counted = events(server), Counted(server)
    c = grpcclient.InferenceServerClient(server.grpc_url)
    answers: list[Any] = []
    running = c.async_infer(
        MODEL, inputs(RUN_S), lambda result, error: answers.append(error), request_id="ga"
    )
    wait_for(lambda: ev.has("started ga"), what="ga started")
    queued = c.async_infer(
        MODEL, inputs(RUN_S), lambda result, error: answers.append(error), request_id="gb"
    )
    time.sleep(0.3)  # gb reaches the server's queue behind ga
    queued.cancel()
    running.cancel()
    wait_for(lambda: ev.has("cancelled ga"), what="the running request to see is_cancelled()")
    counted.check(1)  # the queued one; the running one was answered by the model
    assert_served_after(server, "gc")
    assert not ev.has("started gb"), "a cancelled queued request ran"


def test_ensemble_cancels_its_running_step(server: ServerProcess) -> None:
    ev = events(server)
    c = grpcclient.InferenceServerClient(server.grpc_url)
    x = grpcclient.InferInput("X", [1], "FP32")
    x.set_data_from_numpy(np.array([RUN_S], np.float32))
    # Twice, apart: the ensemble looks for cancelled runs with one timer while any waits, and
    # the second cancellation must start it again after it went idle.
    for rid, fails in (("ea", 2), ("ec", 4)):
        counted = Counted(server)
        answers: list[Any] = []
        ctx = c.async_infer("slow_ensemble", [x], lambda result, error: answers.append(error),
                            request_id=rid)  # fmt: skip
        wait_for(lambda: ev.has(f"started {rid}"), what="the ensemble's step running")
        ctx.cancel()
        wait_for(lambda: ev.has(f"cancelled {rid}"), what="the step to see is_cancelled()")
        counted.check(0)  # the step, answered by the model with its error: a success
        stats = c.get_inference_statistics("slow_ensemble", as_json=True)["model_stats"][0]
        wait_for(
            lambda: (
                int(
                    c.get_inference_statistics("slow_ensemble", as_json=True)["model_stats"][0][
                        "inference_stats"
                    ]["fail"].get("count", 0)
                )
                == fails  # Triton 2.51 counts a failed ensemble request twice (reason OTHER)
            ),
            what="ensemble fail",
        )
        time.sleep(0.3)  # longer than ensemble.CANCEL_POLL_S: no run waits, the timer stops
    assert stats["name"] == "slow_ensemble"
    assert_served_after(server, "eb")


def test_grpc_client_timeout(server: ServerProcess) -> None:
    ev, counted = events(server), Counted(server)
    c = grpcclient.InferenceServerClient(server.grpc_url)
    answers: list[Any] = []
    c.async_infer(MODEL, inputs(RUN_S), lambda result, error: answers.append(error), request_id="ta",
                  client_timeout=1.5)  # fmt: skip
    wait_for(lambda: ev.has("started ta"), what="ta started")
    c.async_infer(MODEL, inputs(RUN_S), lambda result, error: answers.append(error), request_id="tb",
                  client_timeout=1.0)  # fmt: skip
    wait_for(lambda: ev.has("cancelled ta"), what="the running request to see its deadline")
    counted.check(1)  # the queued one; the running one was answered by the model
    wait_for(lambda: len(answers) == 2, what="both answers")
    assert all(e is not None and "DEADLINE_EXCEEDED" in str(e.status()) for e in answers)
    assert_served_after(server, "tc")
    assert not ev.has("started tb"), "a request whose deadline passed in the queue ran"


def test_grpc_stream_cancelled(server: ServerProcess) -> None:
    ev, counted = events(server), Counted(server)
    c = grpcclient.InferenceServerClient(server.grpc_url)
    c.start_stream(lambda result, error: None)
    c.async_stream_infer(MODEL, inputs(RUN_S), request_id="sa")
    wait_for(lambda: ev.has("started sa"), what="sa started")
    c.async_stream_infer(MODEL, inputs(RUN_S), request_id="sb")
    time.sleep(0.3)
    c.stop_stream(cancel_requests=True)
    wait_for(lambda: ev.has("cancelled sa"), what="the stream's running request to stop")
    counted.check(1)  # the queued one; the running one was answered by the model
    assert_served_after(server, "sc")
    assert not ev.has("started sb"), "a queued request of a cancelled stream ran"


def http_infer_then_vanish(srv: ServerProcess, rid: str) -> socket.socket:
    body = json.dumps({
        "id": rid,
        "inputs": [{"name": "IN", "datatype": "FP32", "shape": [1], "data": [RUN_S]}],
    }).encode()  # fmt: skip
    s = socket.create_connection(("127.0.0.1", srv.http_port))
    s.sendall(
        f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    return s


def test_http_client_disconnects(server: ServerProcess) -> None:
    ev, counted = events(server), Counted(server)
    running = http_infer_then_vanish(server, "ha")
    wait_for(lambda: ev.has("started ha"), what="ha started")
    queued = http_infer_then_vanish(server, "hb")
    time.sleep(0.3)
    queued.close()
    running.close()
    wait_for(lambda: ev.has("cancelled ha"), what="the running request to see the disconnect")
    counted.check(1)  # the queued one; the running one was answered by the model
    assert_served_after(server, "hc")
    assert not ev.has("started hb"), "the request of a client that left ran"


def test_in_process_task_cancelled(tmp_path: Path) -> None:
    import tritonlite

    repo = make_repository(tmp_path)
    ev = Events(repo / MODEL / "events.log")

    async def scenario(server: Any) -> None:
        def call(rid: str) -> asyncio.Task[Any]:
            return asyncio.ensure_future(
                server.infer_async(MODEL, {"IN": np.array([RUN_S], np.float32)}, request_id=rid)
            )

        running = call("pa")
        while not ev.has("started pa"):
            await asyncio.sleep(0.02)
        queued = call("pb")
        await asyncio.sleep(0.3)
        queued.cancel()
        running.cancel()
        for task in (running, queued):
            with pytest.raises(asyncio.CancelledError):
                await task
        for _ in range(750):
            if ev.has("cancelled pa"):
                break
            await asyncio.sleep(0.02)
        out = await server.infer_async(MODEL, {"IN": np.array([0.0], np.float32)}, request_id="pc")
        assert out["OUT"].tolist() == [0.0]

    with tritonlite.Server(repo) as server:
        asyncio.run(scenario(server))
        assert ev.has("cancelled pa"), "the running request did not see is_cancelled()"
        assert not ev.has("started pb"), "a cancelled queued request ran"
        stats = server.statistics(MODEL)[0]
        assert stats["inference_stats"]["fail"]["count"] == 1  # pb (pa: the model answered)
        assert stats["fail_reasons"]["CANCELED"] == 1


# ---------------------------------------------------------------------------------------------
# Rapid reset (CVE-2023-44487): a reset stream costs no inference


def test_rapid_reset_runs_no_inference(server: ServerProcess) -> None:
    """5,000 complete ModelInfer requests on one connection, each reset right after its DATA:
    the requests reach the queue, but reset ones never run; the connection is ended for its
    reset rate, and a client on another connection is served throughout."""
    import threading

    from test_hostile_http2 import HEADERS, RST_STREAM, RawH2, data_frames, frame, request_block
    from tritonlite._proto import grpc_service_pb2 as pb

    ev = events(server)

    def message(sid: int) -> bytes:
        request = pb.ModelInferRequest(model_name=MODEL, id=f"rr{sid}")
        request.inputs.add(name="IN", datatype="FP32", shape=[1])
        request.raw_input_contents.append(np.array([RUN_S], np.float32).tobytes())
        body = request.SerializeToString()
        return b"\0" + len(body).to_bytes(4, "big") + body

    path = "/inference.GRPCInferenceService/ModelInfer"
    streams = list(range(1, 10001, 2))  # 5,000 streams
    bursts = [
        b"".join(
            frame(HEADERS, 0x4, s, request_block(path))
            + data_frames(s, message(s), True)
            + frame(RST_STREAM, 0, s, (8).to_bytes(4, "big"))
            for s in streams[i : i + 250]
        )
        for i in range(0, len(streams), 250)
    ]
    served, errors, stop = [], [], threading.Event()

    def probe() -> None:
        c = grpcclient.InferenceServerClient(server.grpc_url)
        while not stop.is_set() and len(served) < 2000:
            try:
                c.is_server_ready()
                c.get_model_metadata(MODEL)
                served.append(time.monotonic())
            except Exception as e:  # noqa: BLE001 - recorded, asserted below
                errors.append(e)
            time.sleep(0.01)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        conn = RawH2(server.grpc_port)
        sent = 0
        for burst in bursts:
            if not conn.send(burst):
                break
            sent += 250
        goaway = conn.goaway()
        conn.close()
        time.sleep(1.0)
    finally:
        stop.set()
        prober.join()
    assert_served_after(server, "rr-after")
    ran = [line for line in ev.text().splitlines() if line.startswith("started rr") and
           line != "started rr-after"]  # fmt: skip
    print(
        f"\nrapid reset: {sent} streams sent before the server stopped reading, "
        f"GOAWAY {goaway}, inferences started: {len(ran)}, probe calls served: {len(served)}"
    )
    assert goaway is not None and goaway[0] == 0xB, goaway  # ENHANCE_YOUR_CALM
    assert len(ran) <= 3, ran
    assert not errors and served, errors


# ---------------------------------------------------------------------------------------------
# Backpressure: a client that sends large requests and never reads


def test_client_that_never_reads_stays_within_its_budget(tmp_path: Path) -> None:
    """A connection sends 4 MiB requests as fast as it can and never reads (TCP) nor opens its
    flow-control windows (HTTP/2): responses can only pile up in the server. With a budget of
    16 MiB per connection the server's memory stays bounded, the connection is ended, and
    another client is served meanwhile."""
    import threading

    from test_hostile_http2 import RawH2, call, proc_status
    from tritonlite._proto import grpc_service_pb2 as pb

    request = pb.ModelInferRequest(model_name="ident")
    request.inputs.add(name="IN", datatype="FP32", shape=[1 << 20])
    request.raw_input_contents.append(np.ones(1 << 20, np.float32).tobytes())
    body = request.SerializeToString()
    message = b"\0" + len(body).to_bytes(4, "big") + body
    path = "/inference.GRPCInferenceService/ModelInfer"
    repo = make_repository(tmp_path)
    with ServerProcess(repo, args=("--grpc-max-connection-memory=16777216",)) as srv:
        c = grpcclient.InferenceServerClient(srv.grpc_url)
        wait_for(lambda: c.is_model_ready("ident"), what="ident ready")
        assert srv.proc is not None
        rss_before = proc_status(srv.proc.pid, "VmRSS")
        served, errors, stop = [], [], threading.Event()

        def probe() -> None:
            client = grpcclient.InferenceServerClient(srv.grpc_url)
            small = grpcclient.InferInput("IN", [4], "FP32")
            small.set_data_from_numpy(np.arange(4, dtype=np.float32))
            while not stop.is_set() and len(served) < 5000:
                try:
                    out = client.infer("ident", [small]).as_numpy("OUT")
                    assert out.tolist() == [0.0, 1.0, 2.0, 3.0]
                    served.append(1)
                except Exception as e:  # noqa: BLE001 - recorded, asserted below
                    errors.append(e)
                time.sleep(0.005)

        prober = threading.Thread(target=probe)
        prober.start()
        sent = 0
        try:
            for _ in range(3):  # three such clients, one after the other
                conn = RawH2(srv.grpc_port, initial_window_size=0)
                conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                conn.sock.settimeout(5)
                for s in range(1, 1 + 2 * 64, 2):  # up to 64 x 4 MiB = 256 MiB of requests
                    try:
                        conn.sock.sendall(call(s, path, message))
                    except OSError:  # the server ended the connection, or stopped reading
                        break
                    sent += 1
                time.sleep(0.5)
                conn.close()
            time.sleep(0.5)
        finally:
            stop.set()
            prober.join()
        growth = proc_status(srv.proc.pid, "VmRSS") - rss_before
        hwm = proc_status(srv.proc.pid, "VmHWM")
        print(
            f"\nnever-reading clients: {sent} x 4 MiB requests sent, server RSS growth "
            f"{growth / (1 << 20):.1f} MiB, VmHWM {hwm / (1 << 20):.0f} MiB, "
            f"probe calls served {len(served)}"
        )
        assert not errors and served, errors
        # 16 MiB per connection, plus what the python stub and allocator keep: far below the
        # 768 MiB of requests the clients tried to send.
        assert SANITIZED or growth < 128 << 20, f"server RSS grew by {growth >> 20} MiB"


# ---------------------------------------------------------------------------------------------
# ModelStreamInfer: reading stops while too many requests are pending; credit follows reading


def test_stream_backpressure_then_disconnect(server: ServerProcess) -> None:
    """A client streams requests to a model that holds them, respecting HTTP/2 flow control.
    The server reads (and credits) requests until MAX_STREAM_PENDING are pending, then stops:
    the client runs out of window with the rest unsent. When it disconnects, the stream's
    requests are cancelled: the running one sees is_cancelled(), the queued ones never run."""
    from test_hostile_http2 import (
        HEADERS,
        SETTINGS,
        WINDOW_UPDATE,
        RawH2,
        data_frames,
        frame,
        request_block,
    )  # fmt: skip
    from tritonlite._proto import grpc_service_pb2 as pb
    from tritonlite.frontends.grpc import MAX_STREAM_PENDING

    ev, counted = events(server), Counted(server)

    def message(i: int) -> bytes:
        request = pb.ModelInferRequest(model_name=MODEL, id=f"bp{i}")
        request.inputs.add(name="IN", datatype="FP32", shape=[1])
        request.raw_input_contents.append(np.array([RUN_S], np.float32).tobytes())
        request.parameters["pad"].string_param = "x" * 16000
        body = request.SerializeToString()
        return b"\0" + len(body).to_bytes(4, "big") + body

    conn = RawH2(server.grpc_port)
    windows = {0: 65535, 1: 65535}

    def pump(timeout: float) -> None:
        f = conn.next_frame(timeout)
        while f is not None:
            kind, flags, sid, payload = f
            if kind == WINDOW_UPDATE:
                windows[sid] = windows.get(sid, 0) + int.from_bytes(payload[:4], "big")
            elif kind == SETTINGS and not flags & 0x1:
                for k in range(0, len(payload), 6):
                    if int.from_bytes(payload[k : k + 2], "big") == 4:  # INITIAL_WINDOW_SIZE
                        windows[1] += int.from_bytes(payload[k + 2 : k + 6], "big") - 65535
                conn.send(frame(SETTINGS, 0x1, 0))
            f = conn.next_frame(0)

    total = MAX_STREAM_PENDING + 150
    path = "/inference.GRPCInferenceService/ModelStreamInfer"
    conn.send(frame(HEADERS, 0x4, 1, request_block(path)))
    sent = 0
    for i in range(total):
        m = message(i)
        deadline = time.monotonic() + 2.0
        while min(windows[0], windows[1]) < len(m) and time.monotonic() < deadline:
            pump(0.05)
        if min(windows[0], windows[1]) < len(m):
            break  # no credit for 2 s: the server stopped reading this stream
        conn.send(data_frames(1, m, False))
        windows[0] -= len(m)
        windows[1] -= len(m)
        sent += 1
        pump(0)
    # What the server took: MAX_STREAM_PENDING requests, plus at most one stream window
    # (1 MiB, ~65 of these ~16 KiB messages) of bytes it holds unread.
    print(
        f"\nstream backpressure: {sent} of {total} requests sent before the credit stopped "
        f"(MAX_STREAM_PENDING {MAX_STREAM_PENDING})"
    )
    assert MAX_STREAM_PENDING <= sent <= MAX_STREAM_PENDING + 70, sent
    wait_for(lambda: ev.has("started bp0"), what="the first request running")
    conn.close()
    wait_for(lambda: ev.has("cancelled bp0"), what="the running request to see is_cancelled()")
    counted.check(MAX_STREAM_PENDING - 1)  # every queued one; the running one was answered
    assert_served_after(server, "bp-after")
    started = [
        x for x in ev.text().splitlines() if x.startswith("started bp") and x != "started bp-after"
    ]
    assert started == ["started bp0"], started[:5]


def test_server_shutdown_cancels_what_outlives_the_exit_timeout(tmp_path: Path) -> None:
    """SIGTERM: in-flight requests get --exit-timeout-secs to finish; what is still running then
    sees is_cancelled() and stops, what is still queued is cancelled, and the server exits
    without running them (here 3 x 20 s of work)."""
    repo = make_repository(tmp_path)
    ev = Events(repo / MODEL / "events.log")
    srv = ServerProcess(repo, args=("--exit-timeout-secs=1",)).start()
    try:
        wait_for(lambda: grpcclient.InferenceServerClient(srv.grpc_url).is_model_ready(MODEL),
                 what="model ready")  # fmt: skip
        c = grpcclient.InferenceServerClient(srv.grpc_url)
        answers: list[Any] = []
        c.async_infer(MODEL, inputs(RUN_S), lambda result, error: answers.append(error),
                      request_id="xa")  # fmt: skip
        wait_for(lambda: ev.has("started xa"), what="xa started")
        c.async_infer(MODEL, inputs(RUN_S), lambda result, error: answers.append(error),
                      request_id="xb")  # fmt: skip
        http_queued = http_infer_then_vanish(srv, "xc")
        time.sleep(0.3)  # both reach the queue behind xa
        t0 = time.monotonic()
        assert srv.terminate(timeout=RUN_S) == 0
        took = time.monotonic() - t0
        http_queued.close()
    finally:
        if srv.proc is not None and srv.proc.poll() is None:
            srv.proc.kill()
    assert took < RUN_S / 2, f"shutdown took {took:.1f} s: it waited for the requests"
    assert ev.has("cancelled xa"), ev.text()
    assert not ev.has("started xb"), ev.text()  # queued behind xa: never runs
    # The two transports cancel their calls one after the other: the queued HTTP request may
    # reach the model in between, and then stops at once.
    assert not ev.has("finished xc") and ev.has("started xc") == ev.has("cancelled xc"), ev.text()
    assert not ev.has("finished xa") and not ev.has("finished xb"), ev.text()
    wait_for(lambda: len(answers) == 2, what="both gRPC answers")
    assert all(e is not None for e in answers), answers
