"""Big JSON request bodies, decoded in bounded steps (the frontend runs this in a worker thread).

Why: one ``orjson.loads`` of a 57 MiB body holds the GIL for about a second and makes one Python
object per number (900 MB of peak memory); a worker thread alone does not help, since the event
loop cannot run while one C call holds the GIL. Here the body is scanned with short
``bytes.find`` calls (the GIL changes hands between them), every long flat array of numbers (a
"span": what tritonclient sends as ``data``, always flattened) is cut out and replaced by a
small marker, the rest is parsed at once, and each span is decoded later in pieces of about
``PIECE_BYTES`` straight into the tensor's numpy array. Each C call then handles at most a
piece; the memory is the body, the tensor and one piece of Python numbers.

Semantics are those of ``http_codec.loads`` and ``tensor_from_json`` (pieces are decoded by
them, so type errors keep their texts); what the fast path cannot decode exactly (a piece that
is not valid JSON) raises ``Fallback``, and the caller parses the whole document the usual way.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import orjson

from .. import _core
from ..errors import INVALID_ARG, TritonError
from . import http_codec as codec

#: Arrays of number text longer than this are cut out and decoded in pieces.
SPAN_BYTES = 64 * 1024
#: The size of the piece of a span decoded in one go.
PIECE_BYTES = 1024 * 1024

_BACKSLASH = ord("\\")
#: What a span may hold: JSON numbers, booleans, separators and white space.
_SPAN_TEXT = b"0123456789+-.eE, \t\r\n" + b"truefals"
#: Digits as "0", to find numbers of 20 or more digits (orjson would make floats of them).
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_NUMBER = b"0" * 20


class Fallback(Exception):
    """The fast path cannot decode this document exactly: parse it the usual way."""


class Span:
    """A long flat JSON array of numbers, still as text: ``data[start:end]`` is what lies
    between its brackets."""

    __slots__ = ("data", "end", "start")

    def __init__(self, data: bytes, start: int, end: int) -> None:
        self.data, self.start, self.end = data, start, end

    def most_elements(self) -> int:
        """An upper bound of the element count: each element takes 2 bytes of text ("1,")."""
        return (self.end - self.start) // 2 + 1

    def pieces(self) -> Iterator[list[Any]]:
        """The array's elements, a piece at a time (the text is cut at commas)."""
        data, start, end = self.data, self.start, self.end
        while start < end:
            stop = min(start + PIECE_BYTES, end)
            if stop < end:
                comma = data.find(b",", stop, end)
                stop = end if comma < 0 else comma
            text = b"[" + data[start:stop] + b"]"
            try:
                if text.translate(_DIGITS_AS_ZERO).find(_LONG_NUMBER) < 0:
                    piece = orjson.loads(text)  # what codec.loads does, minus its slow search
                else:
                    piece = codec.loads(text)  # a number of 20+ digits: the exact path
            except (orjson.JSONDecodeError, TritonError):
                raise Fallback() from None
            if not isinstance(piece, list):  # pragma: no cover - brackets make a list
                raise Fallback()
            yield piece
            start = stop + 1


def loads(raw: bytes | memoryview) -> Any:
    """Parse a JSON document; long flat number arrays that are an input's ``data``
    (``inputs[i].data``, nested lists included) come back as ``Span`` objects, decoded later by
    ``tensor_from_spans``; those anywhere else are parsed as usual."""
    view = memoryview(raw)
    data = view.obj if isinstance(view.obj, bytes) and view.nbytes == len(view.obj) else bytes(view)
    key = "\x00tritonlite-span-" + secrets.token_hex(8)  # random: a client cannot forge one
    spans, marked = _cut_spans(data, codec.dumps(key))
    if not spans:
        return codec.loads(data)
    try:
        doc = codec.loads(marked)
    except TritonError:
        raise Fallback() from None  # the error text must be about the client's document
    return _restore(doc, spans, key)


def _cut_spans(data: bytes, marker_key: bytes) -> tuple[list[Span], bytes]:
    """The long number arrays outside strings, and the document with each replaced by a marker
    object ``{"<key>": <index>}``."""
    spans: list[Span] = []
    parts: list[bytes] = []
    copied = 0
    next_quote = data.find(b'"')
    next_open = data.find(b"[")
    while next_open >= 0:
        if 0 <= next_quote < next_open:  # a string comes first: skip it whole
            close = data.find(b'"', next_quote + 1)
            while close > 0 and _escaped(data, close):
                close = data.find(b'"', close + 1)
            if close < 0:
                break  # unterminated: the parser says so
            next_quote = data.find(b'"', close + 1)
            if next_open < close:
                next_open = data.find(b"[", close + 1)
            continue
        close = data.find(b"]", next_open + 1)
        if close < 0:
            break
        resume = next_open + 1
        if (
            close - next_open > SPAN_BYTES
            and not 0 <= next_quote < close
            and data.find(b"[", next_open + 1, close) < 0
            and _only_span_text(data, next_open + 1, close)
        ):
            parts.append(data[copied:next_open])
            parts.append(b"{" + marker_key + b":" + str(len(spans)).encode() + b"}")
            spans.append(Span(data, next_open + 1, close))
            copied = resume = close + 1
        next_open = data.find(b"[", resume)
    if not spans:
        return [], data
    parts.append(data[copied:])
    return spans, b"".join(parts)


def _only_span_text(data: bytes, start: int, end: int) -> bool:
    """Whether ``data[start:end]`` holds only number text (checked a piece at a time)."""
    for at in range(start, end, PIECE_BYTES):
        if data[at : min(at + PIECE_BYTES, end)].translate(None, _SPAN_TEXT):
            return False
    return True


def _escaped(data: bytes, quote: int) -> bool:
    """Whether the quote at ``quote`` is escaped (an odd number of backslashes before it)."""
    count, i = 0, quote - 1
    while i >= 0 and data[i] == _BACKSLASH:
        count, i = count + 1, i - 1
    return count % 2 == 1


def _restore(doc: Any, spans: list[Span], key: str) -> Any:
    """Markers back to spans: kept as ``Span`` under ``inputs[i].data``, parsed elsewhere."""

    def restored(obj: Any, keep: bool) -> Any:
        if isinstance(obj, dict):
            if len(obj) == 1 and key in obj:
                span = spans[obj[key]]
                return span if keep else [v for piece in span.pieces() for v in piece]
            return {k: restored(v, False) for k, v in obj.items()}
        if isinstance(obj, list):
            return [restored(v, keep) for v in obj]
        return obj

    if not isinstance(doc, dict):
        return restored(doc, False)
    out: dict[str, Any] = {}
    for name, value in doc.items():
        if name == "inputs" and isinstance(value, list):
            out[name] = [
                {k: restored(v, k == "data") for k, v in t.items()}
                if isinstance(t, dict)
                else restored(t, False)
                for t in value
            ]
        else:
            out[name] = restored(value, False)
    return out


def has_spans(data: Any) -> bool:
    """Whether an input's ``data`` holds spans (only ``loads`` above makes them)."""
    if isinstance(data, Span):
        return True
    return isinstance(data, list) and any(
        isinstance(v, (Span, list)) and has_spans(v) for v in data
    )


def tensor_from_spans(name: str, datatype: str, shape: Sequence[int], data: Any) -> np.ndarray:
    """``http_codec.tensor_from_json`` for data holding spans: the same checks and texts, the
    elements decoded a piece at a time into one array of ``shape``."""
    if datatype == "BYTES":  # numbers are no BYTES elements: the usual path says so
        return codec.tensor_from_json(name, datatype, shape, _expanded(data))
    if not isinstance(data, (list, Span)):  # pragma: no cover - only lists hold spans
        raise Fallback()
    expected = codec.element_count(shape)
    dtype = _core.datatype_to_numpy(datatype)
    # Allocate only what the text can fill (a client's shape may claim anything).
    out = np.empty(expected, dtype=dtype) if expected <= _most_elements(data) else None
    filled = 0
    for segment in _segments(name, data):
        part = codec.tensor_from_json(name, datatype, [len(segment)], segment)
        if out is not None and filled + len(part) <= expected:
            out[filled : filled + len(part)] = part
        filled += len(part)
    if filled != expected or out is None:
        raise TritonError(
            f"Unable to parse 'data' of input '{name}': Shape does not match true shape of "
            f"'data' field (expected {expected} elements, got {filled})",
            INVALID_ARG,
        )
    return out.reshape(shape)


def _most_elements(data: Any) -> int:
    if isinstance(data, Span):
        return data.most_elements()
    if isinstance(data, list):
        return sum(_most_elements(v) for v in data)
    return 1


def _segments(name: str, data: Any) -> Iterator[list[Any]]:
    """The elements in row-major order, as lists of at most about a piece each."""
    pending: list[Any] = []
    stack: list[Iterator[Any]] = [iter([data])]
    while stack:
        for item in stack[-1]:
            if isinstance(item, Span):
                if pending:
                    yield pending
                    pending = []
                yield from item.pieces()
            elif isinstance(item, list):
                if len(stack) > 65:  # the outer [data] level + codec's 64
                    raise TritonError(
                        f"Unable to parse 'data' of input '{name}': nesting is too deep",
                        INVALID_ARG,
                    )
                stack.append(iter(item))
                break
            else:
                pending.append(item)
        else:
            stack.pop()
    if pending:
        yield pending


def _expanded(data: Any) -> Any:
    if isinstance(data, Span):
        return [v for piece in data.pieces() for v in piece]
    if isinstance(data, list):
        return [_expanded(v) for v in data]
    return data
