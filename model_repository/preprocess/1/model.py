"""Standardizes each row of raw features (zero mean, unit variance)."""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            raw = pb_utils.get_input_tensor_by_name(request, "RAW").as_numpy()
            mean = raw.mean(axis=1, keepdims=True)
            std = raw.std(axis=1, keepdims=True) + 1e-6
            features = ((raw - mean) / std).astype(np.float32)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("FEATURES", features)]))
        return responses
