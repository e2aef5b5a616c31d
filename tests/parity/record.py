"""Record what the real Triton does for each parity case, as committed fixtures.

    .venv/bin/python tests/parity/record.py [CASE ...]            # real Triton -> fixtures/
    .venv/bin/python tests/parity/record.py --against tritonlite CASE   # compare, no writing

The real Triton is ``../shared/tools/triton/tritonserver`` (Triton 2.51, CPU, python backend;
``TRITON_SERVER`` overrides). A fixture keeps the command that produced it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from parity.harness import FIXTURES, TRITON, all_cases, fixture_path, load_fixture, run_case


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", help="case names (default: all)")
    parser.add_argument("--against", choices=["triton", "tritonlite"], default="triton")
    options = parser.parse_args()
    cases = all_cases()
    names = options.cases or sorted(cases)
    unknown = [n for n in names if n not in cases]
    if unknown:
        parser.error(f"unknown cases: {unknown}; known: {sorted(cases)}")
    failed = 0
    for name in names:
        case = cases[name]
        observed = run_case(case, options.against)
        if options.against == "triton":
            FIXTURES.mkdir(exist_ok=True)
            fixture = {
                "case": name,
                "about": case.about,
                "server": "NVIDIA Triton Inference Server 2.51 (CPU, python backend)",
                "command": f"{Path(sys.executable).name} tests/parity/record.py {name}",
                "triton": str(TRITON.name),
                "recorded": datetime.date.today().isoformat(),
                "observations": observed,
            }
            fixture_path(case).write_text(json.dumps(fixture, indent=1, sort_keys=True) + "\n")
            print(f"recorded {name}")
        else:
            expected = load_fixture(case)["observations"]
            same = observed == expected
            failed += not same
            print(f"{'same' if same else 'DIFFERENT'}: {name}")
            if not same:
                print(" triton:    ", json.dumps(expected, sort_keys=True))
                print(" tritonlite:", json.dumps(observed, sort_keys=True))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
