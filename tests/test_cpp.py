"""Builds the C++ unit tests of the decoders (tests/cpp) into build/cpp-tests and runs them.

The build is incremental (CMake + Ninja): only what changed in csrc/ or tests/cpp is rebuilt.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "cpp-tests"


def _tool(name: str) -> str | None:
    """`name` from the venv's bin/ (pip's ninja, cmake) or the PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None and name == "cmake":
        try:
            import cmake  # the PyPI package scikit-build-core uses

            found = str(Path(cmake.CMAKE_BIN_DIR) / "cmake")
        except ImportError:
            pass
    return found


@pytest.fixture(scope="module")
def cpp_tests() -> Path:
    cmake = _tool("cmake")
    if cmake is None:
        pytest.skip("cmake is not installed")
    ninja = _tool("ninja")
    if not (BUILD / "CMakeCache.txt").exists():
        cmd = [cmake, "-S", str(ROOT / "tests" / "cpp"), "-B", str(BUILD)]
        if ninja is not None:
            cmd += ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"]
        subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    jobs = str(min(os.cpu_count() or 1, 4))
    build = subprocess.run(
        [cmake, "--build", str(BUILD), "-j", jobs],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout[-5000:] + build.stderr[-5000:]
    return BUILD / "tritonlite_cpp_tests"


def test_cpp_unit_tests(cpp_tests: Path) -> None:
    """HPACK, HTTP/2 frames, gRPC framing, BYTES codec and ModelInfer decoder edge cases."""
    result = subprocess.run(
        [str(cpp_tests)], check=False, capture_output=True, text=True, timeout=120
    )
    failures = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert result.returncode == 0 and not failures, result.stdout[-5000:] + result.stderr[-2000:]
    assert ", 0 failed" in result.stdout
