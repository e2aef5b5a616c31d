"""Triton's async BLS example: one request to each of two models at once with async_exec,
OUTPUT0 from the first (add_sub_onnx) and OUTPUT1 from the second (MODEL_NAME)."""

import asyncio

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    async def execute(self, requests):
        responses = []
        for request in requests:
            model_name = pb_utils.get_input_tensor_by_name(request, "MODEL_NAME").as_numpy()[0]
            in0 = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()[None]
            in1 = pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy()[None]
            calls = [
                pb_utils.InferenceRequest(
                    model_name=name,
                    requested_output_names=[output],
                    inputs=[pb_utils.Tensor("INPUT0", in0), pb_utils.Tensor("INPUT1", in1)],
                ).async_exec()
                for name, output in (("add_sub_onnx", "OUTPUT0"), (model_name.decode(), "OUTPUT1"))
            ]
            first, second = await asyncio.gather(*calls)
            for r in (first, second):
                if r.has_error():
                    raise pb_utils.TritonModelException(r.error().message())
            if pb_utils.get_output_tensor_by_name(first, "OUTPUT1") is not None:
                raise pb_utils.TritonModelException("an output that was not requested came back")
            responses.append(
                pb_utils.InferenceResponse(
                    [
                        pb_utils.Tensor(
                            "OUTPUT0",
                            pb_utils.get_output_tensor_by_name(first, "OUTPUT0").as_numpy()[0],
                        ),
                        pb_utils.Tensor(
                            "OUTPUT1",
                            pb_utils.get_output_tensor_by_name(second, "OUTPUT1").as_numpy()[0],
                        ),
                    ]
                )
            )
        return responses
