"""Codecs of the HTTP/REST frontend: JSON tensor data, Triton's classification extension and
HTTP content codings. Pure functions, no I/O and no knowledge of routes.

- ``tensor_from_json``: an input's JSON ``data`` (nested row-major lists) -> numpy array,
  type-checked the way Triton's JSON parser checks it (no silent float->int truncation or
  integer wrap-around). FP16 and BF16 are accepted as JSON numbers (Triton refuses them).
- ``json_data``: an output tensor -> the flat list Triton writes as ``data``.
- ``classify``: top-k "score:index[:label]" strings, formatted like Triton (C++
  ``std::to_string`` of the score).
- ``decode_body`` / ``pick_encoding`` / ``encode_body``: gzip and deflate request bodies (with a
  size limit against decompression bombs) and responses.
- ``loads`` / ``dumps``: JSON with BYTES strings carried byte-exact (invalid UTF-8 passes through
  with ``surrogateescape``, as Triton passes raw bytes). A member name given twice in one object
  keeps its first value, as Triton's parser (RapidJSON's ``FindMember``) reads it; syntax errors
  are worded and placed (byte offsets) as RapidJSON words them (``syntax_error``).
"""

from __future__ import annotations

import gzip
import json
import math
import re
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from .. import _core, sizes
from ..errors import INVALID_ARG, UNSUPPORTED, TritonError

#: Content codings the frontend understands, in Triton's order of preference.
ENCODINGS = ("gzip", "deflate")

_INT_RANGES = {
    dt: (int(np.iinfo(dt.lower()).min), int(np.iinfo(dt.lower()).max))
    for dt in ("INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64")
}
_FLOAT_TYPES = ("FP16", "BF16", "FP32", "FP64")


class BodyTooLarge(TritonError):
    """A request body (also after decompression) over ``--http-max-input-size``: HTTP 400 with
    Triton's text, as Triton answers."""

    def __init__(self, message: str) -> None:
        super().__init__(message, INVALID_ARG)


class UnsupportedEncoding(TritonError):
    """A Content-Encoding other than gzip, deflate and identity: HTTP 501, as Triton answers."""

    def __init__(self) -> None:
        super().__init__("Unsupported compression type", UNSUPPORTED)


def _bad(message: str) -> TritonError:
    return TritonError(message, INVALID_ARG)


# ---- JSON --------------------------------------------------------------------------------------


class JsonObject(dict[str, Any]):
    """A JSON object the way Triton's parser reads it: a name given more than once keeps its
    first value; ``names`` lists every member's name in document order, repeats included (what
    Triton sees when it iterates an object's members)."""

    __slots__ = ("names",)

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__()
        for key, value in pairs:
            self.setdefault(key, value)
        self.names = [key for key, _ in pairs]


def loads(raw: bytes | memoryview, *, members: bool = False) -> Any:
    """Parse a JSON document; bytes that are not UTF-8 survive inside strings. Objects whose
    names repeat keep the first value of each (as Triton); ``members``: every object is a
    ``JsonObject`` (its ``names`` in document order)."""
    # The fast path: valid UTF-8, standard JSON, no number of 20+ digits (orjson would turn an
    # integer wider than 64 bits into a float; the exact path keeps it an int), and no repeated
    # member name (orjson keeps the last value: counted below).
    if not members and _LONG_NUMBER.search(raw) is None:
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass  # invalid UTF-8, NaN/Infinity, errors: the exact path below gives the message
        else:
            try:
                if _member_count(doc) == _key_ends(raw):
                    return doc
            except RecursionError:
                pass  # nested deeper than Python recurses: the exact path says so
            # Fewer members than names in the text: a name repeats somewhere (or a string
            # holds what looks like a name's end): the exact path keeps each first value.
    text = bytes(raw).decode("utf-8", "surrogateescape")
    try:
        return json.loads(text, object_pairs_hook=JsonObject, parse_float=_finite_float)
    except _TooBig as e:
        offset = _number_offset(text, e.literal)
        raise _bad(
            "failed to parse the request JSON buffer: Number too big to be stored in double. "
            f"at {offset}"
        ) from None
    except json.JSONDecodeError as e:
        message, offset = syntax_error(text, e.msg, e.pos)
        raise _bad(f"failed to parse the request JSON buffer: {message} at {offset}") from None
    except ValueError as e:
        raise _bad(f"failed to parse the request JSON buffer: {e}") from None
    except RecursionError:
        raise _bad("failed to parse the request JSON buffer: nesting is too deep") from None


# RapidJSON's words (Triton's parser) for what Python's decoder says.
_SAME_PLACE = {
    "Expecting property name enclosed in double quotes": "Missing a name for object member.",
    "Expecting ':' delimiter": "Missing a colon after a name of object member.",
    "Extra data": "The document root must not be followed by other values.",
    "Invalid \\escape": "Invalid escape character in string.",
    "Invalid control character at": "Invalid escape character in string.",
}
_LITERALS = {"t": "true", "f": "false", "n": "null", "N": "NaN", "I": "Infinity"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"?', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")


def syntax_error(text: str, msg: str, pos: int) -> tuple[str, int]:
    """RapidJSON's message and byte offset (what Triton answers) for the error Python's JSON
    decoder found at character ``pos`` of ``text``: the same place for most, a little further
    where RapidJSON reads a literal or a number further before it gives up."""
    at = pos
    if msg == "Expecting value":
        if not text.strip():
            message = "The document is empty."
        else:
            message = "Invalid value."
            at = pos + _literal_prefix(text, pos)
    elif msg == "Expecting ',' delimiter" or msg == "Extra data":
        number = _number_tail(text, pos)
        if number is not None:
            message, at = number
        elif msg == "Extra data":
            message = _SAME_PLACE[msg]
        elif _innermost(text, pos) == "{":
            message = "Missing a comma or '}' after an object member."
        else:
            message = "Missing a comma or ']' after an array element."
    elif msg.startswith("Unterminated string"):
        message, at = "Missing a closing quotation mark in string.", len(text)
    elif msg == "Invalid \\uXXXX escape":
        message, at = "Incorrect hex digit after \\u escape in string.", max(pos - 1, 0)
    elif msg == "Invalid control character at" and text[pos : pos + 1] == "\0":
        message = "Missing a closing quotation mark in string."
    else:
        message = _SAME_PLACE.get(msg, msg)
    return message, len(text[:at].encode("utf-8", "surrogateescape"))


def _literal_prefix(text: str, pos: int) -> int:
    """How far RapidJSON reads into a broken literal or number at ``pos`` before it fails."""
    first = text[pos : pos + 1]
    if first == "-":
        rest = text[pos + 1 : pos + 2]
        return 1 + (_literal_prefix(text, pos + 1) if rest == "I" else 0)
    word = _LITERALS.get(first)
    if word is None:
        return 0
    matched = 1
    while matched < len(word) and text[pos + matched : pos + matched + 1] == word[matched]:
        matched += 1
    return matched


def _number_tail(text: str, pos: int) -> tuple[str, int] | None:
    """RapidJSON's error when a number ends in '.' or an exponent without digits (Python reads
    the number before them and then finds no ',')."""
    if pos == 0 or not text[pos - 1].isdigit():
        return None
    if text[pos : pos + 1] == ".":
        return "Miss fraction part in number.", pos + 1
    if text[pos : pos + 1] in ("e", "E"):
        sign = 1 if text[pos + 1 : pos + 2] in ("+", "-") else 0
        return "Miss exponent in number.", pos + 1 + sign
    return None


def _innermost(text: str, pos: int) -> str:
    """The bracket of the innermost array or object still open at ``pos``."""
    depth = 0
    for bracket in reversed(_BRACKETS.findall(_STRING.sub("", text[:pos]))):
        if bracket in "]}":
            depth += 1
        elif depth:
            depth -= 1
        else:
            return bracket
    return "["


class _TooBig(ValueError):
    def __init__(self, literal: str) -> None:
        super().__init__(literal)
        self.literal = literal


def _finite_float(literal: str) -> float:
    """A JSON number with a fraction or exponent; one past a double's range is RapidJSON's
    error, not infinity."""
    value = float(literal)
    if math.isinf(value):
        raise _TooBig(literal)
    return value


def _number_offset(text: str, literal: str) -> int:
    """The byte offset of the first number ``literal`` outside strings in ``text``."""
    blanked = _STRING.sub(lambda m: " " * len(m.group()), text)
    found = re.search(r"(?<![0-9.eE+\-])" + re.escape(literal) + r"(?![0-9.eE])", blanked)
    at = found.start() if found else 0
    return len(text[:at].encode("utf-8", "surrogateescape"))


def _key_ends(raw: bytes | memoryview) -> int:
    """How many times ``"`` then ':' (white space between them allowed) occur in ``raw``: once
    for every member of every object, more when strings hold that too."""
    data = raw if isinstance(raw, bytes) else bytes(raw)
    count = data.count(b'":')
    if count == data.count(b":"):
        return count
    return len(_KEY_END.findall(data))  # some ':' follow a space, or lie in strings


_KEY_END = re.compile(rb'"[ \t\r\n]*:')


def _member_count(doc: Any) -> int:
    """The members of the objects in ``doc`` that lie in objects and in arrays that start with
    an object. Each member's name ends in a ``":`` in the text, so a count equal to
    ``_key_ends`` means that no name repeated (a repeat, or an object this skips, makes the
    count smaller)."""
    if type(doc) is list:
        return _member_count({"": doc}) - 1
    if type(doc) is not dict:
        return 0
    count = len(doc)
    for value in doc.values():
        if type(value) is list:
            if value and type(value[0]) is dict:
                for item in value:
                    if type(item) is dict:
                        count += _member_count(item)
        elif type(value) is dict:
            count += _member_count(value)
    return count


_LONG_NUMBER = re.compile(rb"[0-9]{20}")


def _non_finite(obj: Any) -> bool:
    if isinstance(obj, float):
        return not math.isfinite(obj)
    if isinstance(obj, dict):
        return any(_non_finite(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(_non_finite(v) for v in obj)
    return False


def dumps(obj: Any) -> bytes:
    """Compact JSON; strings decoded with ``surrogateescape`` come back as their raw bytes (other
    lone surrogates, which have no UTF-8 form, are written as \\u escapes)."""
    try:
        out = orjson.dumps(obj)  # the fast path; it writes NaN/Infinity as null, so check those
        if b"null" not in out or not _non_finite(obj):
            return out
    except (orjson.JSONEncodeError, TypeError):
        pass  # lone surrogates, non-str keys, big integers: the exact path below
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return json.dumps(obj, separators=(",", ":")).encode("ascii")


def to_text(value: bytes) -> str:
    """A BYTES element as a JSON string (raw bytes kept, as Triton writes them)."""
    return value.decode("utf-8", "surrogateescape")


def from_text(value: str) -> bytes:
    """A JSON string as BYTES element: its UTF-8 bytes (raw bytes kept, lone surrogates too)."""
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass")


# ---- tensor data -------------------------------------------------------------------------------


def element_count(shape: Sequence[int]) -> int:
    """The exact element count of ``shape`` (``sizes.element_count``: no wrap-around)."""
    return sizes.element_count(shape)


def tensor_from_json(name: str, datatype: str, shape: Sequence[int], data: Any) -> np.ndarray:
    """Decode an input's JSON ``data`` into an array of ``shape`` (errors name the input)."""
    if not isinstance(data, list):
        raise _bad(
            f"Unable to parse 'data' of input '{name}': attempt to access JSON non-array as array"
        )
    try:
        count = element_count(shape)
    except TritonError as e:  # [0, 2**62]: no elements, and still no array can have it
        raise _bad(f"Unable to parse 'data' of input '{name}': {e.message}") from None
    if datatype == "BYTES":
        flat = _flatten(name, data)
        for v in flat:
            if not isinstance(v, str):
                raise _bad(
                    f"Unable to parse 'data' of input '{name}': attempt to access JSON non-string "
                    "as string (BYTES elements are JSON strings)"
                )
        _check_count(name, len(flat), count)
        arr = np.empty(len(flat), dtype=np.object_)
        arr[:] = [from_text(v) for v in flat]
        return arr.reshape(shape)
    dtype = _core.datatype_to_numpy(datatype)
    try:
        parsed = np.array(data)
    except ValueError:  # ragged nesting: Triton flattens any nesting in row-major order
        parsed = np.array(_flatten(name, data))
    if parsed.size == 0:
        _check_count(name, 0, count)
        return np.zeros(shape, dtype=dtype)
    kind = parsed.dtype.kind
    if datatype == "BOOL":
        if kind != "b":
            raise _bad(
                f"Unable to parse 'data' of input '{name}': attempt to access JSON non-boolean as boolean"
            )
    elif datatype in _INT_RANGES:
        expected = "unsigned-integer" if datatype.startswith("U") else "signed-integer"
        if kind in "fO":
            # Integers beyond int64 make numpy fall back to float64 or object: decode exactly.
            flat = _flatten(name, data)
            if not all(type(v) is int for v in flat):
                raise _bad(
                    f"Unable to parse 'data' of input '{name}': attempt to access JSON "
                    f"non-{expected} as {expected}"
                )
            low, high = _INT_RANGES[datatype]
            if min(flat) < low or max(flat) > high:
                raise _bad(
                    f"Unable to parse 'data' of input '{name}': value out of range for "
                    f"{datatype} [{low}, {high}]"
                )
            _check_count(name, len(flat), count)
            return np.array(flat, dtype=dtype).reshape(shape)
        if kind not in "iu":
            raise _bad(
                f"Unable to parse 'data' of input '{name}': attempt to access JSON "
                f"non-{expected} as {expected}"
            )
        low, high = _INT_RANGES[datatype]
        if int(parsed.min()) < low or int(parsed.max()) > high:
            raise _bad(
                f"Unable to parse 'data' of input '{name}': value out of range for {datatype} "
                f"[{low}, {high}]"
            )
    elif datatype in _FLOAT_TYPES:
        if kind not in "iuf":
            raise _bad(
                f"Unable to parse 'data' of input '{name}': attempt to access JSON non-number as number"
            )
    else:  # pragma: no cover - every datatype is handled above
        raise _bad(f"invalid datatype for input {name}")
    _check_count(name, parsed.size, count)
    return parsed.astype(dtype, copy=False).reshape(shape)


def _check_count(name: str, got: int, expected: int) -> None:
    if got != expected:
        raise _bad(
            f"Unable to parse 'data' of input '{name}': Shape does not match true shape of 'data' "
            f"field (expected {expected} elements, got {got})"
        )


def _flatten(name: str, data: list[Any]) -> list[Any]:
    """Row-major flattening of nested lists (strings are leaves)."""
    out: list[Any] = []
    stack: list[Any] = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                if len(stack) > 64:
                    raise _bad(f"Unable to parse 'data' of input '{name}': nesting is too deep")
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def json_data(array: np.ndarray) -> list[Any]:
    """An output's ``data``: its elements in row-major order (BYTES as strings)."""
    flat = array.reshape(-1)
    if flat.dtype == np.object_:
        return [to_text(v) if isinstance(v, bytes) else str(v) for v in flat.tolist()]
    return flat.tolist()  # type: ignore[no-any-return]


# ---- classification ------------------------------------------------------------------------------

# ---- content codings -------------------------------------------------------------------------


def decode_body(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Decompress a request body by its Content-Encoding; at most ``limit`` bytes come out."""
    coding = (encoding or "identity").strip().lower()
    if coding in ("", "identity"):
        return body
    if coding not in ENCODINGS:
        raise UnsupportedEncoding()
    # gzip: a gzip header; deflate: zlib-wrapped (what clients send), raw deflate as a fallback.
    attempts = (16 + zlib.MAX_WBITS,) if coding == "gzip" else (zlib.MAX_WBITS, -zlib.MAX_WBITS)
    for wbits in attempts:
        d = zlib.decompressobj(wbits)
        try:
            out = d.decompress(body, limit + 1)
        except zlib.error:
            continue
        if len(out) > limit:  # zlib stopped at limit + 1: a bomb is never inflated whole
            raise BodyTooLarge(
                f"Decompressed data size exceeds the maximum allowed value of {limit} bytes. "
                "Use --http-max-input-size to increase the limit."
            )
        if not d.eof:
            break
        return out
    raise _bad(f"failed to decompress the request body as '{coding}'")


def pick_encoding(accept: str | None) -> str | None:
    """The response coding an Accept-Encoding header prefers among gzip and deflate (None:
    identity)."""
    if not accept:
        return None
    best, best_q = None, 0.0
    for part in accept.split(","):
        token, _, params = part.strip().partition(";")
        coding = token.strip().lower()
        q = 1.0
        for p in params.split(";"):
            key, _, value = p.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if coding in ENCODINGS and q > best_q:
            best, best_q = coding, q
    return best


def encode_body(body: bytes, coding: str) -> bytes:
    if coding == "gzip":
        return gzip.compress(body, compresslevel=6, mtime=0)
    return zlib.compress(body, 6)
