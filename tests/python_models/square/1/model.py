"""Decoupled with ``async def execute`` (Triton's square example): IN = n gives n responses
OUT = n, the last one with the final flag; n = 0 gives only a final flag; n < 0 is an error."""

import asyncio

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    async def execute(self, requests):
        for request in requests:
            n = int(pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()[0])
            sender = request.get_response_sender()
            if n < 0:
                sender.send(
                    pb_utils.InferenceResponse(
                        error=pb_utils.TritonError(
                            "IN must be >= 0", pb_utils.TritonError.INVALID_ARG
                        )
                    ),
                    flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL,
                )
                continue
            for i in range(n):
                await asyncio.sleep(0)
                response = pb_utils.InferenceResponse(
                    [pb_utils.Tensor("OUT", np.array([n], np.int32))]
                )
                flags = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL if i == n - 1 else 0
                sender.send(response, flags=flags)
            if n == 0:
                sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
