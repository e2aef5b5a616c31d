"""``tritonlite tune`` on the bundled mlp_classifier: it writes the report (HTML and its PNG
plots) and a config.pbtxt that loads, serves, and beat the model's own config's throughput
within the same p99 budget in the run; the search's pieces (knobs, neighbours, concurrency
levels, the Pareto front) on their own; bad arguments are refused clearly."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from tritonlite import Server
from tritonlite._proto import model_config_pb2 as mc
from tritonlite.tune import report, search

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[1]
MODEL = "mlp_classifier"
BUDGET_S = 45


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("tune") / "out"
    cmd = [sys.executable, "-m", "tritonlite.examples", "tune", MODEL,
           "--model-repository", str(ROOT / "model_repository"), "--p99-ms", "50",
           "--concurrency", "2:48", "--concurrency-steps", "4", "--measure-s", "0.6",
           "--budget-s", str(BUDGET_S), "--output-dir", str(out)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=BUDGET_S + 120)
    print(done.stdout, done.stderr[-2000:])
    assert done.returncode == 0, done.stderr
    return out, json.loads((out / "results.json").read_text())


def test_writes_report_and_config(tuned: tuple[Path, dict]) -> None:
    out, results = tuned
    for name in ("report.html", "config.pbtxt", "results.json", report.MAIN_PLOT,
                 "throughput_at_budget.png", "batch_sizes.png"):  # fmt: skip
        assert (out / name).stat().st_size > 0, name
    assert (out / report.MAIN_PLOT).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "report.html").read_text()
    assert report.MAIN_PLOT in page and "Pareto" in page and "Best config.pbtxt" in page
    assert results["configurations_measured"] >= 3
    assert results["elapsed_s"] <= BUDGET_S + 15  # bounded by --budget-s (startup aside)
    print(
        f"\nbaseline {results['baseline']}: {results['baseline_throughput_at_budget']} infer/s; "
        f"best {results['best']}: {results['best_throughput_at_budget']} infer/s "
        f"(p99 <= {results['p99_budget_ms']} ms, {results['configurations_measured']} configs)"
    )


def test_best_config_beats_the_default_and_loads(tuned: tuple[Path, dict], tmp_path: Path) -> None:
    out, results = tuned
    assert results["baseline_throughput_at_budget"] > 0  # the default config meets the budget
    assert results["best_throughput_at_budget"] > results["baseline_throughput_at_budget"]
    # The config loads as the model's config.pbtxt and serves.
    model_dir = tmp_path / "repo" / MODEL
    shutil.copytree(ROOT / "model_repository" / MODEL, model_dir)
    shutil.copy(out / "config.pbtxt", model_dir / "config.pbtxt")
    with Server(tmp_path / "repo") as server:
        config = server.get_model(MODEL).config
        best = results["trials"][[t["label"] for t in results["trials"]].index(results["best"])]
        assert search.knobs_of(config) == search.Knobs(**best["knobs"])
        x = np.random.default_rng(0).standard_normal((2, 64)).astype(np.float32)
        probs = server.infer(MODEL, {"INPUT": x})["PROBABILITIES"]
        assert np.asarray(probs).shape == (2, 10)


def test_search_pieces() -> None:
    config = text_format.Parse(
        'name: "m" max_batch_size: 32 platform: "onnxruntime_onnx" '
        "dynamic_batching { max_queue_delay_microseconds: 500 }", mc.ModelConfig()
    )  # fmt: skip
    knobs = search.knobs_of(config)
    assert knobs == search.Knobs(instances=1, max_batch_size=32, queue_delay_us=500)
    changed = search.apply(config, search.Knobs(2, 16, 8, 100, 1))
    assert changed.instance_group[0].count == 2 and changed.max_batch_size == 16
    assert list(changed.dynamic_batching.preferred_batch_size) == [8]
    assert changed.parameters["intra_op_thread_count"].string_value == "1"
    assert search.knobs_of(changed) == search.Knobs(2, 16, 8, 100, 1)
    assert not search.apply(config, search.Knobs(1, 32, None, None)).HasField("dynamic_batching")
    near = list(search.neighbours(knobs, knobs, search.Space(), onnx=True))
    assert all(sum(a != b for a, b in zip(vars(n).values(), vars(knobs).values())) <= 2
               for n in near)  # fmt: skip
    assert search.Knobs(2, 32, None, 500, None) in near
    assert search.concurrency_levels(1, 64, 4) == [1, 4, 16, 64]
    assert search.concurrency_levels(8, 8, 3) == [8]
    pts = [("a", search.Point(1, 100, 1, 1, 1, 0)), ("b", search.Point(2, 90, 1, 2, 1, 0)),
           ("c", search.Point(4, 300, 2, 5, 1, 0))]  # fmt: skip
    assert [label for label, _ in report.pareto_front(pts)] == ["a", "c"]


def test_bad_arguments() -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tritonlite.examples", "tune", *args],
                              capture_output=True, text=True, timeout=120)  # fmt: skip

    done = run(MODEL)
    assert done.returncode == 2 and "--model-repository" in done.stderr
    done = run(MODEL, "--model-repository", str(ROOT / "model_repository"), "--concurrency", "9:2")
    assert done.returncode == 2 and "LOW <= HIGH" in done.stderr
    done = run("nope", "--model-repository", str(ROOT / "model_repository"), "--budget-s", "5")
    assert done.returncode != 0 and "model 'nope' did not load" in done.stderr
