"""Answers each request with its parameters, the JSON text request.parameters() returns."""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [
            pb_utils.InferenceResponse(
                [pb_utils.Tensor("PARAMETERS", np.array([r.parameters()], dtype=object))]
            )
            for r in requests
        ]
