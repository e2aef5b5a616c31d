"""Records when its initialize starts and ends, for the parallel-load tests.

Config parameters: LOG_FILE (one JSON line per initialize: model, start, end, met), SLEEP_INIT
(seconds initialize sleeps), BARRIER_DIR and WAIT_FOR (comma-separated model names): initialize
marks itself present in BARRIER_DIR, then waits (60 s at most) until every WAIT_FOR model is
present too; "met" says whether they all were. Two models waiting for each other both meet only
when they initialize at the same time, whatever the machine's speed.
"""

import json
import time
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        name = args["model_name"]
        start = time.time()
        met = None
        if params.get("BARRIER_DIR"):
            barrier = Path(params["BARRIER_DIR"])
            (barrier / name).touch()
            peers = [p for p in params.get("WAIT_FOR", "").split(",") if p]
            deadline = time.monotonic() + 60
            while True:
                met = all((barrier / p).exists() for p in peers)
                if met or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
        time.sleep(float(params.get("SLEEP_INIT", "0")))
        record = {"model": name, "start": start, "end": time.time(), "met": met}
        with open(params["LOG_FILE"], "a") as f:
            f.write(json.dumps(record) + "\n")

    def execute(self, requests):
        out = np.zeros([1], np.int32)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", out)]) for _ in requests]
