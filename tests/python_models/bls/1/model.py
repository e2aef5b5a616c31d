"""Triton's BLS example (sync): call the model named in MODEL_NAME with INPUT0/INPUT1 and
return its outputs. Errors of the callee become this request's error."""

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            model_name = pb_utils.get_input_tensor_by_name(request, "MODEL_NAME").as_numpy()[0]
            in0 = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            in1 = pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy()
            # The callee batches: give it a batch of one.
            infer_request = pb_utils.InferenceRequest(
                model_name=model_name.decode(),
                requested_output_names=["OUTPUT0", "OUTPUT1"],
                inputs=[pb_utils.Tensor("INPUT0", in0[None]), pb_utils.Tensor("INPUT1", in1[None])],
            )
            infer_response = infer_request.exec()
            if infer_response.has_error():
                raise pb_utils.TritonModelException(infer_response.error().message())
            out0 = pb_utils.get_output_tensor_by_name(infer_response, "OUTPUT0")
            out1 = pb_utils.get_output_tensor_by_name(infer_response, "OUTPUT1")
            responses.append(
                pb_utils.InferenceResponse(
                    [
                        pb_utils.Tensor("OUTPUT0", out0.as_numpy()[0]),
                        pb_utils.Tensor("OUTPUT1", out1.as_numpy()[0]),
                    ]
                )
            )
        return responses
