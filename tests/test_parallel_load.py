"""--model-load-thread-count (Server(model_load_thread_count=...)): the models the repository
loads itself (at start, on a poll) load that many at a time, as Triton's load thread pool.
Asserted on what the models record, never on wall time."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import tritonclient.http as httpclient
from models import PYTHON_MODELS
from serving import ServerProcess, wait_http_live
from tritonlite import Server, TritonError


def slow_models(repo: Path, log: Path, names: list[str], barrier: Path | None = None,
                sleep: float = 0.0) -> None:  # fmt: skip
    """tests/python_models/slow_init as each of ``names``; with ``barrier``, each waits in
    initialize until all the others have started theirs."""
    for name in names:
        shutil.copytree(PYTHON_MODELS / "slow_init", repo / name)
        config = repo / name / "config.pbtxt"
        params = {"LOG_FILE": str(log), "SLEEP_INIT": str(sleep)}
        if barrier is not None:
            params["BARRIER_DIR"] = str(barrier)
            params["WAIT_FOR"] = ",".join(n for n in names if n != name)
        text = config.read_text().replace('"slow_init"', f'"{name}"')
        for key, value in params.items():
            text += f'\nparameters {{ key: "{key}" value {{ string_value: "{value}" }} }}'
        config.write_text(text + "\n")


def records(log: Path) -> list[dict[str, Any]]:
    return sorted((json.loads(line) for line in log.read_text().splitlines()),
                  key=lambda r: r["start"])  # fmt: skip


def test_two_load_threads_initialize_two_models_at_once(tmp_path: Path) -> None:
    repo, log, barrier = tmp_path / "repo", tmp_path / "init.jsonl", tmp_path / "barrier"
    repo.mkdir()
    barrier.mkdir()
    slow_models(repo, log, ["slow_a", "slow_b"], barrier=barrier)
    with ServerProcess(repo, args=("--model-load-thread-count=2",)) as server:
        wait_http_live(server)
        client = httpclient.InferenceServerClient(server.http_url)
        assert client.is_model_ready("slow_a") and client.is_model_ready("slow_b")
    a, b = records(log)
    # Each initialize waited until the other had begun: both were running at once.
    assert a["met"] and b["met"]
    assert a["start"] < b["end"] and b["start"] < a["end"]


def test_one_load_thread_initializes_one_model_at_a_time(tmp_path: Path) -> None:
    repo, log = tmp_path / "repo", tmp_path / "init.jsonl"
    repo.mkdir()
    slow_models(repo, log, ["slow_a", "slow_b", "slow_c"], sleep=0.2)
    with Server(repo, model_load_thread_count=1) as server:
        assert all(server.model_ready(n) for n in ("slow_a", "slow_b", "slow_c"))
    first, second, third = records(log)
    assert first["end"] <= second["start"] and second["end"] <= third["start"]


@pytest.mark.parametrize("count", [-1, 1.5, True])
def test_a_bad_thread_count_is_refused(tmp_path: Path, count: Any) -> None:
    with pytest.raises(TritonError, match="model load thread count must be a non-negative int"):
        Server(tmp_path, model_load_thread_count=count)
