"""all-MiniLM-L6-v2's WordPiece tokenizer (``tokenizers``, tokenizer.json beside this file).

Each text becomes ``input_ids`` and ``attention_mask`` and ``token_count``, the real tokens
([CLS] and [SEP] included), which ``/v1/embeddings`` reports as usage. A request of one text is
not padded at all; a request of several texts pads its rows to its longest text (the mask marks
the padding). The encoder takes these ragged: requests of any lengths batch together there. Texts longer than 256 tokens are truncated, as sentence-transformers does for this
model (max_seq_length 256).
"""

from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer

MAX_TOKENS = 256
MAX_TEXT_BYTES = 1 << 20


class TritonPythonModel:
    def initialize(self, args):
        self.tokenizer = Tokenizer.from_file(str(Path(__file__).with_name("tokenizer.json")))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.no_padding()

    def execute(self, requests):
        texts, rows, errors = [], [], {}
        for i, request in enumerate(requests):
            raw = pb_utils.get_input_tensor_by_name(request, "text_input").as_numpy().reshape(-1)
            try:
                decoded = []
                for t in raw:
                    b = t if isinstance(t, bytes) else str(t).encode()
                    if len(b) > MAX_TEXT_BYTES:
                        raise ValueError(f"a text is longer than {MAX_TEXT_BYTES} bytes")
                    decoded.append(b.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as e:
                errors[i] = str(e)
                decoded = []
            rows.append((len(texts), len(decoded)))
            texts.extend(decoded)
        encodings = self.tokenizer.encode_batch(texts) if texts else []
        responses = []
        for i, (start, count) in enumerate(rows):
            if i in errors:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(errors[i])))
                continue
            mine = encodings[start : start + count]
            width = max((len(e.ids) for e in mine), default=0)
            ids = np.zeros((count, width), np.int64)
            mask = np.zeros((count, width), np.int64)
            for r, e in enumerate(mine):
                ids[r, : len(e.ids)] = e.ids
                mask[r, : len(e.ids)] = 1
            lengths = mask.sum(axis=1, dtype=np.int32).reshape(count, 1)
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor("input_ids", ids),
                        pb_utils.Tensor("attention_mask", mask),
                        pb_utils.Tensor("token_count", lengths),
                    ]
                )
            )
        return responses
