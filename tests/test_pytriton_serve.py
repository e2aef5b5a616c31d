"""``tritonlite serve APP``: the README's "Serve a Python function" example as written (app.py
served by the console script, the README's client block run against it), a PyTriton-style
module with a module-level Triton, an isolated function served that way, and the refusals
(issue #22)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serving import free_port

ROOT = Path(__file__).resolve().parent.parent
TOOL = Path(sys.executable).parent / "tritonlite"


def _readme_block(marker: str) -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(rf"<!-- {marker} -->\n```python\n(.*?)```", text, re.S)
    assert m, f"README block {marker} is missing"
    return m.group(1)


class Served:
    def __init__(self, app: str, cwd: Path, *extra: str) -> None:
        self.grpc, self.http, self.metrics = free_port(), free_port(), free_port()
        cmd = [str(TOOL), "serve", app, "--grpc-port", str(self.grpc), "--http-port",
               str(self.http), "--metrics-port", str(self.metrics), "--address", "127.0.0.1",
               *extra]  # fmt: skip
        self.log = cwd / "serve.log"
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=log,
                                         text=True, env={**os.environ, "PYTHONPATH": ""})  # fmt: skip
        assert self.proc.stdout is not None
        self.banner = self.proc.stdout.readline()  # printed once it listens
        assert self.banner.startswith("serving "), self.banner + self.log.read_text()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


def test_readme_example_served_by_tritonlite_serve(tmp_path: Path):
    (tmp_path / "app.py").write_text(_readme_block("pytriton-app"))
    served = Served("app.py", tmp_path)
    try:
        assert f"gRPC on 127.0.0.1:{served.grpc}" in served.banner and "double" in served.banner
        client_code = _readme_block("pytriton-client").replace(
            "localhost:8001", f"127.0.0.1:{served.grpc}")  # fmt: skip
        out = subprocess.run([sys.executable, "-c", client_code], capture_output=True, text=True,
                             timeout=120)  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "[2. 2. 2.]"
        h = httpclient.InferenceServerClient(f"127.0.0.1:{served.http}")
        x = httpclient.InferInput("x", [2, 3], "FP32")
        x.set_data_from_numpy(np.arange(6, dtype=np.float32).reshape(2, 3))
        np.testing.assert_array_equal(
            h.infer("double", [x]).as_numpy("output"), np.arange(6).reshape(2, 3) * 2
        )
    finally:
        assert served.stop() == 0


PYTRITON_MODULE = '''
import os
import numpy as np
import tritonlite
from numpy.typing import NDArray
from tritonlite.pytriton.decorators import batch
from tritonlite.pytriton.model_config import ModelConfig, Tensor
from tritonlite.pytriton.triton import Triton


@batch
def add_sub(INPUT0, INPUT1):
    return {"OUTPUT0": INPUT0 + INPUT1, "OUTPUT1": INPUT0 - INPUT1}


@tritonlite.function(max_batch_size=8, isolated=True)
def pid(x: NDArray[np.int64]) -> NDArray[np.int64]:
    return np.full_like(x, os.getpid())


triton = Triton()
triton.bind(
    model_name="add_sub", infer_func=add_sub,
    inputs=[Tensor(name="INPUT0", dtype=np.int32, shape=(4,)),
            Tensor(name="INPUT1", dtype=np.int32, shape=(4,))],
    outputs=[Tensor(name="OUTPUT0", dtype=np.int32, shape=(4,)),
             Tensor(name="OUTPUT1", dtype=np.int32, shape=(4,))],
    config=ModelConfig(max_batch_size=8),
)

if __name__ == "__main__":
    triton.serve()
'''


def test_module_level_triton_and_isolated_function_by_module_name(tmp_path: Path):
    (tmp_path / "pytriton_app.py").write_text(PYTRITON_MODULE)
    served = Served("pytriton_app", tmp_path)  # a module name, found in the working directory
    try:
        assert "add_sub" in served.banner and "pid" in served.banner
        g = grpcclient.InferenceServerClient(f"127.0.0.1:{served.grpc}")
        a = np.arange(8, dtype=np.int32).reshape(2, 4)
        inputs = []
        for name in ("INPUT0", "INPUT1"):
            i = grpcclient.InferInput(name, [2, 4], "INT32")
            i.set_data_from_numpy(a)
            inputs.append(i)
        r = g.infer("add_sub", inputs)
        np.testing.assert_array_equal(r.as_numpy("OUTPUT0"), a * 2)
        x = grpcclient.InferInput("x", [1, 1], "INT64")
        x.set_data_from_numpy(np.zeros((1, 1), np.int64))
        pid = int(g.infer("pid", [x]).as_numpy("output")[0, 0])
        assert pid not in (0, served.proc.pid)  # ran in the stub, not the serving process
    finally:
        assert served.stop() == 0


def test_nothing_to_serve_and_missing_file_are_refused(tmp_path: Path):
    (tmp_path / "empty_app.py").write_text("x = 1\n")
    for app, message in (("empty_app.py", "defines nothing to serve"),
                         ("missing.py", "no such file")):  # fmt: skip
        out = subprocess.run([str(TOOL), "serve", app], cwd=tmp_path, capture_output=True,
                             text=True, timeout=120)  # fmt: skip
        assert out.returncode == 2 and message in out.stderr, out.stderr


@pytest.mark.parametrize("flag", ["--bogus"])
def test_unknown_flags_are_refused(tmp_path: Path, flag: str):
    out = subprocess.run([str(TOOL), "serve", "app.py", flag], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 2 and "unrecognized arguments" in out.stderr
