"""bls_cancel with ``async def execute`` and ``await async_exec()`` (parameters and markers as
there). Served decoupled too (``model_transaction_policy { decoupled: true }`` added to its
config): then execute runs on the instance's background loop after execute() has returned, and
each answer goes out through the request's response sender."""

import json
import os

import triton_python_backend_utils as pb_utils


def write(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.decoupled = pb_utils.using_decoupled_model_transaction_policy(config)

    async def execute(self, requests):
        responses = []
        for request in requests:
            params = json.loads(request.parameters())
            marker = params.get("marker")
            bls = pb_utils.InferenceRequest(
                model_name=params.get("callee", "bls_cancel_callee"),
                inputs=[pb_utils.get_input_tensor_by_name(request, "IN")],
                requested_output_names=["OUT"],
                parameters=request.parameters(),
            )
            if marker:
                write(marker + ".calling", "")
            response = await bls.async_exec()
            responses.append(answer(request, response, marker))
        if not self.decoupled:
            return responses
        for request, response in zip(requests, responses):
            request.get_response_sender().send(
                response, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
            )
        return None


def answer(request, response, marker):
    error = response.error() if response.has_error() else None
    if marker:
        text = {"cancelled": request.is_cancelled(), "error": error and error.message()}
        write(marker + ".caller", json.dumps(text))
    if error is not None:
        return pb_utils.InferenceResponse(error=error)
    out = pb_utils.get_output_tensor_by_name(response, "OUT")
    return pb_utils.InferenceResponse([pb_utils.Tensor("OUT", out.as_numpy())])
