"""Waits (up to 10 s, polling every 10 ms) for its request to be cancelled, as a model that
stops early would. Request parameters: ``marker`` (a path prefix: ``<marker>.started`` is
written with what is_cancelled() said at the start, ``<marker>.seen`` once is_cancelled() turned
True, with what the response sender said then) and ``wait`` (false: answer at once with
OUT = [request.is_cancelled(), sender.is_cancelled()])."""

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
            sender = request.get_response_sender()
            if not params.get("wait", True):
                flags = [float(request.is_cancelled()), float(sender.is_cancelled())]
                out = pb_utils.Tensor("OUT", np.array(flags, np.float32))
                responses.append(pb_utils.InferenceResponse([out]))
                continue
            marker = params["marker"]
            write(marker + ".started", json.dumps(request.is_cancelled()))
            deadline = time.monotonic() + 10
            while not request.is_cancelled() and time.monotonic() < deadline:
                time.sleep(0.01)
            if request.is_cancelled():
                write(marker + ".seen", json.dumps(sender.is_cancelled()))
            error = pb_utils.TritonError(
                "the request was cancelled", pb_utils.TritonError.CANCELLED
            )
            responses.append(pb_utils.InferenceResponse(error=error))
        return responses
