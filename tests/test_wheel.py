"""The built wheel on a machine without CUDA: `make wheel`'s manylinux wheel installed into a
fresh venv, run in a mount namespace where every CUDA runtime on this machine is masked by an
empty tmpfs (checked from inside: libcudart cannot be loaded), imports, serves the packaged
example models and answers tritonclient gRPC and HTTP inferences."""

from __future__ import annotations

import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
import venv
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serving import free_port

ROOT = Path(__file__).resolve().parents[1]

# The module fixture builds the wheel: from scratch (a fresh CI machine) that is a full compile,
# longer than the suite's 300 s per-test limit on 2 busy cores; the subprocess calls keep their own.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


def _cuda_dirs() -> list[str]:
    """Every folder on this machine holding a CUDA runtime or a toolkit (real paths)."""
    dirs = {os.path.realpath(d) for d in glob.glob("/usr/local/cuda*")}
    ldconfig = shutil.which("ldconfig") or "/sbin/ldconfig"
    listing = subprocess.run([ldconfig, "-p"], capture_output=True, text=True).stdout
    for line in listing.splitlines():
        if "libcudart" in line and "=>" in line:
            dirs.add(os.path.dirname(os.path.realpath(line.split("=>")[1].strip())))
    for site in sys.path:  # nvidia-cuda-runtime wheels visible to this interpreter
        dirs.update(os.path.realpath(d) for d in glob.glob(f"{site}/nvidia/*/lib"))
    found = sorted(d for d in dirs if os.path.isdir(d))
    # Masking a folder masks what is inside it (and a mount point must exist when mounted on).
    return [d for d in found if not any(d.startswith(p + "/") for p in found)]


def _hidden(cmd: list[str]) -> list[str]:
    """``cmd`` run in a new user + mount namespace with the CUDA folders masked."""
    masks = "".join(f"mount -t tmpfs none {shlex.quote(d)} && " for d in _cuda_dirs())
    return ["unshare", "-rm", "sh", "-c", f"{masks}exec {shlex.join(cmd)}"]


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is needed to hide the CUDA toolkit")
    # Incremental: nothing is rebuilt when no packaged file changed.
    subprocess.run(["make", "-s", "wheel"], cwd=ROOT, check=True, timeout=900)
    wheels = sorted((ROOT / "dist").glob("tritonlite-*-manylinux_*.whl"))
    assert len(wheels) == 1, wheels
    env_dir = tmp_path_factory.mktemp("wheel") / "venv"
    venv.create(env_dir, with_pip=True)
    subprocess.run(
        [str(env_dir / "bin/python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         str(wheels[0])],
        check=True, timeout=900,
    )  # fmt: skip
    return env_dir


def test_wheel_has_no_cuda_link_and_no_build_paths(wheel_venv: Path) -> None:
    (core,) = glob.glob(str(wheel_venv / "lib/python*/site-packages/tritonlite/_core*.so"))
    dynamic = subprocess.run(["readelf", "-d", core], capture_output=True, text=True).stdout
    assert "libcudart" not in dynamic
    for line in dynamic.splitlines():
        if "RPATH" in line or "RUNPATH" in line:  # only auditwheel's $ORIGIN-relative one
            assert "[$ORIGIN" in line and "/usr/local" not in line and str(ROOT) not in line


def test_wheel_imports_without_cuda(wheel_venv: Path) -> None:
    probe = (
        "import ctypes, tritonlite, tritonlite._core as c\n"
        "for name in ('libcudart.so.13', 'libcudart.so.12', 'libcudart.so'):\n"
        "    try:\n"
        "        ctypes.CDLL(name)\n"
        "    except OSError:\n"
        "        pass\n"
        "    else:\n"
        "        raise SystemExit(name + ' loaded: CUDA is not hidden')\n"
        "print(tritonlite.__file__, c.built_with_cuda, c.cuda_runtime_library(),"
        " c.cuda_device_count())\n"
    )
    out = subprocess.run(_hidden([str(wheel_venv / "bin/python"), "-c", probe]),
                         capture_output=True, text=True, timeout=120, cwd="/")  # fmt: skip
    assert out.returncode == 0, out.stderr + out.stdout
    path, built, library, count = out.stdout.split()
    assert path.startswith(str(wheel_venv))  # the installed wheel, not the checkout
    assert (built, library, count) == ("True", "None", "0")
    # Outside the namespace the same wheel finds this machine's runtime (when it has one).
    if _cuda_dirs():
        seen = subprocess.run(
            [str(wheel_venv / "bin/python"), "-c",
             "import tritonlite._core as c; print(c.cuda_runtime_library())"],
            capture_output=True, text=True, timeout=120, cwd="/", check=True,
        ).stdout.strip()  # fmt: skip
        assert "libcudart" in seen


def test_wheel_serves_packaged_examples_without_cuda(wheel_venv: Path, tmp_path: Path) -> None:
    http, grpc, metrics = free_port(), free_port(), free_port()
    cmd = [str(wheel_venv / "bin/tritonlite"), "serve-examples", "--http-port", str(http),
           "--grpc-port", str(grpc), "--metrics-port", str(metrics)]  # fmt: skip
    log = (tmp_path / "server.log").open("w+")
    proc = subprocess.Popen(_hidden(cmd), stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        hc = httpclient.InferenceServerClient(f"localhost:{http}")
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, Path(log.name).read_text()
            try:
                if hc.is_server_ready():
                    break
            except Exception:
                pass
            assert time.monotonic() < deadline, Path(log.name).read_text()
            time.sleep(0.1)
        a = np.arange(16, dtype=np.int32).reshape(1, 16)
        b = np.full((1, 16), 3, dtype=np.int32)
        gc = grpcclient.InferenceServerClient(f"localhost:{grpc}")
        for model in ("simple", "simple_python"):  # ONNX Runtime, and a python stub process
            gi = [grpcclient.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")]
            gi[0].set_data_from_numpy(a)
            gi[1].set_data_from_numpy(b)
            g = gc.infer(model, gi)
            np.testing.assert_array_equal(g.as_numpy("OUTPUT0"), a + b)
            np.testing.assert_array_equal(g.as_numpy("OUTPUT1"), a - b)
            hi = [httpclient.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")]
            hi[0].set_data_from_numpy(a, binary_data=True)
            hi[1].set_data_from_numpy(b, binary_data=False)
            h = hc.infer(model, hi)
            np.testing.assert_array_equal(h.as_numpy("OUTPUT0"), a + b)
            np.testing.assert_array_equal(h.as_numpy("OUTPUT1"), a - b)
        gc.close()
        hc.close()
        # The dashboard's static files are package data: served from the installed wheel.
        for path, marker in (("/dashboard", b"dashboard.js"), ("/dashboard/dashboard.js", b"poll")):
            with urllib.request.urlopen(f"http://localhost:{http}{path}", timeout=30) as r:
                assert r.status == 200 and marker in r.read(), path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    assert proc.returncode == 0, Path(log.name).read_text()


def test_copy_examples_refuses_a_non_empty_dir(wheel_venv: Path, tmp_path: Path) -> None:
    tool = str(wheel_venv / "bin/tritonlite")
    dest = tmp_path / "models"
    done = subprocess.run([tool, "copy-examples", str(dest)], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (dest / "simple/1/model.onnx").is_file() and (dest / "classify/1").is_dir()
    again = subprocess.run([tool, "copy-examples", str(dest)], capture_output=True, text=True,
                           timeout=60)  # fmt: skip
    assert again.returncode == 2 and "is not empty" in again.stderr


# ---- deploy/Dockerfile's install steps, without a container engine --------------------------------

#: Paths of the image mapped to folders of the test (nothing else may appear in a RUN step).
_IMAGE_PATHS = ("/opt/tritonlite", "/tmp/wheels")


def _dockerfile_steps() -> tuple[dict[str, str], list[tuple[str, str]], list[str], list[str]]:
    """deploy/Dockerfile's ENV settings, COPY (source, destination) pairs, RUN commands and
    ENTRYPOINT, in file order (continuation lines joined)."""
    text = (ROOT / "deploy" / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    copies: list[tuple[str, str]] = []
    runs: list[str] = []
    entry: list[str] = []
    for line in text.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                env[key] = value
        elif word == "COPY":
            source, dest = rest.split()
            copies.append((source, dest))
        elif word == "RUN":
            runs.append(rest.strip())
        elif word == "ENTRYPOINT":
            import json

            entry = json.loads(rest)
    return env, copies, runs, entry


def test_dockerfile_install_steps_in_a_clean_venv(wheel_venv: Path, tmp_path: Path) -> None:
    """The Dockerfile's COPY and RUN steps, run here with its image paths mapped into tmp_path
    and `python` the base interpreter (a clean venv, as in the image), against the wheel the
    module fixture built; then its ENTRYPOINT runs. No container engine is involved."""
    env_vars, copies, runs, entry = _dockerfile_steps()
    assert runs and entry == ["tritonlite-server"], (runs, entry)

    def mapped(text: str) -> str:
        for path in _IMAGE_PATHS:
            text = text.replace(path, str(tmp_path / path.strip("/")))
        return text

    for source, dest in copies:
        matches = glob.glob(str(ROOT / source))
        assert len(matches) == 1, (source, matches)
        target = Path(mapped(dest))
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(matches[0], target)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(getattr(sys, "_base_executable", sys.executable))
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}
    for key, value in env_vars.items():
        env[key] = os.path.expandvars(mapped(value).replace("$PATH", env["PATH"]))
    for run in runs:
        command = mapped(run)
        for token in shlex.split(command):  # no host path outside tmp_path is touched
            for part in re.findall(r"(?:^|[\s=\"'])(/[\w./*-]+)", " " + token):
                assert part.startswith(str(tmp_path)) or part.startswith("$"), (run, part)
        done = subprocess.run(["sh", "-ec", command], env=env, capture_output=True, text=True,
                              timeout=900)  # fmt: skip
        assert done.returncode == 0, f"RUN {run}\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
    assert not (tmp_path / "tmp/wheels").exists()
    version = subprocess.run(entry + ["--version"], env=env, capture_output=True, text=True,
                             timeout=120, cwd="/")  # fmt: skip
    assert version.returncode == 0 and version.stdout.startswith("tritonlite "), version
    probe = subprocess.run(["python", "-c", "import tritonlite._core, sys; print(sys.prefix)"],
                           env=env, capture_output=True, text=True, timeout=120, cwd="/")  # fmt: skip
    assert probe.returncode == 0 and probe.stdout.strip() == env["VENV"], probe
