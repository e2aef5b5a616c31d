"""Answers with its stub's PID and the number of input elements it read (it touches them all),
so a test can tell that a request reached it whole and that the stub was not restarted."""

import os

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            count = 0
            for tensor in request.inputs():
                array = tensor.as_numpy()
                count += len(array.reshape(-1).tolist())
            responses.append(
                pb_utils.InferenceResponse(
                    [
                        pb_utils.Tensor("PID", np.array([os.getpid()], dtype=np.int64)),
                        pb_utils.Tensor("COUNT", np.array([count], dtype=np.int64)),
                    ]
                )
            )
        return responses
