"""The tuner's report: PNG plots (matplotlib, the ``[tune]`` extra) and one HTML page.

Owns: ``pareto_front`` (the measured points no other point beats on both throughput and p99),
the plots (``throughput_vs_p99.png``: every configuration's points, the Pareto front, the
budget, the baseline and the best; ``throughput_at_budget.png``: each configuration's best
throughput within the budget; ``batch_sizes.png``: executions by batch size of the baseline and
the best) and ``report.html`` beside them, which names the best configuration and shows its
``config.pbtxt``.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .search import Point, Trial

MAIN_PLOT = "throughput_vs_p99.png"


def require_matplotlib() -> Any:
    """matplotlib.pyplot on the Agg backend, or a clear error naming the extra to install."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit(
            "tritonlite tune: the report's plots need matplotlib: pip install 'tritonlite[tune]'"
        ) from None
    return plt


def pareto_front(points: Sequence[tuple[str, Point]]) -> list[tuple[str, Point]]:
    """The points not dominated (lower-or-equal p99 and higher-or-equal throughput, one
    strictly) by another, by increasing p99."""
    ordered = sorted(points, key=lambda lp: (lp[1].p99_ms, -lp[1].throughput))
    front: list[tuple[str, Point]] = []
    best = -1.0
    for label, p in ordered:
        if p.throughput > best:
            front.append((label, p))
            best = p.throughput
    return front


def _plot_main(plt: Any, trials: Sequence[Trial], baseline: Trial, best: Trial, p99_ms: float,
               path: Path, title: str, note: str = "") -> None:  # fmt: skip
    fig, ax = plt.subplots(figsize=(9, 6.2), dpi=110)
    everything: list[tuple[str, Point]] = []
    for t in trials:
        if not t.points:
            continue
        xs = [p.p99_ms for p in t.points]
        ys = [p.throughput for p in t.points]
        everything += [(t.knobs.label(), p) for p in t.points]
        style = {"color": "0.75", "lw": 0.8, "marker": ".", "ms": 4, "zorder": 1}
        if t is baseline:
            style = {"color": "tab:red", "lw": 1.8, "marker": "s", "ms": 5, "zorder": 3,
                     "label": f"baseline ({t.knobs.label()})"}  # fmt: skip
        elif t is best:
            style = {"color": "tab:green", "lw": 2.2, "marker": "o", "ms": 6, "zorder": 4,
                     "label": f"best ({t.knobs.label()})"}  # fmt: skip
        ax.plot(xs, ys, **style)
    front = pareto_front(everything)
    if front:
        ax.step([p.p99_ms for _, p in front], [p.throughput for _, p in front], where="post",
                color="tab:blue", lw=1.2, ls="--", zorder=2, label="Pareto front")  # fmt: skip
    ax.axvline(p99_ms, color="black", lw=1, ls=":", label=f"p99 budget {p99_ms:g} ms")
    for t, color in ((baseline, "tab:red"), (best, "tab:green")):
        bp = t.best_point(p99_ms)
        if bp is not None:
            ax.annotate(f"{bp.throughput:,.0f}/s @c={bp.concurrency}",
                        (bp.p99_ms, bp.throughput), textcoords="offset points", xytext=(6, 6),
                        color=color, fontsize=8)  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("p99 latency (ms, log scale)")
    ax.set_ylabel("throughput (inferences/s)")
    ax.set_title(title + (f"\n{note}" if note else ""), fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_bars(plt: Any, trials: Sequence[Trial], baseline: Trial, best: Trial, p99_ms: float,
               path: Path) -> None:  # fmt: skip
    ranked = sorted(trials, key=lambda t: t.throughput_at(p99_ms), reverse=True)
    fig, ax = plt.subplots(figsize=(9, max(3.0, 0.28 * len(ranked) + 1)), dpi=110)
    labels = [t.knobs.label() for t in ranked]
    values = [t.throughput_at(p99_ms) for t in ranked]
    colors = ["tab:green" if t is best else "tab:red" if t is baseline else "0.6" for t in ranked]
    ax.barh(range(len(ranked)), values, color=colors)
    ax.set_yticks(range(len(ranked)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"throughput within p99 <= {p99_ms:g} ms (inferences/s)")
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_batches(plt: Any, baseline: Trial, best: Trial, p99_ms: float, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), dpi=110, sharey=False)
    for ax, t, title, color in ((axes[0], baseline, "baseline", "tab:red"),
                                (axes[1], best, "best", "tab:green")):  # fmt: skip
        p = t.best_point(p99_ms) or (t.points[-1] if t.points else None)
        sizes = sorted(p.batch_sizes) if p is not None else []
        ax.bar([str(s) for s in sizes], [p.batch_sizes[s] for s in sizes] if p else [],
               color=color)  # fmt: skip
        where = f" (c={p.concurrency})" if p is not None else ""
        ax.set_title(f"{title}{where}: executions by batch size", fontsize=9)
        ax.set_xlabel("batch size")
        ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write(
    out_dir: Path,
    model: str,
    trials: Sequence[Trial],
    baseline: Trial,
    best: Trial,
    p99_ms: float,
    best_config_text: str,
    summary: dict[str, Any],
) -> Path:
    """The plots and report.html in ``out_dir``; returns the HTML's path."""
    plt = require_matplotlib()
    out_dir.mkdir(parents=True, exist_ok=True)
    title = f"tritonlite tune {model}: throughput vs p99 per configuration"
    note = ""
    if summary.get("confirmed") == "yes":
        note = (f"measured twice (search, then back to back), within p99 <= {p99_ms:g} ms: "
                f"baseline {summary['baseline_throughput_at_budget']:,.0f}/s, best "
                f"{summary['best_throughput_at_budget']:,.0f}/s "
                f"({summary['gain']:.2f}x)")  # fmt: skip
    _plot_main(plt, trials, baseline, best, p99_ms, out_dir / MAIN_PLOT, title, note)
    _plot_bars(plt, trials, baseline, best, p99_ms, out_dir / "throughput_at_budget.png")
    _plot_batches(plt, baseline, best, p99_ms, out_dir / "batch_sizes.png")
    rows = []
    for t in sorted(trials, key=lambda t: t.throughput_at(p99_ms), reverse=True):
        bp = t.best_point(p99_ms)
        mark = " (best)" if t is best else " (baseline)" if t is baseline else ""
        rows.append(
            "<tr><td>{}</td><td>{:,.0f}</td><td>{}</td><td>{}</td><td>{}</td>"
            "<td>{}</td></tr>".format(
                html.escape(t.knobs.label() + mark),
                t.throughput_at(p99_ms),
                bp.concurrency if bp else "–",
                f"{bp.p50_ms:.2f}" if bp else "–",
                f"{bp.p99_ms:.2f}" if bp else "–",
                html.escape(t.error),
            )
        )
    facts = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in summary.items()
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tritonlite tune {html.escape(model)}</title>
<style>body{{font:14px system-ui,sans-serif;margin:1.5em;max-width:1000px}}
table{{border-collapse:collapse}}td,th{{padding:.25em .6em;border-bottom:1px solid #ddd;
text-align:left}}pre{{background:#f4f4f4;padding:.8em}}img{{max-width:100%}}</style></head>
<body>
<h1>tritonlite tune: {html.escape(model)}</h1>
<table>{facts}</table>
<h2>Throughput vs p99 latency</h2>
<p>Every configuration measured at increasing concurrency (closed loop, in process); the
dashed line is the Pareto front, the dotted one the p99 budget.</p>
<img src="{MAIN_PLOT}" alt="throughput vs p99 per configuration">
<h2>Throughput within the budget, per configuration</h2>
<img src="throughput_at_budget.png" alt="throughput within the p99 budget per configuration">
<h2>Batch sizes executed</h2>
<img src="batch_sizes.png" alt="executions by batch size, baseline and best">
<h2>Configurations</h2>
<table><tr><th>configuration</th><th>infer/s within budget</th><th>at concurrency</th>
<th>p50 ms</th><th>p99 ms</th><th>error</th></tr>
{"".join(rows)}</table>
<h2>Best config.pbtxt</h2>
<pre>{html.escape(best_config_text)}</pre>
</body></html>
"""
    path = out_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
