"""Triton's simple_string: decimal strings in, their sum and difference out as strings."""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            a = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy().astype(np.int32)
            b = pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy().astype(np.int32)
            out0 = np.array([str(x).encode() for x in (a + b).flat], dtype=np.object_)
            out1 = np.array([str(x).encode() for x in (a - b).flat], dtype=np.object_)
            responses.append(
                pb_utils.InferenceResponse(
                    [
                        pb_utils.Tensor("OUTPUT0", out0.reshape(a.shape)),
                        pb_utils.Tensor("OUTPUT1", out1.reshape(a.shape)),
                    ]
                )
            )
        return responses
