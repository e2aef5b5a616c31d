"""Decoupled (Triton's repeat example, reduced): one response per element of IN, sent from a
thread after execute has returned, then a final flag without a response."""

import threading

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.model_config = model_config = __import__("json").loads(args["model_config"])
        if not pb_utils.using_decoupled_model_transaction_policy(model_config):
            raise pb_utils.TritonModelException("repeat must be decoupled")
        self.threads = []

    def execute(self, requests):
        for request in requests:
            values = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy().copy()
            sender = request.get_response_sender()
            thread = threading.Thread(target=self.respond, args=(values, sender))
            thread.start()
            self.threads.append(thread)

    def respond(self, values, sender):
        for i, v in enumerate(values):
            sender.send(
                pb_utils.InferenceResponse(
                    [
                        pb_utils.Tensor("OUT", np.array([v], np.int32)),
                        pb_utils.Tensor("IDX", np.array([i], np.uint32)),
                    ]
                )
            )
        sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

    def finalize(self):
        for t in self.threads:
            t.join()
