"""textgen_rnn: a small real generative model on Triton's LLM tensor convention (decoupled).

The network is textgenrnn's pretrained character-level model (written here by
model_repository/generate_textgen.py from the PyPI package ``textgenrnn``): each character
embedded (100), two LSTM layers (128), an attention-weighted average over the embedding and both
layers' outputs for the last 40 characters, and a softmax over the next of 465 characters. It
runs in numpy. A token is a character; a text starts after, and ends at, the meta token ``<s>``.

Inputs: ``text_input`` (the prompt), ``max_tokens`` (16 when absent, as Triton's vLLM backend),
``stream``, ``temperature`` (0: the most likely character, deterministic; 1 when absent),
``top_p`` (nucleus sampling), ``seed`` (a seeded sampler: the same text for the same seed) and
``stop_words`` (generation stops before any of them, which are not returned). With ``stream``
each response carries the next characters, else one response the whole text; every response
carries ``num_input_tokens`` (the prompt's characters and ``<s>``) and ``num_output_tokens``.
Before each character it checks whether the request was cancelled (the client went away) and
then ends the stream with a CANCELLED error.
"""

import json
import threading
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

CONTEXT = 40  # the characters the network reads (textgenrnn's max_length)
META = "<s>"
DEFAULT_MAX_TOKENS = 16
MAX_TOKENS = 4096
MAX_PROMPT_BYTES = 1 << 20


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


class CharModel:
    """The network, from ``weights.npz`` and ``vocab.json`` in ``folder``."""

    def __init__(self, folder):
        with np.load(folder / "weights.npz") as w:
            weights = {k: w[k] for k in w.files}
        vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        self.index = {c: int(i) for c, i in vocab.items()}
        self.chars = {i: c for c, i in self.index.items()}
        self.meta = self.index[META]
        self.embedding = weights["embedding"]
        # Layer 1's input projection of every character, once: a lookup per step.
        self.input1 = self.embedding @ weights["lstm1_kernel"] + weights["lstm1_bias"]
        self.recurrent1 = weights["lstm1_recurrent"]
        self.kernel2, self.bias2 = weights["lstm2_kernel"], weights["lstm2_bias"]
        self.recurrent2 = weights["lstm2_recurrent"]
        self.attention = weights["attention"]
        self.out_kernel, self.out_bias = weights["output_kernel"], weights["output_bias"]

    def encode(self, text):
        return [self.index.get(c, 0) for c in text]  # unknown characters: 0, as textgenrnn

    @staticmethod
    def _lstm(projected, recurrent):
        units = recurrent.shape[0]
        h = np.zeros(units, np.float32)
        c = np.zeros(units, np.float32)
        out = np.empty((len(projected), units), np.float32)
        for t, x in enumerate(projected):
            z = x + h @ recurrent
            gate_i, gate_f = _sigmoid(z[:units]), _sigmoid(z[units : 2 * units])
            cell, gate_o = np.tanh(z[2 * units : 3 * units]), _sigmoid(z[3 * units :])
            c = gate_f * c + gate_i * cell
            h = gate_o * np.tanh(c)
            out[t] = h
        return out

    def next_probabilities(self, ids):
        """The next character's distribution after ``ids`` (the network reads the last 40,
        padded on the left with 0 as Keras' pad_sequences)."""
        ids = ([0] * CONTEXT + list(ids))[-CONTEXT:]
        h1 = self._lstm(self.input1[ids], self.recurrent1)
        h2 = self._lstm(h1 @ self.kernel2 + self.bias2, self.recurrent2)
        seq = np.concatenate([self.embedding[ids], h1, h2], axis=1)
        logits = seq @ self.attention
        weights = np.exp(logits - logits.max())
        pooled = (weights / weights.sum()) @ seq
        z = pooled @ self.out_kernel + self.out_bias
        p = np.exp(z - z.max())
        return p / p.sum()

    def pick(self, p, temperature, top_p, rng):
        p = p.astype(np.float64)
        p[0] = 0.0  # the padding placeholder is never generated
        if temperature == 0.0:
            return int(p.argmax())
        p = np.exp(np.log(p + 1e-12) / temperature)
        p /= p.sum()
        if top_p < 1.0:
            order = np.argsort(-p)
            keep = order[: int(np.searchsorted(np.cumsum(p[order]), top_p)) + 1]
            kept = np.zeros_like(p)
            kept[keep] = p[keep]
            p = kept / kept.sum()
        return int(rng.choice(len(p), p=p))


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
            raise pb_utils.TritonModelException("textgen_rnn must be decoupled")
        self.model = CharModel(Path(__file__).resolve().parent)
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
            thread = threading.Thread(target=self.generate, args=(sender, job), daemon=True)
            thread.start()
            self.threads.append(thread)

    def parse(self, request):
        raw = _scalar(request, "text_input", b"")
        if len(raw) > MAX_PROMPT_BYTES:
            raise ValueError(f"text_input is longer than {MAX_PROMPT_BYTES} bytes")
        max_tokens = int(_scalar(request, "max_tokens", DEFAULT_MAX_TOKENS))
        if not 0 < max_tokens <= MAX_TOKENS:
            raise ValueError(f"max_tokens must be between 1 and {MAX_TOKENS}, got {max_tokens}")
        temperature = float(_scalar(request, "temperature", 1.0))
        top_p = float(_scalar(request, "top_p", 1.0))
        if not 0.0 <= temperature <= 2.0 or not 0.0 < top_p <= 1.0:
            raise ValueError("temperature must be in [0, 2] and top_p in (0, 1]")
        seed = pb_utils.get_input_tensor_by_name(request, "seed")
        seed = None if seed is None else int(seed.as_numpy().reshape(-1)[0])
        stop_tensor = pb_utils.get_input_tensor_by_name(request, "stop_words")
        stop = []
        if stop_tensor is not None:
            stop = [w for w in (_text(s) for s in stop_tensor.as_numpy().reshape(-1)) if w]
        return {"prompt": _text(raw), "max_tokens": max_tokens, "stream": bool(
            _scalar(request, "stream", False)), "temperature": temperature, "top_p": top_p,
            "rng": np.random.default_rng(seed), "stop": stop}  # fmt: skip

    def generate(self, sender, job):
        try:
            self._generate(sender, job)
        except Exception as e:  # a failure ends the stream with its message, never silently
            sender.send(
                pb_utils.InferenceResponse(error=pb_utils.TritonError(f"textgen_rnn: {e}")),
                flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL,
            )

    def _generate(self, sender, job):
        model, stop, stream = self.model, job["stop"], job["stream"]
        ids = [model.meta] + model.encode(job["prompt"])
        input_tokens = len(ids)
        text, sent = "", 0
        # Streamed characters that could still begin a stop word are held back.
        hold = max((len(w) for w in stop), default=1) - 1
        for _ in range(job["max_tokens"]):
            if sender.is_cancelled():
                error = pb_utils.TritonError("request cancelled", pb_utils.TritonError.CANCELLED)
                sender.send(
                    pb_utils.InferenceResponse(error=error),
                    flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL,
                )
                return
            p = model.next_probabilities(ids)
            nxt = model.pick(p, job["temperature"], job["top_p"], job["rng"])
            if nxt == model.meta:
                break  # the network ended the text
            ids.append(nxt)
            text += model.chars.get(nxt, "")
            hit = next((w for w in stop if text.endswith(w)), None)
            if hit is not None:
                text = text[: len(text) - len(hit)]
                break
            if stream and len(text) - hold > sent:
                upto = len(text) - hold
                sender.send(self.response(text[sent:upto], input_tokens, upto - sent))
                sent = upto
        if stream and len(text) > sent:
            sender.send(self.response(text[sent:], input_tokens, len(text) - sent))
        if not stream:
            sender.send(self.response(text, input_tokens, len(text)))
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
