"""The entry point the atheris targets share: instrument, set up, fuzz."""

from __future__ import annotations

import sys
from collections.abc import Callable

import atheris


def fuzz(test_one_input: Callable[[bytes], None]) -> None:
    # tritonlite is an editable install (a custom loader atheris's import hook does not
    # instrument reliably): instrument every loaded Python function instead.
    atheris.instrument_all()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
