"""Test helper: run ``tritonlite-server`` as a real process on free localhost ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

#: Set by ``make test-sanitize`` / ``make test-tsan``: the sanitizers hold freed memory back
#: (ASan's quarantine, TSan's shadow), so memory budgets measured as RSS do not apply there.
SANITIZED = bool(os.environ.get("TRITONLITE_SANITIZED"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``with ServerProcess(repo, "--model-control-mode=explicit") as srv: srv.grpc_url``"""

    def __init__(
        self,
        *repositories: Path | str,
        args: tuple[str, ...] = (),
        ready_timeout: float = 60,
        env: dict[str, str] | None = None,
    ):
        self.grpc_port, self.http_port, self.metrics_port = free_port(), free_port(), free_port()
        self.repositories = repositories
        self.args = args
        self.ready_timeout = ready_timeout
        self.env = None if env is None else {**os.environ, **env}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "tritonlite.cli"]
        for r in self.repositories:
            cmd += ["--model-repository", str(r)]
        cmd += [
            f"--grpc-port={self.grpc_port}", "--grpc-address=127.0.0.1",
            f"--http-port={self.http_port}", "--http-address=127.0.0.1",
            f"--metrics-port={self.metrics_port}",
        ]  # fmt: skip
        return cmd + list(self.args)

    def start(self) -> ServerProcess:
        import tempfile

        fd, name = tempfile.mkstemp(prefix="tritonlite-server-", suffix=".log")
        self.log_path = Path(name)
        self.proc = subprocess.Popen(self.command(), stdout=fd, stderr=fd, env=self.env)
        os.close(fd)
        self.wait_live()
        return self

    def wait_live(self) -> None:
        import tritonclient.grpc as grpcclient

        deadline = time.monotonic() + self.ready_timeout
        client = grpcclient.InferenceServerClient(self.grpc_url)
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if client.is_server_live() and self._http_listening():
                    return
            except Exception:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server not live after {self.ready_timeout}s:\n{self.log()}")

    def _http_listening(self) -> bool:
        """The HTTP frontend starts after the gRPC one: a test may use either as soon as the
        server is live, so wait for its port too (unless HTTP is off)."""
        import socket

        if any(a.replace(" ", "=") in ("--allow-http=false", "--allow-http=0") for a in self.args):
            return True
        try:
            socket.create_connection(("127.0.0.1", self.http_port), timeout=1).close()
            return True
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""

    def terminate(self, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.terminate()
        if self.log_path is not None:
            self.log_path.unlink(missing_ok=True)


def write_config(model_dir: Path, text: str) -> None:
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "config.pbtxt").write_text(text)


def wait_http_live(server: ServerProcess, timeout: float = 30) -> None:
    """Until the HTTP endpoint answers (it starts after the gRPC one that ``start`` waits for)."""
    import tritonclient.http as httpclient

    deadline = time.monotonic() + timeout
    client = httpclient.InferenceServerClient(server.http_url)
    while True:
        try:
            if client.is_server_live():
                return
        except Exception:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.05)
