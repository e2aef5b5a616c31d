"""BLS on a decoupled model: stream the responses of 'square' and add them up (sync exec),
and count them again with async_exec(decoupled=True) when IN is odd."""

import asyncio

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            n = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            call = pb_utils.InferenceRequest(
                model_name="square",
                requested_output_names=["OUT"],
                inputs=[pb_utils.Tensor("IN", n)],
            )
            total, count = 0, 0
            for response in call.exec(decoupled=True):
                if response.has_error():
                    raise pb_utils.TritonModelException(response.error().message())
                out = pb_utils.get_output_tensor_by_name(response, "OUT")
                if out is not None:
                    total += int(out.as_numpy()[0])
                    count += 1
            if int(n[0]) % 2:
                again = asyncio.run(self.count_async(call))
                if again != count:
                    raise pb_utils.TritonModelException(f"async_exec saw {again}, exec saw {count}")
            responses.append(
                pb_utils.InferenceResponse(
                    [
                        pb_utils.Tensor("SUM", np.array([total], np.int32)),
                        pb_utils.Tensor("COUNT", np.array([count], np.int32)),
                    ]
                )
            )
        return responses

    @staticmethod
    async def count_async(call):
        responses = await call.async_exec(decoupled=True)
        return sum(1 for r in responses if r.output_tensors())
