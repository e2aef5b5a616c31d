"""What the latency histograms cost per request: CPU time of the core's closed loop on a no-op
model (no batching, and dynamic batching), before and after, side by side.

Each Python (a build of tritonlite) runs the same measurement in its own process: a no-op
Python backend, ``_core.closed_loop`` (C++ re-submits each request as the previous completes)
at concurrency 1 and 64 for ``--seconds``, reporting the process CPU time per request (user +
system; on a shared machine wall time is noise, CPU time much less so) and requests/s.

Run: .venv/bin/python benchmarks/bench_stats_overhead.py \\
        --baseline-python /work/wt/base/.venv/bin/python [--seconds 3] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

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
    ap.add_argument("--baseline-python", required=True, help="a tritonlite build without them")
    ap.add_argument("--python", default=sys.executable, help="this build (default: this Python)")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--repeat", type=int, default=3, help="runs per cell; the cheapest is kept")
    args = ap.parse_args()
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
