"""Reports what Triton gives a model: initialize's args, sys.path, and each request's fields."""

import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils
from helper import GREETING


class TritonPythonModel:
    def initialize(self, args):
        self.args = dict(args)
        self.args["greeting"] = GREETING
        self.args["sys_path_tail"] = sys.path[-2:]
        self.args["model_dir"] = pb_utils.get_model_dir()
        self.args["pid"] = os.getpid()
        pb_utils.Logger.log_warn(f"initialized {args['model_instance_name']}")

    def execute(self, requests):
        responses = []
        for request in requests:
            info = {
                "request_id": request.request_id(),
                "correlation_id": request.correlation_id(),
                "flags": request.flags(),
                "requested_output_names": list(request.requested_output_names()),
                "parameters": request.parameters(),
                "is_cancelled": request.is_cancelled(),
                "timeout": request.timeout(),
                "input_shape": pb_utils.get_input_tensor_by_name(request, "IN").shape(),
            }
            responses.append(
                pb_utils.InferenceResponse(
                    [
                        pb_utils.Tensor(
                            "ARGS", np.array([[json.dumps(self.args).encode()]], dtype=object)
                        ),
                        pb_utils.Tensor("REQUEST", np.array([[json.dumps(info)]], dtype=object)),
                    ]
                )
            )
        return responses
