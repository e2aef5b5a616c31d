"""What the latency histograms cost per request, before and after, side by side.

1. Always: the statistics update alone. ``ModelStats::RecordSuccess`` (what every successful
   request calls; it now also files five durations into the histograms) compiled from
   ``csrc/core/stats.cc`` at ``--before-rev`` (default d6a9104, main before the histograms) and
   from the working tree, with the same driver (-O2), called 5M times with varied durations:
   CPU ns per call (best of 5) and, with valgrind, instructions per call (exact, load-proof).
2. With ``--baseline-python``: the whole request path. Each Python (a build of tritonlite) runs
   a no-op Python backend under ``_core.closed_loop`` (C++ re-submits each request as the
   previous completes) at concurrency 1 and 64 for ``--seconds``, reporting process CPU time
   per request (user + system; on a shared machine wall time is noise) and requests/s.

Run: .venv/bin/python benchmarks/bench_stats_overhead.py \\
        [--baseline-python /work/wt/base/.venv/bin/python] [--seconds 3] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

DRIVER = r"""
#include <cstdio>
#include <ctime>
#include "core/stats.h"
int main(int argc, char** argv) {
  const long n = argc > 1 ? std::atol(argv[1]) : 5000000;
  double best = 1e30;
  for (int round = 0; round < (argc > 2 ? std::atoi(argv[2]) : 5); ++round) {
    tritonlite::ModelStats stats;
    uint64_t x = 12345;
    std::clock_t t0 = std::clock();
    for (long i = 0; i < n; ++i) {
      x = x * 6364136223846793005ULL + 1442695040888963407ULL;
      const uint64_t ns = (x >> 40) % 20000000;  // 0..20 ms
      stats.RecordSuccess(ns, ns / 3, 2000, ns / 2, 700, 1);
    }
    const double per = double(std::clock() - t0) * 1e9 / CLOCKS_PER_SEC / double(n);
    if (per < best) best = per;
  }
  std::printf("%.3f\n", best);
}
"""


def micro(before_rev: str) -> None:
    """RecordSuccess before (``before_rev``) and after (the working tree)."""
    with tempfile.TemporaryDirectory() as tmp:
        rows = {}
        for label in ("before", "after"):
            src = Path(tmp) / label / "core"
            src.mkdir(parents=True)
            for name in ("stats.h", "stats.cc"):
                if label == "after":
                    shutil.copy(ROOT / "csrc/core" / name, src / name)
                else:
                    text = subprocess.run(["git", "show", f"{before_rev}:csrc/core/{name}"],
                                          cwd=ROOT, capture_output=True, text=True,
                                          check=True).stdout  # fmt: skip
                    (src / name).write_text(text)
            (src.parent / "driver.cc").write_text(DRIVER)
            exe = src.parent / "driver"
            subprocess.run(["g++", "-std=c++17", "-O2", "-I", str(src.parent),
                            str(src.parent / "driver.cc"), str(src / "stats.cc"), "-o", str(exe),
                            "-pthread"], check=True)  # fmt: skip
            ns = float(subprocess.run([str(exe)], capture_output=True, text=True,
                                      check=True).stdout)  # fmt: skip
            instr = None
            if shutil.which("valgrind"):
                out = Path(tmp) / f"{label}.cg"
                subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                                str(exe), "100000", "1"], capture_output=True, check=True)  # fmt: skip
                for line in out.read_text().splitlines():
                    if line.startswith("summary:") or line.startswith("totals:"):
                        instr = int(line.split()[1]) / 100000
            rows[label] = (ns, instr)
    print("ModelStats::RecordSuccess (one successful request's statistics update)")
    print(f"{'':8} {'CPU ns/call':>12} {'instructions/call':>18}")
    for label, (ns, instr) in rows.items():
        shown = f"{instr:18.0f}" if instr is not None else f"{'(no valgrind)':>18}"
        print(f"{label:8} {ns:12.2f} {shown}")
    print(f"before: git {before_rev}, after: the working tree; instructions include the driver's "
          "loop and start-up, the same in both")  # fmt: skip

CHILD = r"""
import json, os, sys, time
import numpy as np
from google.protobuf import text_format
from tritonlite import Server, _core
from tritonlite._proto import model_config_pb2 as mc

class NoOp:
    def create_instance(self, index, kind, device_id): return self
    def execute(self, inputs, names): return {"OUT": inputs["IN"]}
    def close(self): pass

CONFIG = '''name: "noop" max_batch_size: 64
input [{ name: "IN" data_type: TYPE_FP32 dims: [ 16 ] }]
output [{ name: "OUT" data_type: TYPE_FP32 dims: [ 16 ] }]
%s'''
seconds, repeat = float(sys.argv[1]), int(sys.argv[2])
x = np.ones((1, 16), np.float32)
out = {}
for label, batching in (("direct", ""), ("dynamic batching", "dynamic_batching { }")):
    server = Server()
    server.add_model(text_format.Parse(CONFIG % batching, mc.ModelConfig()), NoOp())
    runner = server.get_model("noop").runner
    _core.closed_loop(runner, {"IN": x}, 8, 0.3)  # warm-up
    for c in (1, 64):
        best = None
        for _ in range(repeat):
            t0 = os.times()
            r = _core.closed_loop(runner, {"IN": x}, c, seconds)
            t1 = os.times()
            cpu = (t1.user - t0.user) + (t1.system - t0.system)
            row = (cpu / max(1, r["completed"]) * 1e6, r["completed"] / r["elapsed_s"])
            best = row if best is None or row[0] < best[0] else best
        out[f"{label} c={c}"] = best
    server.close()
print(json.dumps(out))
"""


def measure(python: str, seconds: float, repeat: int) -> dict[str, list[float]]:
    env = {**os.environ, "PYTHONPATH": ""}
    done = subprocess.run([python, "-c", CHILD, str(seconds), str(repeat)], capture_output=True,
                          text=True, env=env, check=True, cwd="/")  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline-python", help="a tritonlite build without them")
    ap.add_argument("--before-rev", default="d6a9104", help="git revision before (default d6a9104)")
    ap.add_argument("--python", default=sys.executable, help="this build (default: this Python)")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--repeat", type=int, default=3, help="runs per cell; the cheapest is kept")
    args = ap.parse_args()
    micro(args.before_rev)
    if not args.baseline_python:
        return
    print()
    before = measure(args.baseline_python, args.seconds, args.repeat)
    after = measure(args.python, args.seconds, args.repeat)
    print(f"{'no-op model, closed loop':28} {'before CPU/req':>15} {'after CPU/req':>15} "
          f"{'delta':>9} {'before req/s':>13} {'after req/s':>12}")  # fmt: skip
    for key in before:
        b, a = before[key], after[key]
        print(f"{key:28} {b[0]:12.2f} us {a[0]:12.2f} us {a[0] - b[0]:+7.2f} us "
              f"{b[1]:13.0f} {a[1]:12.0f}")  # fmt: skip
    print(f"before: {args.baseline_python}\nafter:  {args.python}")


if __name__ == "__main__":
    main()
