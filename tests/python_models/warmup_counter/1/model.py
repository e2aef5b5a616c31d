"""Records every execute call of each instance (warmup ones included) in a log file, and answers
how many calls its instance had seen before the request: for the warmup tests.

Config parameters: LOG_FILE (where each call appends one JSON line: the instance, the call
number, each request's inputs as shape, dtype and values), FAIL ("raise": execute raises;
"respond": every request is answered with an error; absent: answers normally), SLEEP_INIT
(seconds initialize sleeps; its start and end times go to the log as well).
"""

import json
import time

import numpy as np
import triton_python_backend_utils as pb_utils


def _values(array):
    flat = array.reshape(-1)
    if array.dtype == object:
        return [v.decode("latin-1") if isinstance(v, bytes) else str(v) for v in flat]
    return flat.tolist()


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.instance = args["model_instance_name"]
        self.log = params["LOG_FILE"]
        self.fail = params.get("FAIL", "")
        self.inputs = [i["name"] for i in config["input"]]
        self.batching = config.get("max_batch_size", 0) > 0
        self.calls = 0
        start = time.time()
        time.sleep(float(params.get("SLEEP_INIT", "0")))
        self._write({"initialize": [start, time.time()]})

    def _write(self, record):
        record = {"instance": self.instance, **record}
        with open(self.log, "a") as f:
            f.write(json.dumps(record) + "\n")

    def execute(self, requests):
        self.calls += 1
        seen = []
        for request in requests:
            tensors = {}
            for name in self.inputs:
                tensor = pb_utils.get_input_tensor_by_name(request, name)
                if tensor is not None:
                    a = tensor.as_numpy()
                    tensors[name] = {
                        "shape": list(a.shape),
                        "dtype": str(a.dtype),
                        "values": _values(a),
                    }
            seen.append(tensors)
        self._write({"call": self.calls, "requests": seen})
        if self.fail == "raise":
            raise pb_utils.TritonModelException(f"{self.instance} refuses call {self.calls}")
        responses = []
        for _ in requests:
            if self.fail == "respond":
                error = pb_utils.TritonError(
                    f"{self.instance} answers call {self.calls} with an error"
                )
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            shape = [1, 1] if self.batching else [1]
            calls = np.full(shape, self.calls - 1, dtype=np.int64)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("CALLS_BEFORE", calls)]))
        return responses
