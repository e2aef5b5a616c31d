"""Sentence embedding from token embeddings: mean over the real tokens (the attention mask),
then L2 normalisation, as sentence-transformers' all-MiniLM-L6-v2 (Pooling + Normalize)."""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            tokens = pb_utils.get_input_tensor_by_name(request, "token_embeddings").as_numpy()
            mask = pb_utils.get_input_tensor_by_name(request, "attention_mask").as_numpy()
            if tokens.shape[:2] != mask.shape:
                responses.append(
                    pb_utils.InferenceResponse(
                        error=pb_utils.TritonError(
                            f"token_embeddings {list(tokens.shape)} and attention_mask "
                            f"{list(mask.shape)} do not match"
                        )
                    )
                )
                continue
            weights = mask.astype(np.float32)[:, :, None]
            summed = (tokens * weights).sum(axis=1)
            mean = summed / np.maximum(weights.sum(axis=1), 1e-9)
            norm = np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor("embedding", (mean / norm).astype(np.float32))]
                )
            )
        return responses
