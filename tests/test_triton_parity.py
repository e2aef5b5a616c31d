"""tritonlite does what the real Triton did: every case in tests/parity/cases is run against
tritonlite and compared with the observations recorded from Triton 2.51 (tests/parity/fixtures,
made by tests/parity/record.py)."""

from __future__ import annotations

import json

import pytest
from parity.harness import all_cases, fixture_path, load_fixture, run_case

CASES = all_cases()


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_as_triton(name: str) -> None:
    case = CASES[name]
    assert fixture_path(case).exists(), f"no fixture: run tests/parity/record.py {name}"
    expected = load_fixture(case)["observations"]
    observed = run_case(case, "tritonlite")
    assert json.dumps(observed, indent=1, sort_keys=True) == json.dumps(
        expected, indent=1, sort_keys=True
    )
