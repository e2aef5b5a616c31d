"""A BLS caller with a plain ``execute``: passes IN and its own request parameters on to the
model named by the parameter ``callee`` (bls_cancel_callee by default) and answers with what came
back (OUT, or the callee's error). Parameter ``how``: "exec" (``exec()``, the default) or
"stream" (``exec(decoupled=True)``, for a decoupled callee: the last response counts). With the
parameter ``marker`` it writes ``<marker>.calling`` just before the call and ``<marker>.caller``
after it: {"cancelled": request.is_cancelled(), "error": the BLS error's message or null}. With
``cancelled_first`` it waits (up to 10 s) for its own request to be cancelled before it calls."""

import json
import os
import time

import triton_python_backend_utils as pb_utils


def write(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class TritonPythonModel:
    def execute(self, requests):
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
            if params.get("cancelled_first"):
                deadline = time.monotonic() + 10
                while not request.is_cancelled() and time.monotonic() < deadline:
                    time.sleep(0.01)
            if marker:
                write(marker + ".calling", "")
            if params.get("how", "exec") == "stream":
                response = None
                for r in bls.exec(decoupled=True):  # every response, up to the final one
                    if response is None and (r.has_error() or r.output_tensors()):
                        response = r
                response = response or r
            else:
                response = bls.exec()
            responses.append(answer(request, response, marker))
        return responses


def answer(request, response, marker):
    error = response.error() if response.has_error() else None
    if marker:
        text = {"cancelled": request.is_cancelled(), "error": error and error.message()}
        write(marker + ".caller", json.dumps(text))
    if error is not None:
        return pb_utils.InferenceResponse(error=error)
    out = pb_utils.get_output_tensor_by_name(response, "OUT")
    return pb_utils.InferenceResponse([pb_utils.Tensor("OUT", out.as_numpy())])
