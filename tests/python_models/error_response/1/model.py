"""Identity that answers a request whose IN has a negative value with an error response
(Triton's "Error Handling" section), leaving the other requests of the batch alone."""

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            values = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            if (values < 0).any():
                responses.append(
                    pb_utils.InferenceResponse(
                        output_tensors=[],
                        error=pb_utils.TritonError(
                            "IN must not be negative", pb_utils.TritonError.INVALID_ARG
                        ),
                    )
                )
            else:
                responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", values)]))
        return responses
