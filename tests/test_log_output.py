"""The server's log output: --log-file, --log-format (Triton's default and ISO8601 lines),
the per-level switches, and changing them at run time through tritonclient's log settings
(HTTP and gRPC), as Triton 2.51 does."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serving import ServerProcess, write_config
from tritonlite.cli import main

NOISY_MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            tag = pb_utils.get_input_tensor_by_name(r, "IN").as_numpy()[0]
            pb_utils.Logger.log_info(f"info-{tag}")
            pb_utils.Logger.log_warn(f"warn-{tag}")
            pb_utils.Logger.log_error(f"error-{tag}")
            pb_utils.Logger.log_verbose(f"verbose-{tag}")
            out.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy())]))
        return out
"""

CONFIG = """
name: "noisy"
backend: "python"
max_batch_size: 0
input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
"""

ISO = re.compile(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ([IWE]) \d+ [\w.]+:\d+\] "(.*)"$')
DEFAULT = re.compile(r'^([IWE])\d{4} \d\d:\d\d:\d\d\.\d{6} \d+ [\w.]+:\d+\] "(.*)"$')


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("log_repo")
    (root / "noisy" / "1").mkdir(parents=True)
    (root / "noisy" / "1" / "model.py").write_text(NOISY_MODEL)
    write_config(root / "noisy", CONFIG)
    log_file = root.parent / "server.log"
    with ServerProcess(root, args=(f"--log-file={log_file}", "--log-format=ISO8601")) as srv:
        client = grpcclient.InferenceServerClient(srv.grpc_url)
        deadline = time.monotonic() + 60
        while not client.is_model_ready("noisy"):
            assert time.monotonic() < deadline, srv.log()
            time.sleep(0.1)
        yield srv, log_file


def infer(srv: ServerProcess, tag: int) -> None:
    i = grpcclient.InferInput("IN", [1], "INT32")
    i.set_data_from_numpy(np.array([tag], np.int32))
    grpcclient.InferenceServerClient(srv.grpc_url).infer("noisy", [i])


def lines_for(log_file: Path, tag: int, pattern: re.Pattern[str]) -> dict[str, str]:
    """{message: level char} of the model's lines for ``tag`` (waiting for the error line, which
    every setting here leaves on, to be written)."""
    deadline = time.monotonic() + 10
    while True:
        found: dict[str, str] = {}
        for line in log_file.read_text().splitlines():
            m = pattern.match(line)
            if m is not None and m.group(2).endswith(f"-{tag}"):
                found[m.group(2).split(": ")[-1]] = m.group(1)
        if f"error-{tag}" in found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_log_file_in_iso8601_with_every_line_in_that_format(logged) -> None:  # type: ignore[no-untyped-def]
    srv, log_file = logged
    infer(srv, 1)
    assert lines_for(log_file, 1, ISO) == {"info-1": "I", "warn-1": "W", "error-1": "E"}
    # As Triton: a model's line names the model's file and line, the message alone.
    assert re.search(r' I \d+ model\.py:10\] "info-1"$', log_file.read_text(), re.MULTILINE)
    text = log_file.read_text()
    assert "Started GRPCInferenceService" in text
    for line in text.splitlines():  # every line is one ISO8601 record (messages are escaped)
        assert ISO.match(line), line
    assert srv.log() == ""  # nothing went to stderr instead


def test_settings_reported_and_changed_at_run_time(logged) -> None:  # type: ignore[no-untyped-def]
    srv, log_file = logged
    http = httpclient.InferenceServerClient(srv.http_url)
    grpc = grpcclient.InferenceServerClient(srv.grpc_url)
    settings = http.get_log_settings()
    assert settings["log_file"] == str(log_file)
    assert settings["log_format"] == "ISO8601"
    try:
        http.update_log_settings(
            {"log_format": "default", "log_info": False, "log_verbose_level": 1}
        )
        infer(srv, 2)
        assert lines_for(log_file, 2, DEFAULT) == {"warn-2": "W", "error-2": "E", "verbose-2": "I"}
        grpc.update_log_settings({"log_warning": False, "log_verbose_level": 0, "log_info": True})
        assert grpc.get_log_settings(as_json=True)["settings"]["log_warning"]["bool_param"] is False
        infer(srv, 3)
        assert lines_for(log_file, 3, DEFAULT) == {"info-3": "I", "error-3": "E"}
        with pytest.raises(Exception, match="log file location can not be updated"):
            http.update_log_settings({"log_file": "/tmp/elsewhere.log"})
    finally:
        http.update_log_settings({"log_format": "ISO8601", "log_info": True, "log_warning": True,
                                  "log_verbose_level": 0})  # fmt: skip


def test_unwritable_log_file_refused_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "missing-dir" / "server.log"
    assert main(["--model-repository", str(tmp_path), f"--log-file={bad}"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --log-file: cannot open '{bad}': No such file or directory"]


def test_unknown_log_format_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--model-repository", "/nonexistent", "--log-format=json"])
    assert e.value.code == 2
    assert "--log-format: invalid choice: 'json'" in capsys.readouterr().err
