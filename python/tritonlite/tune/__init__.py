"""``tritonlite tune MODEL --model-repository DIR``: a model analyzer for tritonlite.

Owns the command (its flags, the time budget, the progress bar, the outputs). It loads the
model's repository in an in-process ``Server`` (explicit model control), measures the model's
own configuration (the baseline), then walks the configurations one knob away from the best so
far (``search.neighbours``: queue delay, preferred batch size, instance count, max batch size,
onnxruntime intra-op threads) while ``--budget-s`` lasts, each at concurrency levels from
``--concurrency LOW:HIGH`` until its p99 passes ``--p99-ms`` twice (``search.measure``). A
configuration wins over the best so far when its throughput within the p99 budget is at least
``--min-gain`` higher; at the end the baseline and the winner are measured again back to back
at every level (the machine's load may have changed during the search, and a load spike only
makes a measurement worse), each is judged by the better of its two measurements per level,
and the winner is kept only if it still beats the baseline: those two numbers are reported.
It writes to ``--output-dir``: ``config.pbtxt`` (the model's config with
the best knobs), ``results.json`` (every point measured), and ``report.html`` with its PNG plots
(``report``; needs matplotlib, the ``[tune]`` extra). The progress bar is a line on stderr
(no dependency: a carriage-return line on a terminal, one line per configuration otherwise).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from google.protobuf import text_format

from ..errors import TritonError
from . import report, search


class Progress:
    """A one-line progress bar on ``stream`` over the time budget."""

    def __init__(self, budget_s: float, stream: TextIO = sys.stderr) -> None:
        self.start = time.monotonic()
        self.budget_s = budget_s
        self.stream = stream
        self.tty = stream.isatty()

    def update(self, trials: int, label: str, best: float) -> None:
        elapsed = time.monotonic() - self.start
        frac = min(1.0, elapsed / self.budget_s)
        bar = "#" * int(frac * 30) + "-" * (30 - int(frac * 30))
        line = (f"[{bar}] {elapsed:5.1f}/{self.budget_s:.0f}s  {trials:3d} configs  "
                f"best {best:,.0f} infer/s  now: {label}")  # fmt: skip
        if self.tty:
            self.stream.write("\r" + line[:150].ljust(150))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def done(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got '{text}'"
        ) from None


def _range(text: str) -> tuple[int, int]:
    low, sep, high = text.partition(":")
    try:
        lo, hi = int(low), int(high if sep else low)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW:HIGH, got '{text}'") from None
    if lo < 1 or hi < lo:
        raise argparse.ArgumentTypeError(f"expected 1 <= LOW <= HIGH, got '{text}'")
    return lo, hi


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tritonlite tune",
        description="Find the model configuration with the highest throughput within a p99 "
        "latency budget (instance count, batch sizes, queue delay, onnxruntime threads), "
        "measured in process; writes the best config.pbtxt and an HTML report with plots.",
    )
    p.add_argument("model", help="the model's name in the repository")
    p.add_argument("--model-repository", required=True, type=Path, metavar="DIR")
    p.add_argument("--p99-ms", type=float, default=10.0, help="p99 latency budget (default 10)")
    p.add_argument("--concurrency", type=_range, default=(1, 64), metavar="LOW:HIGH",
                   help="closed-loop concurrency range (default 1:64)")  # fmt: skip
    p.add_argument("--concurrency-steps", type=int, default=4, metavar="N",
                   help="levels measured within the range, geometric (default 4)")  # fmt: skip
    p.add_argument("--budget-s", type=float, default=120.0,
                   help="total run time, report included (default 120)")  # fmt: skip
    p.add_argument("--measure-s", type=float, default=1.0,
                   help="seconds measured per concurrency level (default 1)")  # fmt: skip
    p.add_argument("--instances", type=_ints, default=[1, 2, 4], metavar="N,...")
    p.add_argument("--queue-delays-us", type=_ints, default=[0, 100, 500, 2000], metavar="US,...")
    p.add_argument("--max-batch-sizes", type=_ints, default=[], metavar="N,...",
                   help="default: powers of two up to the model's max_batch_size")  # fmt: skip
    p.add_argument("--intra-op-threads", type=_ints, default=[1, 2], metavar="N,...",
                   help="onnxruntime models: intra_op_thread_count values")  # fmt: skip
    p.add_argument(
        "--min-gain",
        type=float,
        default=0.03,
        help="relative gain a configuration needs to replace the best (default 0.03)",
    )
    p.add_argument("--output-dir", type=Path, default=None,
                   help="default: ./tune_results/MODEL")  # fmt: skip
    return p


def tune(args: argparse.Namespace, progress: Progress | None = None) -> dict[str, Any]:
    """Run the search and write the outputs; returns the summary (also in results.json)."""
    from ..server import Server

    report.require_matplotlib()  # refuse before spending the budget
    started = time.monotonic()
    deadline = started + max(1.0, args.budget_s - 6.0)  # the report takes a few seconds
    progress = progress or Progress(args.budget_s)
    out_dir = args.output_dir or Path("tune_results") / args.model
    levels = search.concurrency_levels(args.concurrency[0], args.concurrency[1],
                                       args.concurrency_steps)  # fmt: skip
    try:
        server = Server(args.model_repository, model_control_mode="explicit",
                        load_models=[args.model], exit_on_error=False)  # fmt: skip
    except TritonError as e:
        message = f"tritonlite tune: model '{args.model}' did not load: {e.message}"
        raise SystemExit(message) from None
    try:
        try:
            loaded = server.get_model(args.model)
        except TritonError:
            reason = next((m.get("reason", "") for m in server.repository_index()
                           if m["name"] == args.model), "not in the repository")  # fmt: skip
            raise SystemExit(f"tritonlite tune: model '{args.model}' did not load: {reason}")
        user_config = _user_config(args.model_repository / args.model, loaded.config)
        original = search.knobs_of(loaded.config)
        onnx = search.is_onnxruntime(loaded.config)
        space = search.Space(instances=args.instances, queue_delay_us=args.queue_delays_us,
                             max_batch_sizes=args.max_batch_sizes,
                             intra_op_threads=args.intra_op_threads)  # fmt: skip
        p99 = args.p99_ms

        def run(knobs: search.Knobs, until: float, stop_ms: float = p99) -> search.Trial:
            return search.measure(server, args.model, user_config, knobs, levels,
                                  args.measure_s, stop_ms, until)  # fmt: skip

        progress.update(0, "baseline " + original.label(), 0.0)
        baseline = run(original, deadline)
        trials = [baseline]
        tried = {original}
        best = baseline
        per_trial = time.monotonic() - started
        # The confirmation measures two configurations at every level: its time is kept aside.
        full_trial = len(levels) * args.measure_s + 1.0  # + loading and warm-up
        search_end = deadline - 2 * full_trial

        def searching() -> bool:  # time for one more configuration
            return time.monotonic() + per_trial <= search_end

        improved = True
        while improved and searching():
            improved = False
            for knobs in search.neighbours(best.knobs, original, space, onnx):
                if knobs in tried:
                    continue
                if not searching():
                    break
                tried.add(knobs)
                progress.update(len(trials), knobs.label(), best.throughput_at(p99))
                t0 = time.monotonic()
                trial = run(knobs, search_end)
                per_trial = max(per_trial * 0.5, time.monotonic() - t0)
                if trial.knobs != knobs and trial.knobs in tried:
                    continue  # auto-completed into a configuration already measured
                tried.add(trial.knobs)
                trials.append(trial)
                if trial.throughput_at(p99) > best.throughput_at(p99) * (1 + args.min_gain):
                    best = trial
                    improved = True
                    break  # on from the new best's neighbours
        # The search's numbers come from moments apart on a machine whose load may change, and
        # a passing load spike only ever makes a measurement worse: the baseline and the
        # winner are measured again, back to back, at every level, and each is judged by the
        # better of its two measurements per level; the winner must still beat the baseline.
        confirmed: tuple[search.Trial, search.Trial] | None = None
        if best is not baseline:
            progress.update(len(trials), "confirming: baseline", best.throughput_at(p99))
            again_base = run(original, deadline + full_trial, math.inf)  # every level
            progress.update(len(trials), "confirming: " + best.knobs.label(),
                            best.throughput_at(p99))  # fmt: skip
            again_best = run(best.knobs, deadline + full_trial, math.inf)
            confirmed = again_base, again_best
            if _best_of(best, again_best, p99) <= _best_of(baseline, again_base, p99):
                best = baseline
        progress.update(len(trials), "writing the report", best.throughput_at(p99))
        progress.done()
    finally:
        server.close()

    best_config = search.apply(user_config, best.knobs)
    config_text = text_format.MessageToString(best_config)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.pbtxt").write_text(config_text, encoding="utf-8")
    base_tp, best_tp = baseline.throughput_at(p99), best.throughput_at(p99)
    if confirmed is not None:  # the better of the two measurements of each
        base_tp = _best_of(baseline, confirmed[0], p99)
        best_tp = _best_of(best, confirmed[1], p99) if best is not baseline else base_tp
    summary = {
        "model": args.model,
        "p99_budget_ms": p99,
        "concurrency_levels": levels,
        "configurations_measured": len(trials),
        "baseline": baseline.knobs.label(),
        "best": best.knobs.label(),
        "baseline_throughput_at_budget": round(base_tp, 1),
        "best_throughput_at_budget": round(best_tp, 1),
        "gain": round(best_tp / base_tp, 3) if base_tp > 0 else None,
        "search_baseline_throughput": round(baseline.throughput_at(p99), 1),
        "search_best_throughput": round(best.throughput_at(p99), 1),
        "confirmed": "no winner to confirm" if confirmed is None
        else "yes" if best is not baseline else "no: the baseline stays",
        "elapsed_s": round(time.monotonic() - started, 1),
    }  # fmt: skip
    html_path = report.write(out_dir, args.model, trials, baseline, best, p99, config_text,
                             summary)  # fmt: skip
    summary["elapsed_s"] = round(time.monotonic() - started, 1)
    results = {**summary, "trials": [t.to_json(p99) for t in trials],
               "confirmation": [t.to_json(p99) for t in confirmed or ()]}  # fmt: skip
    (out_dir / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    summary["report"] = str(html_path)
    summary["config"] = str(out_dir / "config.pbtxt")
    return summary


def _best_of(first: search.Trial, again: search.Trial, p99_ms: float) -> float:
    """A configuration's throughput within the budget over both of its measurements."""
    return search.Trial(first.knobs, first.points + again.points).throughput_at(p99_ms)


def _user_config(model_dir: Path, loaded: Any) -> Any:
    """The model's config.pbtxt as its author wrote it (the loaded, completed config when the
    model has none), the base the tuned knobs are applied to."""
    from ..config.parse import parse_config_text

    path = model_dir / "config.pbtxt"
    if path.is_file():
        config = parse_config_text(path.read_text(encoding="utf-8"), model_dir.name)
        if not config.max_batch_size and loaded.max_batch_size:
            config.max_batch_size = loaded.max_batch_size  # completed at load
        return config
    return loaded


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        summary = tune(args)
    except TritonError as e:
        print(f"tritonlite tune: {e.message}", file=sys.stderr)
        return 2
    print(f"baseline ({summary['baseline']}): {summary['baseline_throughput_at_budget']:,.0f} "
          f"infer/s within p99 <= {summary['p99_budget_ms']:g} ms")  # fmt: skip
    print(f"best     ({summary['best']}): {summary['best_throughput_at_budget']:,.0f} infer/s"
          + (f" ({summary['gain']:.2f}x)" if summary["gain"] else ""))  # fmt: skip
    print(f"config:  {summary['config']}")
    print(f"report:  {summary['report']}")
    return 0
