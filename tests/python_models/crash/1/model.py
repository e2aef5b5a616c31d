"""Identity that kills its process: IN[0] == 1 calls os._exit(3), IN[0] == 2 segfaults."""

import ctypes
import os

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            values = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            if values.size and values[0] == 1:
                os._exit(3)
            if values.size and values[0] == 2:
                ctypes.string_at(0)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", values)]))
        return responses
