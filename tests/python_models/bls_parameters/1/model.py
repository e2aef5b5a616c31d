"""Calls inspect_args through BLS with this request's parameters plus {"via": "bls"}, and
returns what inspect_args saw (its REQUEST output)."""

import json

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            parameters = json.loads(request.parameters())
            parameters["via"] = "bls"
            callee = pb_utils.InferenceRequest(
                model_name="inspect_args",
                requested_output_names=["REQUEST"],
                inputs=[pb_utils.Tensor("IN", x)],
                parameters=parameters,
            )
            response = callee.exec()
            if response.has_error():
                raise pb_utils.TritonModelException(response.error().message())
            seen = pb_utils.get_output_tensor_by_name(response, "REQUEST").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("REQUEST", seen)]))
        return responses
