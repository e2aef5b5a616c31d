"""Atheris target: the HTTP frontend's rewrite of a request head that is chunked and states a
Content-Length too (python/tritonlite/frontends/http/app.py ``_without_content_length``, which runs
on bytes straight from the socket when aiohttp's parser refuses such a head).

Input: the bytes of one read from a connection. The rewrite must not fail, and when it rewrites
it keeps everything but the head's Content-Length lines, adds ``Connection: close`` and leaves
what follows the head untouched.
"""

from __future__ import annotations

from atheris_main import fuzz
from tritonlite.frontends.http import _without_content_length


def test_one_input(data: bytes) -> None:
    fixed = _without_content_length(data)
    if fixed is None:
        return
    end = data.find(b"\r\n\r\n")
    head, rest = fixed.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    assert lines[-1] == b"Connection: close"
    assert not any(line.lower().startswith(b"content-length:") for line in lines)
    kept = [
        line
        for line in data[:end].split(b"\r\n")
        if not line.lower().startswith(b"content-length:")
    ]
    assert lines[:-1] == kept
    assert rest == data[end + 4 :]


def main() -> None:
    fuzz(test_one_input)


if __name__ == "__main__":
    main()
