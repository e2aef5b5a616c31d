"""textgen_rnn: a small real generative model (textgenrnn's pretrained character LSTM, weights
from the PyPI package, written by model_repository/generate_textgen.py) served end to end on
Triton's LLM tensor convention and driven through the OpenAI frontend by the official client."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import openai
import pytest
from serving import ServerProcess, free_port

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "model_repository"))
import generate_textgen  # noqa: E402

ENGLISH = "The best way to learn programming is to practice every day."


@pytest.fixture(scope="module")
def repo() -> Path:
    return generate_textgen.generate(generate_textgen.DEFAULT_OUT)


@pytest.fixture(scope="module")
def served_model(repo: Path) -> ModuleType:
    """The served model.py, imported as a module (pb_utils is importable outside the server)."""
    path = repo / "textgen_rnn" / "1" / "model.py"
    spec = importlib.util.spec_from_file_location("textgen_rnn_model", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def client(repo: Path) -> Iterator[openai.OpenAI]:
    port = free_port()
    with ServerProcess(repo, args=("--openai-port", str(port))):
        c = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused",
                          max_retries=0, timeout=60)  # fmt: skip
        try:
            yield c
        finally:
            c.close()


def greedy(module: ModuleType, repo: Path, prompt: str, max_tokens: int) -> str:
    model = module.CharModel(repo / "textgen_rnn" / "1")
    ids = [model.meta] + model.encode(prompt)
    out = ""
    for _ in range(max_tokens):
        p = model.next_probabilities(ids)
        p[0] = 0
        nxt = int(p.argmax())
        if nxt == model.meta:
            break
        ids.append(nxt)
        out += model.chars[nxt]
    return out


def test_the_converted_weights_model_english(served_model: ModuleType, repo: Path) -> None:
    """The network predicts English characters as a trained model does: about 1.4 bits per
    character on a plain sentence (uniform over its 465 characters: 8.9 bits; the CuDNN weights
    read without Keras' layout conversion: 38 bits)."""
    model = served_model.CharModel(repo / "textgen_rnn" / "1")
    ids = [model.meta]
    bits = 0.0
    for ch in ENGLISH:
        p = model.next_probabilities(ids)
        bits -= float(np.log2(p[model.index[ch]]))
        ids.append(model.index[ch])
    assert bits / len(ENGLISH) < 2.0, bits / len(ENGLISH)


def test_conversion_refuses_weights_of_another_layout() -> None:
    k, r = np.zeros((100, 512), np.float32), np.zeros((128, 512), np.float32)
    with pytest.raises(ValueError, match="two biases"):
        generate_textgen.lstm_from_cudnn(k, r, np.zeros(512, np.float32))
    with pytest.raises(ValueError, match="kernel shapes"):
        generate_textgen.lstm_from_cudnn(k[:, :256], r, np.zeros(1024, np.float32))


def test_completion_is_the_networks_greedy_text(
    client: openai.OpenAI, served_model: ModuleType, repo: Path
) -> None:
    expected = greedy(served_model, repo, "I think", 30)
    r = client.completions.create(model="textgen_rnn", prompt="I think", max_tokens=30,
                                  temperature=0)  # fmt: skip
    assert r.choices[0].text == expected
    assert len(expected) == 30 and r.choices[0].finish_reason == "length"
    assert r.usage is not None
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (len("I think") + 1, 30)
    assert sum(c.isalpha() for c in expected) > 15, expected  # words, not noise


def test_streamed_chat_equals_the_whole_answer(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Tell me about the weather"}]
    whole = client.chat.completions.create(model="textgen_rnn", messages=messages,  # type: ignore[arg-type]
                                           max_tokens=25, temperature=0)  # fmt: skip
    chunks = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="textgen_rnn", messages=messages, max_tokens=25, temperature=0,  # type: ignore[arg-type]
        stream=True) if c.choices]  # fmt: skip
    assert len([c for c in chunks if c]) > 5  # streamed, not one piece
    assert "".join(chunks) == whole.choices[0].message.content
    assert whole.choices[0].message.content


def test_seeded_sampling_repeats_and_stop_words_end_the_text(client: openai.OpenAI) -> None:
    def sample(seed: int, **kw: object) -> str:
        r = client.completions.create(model="textgen_rnn", prompt="Today", max_tokens=40,
                                      temperature=1.0, top_p=0.9, seed=seed, **kw)  # type: ignore[call-overload]
        return str(r.choices[0].text)

    first = sample(1)
    assert sample(1) == first  # the same seed, the same text
    assert len({first, sample(2), sample(3)}) > 1  # sampling, not a fixed answer
    r = client.completions.create(model="textgen_rnn", prompt="I think", max_tokens=40,
                                  temperature=0, stop=["e"])  # fmt: skip
    assert "e" not in r.choices[0].text and r.choices[0].finish_reason == "stop"
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="textgen_rnn", prompt="I think", max_tokens=40, temperature=0, stop=["e"],
        stream=True) if c.choices)  # fmt: skip
    assert streamed == r.choices[0].text


def test_bad_input_is_refused_in_openais_shape(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="textgen_rnn", prompt="x", temperature=5)
    # The model's own check (the frontend leaves max_tokens to the model): INVALID_ARG -> 400.
    with pytest.raises(openai.BadRequestError, match="max_tokens must be between 1 and 4096"):
        client.completions.create(model="textgen_rnn", prompt="x", max_tokens=100000)
