"""Sends pid_echo a BLS request whose input claims the shape N (given in the request) over an
empty array, as a hostile model could; answers with the BLS response's error message."""

import numpy as np
import triton_python_backend_utils as pb_utils


def _liar(claimed):
    """A Tensor class whose shape() says `claimed`, whatever its data."""

    class Liar(pb_utils.Tensor):
        __slots__ = ()

        def shape(self):
            return claimed

    return Liar


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            claimed = [int(d) for d in pb_utils.get_input_tensor_by_name(request, "N").as_numpy()]
            bls = pb_utils.InferenceRequest(
                model_name="pid_echo",
                requested_output_names=["PID"],
                inputs=[_liar(claimed)("F", np.zeros(0, dtype=np.float32))],
            )
            response = bls.exec()
            message = response.error().message() if response.has_error() else ""
            responses.append(
                pb_utils.InferenceResponse(
                    [pb_utils.Tensor("ERROR", np.array([message.encode()], dtype=np.object_))]
                )
            )
        return responses
