"""The best class of each row: its label (from mlp_classifier's labels.txt) and its score."""

import os

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        labels = os.path.join(args["model_repository"], "..", "mlp_classifier", "labels.txt")
        with open(labels, encoding="utf-8") as f:
            self.labels = [line.strip() for line in f if line.strip()]

    def execute(self, requests):
        responses = []
        for request in requests:
            probs = pb_utils.get_input_tensor_by_name(request, "PROBABILITIES").as_numpy()
            best = probs.argmax(axis=1)
            labels = np.array([[self.labels[i].encode()] for i in best], dtype=np.object_)
            scores = probs[np.arange(len(best)), best].reshape(-1, 1).astype(np.float32)
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("LABEL", labels),
                pb_utils.Tensor("SCORE", scores),
            ]))
        return responses
