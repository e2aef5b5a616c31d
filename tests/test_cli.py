"""tritonlite-server: Triton's flags, startup failures, and graceful SIGTERM."""

from __future__ import annotations

import queue
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from models import make_add_sub_onnx
from serving import ServerProcess, write_config


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tritonlite.cli", *args],
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_help_documents_tritons_flags() -> None:
    out = cli("--help").stdout
    for flag in (
        "--model-repository", "--model-control-mode", "--repository-poll-secs", "--load-model",
        "--exit-on-error", "--strict-readiness", "--disable-auto-complete-config",
        "--exit-timeout-secs", "--grpc-port", "--grpc-address", "--grpc-use-ssl",
        "--grpc-server-cert", "--grpc-server-key", "--grpc-root-cert", "--grpc-keepalive-time",
        "--grpc-restricted-protocol", "--http-port", "--metrics-port", "--allow-http",
        "--allow-grpc", "--allow-metrics", "--metrics-interval-ms",
    ):  # fmt: skip
        assert flag in out, flag


@pytest.mark.parametrize(
    "args",
    [
        ("--reuse-grpc-port=true",),
        ("--cache-directory", "/opt/tritonserver/caches"),
        ("--backend-directory", "/opt/tritonserver/backends"),
        ("--model-load-gpu-limit", "0:0.5"),
        ("--reuse-http-port=true",),
        ("--repoagent-directory", "/opt/tritonserver/repoagents"),
        ("--allow-sagemaker=true",),
    ],
)
def test_unimplemented_triton_flag_is_refused_in_one_line(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    proc = cli("--model-repository", str(tmp_path), *args, "--grpc-port=0")
    name = args[0].split("=")[0]
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {name} is a Triton flag tritonlite does not implement: refused rather than "
        "ignored (see README, 'The server command')"
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("python,stub-timeout-seconds=30", "setting 'stub-timeout-seconds' is not supported"),
        ("python,shm-default-byte-size=4095", "expected an integer >= 4096"),
        ("default-max-batch-size=many", "expected a non-negative integer"),
        ("onnxruntime", "expected [<backend>,]<setting>=<value>"),
    ],
)
def test_backend_config_refused_unless_honoured(tmp_path: Path, value: str, expected: str) -> None:
    proc = cli("--model-repository", str(tmp_path), f"--backend-config={value}", "--grpc-port=0")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: --backend-config '{value}': "), lines
    assert expected in lines[0]


@pytest.mark.parametrize("value", ["onnxruntime,default-max-batch-size=8", "default-max-batch-size=8"])
def test_backend_config_default_max_batch_size(tmp_path: Path, value: str) -> None:
    make_add_sub_onnx(tmp_path / "auto" / "1" / "model.onnx")  # no config.pbtxt: auto-complete
    with ServerProcess(tmp_path, args=(f"--backend-config={value}",)) as srv:
        client = grpcclient.InferenceServerClient(srv.grpc_url)
        deadline = time.monotonic() + 60
        while not client.is_model_ready("auto"):
            assert time.monotonic() < deadline, srv.log()
            time.sleep(0.1)
        config = client.get_model_config("auto", as_json=True)["config"]
    assert config["max_batch_size"] == 8
    assert "dynamic_batching" in config


def test_id_is_the_server_metadata_name(tmp_path: Path) -> None:
    with ServerProcess(tmp_path, args=("--id=edge-7",)) as srv:
        meta = grpcclient.InferenceServerClient(srv.grpc_url).get_server_metadata(as_json=True)
    assert meta["name"] == "edge-7"


def test_unknown_flag_is_an_argparse_error(tmp_path: Path) -> None:
    proc = cli("--model-repository", str(tmp_path), "--no-such-flag")
    assert proc.returncode == 2
    assert "unrecognized arguments: --no-such-flag" in proc.stderr


def test_memory_pool_flags_warn_that_they_do_nothing(tmp_path: Path) -> None:
    args = ("--pinned-memory-pool-byte-size=1024", "--grpc-infer-allocation-pool-size=16")
    with ServerProcess(tmp_path, args=args) as srv:
        assert "--pinned-memory-pool-byte-size has no effect" in srv.log()
        assert "--grpc-infer-allocation-pool-size has no effect" in srv.log()


def test_missing_repository_is_a_clear_error(tmp_path: Path) -> None:
    proc = cli("--model-repository", str(tmp_path / "nope"), "--grpc-port=0")
    assert proc.returncode == 1
    assert "is not a directory" in proc.stderr


def test_failed_model_stops_startup_unless_exit_on_error_false(tmp_path: Path) -> None:
    write_config(tmp_path / "bad", 'name: "bad" backend: "nosuch"')
    (tmp_path / "bad" / "1").mkdir()
    proc = cli("--model-repository", str(tmp_path), "--grpc-port=0")
    assert proc.returncode == 1
    assert "failed to load all models" in proc.stderr
    with ServerProcess(tmp_path, args=("--exit-on-error=false",)) as srv:
        client = grpcclient.InferenceServerClient(srv.grpc_url)
        assert client.is_server_live() and not client.is_server_ready()
        index = client.get_model_repository_index(as_json=True)["models"]
        assert index[0]["state"] == "UNAVAILABLE" and "nosuch" in index[0]["reason"]


def slow_repo(root: Path) -> Path:
    """`simple` whose requests wait 300 ms in the queue: in flight when SIGTERM comes."""
    write_config(
        root / "simple",
        'name: "simple" platform: "onnxruntime_onnx" max_batch_size: 64 '
        'input [{ name: "INPUT0" data_type: TYPE_INT32 dims: [ 16 ] }, '
        '{ name: "INPUT1" data_type: TYPE_INT32 dims: [ 16 ] }] '
        'output [{ name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 16 ] }, '
        '{ name: "OUTPUT1" data_type: TYPE_INT32 dims: [ 16 ] }] '
        "dynamic_batching { max_queue_delay_microseconds: 300000 preferred_batch_size: [ 64 ] }",
    )
    make_add_sub_onnx(root / "simple" / "1" / "model.onnx", dtype="INT32")
    return root


def test_model_repo_alias_and_sigterm_finishes_in_flight_requests(tmp_path: Path) -> None:
    srv = ServerProcess(args=("--model-repo", str(slow_repo(tmp_path))))
    with srv:
        client = grpcclient.InferenceServerClient(srv.grpc_url)
        results: queue.Queue[tuple[object, object]] = queue.Queue()
        a = np.arange(16, dtype=np.int32).reshape(1, 16)
        for _ in range(16):
            inputs = [grpcclient.InferInput("INPUT0", [1, 16], "INT32"),
                      grpcclient.InferInput("INPUT1", [1, 16], "INT32")]  # fmt: skip
            inputs[0].set_data_from_numpy(a)
            inputs[1].set_data_from_numpy(a)
            client.async_infer("simple", inputs, lambda result, error: results.put((result, error)))
        time.sleep(0.1)  # all 16 are queued, waiting for the batch delay
        t0 = time.monotonic()
        code = srv.terminate(timeout=30)
        elapsed = time.monotonic() - t0
        got = [results.get(timeout=10) for _ in range(16)]
    assert code == 0
    assert elapsed < 10
    for result, error in got:
        assert error is None, error
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a * 2)  # type: ignore[attr-defined]


@pytest.mark.parametrize("flag", ["--grpc-use-ssl"])
def test_tls_needs_its_certificates(tmp_path: Path, flag: str) -> None:
    proc = cli("--model-repository", str(tmp_path), "--grpc-port=0", flag,
               "--grpc-server-cert", str(tmp_path / "missing.crt"),
               "--grpc-server-key", str(tmp_path / "missing.key"))  # fmt: skip
    assert proc.returncode == 1
    assert "unable to read the gRPC server key" in proc.stderr


def test_grpc_over_tls(tmp_path: Path) -> None:
    """--grpc-use-ssl serves gRPC over TLS (grpcio's transport); plaintext clients fail."""
    import shutil

    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a test certificate")
    key, cert = tmp_path / "server.key", tmp_path / "server.crt"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)  # fmt: skip
    repo = slow_repo(tmp_path / "repo")
    srv = ServerProcess(repo, args=("--grpc-use-ssl=true", f"--grpc-server-cert={cert}",
                                    f"--grpc-server-key={key}"))  # fmt: skip
    srv.wait_live = lambda: None  # the plaintext liveness probe cannot talk TLS
    with srv:
        client = grpcclient.InferenceServerClient(
            srv.grpc_url, ssl=True, root_certificates=str(cert)
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if client.is_server_live():
                    break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        a = np.ones((1, 16), np.int32)
        inputs = [grpcclient.InferInput("INPUT0", [1, 16], "INT32"),
                  grpcclient.InferInput("INPUT1", [1, 16], "INT32")]  # fmt: skip
        inputs[0].set_data_from_numpy(a)
        inputs[1].set_data_from_numpy(a)
        assert client.infer("simple", inputs).as_numpy("OUTPUT0").tolist() == [[2] * 16]
        plain = grpcclient.InferenceServerClient(srv.grpc_url)
        with pytest.raises(Exception):
            plain.is_server_live()


def test_backend_config_python_shm_settings(caplog: pytest.LogCaptureFixture) -> None:
    from tritonlite.cli import parse_backend_config

    with caplog.at_level("WARNING", logger="tritonlite"):
        parsed = parse_backend_config(
            ["python,shm-default-byte-size=1048576", "python,shm-growth-byte-size=1048576"]
        )
    assert parsed == {
        "python": {"shm-default-byte-size": "1048576", "shm-growth-byte-size": "1048576"}
    }
    messages = [r.getMessage() for r in caplog.records]
    assert any("shm-growth-byte-size=1048576 has no effect" in m for m in messages)
