"""cancel_wait, told by its input instead of request parameters (a request with parameters
takes the native gRPC frontend's Python path; this one stays on the C++ path): IN[0] == 0
answers at once with OUT = [0, 0]; otherwise it waits (up to 10 s, polling every 10 ms) for
its request to be cancelled, writing ``$CANCEL_MARKER.started`` when it starts and
``$CANCEL_MARKER.seen`` once is_cancelled() turned True, and answers CANCELLED."""

import os
import time

import numpy as np
import triton_python_backend_utils as pb_utils


def touch(path):
    with open(path, "w"):
        pass


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            value = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            if value.size == 0 or value[0] == 0:
                out = pb_utils.Tensor("OUT", np.zeros(2, np.float32))
                responses.append(pb_utils.InferenceResponse([out]))
                continue
            marker = os.environ["CANCEL_MARKER"]
            touch(marker + ".started")
            deadline = time.monotonic() + 10
            while not request.is_cancelled() and time.monotonic() < deadline:
                time.sleep(0.01)
            if request.is_cancelled():
                touch(marker + ".seen")
            error = pb_utils.TritonError("the request was cancelled", pb_utils.TritonError.CANCELLED)
            responses.append(pb_utils.InferenceResponse(error=error))
        return responses
