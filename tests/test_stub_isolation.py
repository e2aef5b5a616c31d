"""Process and code isolation of python-backend stub processes: the server never runs code a stub
sends (no pickle), treats a malformed message as the stub's fault (killed, restarted, its
requests failed, the server unharmed), a stub survives a malformed message from the server, a
load that fails half-way ends the stubs it started, and signals for the server's process group
leave the stubs to the server (graceful stop) while a dead server leaves no stubs behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from serving import ServerProcess, write_config
from tritonlite import Server, TritonError
from tritonlite import config as model_config
from tritonlite.backends.python import create_backend

IO = """backend: "python"
max_batch_size: 0
input [{ name: "IN" data_type: TYPE_FP32 dims: [ -1 ] }]
output [{ name: "OUT" data_type: TYPE_FP32 dims: [ -1 ] }]
"""
IDENTITY = """
    def execute(self, requests):
        return [
            pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy())]
            )
            for r in requests
        ]
"""


def _model(repo: Path, name: str, body: str, config: str = IO) -> Path:
    model_dir = repo / name
    (model_dir / "1").mkdir(parents=True)
    (model_dir / "1" / "model.py").write_text(
        "import triton_python_backend_utils as pb_utils\n\n\nclass TritonPythonModel:\n" + body
    )
    write_config(model_dir, f'name: "{name}"\n' + config)
    return model_dir


def _serve(server: Server, model_dir: Path) -> Any:
    config = model_config.load_model_config(model_dir)
    backend = create_backend(config, model_dir, model_dir / "1", server=server)
    server.add_model(config, backend)
    return backend


def _children(pid: int) -> set[int]:
    """Live (not zombie) child processes of ``pid``."""
    out = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out.add(int(entry))
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


# ---- the server never runs what a stub sends --------------------------------------------------

# The model reaches its own stub's sockets (model code owns its process) and sends a pickle
# whose loading would run a shell command in whichever process unpickles it.
PICKLE_BOMB = """
    def initialize(self, args):
        self.marker = {marker!r}

    def execute(self, requests):
        import os, pickle
        from tritonlite.backends.python import runtime

        class Bomb:
            def __reduce__(inner):
                return (os.system, ("touch " + self.marker,))

        runtime._process_runtime.asy.sock.send(pickle.dumps(Bomb()))
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy())]) for r in requests]
"""


def test_a_pickle_from_a_stub_never_runs_in_the_server(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    with Server() as server:
        backend = _serve(server, _model(tmp_path, "bomb", PICKLE_BOMB.format(marker=str(marker))))
        pid = backend.instances[0]._stub.proc.pid
        try:
            server.infer("bomb", {"IN": np.array([1], np.float32)})
        except TritonError as e:  # the stub may be killed before it answers
            assert "broke the IPC protocol" in e.message
        _wait_for(lambda: not _alive(pid), 20, "the stub that sent a pickle was not killed")
        time.sleep(0.2)
        assert not marker.exists(), "the server ran code sent by a stub"


# Each model sends one hostile message where the server expects a reply or on the async socket.
HOSTILE = {
    "garbage on ctl": "stub.ctl.sock.send(b'\\xc1\\x00garbage')",
    "mistyped DONE": "stub.ctl.sock.send(msgpack.packb((12, 'responses', (), None, (), None)))",
    "unknown opcode": "stub.ctl.sock.send(msgpack.packb((77, 1, 2)))",
    "tensor outside the arena": (
        "stub.ctl.sock.send(msgpack.packb((12, ((1, None, 1),), "
        "(('OUT', 'FP32', (4,), 1 << 40, 16),), ('a', 0), (), None)))"
    ),
    "block outside the arena": (
        "stub.ctl.sock.send(msgpack.packb((12, ((1, None, 1),), "
        "(('OUT', 'FP32', (4,), 0, 16),), ('a', 1 << 50), (), None)))"
    ),
    "shape and bytes disagree": (
        "stub.ctl.sock.send(msgpack.packb((12, ((1, None, 1),), "
        "(('OUT', 'FP32', (1 << 40,), 0, 16),), ('a', 0), (), None)))"
    ),
    "unsealed segment": (
        "fd = os.memfd_create('x')\n"
        "os.ftruncate(fd, 64)\n"
        "socket.send_fds(stub.ctl.sock, [msgpack.packb((12, ((1, None, 1),), "
        "(('OUT', 'FP32', (4,), 0, 16),), ('s', 0, 64), (), None))], [fd])"
    ),
    "fds with a log record": (
        "socket.send_fds(stub.asy.sock, [msgpack.packb((22, 0, 'hi'))], [0, 1, 2])"
    ),
    "garbage on async": "stub.asy.sock.send(b'\\x93\\x16')",
}
HOSTILE_MODEL = """
    def execute(self, requests):
        import os, socket, time
        import msgpack
        from tritonlite.backends.python import runtime

        stub = runtime._process_runtime
        case = int(pb_utils.get_input_tensor_by_name(requests[0], "IN").as_numpy()[0])
        if case >= 0:
{cases}
            time.sleep(30)  # the server kills this stub
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy())]) for r in requests]
"""


@pytest.fixture(scope="module")
def hostile_server(tmp_path_factory: Any) -> Any:
    cases = "".join(
        f"            if case == {i}:\n"
        + "".join(f"                {line.strip()}\n" for line in send.splitlines())
        for i, send in enumerate(HOSTILE.values())
    )
    model_dir = _model(tmp_path_factory.mktemp("hostile"), "h", HOSTILE_MODEL.format(cases=cases))
    with Server() as server:
        yield server, _serve(server, model_dir)


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_malformed_message_kills_only_that_stub(hostile_server: Any, case: str) -> None:
    server, backend = hostile_server
    instance = backend.instances[0]
    server.infer("h", {"IN": np.array([-1], np.float32)})  # a healthy stub to start with
    pid = instance._stub.proc.pid
    started = time.monotonic()
    with pytest.raises(TritonError) as info:
        server.infer("h", {"IN": np.array([list(HOSTILE).index(case)], np.float32)})
    assert time.monotonic() - started < 20  # not the model's 30 s sleep: the stub was killed
    assert info.value.status == "INTERNAL"
    assert info.value.message.startswith(
        "Stub process 'h_0' is not healthy: it broke the IPC protocol: "
    ), info.value.message
    _wait_for(lambda: not _alive(pid), 10, "the stub was not killed")
    # A new stub serves the model; the server is unharmed.
    out = server.infer("h", {"IN": np.array([-5, 6], np.float32)})
    np.testing.assert_array_equal(out["OUT"], [-5, 6])
    assert instance._stub.proc.pid != pid


def test_a_stub_answers_a_malformed_message_and_keeps_serving(tmp_path: Path) -> None:
    with Server() as server:
        backend = _serve(server, _model(tmp_path, "m", IDENTITY))
        stub = backend.instances[0]._stub
        pid = stub.proc.pid
        # Nothing is in flight: the test may use the control socket itself. Raw bytes, so that
        # this does not depend on the encoding.
        for garbage in (b"\xc1\x00", b"\x94\x02\xa1x\x90\xc0", b"\x93\x02\x91\x01\x90\xc0"):
            stub.ctl.sock.send(garbage)
            stub.ctl.sock.settimeout(20)
            reply = stub.ctl.sock.recv(1 << 16)
            assert reply, "the stub died on a malformed message"
        stub.ctl.sock.settimeout(None)
        assert _alive(pid)
        out = server.infer("m", {"IN": np.array([3, 4], np.float32)})
        np.testing.assert_array_equal(out["OUT"], [3, 4])
        assert backend.instances[0]._stub.proc.pid == pid


def test_a_rejected_batch_fails_its_requests_only(tmp_path: Path) -> None:
    from tritonlite.backends.python import ipc

    with Server() as server:
        backend = _serve(server, _model(tmp_path, "m", IDENTITY))
        stub = backend.instances[0]._stub
        pid = stub.proc.pid
        send = stub.ctl.send

        def corrupt(message: Any, fds: Any = ()) -> None:  # this one EXEC names a bad block
            stub.ctl.send = send
            send((*message[:3], ("a", 1 << 40)), fds)

        stub.ctl.send = corrupt
        with pytest.raises(TritonError) as info:
            server.infer("m", {"IN": np.array([1], np.float32)})
        assert info.value.status == "INTERNAL"
        assert "the stub process could not read the request: arena block at" in info.value.message
        out = server.infer("m", {"IN": np.array([3, 4], np.float32)})
        np.testing.assert_array_equal(out["OUT"], [3, 4])
        assert backend.instances[0]._stub.proc.pid == pid
        assert ipc.REJECTED == 14


# ---- shared memory a peer sent --------------------------------------------------------------


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize(
    "metas, location, match",
    [
        ((("X", "FP32", (4,), 0, 16),), ("a", 4096), "outside the arena"),
        ((("X", "FP32", (4,), 0, 16),), ("a", 3), "outside the arena"),
        ((("X", "FP32", (4,), 4030, 16),), ("a", 0), r"bytes \[4030, 4046\) are outside"),
        ((("X", "FP32", (4,), -8, 16),), ("a", 0), "are outside"),
        ((("X", "FP32", (5,), 0, 16),), ("a", 0), "cannot hold FP32 tensor"),
        ((("X", "FP32", (-4,), 0, 16),), ("a", 0), "invalid shape"),
        ((("X", "BYTES", (1 << 40,), 0, 16),), ("a", 0), "cannot hold BYTES tensor"),
        ((("X", "BYTES", (1,), 0, 9),), ("a", 0), "tensor data"),  # malformed serialization
        ((("X", "FP99", (4,), 0, 16),), ("a", 0), "unknown datatype 'FP99'"),
        ((("X", "FP32", (4,), 0, 16),), None, "without shared memory"),
    ],
)
def test_tensor_descriptors_must_fit_their_shared_memory(
    metas: Any, location: Any, match: str
) -> None:
    from tritonlite.backends.python.ipc import ProtocolError
    from tritonlite.backends.python.memfd import new_memfd
    from tritonlite.backends.python.shm import Arena, ArenaMap, read_tensors

    arena = Arena(4096, keep_fd=True)
    peer = ArenaMap(os.dup(arena.fd), 4096)
    peer.mm[64:73] = b"\x09\x00\x00\x00abc\x00\x00"  # a BYTES length running past the end
    for copy in (False, True):
        with pytest.raises(ProtocolError, match=match):
            read_tensors(peer, metas, location, [], copy=copy)
    fd = new_memfd("t", 64)
    before = _open_fds()
    with pytest.raises(ProtocolError):  # fds that should not be there are closed too
        read_tensors(peer, metas, ("a", 0), [fd])
    assert _open_fds() == before - 1
    arena.close()


def test_segments_must_be_sealed_memfds() -> None:
    from tritonlite.backends.python.ipc import ProtocolError
    from tritonlite.backends.python.memfd import new_memfd
    from tritonlite.backends.python.shm import read_tensors

    sealed = new_memfd("t", 64)
    with pytest.raises(PermissionError):  # nobody can shrink it under the other side's reads
        os.ftruncate(sealed, 0)
    x = np.arange(4, dtype=np.float32)
    os.pwrite(sealed, x.tobytes(), 0)
    metas = (("X", "FP32", (4,), 0, 16),)
    ((_, got),) = read_tensors(None, metas, ("s", 0, 64), [sealed])
    np.testing.assert_array_equal(got, x)
    unsealed = os.memfd_create("t")
    os.ftruncate(unsealed, 64)
    r, w = os.pipe()
    os.close(w)
    for fd, match in ((unsealed, "not sealed"), (r, "not a memfd")):
        before = _open_fds()
        with pytest.raises(ProtocolError, match=match):
            read_tensors(None, metas, ("s", 0, 64), [fd])
        assert _open_fds() == before - 1
    small = new_memfd("t", 8)
    with pytest.raises(ProtocolError, match="has 8 bytes, the message says 64"):
        read_tensors(None, metas, ("s", 0, 64), [small])


def test_ring_state_words_use_checked_atomics() -> None:
    import mmap

    from tritonlite import _core

    mm = mmap.mmap(-1, 64)
    _core.atomic_store_u32(mm, 60, 0xFFFFFFFF)
    assert _core.atomic_load_u32(mm, 60) == 0xFFFFFFFF and mm[60:64] == b"\xff" * 4
    for offset in (-4, 61, 62, 64, 1 << 40):
        with pytest.raises(TritonError, match="out of bounds or not 4-byte aligned"):
            _core.atomic_load_u32(mm, offset)
    with pytest.raises(BufferError):
        _core.atomic_store_u32(b"\x00" * 8, 0, 1)  # read-only memory


# ---- a load that fails half-way ---------------------------------------------------------------

FAILS_AT_INSTANCE_1 = """
    def initialize(self, args):
        if args["model_instance_name"].endswith("_1"):
            raise pb_utils.TritonModelException("instance 1 has no weights")

    def execute(self, requests):
        return []
"""


def test_a_load_failing_half_way_ends_the_stubs_it_started(tmp_path: Path) -> None:
    config = IO + "instance_group [{ kind: KIND_CPU count: 3 }]\n"
    model_dir = _model(tmp_path, "half", FAILS_AT_INSTANCE_1, config)
    before = _children(os.getpid())
    with Server() as server:
        with pytest.raises(TritonError, match="instance 1 has no weights"):
            _serve(server, model_dir)
        _wait_for(lambda: _children(os.getpid()) <= before, 10, "stubs were left running")


# ---- signals ----------------------------------------------------------------------------------

SLOW = """
    def initialize(self, args):
        self.started = {started!r}

    def execute(self, requests):
        import os, time
        open(os.path.join(self.started, str(time.monotonic_ns())), "w").close()
        time.sleep(1.5)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy())]) for r in requests]
"""


def _slow_repo(tmp_path: Path) -> tuple[Path, Path]:
    started = tmp_path / "started"
    started.mkdir()
    repo = tmp_path / "repo"
    config = IO + "instance_group [{ kind: KIND_CPU count: 2 }]\n"
    _model(repo, "slow", SLOW.format(started=str(started)), config)
    return repo, started


class _OwnGroupServer(ServerProcess):
    """The server in its own process group, as a shell, ``timeout`` or systemd starts it."""

    def start(self) -> _OwnGroupServer:
        import tempfile

        fd, name = tempfile.mkstemp(prefix="tritonlite-server-", suffix=".log")
        self.log_path = Path(name)
        self.proc = subprocess.Popen(self.command(), stdout=fd, stderr=fd, start_new_session=True)
        os.close(fd)
        self.wait_live()
        return self


def test_sigterm_to_the_process_group_finishes_in_flight_requests(tmp_path: Path) -> None:
    import tritonclient.grpc as grpcclient

    repo, started = _slow_repo(tmp_path)
    with _OwnGroupServer(repo) as srv:
        assert srv.proc is not None
        stubs = _children(srv.proc.pid)
        assert len(stubs) == 2
        client = grpcclient.InferenceServerClient(srv.grpc_url)
        results: list[Any] = []
        done = threading.Semaphore(0)

        def callback(result: Any, error: Any) -> None:
            results.append(error if error is not None else result.as_numpy("OUT").tolist())
            done.release()

        for i in range(4):
            inp = grpcclient.InferInput("IN", [1], "FP32")
            inp.set_data_from_numpy(np.array([i], np.float32))
            client.async_infer("slow", [inp], callback)
        _wait_for(lambda: any(started.iterdir()), 30, "no request reached the model")
        os.killpg(srv.proc.pid, signal.SIGTERM)  # as Ctrl-C, `timeout` or systemd would
        for _ in range(4):
            assert done.acquire(timeout=60), "a request was never answered"
        assert sorted(map(str, results)) == ["[0.0]", "[1.0]", "[2.0]", "[3.0]"], srv.log()
        assert srv.proc.wait(60) == 0, srv.log()
        assert "restarted" not in srv.log()
        _wait_for(lambda: not any(map(_alive, stubs)), 10, "stubs outlived the server")
        client.close()


def test_a_killed_server_leaves_no_stubs(tmp_path: Path) -> None:
    repo, _ = _slow_repo(tmp_path)
    with _OwnGroupServer(repo) as srv:
        assert srv.proc is not None
        stubs = _children(srv.proc.pid)
        assert len(stubs) == 2
        srv.proc.kill()
        srv.proc.wait()
        _wait_for(lambda: not any(map(_alive, stubs)), 15, "stubs outlived a killed server")


def test_stub_processes_ignore_sigterm_and_sigint(tmp_path: Path) -> None:
    with Server() as server:
        backend = _serve(server, _model(tmp_path, "m", IDENTITY))
        pid = backend.instances[0]._stub.proc.pid
        assert os.getpgid(pid) != os.getpgid(0)  # its own process group
        for sig in (signal.SIGTERM, signal.SIGINT):
            os.kill(pid, sig)
        time.sleep(0.3)
        assert _alive(pid)
        out = server.infer("m", {"IN": np.array([1], np.float32)})
        np.testing.assert_array_equal(out["OUT"], [1])
        assert backend.instances[0]._stub.proc.pid == pid


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
