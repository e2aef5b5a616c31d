"""Side-by-side records: the same repository and client script against the real Triton and
against tritonlite.

A ``Case`` builds a model repository (python models that record what they receive, see
``recorder.py``), runs a client script against a server and returns JSON-able observations:
responses, errors, and the batches and controls the models saw. ``record.py`` runs every case
against the real Triton 2.51 in ``../shared/tools/triton`` and commits its observations as
``fixtures/<case>.json``; ``tests/test_triton_parity.py`` runs the same case against tritonlite
and expects the same observations.

Scripts must not ask which server they talk to: the point is that one script sees the same
thing from both. What legitimately differs between two runs (ports, temporary paths, timings) is
normalised by the script before it returns.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import pkgutil
import shutil
import signal
import subprocess
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"


def _find_triton() -> Path:
    """``$TRITON_SERVER``, else ``shared/tools/triton/tritonserver`` beside the checkout (looked
    for in each folder above it, so a git worktree elsewhere finds it too)."""
    if "TRITON_SERVER" in os.environ:
        return Path(os.environ["TRITON_SERVER"])
    for folder in HERE.parents:
        candidate = folder / "shared/tools/triton/tritonserver"
        if candidate.exists():
            return candidate
    return HERE.parents[2] / "shared/tools/triton/tritonserver"


TRITON = _find_triton()


@dataclass
class Target:
    """A running server as a client script sees it."""

    grpc_url: str
    http_url: str
    repository: Path
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    #: The metrics endpoint (host:port; GET /metrics).
    metrics_url: str = ""

    def observations(self, model: str, settle: float = 0.0) -> list[Any]:
        """What ``model`` recorded so far (one entry per ``recorder.record`` call)."""
        if settle:
            time.sleep(settle)
        path = self.repository / model / "observations.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def clear(self, model: str) -> None:
        (self.repository / model / "observations.jsonl").unlink(missing_ok=True)

    def wait_observations(self, model: str, count: int, timeout: float = 10) -> list[Any]:
        """Until ``model`` recorded at least ``count`` entries (for work the client cannot see
        finish, e.g. a step whose response is dropped)."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.observations(model)
            if len(got) >= count or time.monotonic() > deadline:
                return got
            time.sleep(0.02)

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""


@dataclass
class Case:
    """One side-by-side record: ``build(repo)`` writes the models, ``script(target)`` runs."""

    name: str
    build: Callable[[Path], None]
    script: Callable[[Target], Any]
    #: Server flags both servers understand (e.g. ``--model-control-mode=explicit``).
    args: tuple[str, ...] = ()
    #: What the case shows, one line (kept in the fixture).
    about: str = ""
    #: Wait until the server reports ready (False for repositories with a model that fails).
    wait_ready: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def python_model(
    repo: Path, name: str, config: str, source: str, version: int = 1, dedent: bool = True
) -> Path:
    """Write ``repo/name`` with ``config.pbtxt``, ``<version>/model.py`` and the recorder."""
    model_dir = repo / name
    (model_dir / str(version)).mkdir(parents=True, exist_ok=True)
    (model_dir / "config.pbtxt").write_text(textwrap.dedent(config) if dedent else config)
    preamble = (
        "import os, sys\n"
        "sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))\n"
        "import recorder  # noqa: E402\n"
    )
    body = textwrap.dedent(source) if dedent else source
    (model_dir / str(version) / "model.py").write_text(preamble + body)
    shutil.copy(HERE / "recorder.py", model_dir / str(version) / "recorder.py")
    return model_dir


def all_cases() -> dict[str, Case]:
    """Every case in ``cases/*.py`` (each module lists its cases in ``CASES``)."""
    found: dict[str, Case] = {}
    package = importlib.import_module("parity.cases")
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"parity.cases.{info.name}")
        for case in module.CASES:
            if case.name in found:
                raise ValueError(f"two parity cases are named {case.name!r}")
            found[case.name] = case
    return found


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(target: Target, ready: bool, timeout: float) -> None:
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    deadline = time.monotonic() + timeout
    client = httpclient.InferenceServerClient(target.http_url)
    try:
        while True:
            assert target.process is not None
            if target.process.poll() is not None:
                raise RuntimeError(
                    f"server exited with {target.process.returncode}:\n{target.log()}"
                )
            try:
                if client.is_server_ready() if ready else client.is_server_live():
                    return
            except (OSError, InferenceServerException):
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not {'ready' if ready else 'live'}:\n{target.log()}")
            time.sleep(0.1)
    finally:
        client.close()


@contextlib.contextmanager
def serve(case: Case, server: str, repo: Path) -> Iterator[Target]:
    """Start ``server`` ("triton" or "tritonlite") on ``repo`` with the case's flags."""
    import sys

    grpc_port, http_port, metrics_port = _free_port(), _free_port(), _free_port()
    common = [
        f"--model-repository={repo}", f"--grpc-port={grpc_port}", f"--http-port={http_port}",
        f"--metrics-port={metrics_port}", *case.args,
    ]  # fmt: skip
    if server == "triton":
        command = [str(TRITON), "--exit-on-error=false", *common]
    else:
        command = [sys.executable, "-m", "tritonlite.cli", "--grpc-address=127.0.0.1",
                   "--http-address=127.0.0.1", *common]  # fmt: skip
    fd, log_name = tempfile.mkstemp(prefix=f"parity-{server}-", suffix=".log")
    process = subprocess.Popen(command, stdout=fd, stderr=fd, start_new_session=True)
    os.close(fd)
    target = Target(f"127.0.0.1:{grpc_port}", f"127.0.0.1:{http_port}", repo, process,
                    Path(log_name), f"127.0.0.1:{metrics_port}")  # fmt: skip
    try:
        _wait(target, case.wait_ready, 120 if server == "triton" else 60)
        yield target
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if os.environ.get("PARITY_KEEP_LOGS"):
            print(f"{server} log: {log_name}")
        else:
            Path(log_name).unlink(missing_ok=True)


def run_case(case: Case, server: str) -> Any:
    """Build a fresh repository, serve it, run the script; return its observations."""
    with tempfile.TemporaryDirectory(prefix=f"parity-{case.name}-") as tmp:
        repo = Path(tmp) / "models"
        repo.mkdir()
        case.build(repo)
        with serve(case, server, repo) as target:
            return json.loads(json.dumps(case.script(target)))


def fixture_path(case: Case) -> Path:
    return FIXTURES / f"{case.name}.json"


def load_fixture(case: Case) -> dict[str, Any]:
    return json.loads(fixture_path(case).read_text())
