"""tiny_llm: a deterministic stand-in for an LLM, on Triton's LLM tensor convention (decoupled).

It "generates" by repeating the words of its prompt (``text_input``) in order, starting at word
``seed % words`` (0 without a seed), until ``max_tokens`` words (16 when absent) or a word equal
to one of ``stop_words``. With ``stream`` true it sends one response per word (the word, with a
leading space after the first), else one response with the whole text. Every response carries
``num_input_tokens`` (the prompt's words) and ``num_output_tokens`` (the words in it), as
Triton's vLLM backend reports usage. The config parameter ``token_delay_ms`` paces the words.

Before each word it asks whether the request was cancelled (the client went away): it then
stops, counts the cancellation in the ``tiny_llm_cancelled_total`` metric and ends the stream
with a CANCELLED error.
"""

import json
import threading
import time

import numpy as np
import triton_python_backend_utils as pb_utils

DEFAULT_MAX_TOKENS = 16
MAX_TOKENS = 4096


def _scalar(request, name, default):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return default
    values = tensor.as_numpy().reshape(-1)
    return values[0] if len(values) else default


def _text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        if not pb_utils.using_decoupled_model_transaction_policy(config):
            raise pb_utils.TritonModelException("tiny_llm must be decoupled")
        delay = config.get("parameters", {}).get("token_delay_ms", {}).get("string_value", "0")
        self.delay_s = float(delay) / 1000
        self.family = pb_utils.MetricFamily(
            name="tiny_llm_cancelled_total",
            description="Generations tiny_llm stopped because their request was cancelled",
            kind=pb_utils.MetricFamily.COUNTER,
        )
        self.cancelled = self.family.Metric(labels={"model": args["model_name"]})
        self.threads = []

    def execute(self, requests):
        self.threads = [t for t in self.threads if t.is_alive()]
        for request in requests:
            sender = request.get_response_sender()
            try:
                job = self.parse(request)
            except ValueError as e:
                error = pb_utils.TritonError(str(e), pb_utils.TritonError.INVALID_ARG)
                sender.send(
                    pb_utils.InferenceResponse(error=error),
                    flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL,
                )
                continue
            thread = threading.Thread(target=self.generate, args=(sender, *job), daemon=True)
            thread.start()
            self.threads.append(thread)

    def parse(self, request):
        prompt = _text(_scalar(request, "text_input", b""))
        max_tokens = int(_scalar(request, "max_tokens", DEFAULT_MAX_TOKENS))
        if not 0 < max_tokens <= MAX_TOKENS:
            raise ValueError(f"max_tokens must be between 1 and {MAX_TOKENS}, got {max_tokens}")
        stream = bool(_scalar(request, "stream", False))
        seed = int(_scalar(request, "seed", 0))
        stop_tensor = pb_utils.get_input_tensor_by_name(request, "stop_words")
        stop = set()
        if stop_tensor is not None:
            stop = {_text(s) for s in stop_tensor.as_numpy().reshape(-1)}
        return prompt.split(), max_tokens, stream, seed, stop

    def generate(self, sender, words, max_tokens, stream, seed, stop):
        out = []
        for i in range(max_tokens if words else 0):
            if self.delay_s:
                time.sleep(self.delay_s)
            if sender.is_cancelled():
                self.cancelled.increment(1)
                error = pb_utils.TritonError("request cancelled", pb_utils.TritonError.CANCELLED)
                sender.send(
                    pb_utils.InferenceResponse(error=error),
                    flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL,
                )
                return
            word = words[(seed + i) % len(words)]
            if word in stop:
                break
            piece = word if i == 0 else " " + word
            out.append(piece)
            if stream:
                sender.send(self.response(piece, len(words), 1))
        if not stream:
            sender.send(self.response("".join(out), len(words), len(out)))
        sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

    @staticmethod
    def response(text, input_tokens, output_tokens):
        return pb_utils.InferenceResponse([
            pb_utils.Tensor("text_output", np.array([text.encode()], dtype=np.object_)),
            pb_utils.Tensor("num_input_tokens", np.array([input_tokens], np.uint32)),
            pb_utils.Tensor("num_output_tokens", np.array([output_tokens], np.uint32)),
        ])

    def finalize(self):
        for t in self.threads:
            t.join()
