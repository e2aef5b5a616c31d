#!/usr/bin/env python
"""Generate the bundled model repository that `make serve` serves (no downloads).

Models (deterministic: the same bytes on every run):
- simple          Triton's classic: INT32 INPUT0/INPUT1 [16] -> OUTPUT0 = sum, OUTPUT1 = difference
- simple_string   the same on BYTES (decimal strings), like Triton's simple_string
- mlp_classifier  FP32 [64] -> 3 hidden layers -> PROBABILITIES [10], with labels.txt for the
                  classification extension
- sequence_accumulator  a stateless ONNX running sum whose state the server keeps between the
                  requests of a sequence (sequence_batching implicit state)
- sequence_controls     the same driven by the START / READY / CORRID control inputs the server
                  fills in: it restarts at START and echoes the correlation ID
- token_sum       ragged batching: variable-length INT32 token ids (TOKENS, allow_ragged_batch)
                  batched as one flat tensor with the ACCUMULATED_ELEMENT_COUNT_WITH_ZERO
                  offsets the server makes (OFFSETS) -> each request's SUM and LENGTH
- simple_python   `simple` written as a Triton python_backend model.py
- tiny_llm        a deterministic stand-in for an LLM on Triton's LLM tensor convention
                  (decoupled python: text_input, max_tokens, stream, seed, stop_words ->
                  text_output), the OpenAI frontend's completions demo
- classify        an ensemble: preprocess (python: standardize raw features) -> mlp_classifier
                  (ONNX) -> postprocess (python: best label and its score)

Usage: python model_repository/generate.py [--out DIR] [--if-missing]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent
OPSET = 17
IR_VERSION = 8  # loadable by onnxruntime >= 1.18

SIMPLE_CONFIG = """name: "{name}"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  {{ name: "INPUT0" data_type: {dtype} dims: [ 16 ] }},
  {{ name: "INPUT1" data_type: {dtype} dims: [ 16 ] }}
]
output [
  {{ name: "OUTPUT0" data_type: {dtype} dims: [ 16 ] }},
  {{ name: "OUTPUT1" data_type: {dtype} dims: [ 16 ] }}
]
dynamic_batching {{ max_queue_delay_microseconds: 100 }}
instance_group [{{ count: 1 kind: KIND_CPU }}]
"""

MLP_CONFIG = """name: "mlp_classifier"
platform: "onnxruntime_onnx"
max_batch_size: 64
input [{ name: "INPUT" data_type: TYPE_FP32 dims: [ 64 ] }]
output [{ name: "PROBABILITIES" data_type: TYPE_FP32 dims: [ 10 ] label_filename: "labels.txt" }]
dynamic_batching { max_queue_delay_microseconds: 500 }
instance_group [{ count: 1 kind: KIND_CPU }]
"""

LABELS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def _save(graph: onnx.GraphProto, path: Path) -> None:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="tritonlite-model-repository")  # fmt: skip
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())


def simple(out: Path, strings: bool) -> None:
    name = "simple_string" if strings else "simple"
    elem = TensorProto.STRING if strings else TensorProto.INT32
    nodes = []
    a, b = "INPUT0", "INPUT1"
    if strings:  # strings hold decimal numbers; compute in INT32
        nodes += [helper.make_node("Cast", ["INPUT0"], ["a"], to=TensorProto.INT32),
                  helper.make_node("Cast", ["INPUT1"], ["b"], to=TensorProto.INT32)]  # fmt: skip
        a, b = "a", "b"
    sums, diffs = ("sum", "diff") if strings else ("OUTPUT0", "OUTPUT1")
    nodes += [helper.make_node("Add", [a, b], [sums]), helper.make_node("Sub", [a, b], [diffs])]
    if strings:
        nodes += [helper.make_node("Cast", ["sum"], ["OUTPUT0"], to=TensorProto.STRING),
                  helper.make_node("Cast", ["diff"], ["OUTPUT1"], to=TensorProto.STRING)]  # fmt: skip
    io = [helper.make_tensor_value_info(n, elem, ["batch", 16]) for n in ("INPUT0", "INPUT1")]
    outs = [helper.make_tensor_value_info(n, elem, ["batch", 16]) for n in ("OUTPUT0", "OUTPUT1")]
    _save(helper.make_graph(nodes, name, io, outs), out / name / "1" / "model.onnx")
    dtype = "TYPE_STRING" if strings else "TYPE_INT32"
    (out / name / "config.pbtxt").write_text(SIMPLE_CONFIG.format(name=name, dtype=dtype))


def mlp_classifier(out: Path) -> None:
    rng = np.random.default_rng(20261128)
    sizes = [64, 128, 128, 64, 10]
    nodes, inits, x = [], [], "INPUT"
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        w = (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(np.float32)
        b = (0.01 * rng.standard_normal(n_out)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes += [helper.make_node("MatMul", [x, f"w{i}"], [f"mm{i}"]),
                  helper.make_node("Add", [f"mm{i}", f"b{i}"], [f"h{i}"])]  # fmt: skip
        x = f"h{i}"
        if i < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [x], [f"r{i}"]))
            x = f"r{i}"
    nodes.append(helper.make_node("Softmax", [x], ["PROBABILITIES"], axis=-1))
    graph = helper.make_graph(
        nodes, "mlp_classifier",
        [helper.make_tensor_value_info("INPUT", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("PROBABILITIES", TensorProto.FLOAT, ["batch", 10])],
        inits,
    )  # fmt: skip
    _save(graph, out / "mlp_classifier" / "1" / "model.onnx")
    (out / "mlp_classifier" / "config.pbtxt").write_text(MLP_CONFIG)
    (out / "mlp_classifier" / "labels.txt").write_text("\n".join(LABELS) + "\n")


ACCUMULATOR_CONFIG = """name: "sequence_accumulator"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [{ name: "INPUT" data_type: TYPE_FP32 dims: [ 1 ] }]
output [{ name: "OUTPUT" data_type: TYPE_FP32 dims: [ 1 ] }]
sequence_batching {
  max_sequence_idle_microseconds: 60000000
  direct { }
  state [{
    input_name: "STATE_IN" output_name: "STATE_OUT" data_type: TYPE_FP32 dims: [ 1 ]
    initial_state { data_type: TYPE_FP32 dims: [ 1 ] zero_data: true name: "zero" }
  }]
}
instance_group [{ count: 1 kind: KIND_CPU }]
"""

CONTROLS_CONFIG = """name: "sequence_controls"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [{ name: "INPUT" data_type: TYPE_FP32 dims: [ 1 ] }]
output [
  { name: "OUTPUT" data_type: TYPE_FP32 dims: [ 1 ] },
  { name: "CORRID_OUT" data_type: TYPE_UINT64 dims: [ 1 ] }
]
sequence_batching {
  max_sequence_idle_microseconds: 60000000
  oldest { max_candidate_sequences: 16 preferred_batch_size: [ 8 ] max_queue_delay_microseconds: 100 }
  control_input [
    { name: "START" control [{ kind: CONTROL_SEQUENCE_START fp32_false_true: [ 0, 1 ] }] },
    { name: "READY" control [{ kind: CONTROL_SEQUENCE_READY fp32_false_true: [ 0, 1 ] }] },
    { name: "CORRID" control [{ kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 }] }
  ]
  state [{
    input_name: "STATE_IN" output_name: "STATE_OUT" data_type: TYPE_FP32 dims: [ 1 ]
    initial_state { data_type: TYPE_FP32 dims: [ 1 ] zero_data: true name: "zero" }
  }]
}
instance_group [{ count: 1 kind: KIND_CPU }]
"""


def _f32(name: str) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", 1])


def sequence_accumulator(out: Path) -> None:
    """OUTPUT = INPUT + STATE_IN; STATE_OUT = OUTPUT (the server feeds it back)."""
    nodes = [helper.make_node("Add", ["INPUT", "STATE_IN"], ["OUTPUT"]),
             helper.make_node("Identity", ["OUTPUT"], ["STATE_OUT"])]  # fmt: skip
    graph = helper.make_graph(nodes, "sequence_accumulator", [_f32("INPUT"), _f32("STATE_IN")],
                              [_f32("OUTPUT"), _f32("STATE_OUT")])  # fmt: skip
    _save(graph, out / "sequence_accumulator" / "1" / "model.onnx")
    (out / "sequence_accumulator" / "config.pbtxt").write_text(ACCUMULATOR_CONFIG)


TOKEN_SUM_CONFIG = """name: "token_sum"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [{ name: "TOKENS" data_type: TYPE_INT32 dims: [ -1 ] allow_ragged_batch: true }]
batch_input [{
  kind: BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO
  target_name: "OFFSETS"
  data_type: TYPE_INT32
  source_input: "TOKENS"
}]
output [
  { name: "SUM" data_type: TYPE_INT32 dims: [ 1 ] },
  { name: "LENGTH" data_type: TYPE_INT32 dims: [ 1 ] }
]
dynamic_batching { max_queue_delay_microseconds: 100000 }
instance_group [{ count: 1 kind: KIND_CPU }]
"""


def token_sum(out: Path) -> None:
    """TOKENS: every request's token ids concatenated ([total]); OFFSETS: [0, end of request 1,
    end of request 2, ...]. SUM[i] = sum of request i's tokens, LENGTH[i] = its token count,
    both [requests, 1] (a prefix sum read at the offsets)."""
    nodes = [
        helper.make_node("CumSum", ["TOKENS", "axis"], ["running"]),
        helper.make_node("Concat", ["zero", "running"], ["prefix"], axis=0),
        helper.make_node("Slice", ["OFFSETS", "first", "last"], ["starts"]),
        helper.make_node("Slice", ["OFFSETS", "second", "end"], ["ends"]),
        helper.make_node("Gather", ["prefix", "ends"], ["upto_end"], axis=0),
        helper.make_node("Gather", ["prefix", "starts"], ["upto_start"], axis=0),
        helper.make_node("Sub", ["upto_end", "upto_start"], ["sums"]),
        helper.make_node("Sub", ["ends", "starts"], ["lengths"]),
        helper.make_node("Unsqueeze", ["sums", "column"], ["SUM"]),
        helper.make_node("Unsqueeze", ["lengths", "column"], ["LENGTH"]),
    ]
    constants = [
        numpy_helper.from_array(np.array(0, np.int64), "axis"),
        numpy_helper.from_array(np.zeros(1, np.int32), "zero"),
        numpy_helper.from_array(np.array([0], np.int64), "first"),
        numpy_helper.from_array(np.array([-1], np.int64), "last"),
        numpy_helper.from_array(np.array([1], np.int64), "second"),
        numpy_helper.from_array(np.array([np.iinfo(np.int64).max], np.int64), "end"),
        numpy_helper.from_array(np.array([1], np.int64), "column"),
    ]
    graph = helper.make_graph(
        nodes, "token_sum",
        [helper.make_tensor_value_info("TOKENS", TensorProto.INT32, ["tokens"]),
         helper.make_tensor_value_info("OFFSETS", TensorProto.INT32, ["offsets"])],
        [helper.make_tensor_value_info("SUM", TensorProto.INT32, ["batch", 1]),
         helper.make_tensor_value_info("LENGTH", TensorProto.INT32, ["batch", 1])],
        constants,
    )  # fmt: skip
    _save(graph, out / "token_sum" / "1" / "model.onnx")
    (out / "token_sum" / "config.pbtxt").write_text(TOKEN_SUM_CONFIG)


def sequence_controls(out: Path) -> None:
    """OUTPUT = READY * (INPUT + STATE_IN * (1 - START)); STATE_OUT = OUTPUT; CORRID_OUT = CORRID."""
    one = numpy_helper.from_array(np.ones((1,), np.float32), "one")
    nodes = [
        helper.make_node("Sub", ["one", "START"], ["keep"]),
        helper.make_node("Mul", ["STATE_IN", "keep"], ["carried"]),
        helper.make_node("Add", ["INPUT", "carried"], ["sum"]),
        helper.make_node("Mul", ["sum", "READY"], ["OUTPUT"]),
        helper.make_node("Identity", ["OUTPUT"], ["STATE_OUT"]),
        helper.make_node("Identity", ["CORRID"], ["CORRID_OUT"]),
    ]
    corrid = [helper.make_tensor_value_info(n, TensorProto.UINT64, ["batch", 1])
              for n in ("CORRID", "CORRID_OUT")]  # fmt: skip
    graph = helper.make_graph(
        nodes, "sequence_controls",
        [_f32("INPUT"), _f32("START"), _f32("READY"), corrid[0], _f32("STATE_IN")],
        [_f32("OUTPUT"), corrid[1], _f32("STATE_OUT")],
        [one],
    )  # fmt: skip
    _save(graph, out / "sequence_controls" / "1" / "model.onnx")
    (out / "sequence_controls" / "config.pbtxt").write_text(CONTROLS_CONFIG)


SIMPLE_PYTHON_CONFIG = """name: "simple_python"
backend: "python"
max_batch_size: 8
input [
  { name: "INPUT0" data_type: TYPE_INT32 dims: [ 16 ] },
  { name: "INPUT1" data_type: TYPE_INT32 dims: [ 16 ] }
]
output [
  { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 16 ] },
  { name: "OUTPUT1" data_type: TYPE_INT32 dims: [ 16 ] }
]
dynamic_batching { max_queue_delay_microseconds: 100 }
instance_group [{ count: 1 kind: KIND_CPU }]
"""

SIMPLE_PYTHON_MODEL = '''"""Triton's `simple` as a python_backend model: OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = difference."""

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            a = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            b = pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy()
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUTPUT0", a + b),
                pb_utils.Tensor("OUTPUT1", a - b),
            ]))
        return responses
'''

PREPROCESS_CONFIG = """name: "preprocess"
backend: "python"
max_batch_size: 64
input [{ name: "RAW" data_type: TYPE_FP32 dims: [ 64 ] }]
output [{ name: "FEATURES" data_type: TYPE_FP32 dims: [ 64 ] }]
instance_group [{ count: 1 kind: KIND_CPU }]
"""

PREPROCESS_MODEL = '''"""Standardizes each row of raw features (zero mean, unit variance)."""

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
'''

POSTPROCESS_CONFIG = """name: "postprocess"
backend: "python"
max_batch_size: 64
input [{ name: "PROBABILITIES" data_type: TYPE_FP32 dims: [ 10 ] }]
output [
  { name: "LABEL" data_type: TYPE_STRING dims: [ 1 ] },
  { name: "SCORE" data_type: TYPE_FP32 dims: [ 1 ] }
]
instance_group [{ count: 1 kind: KIND_CPU }]
"""

POSTPROCESS_MODEL = '''"""The best class of each row: its label (from mlp_classifier's labels.txt) and its score."""

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
'''

CLASSIFY_CONFIG = """name: "classify"
platform: "ensemble"
max_batch_size: 64
input [{ name: "RAW" data_type: TYPE_FP32 dims: [ 64 ] }]
output [
  { name: "LABEL" data_type: TYPE_STRING dims: [ 1 ] },
  { name: "SCORE" data_type: TYPE_FP32 dims: [ 1 ] }
]
ensemble_scheduling {
  step [
    {
      model_name: "preprocess" model_version: -1
      input_map { key: "RAW" value: "RAW" }
      output_map { key: "FEATURES" value: "features" }
    },
    {
      model_name: "mlp_classifier" model_version: -1
      input_map { key: "INPUT" value: "features" }
      output_map { key: "PROBABILITIES" value: "probabilities" }
    },
    {
      model_name: "postprocess" model_version: -1
      input_map { key: "PROBABILITIES" value: "probabilities" }
      output_map [{ key: "LABEL" value: "LABEL" }, { key: "SCORE" value: "SCORE" }]
    }
  ]
}
"""


TINY_LLM_CONFIG = """name: "tiny_llm"
backend: "python"
max_batch_size: 0
model_transaction_policy { decoupled: true }
input [
  { name: "text_input" data_type: TYPE_STRING dims: [ 1 ] },
  { name: "max_tokens" data_type: TYPE_INT32 dims: [ 1 ] optional: true },
  { name: "stream" data_type: TYPE_BOOL dims: [ 1 ] optional: true },
  { name: "seed" data_type: TYPE_UINT64 dims: [ 1 ] optional: true },
  { name: "stop_words" data_type: TYPE_STRING dims: [ -1 ] optional: true }
]
output [
  { name: "text_output" data_type: TYPE_STRING dims: [ 1 ] },
  { name: "num_input_tokens" data_type: TYPE_UINT32 dims: [ 1 ] },
  { name: "num_output_tokens" data_type: TYPE_UINT32 dims: [ 1 ] }
]
parameters { key: "token_delay_ms" value: { string_value: "0" } }
instance_group [{ count: 1 kind: KIND_CPU }]
"""

TINY_LLM_MODEL = '''"""tiny_llm: a deterministic stand-in for an LLM, on Triton's LLM tensor convention (decoupled).

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
'''


def python_models(out: Path) -> None:
    for name, config, model in (
        ("simple_python", SIMPLE_PYTHON_CONFIG, SIMPLE_PYTHON_MODEL),
        ("preprocess", PREPROCESS_CONFIG, PREPROCESS_MODEL),
        ("postprocess", POSTPROCESS_CONFIG, POSTPROCESS_MODEL),
        ("tiny_llm", TINY_LLM_CONFIG, TINY_LLM_MODEL),
    ):
        (out / name / "1").mkdir(parents=True, exist_ok=True)
        (out / name / "config.pbtxt").write_text(config)
        (out / name / "1" / "model.py").write_text(model)
    (out / "classify" / "1").mkdir(parents=True, exist_ok=True)
    (out / "classify" / "config.pbtxt").write_text(CLASSIFY_CONFIG)
    (out / "classify" / "1" / ".gitkeep").write_text("")  # an ensemble's version dir is empty


GENERATED = [
    "simple/1/model.onnx", "simple_string/1/model.onnx", "mlp_classifier/1/model.onnx",
    "sequence_accumulator/1/model.onnx", "sequence_controls/1/model.onnx",
    "token_sum/1/model.onnx",
    "simple_python/1/model.py", "preprocess/1/model.py", "postprocess/1/model.py",
    "tiny_llm/1/model.py",
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--if-missing", action="store_true", help="only when a model file is missing")
    args = parser.parse_args()
    if args.if_missing and all((args.out / f).exists() for f in GENERATED):
        return
    simple(args.out, strings=False)
    simple(args.out, strings=True)
    mlp_classifier(args.out)
    sequence_accumulator(args.out)
    sequence_controls(args.out)
    token_sum(args.out)
    python_models(args.out)
    print(f"model repository written to {args.out}")


if __name__ == "__main__":
    main()
