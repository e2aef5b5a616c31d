"""The callee of the bls_cancel* callers: waits for its request to be cancelled, polling
``request.is_cancelled()`` every 10 ms for up to ``wait`` seconds (a request parameter; 10 by
default), then answers a CANCELLED error if it was, else OUT = IN * 2. With the request parameter
``marker`` (a path prefix) it writes ``<marker>.started`` (what is_cancelled() said at the start)
and, once is_cancelled() turned True, ``<marker>.seen``."""

import json
import os
import time

import numpy as np
import triton_python_backend_utils as pb_utils


def write(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)  # the test never reads half a file


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            params = json.loads(request.parameters())
            marker = params.get("marker")
            if marker:
                write(marker + ".started", json.dumps(request.is_cancelled()))
            deadline = time.monotonic() + float(params.get("wait", 10))
            while not request.is_cancelled() and time.monotonic() < deadline:
                time.sleep(0.01)
            if request.is_cancelled():
                if marker:
                    write(marker + ".seen", "true")
                error = pb_utils.TritonError(
                    "the BLS request was cancelled", pb_utils.TritonError.CANCELLED
                )
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            data = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            out = pb_utils.Tensor("OUT", (data * 2).astype(np.float32))
            responses.append(pb_utils.InferenceResponse([out]))
        return responses
