"""The system shared-memory registry shared by the HTTP and gRPC frontends: registration,
Triton's error texts, bounds checks, zero-copy input views, output writes, thread safety."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from tritonlite import Server, Tensor, TritonError
from tritonlite.shared_memory import (
    RESERVED_KEY_PREFIX,
    CudaSharedMemoryRegistry,
    SystemSharedMemoryRegistry,
)

SIZE = 3 * 4096 + 100  # spans pages; offsets below are deliberately not page aligned


@pytest.fixture
def key() -> Iterator[str]:
    name = f"tl_shm_test_{os.getpid()}_{threading.get_ident()}"
    path = Path("/dev/shm") / name
    with open(path, "wb") as f:
        f.write(bytes(range(256)) * (SIZE // 256) + bytes(SIZE % 256))
    yield "/" + name
    path.unlink(missing_ok=True)


@pytest.fixture
def registry() -> Iterator[SystemSharedMemoryRegistry]:
    r = SystemSharedMemoryRegistry()
    yield r
    r.close()


def shm_file(key: str) -> Path:
    return Path("/dev/shm") / key.lstrip("/")


def test_register_status_unregister(registry: SystemSharedMemoryRegistry, key: str) -> None:
    registry.register("a", key, 0, 64)
    registry.register("b", key.lstrip("/"), 4100, 200)  # key without '/', unaligned offset
    assert registry.status() == [
        {"name": "a", "key": key, "offset": 0, "byte_size": 64},
        {"name": "b", "key": key.lstrip("/"), "offset": 4100, "byte_size": 200},
    ]
    assert registry.status("b") == [
        {"name": "b", "key": key.lstrip("/"), "offset": 4100, "byte_size": 200}
    ]
    assert "a" in registry and "zz" not in registry
    registry.unregister("a")
    registry.unregister("never-registered")  # ignored, as Triton does
    assert [r["name"] for r in registry.status()] == ["b"]
    registry.unregister()
    assert registry.status() == []


@pytest.mark.parametrize(
    "name, key_suffix, offset, size, message",
    [
        # Triton 2.51's codes and texts (checked against it).
        ("x", None, 0, 64, "Unable to open shared memory region: '/tl_no_such_region_key'"),
        ("x", "../../etc/passwd", 0, 4, "Unable to open shared memory region: '/../../etc/passwd'"),
        ("x", "", SIZE - 10, 64, "failed to register shared memory region 'x': invalid args"),
        ("x", "", 0, 0, "failed to register shared memory region 'x': unable to process address "
                        "spaceInvalid argument"),
        ("x", "", -1, 4, "offset must be a non-negative integer"),
        ("", "", 0, 4, "shared memory region name must not be empty"),
    ],
)
def test_register_errors(
    registry: SystemSharedMemoryRegistry,
    key: str,
    name: str,
    key_suffix: str | None,
    offset: int,
    size: int,
    message: str,
) -> None:
    if key_suffix is None:
        target = "/tl_no_such_region_key"
    elif key_suffix:
        target = "/" + key_suffix
    else:
        target = key
    with pytest.raises(TritonError) as e:
        registry.register(name, target, offset, size)
    assert message in e.value.message
    assert e.value.status == ("INTERNAL" if message.startswith("Unable to open") else "INVALID_ARG")
    assert registry.status() == []


def test_a_key_that_is_a_symlink_is_refused(
    registry: SystemSharedMemoryRegistry, key: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A link planted in the world-writable /dev/shm must not redirect the server's writes: keys
    # are opened with O_NOFOLLOW, as glibc's shm_open (Triton's) opens them.
    victim = tmp_path / "victim"
    victim.write_bytes(bytes(64))
    for target in (victim, shm_file(key)):
        link = shm_file(key + "_link")
        link.symlink_to(target)
        try:
            with pytest.raises(TritonError) as e:
                registry.register("x", key + "_link", 0, 64)
            assert e.value.status == "INTERNAL"  # Triton's answer; why is in the log
            assert e.value.message == f"Unable to open shared memory region: '{key}_link'"
            assert "symbolic link" in caplog.records[-1].getMessage()
        finally:
            link.unlink()
    assert registry.status() == [] and victim.read_bytes() == bytes(64)
    registry.register("x", key, 0, 64)  # the object itself still registers


def test_duplicate_and_reserved_names(registry: SystemSharedMemoryRegistry, key: str) -> None:
    registry.register("a", key, 0, 64)
    with pytest.raises(TritonError) as e:
        registry.register("a", key, 0, 64)
    assert (e.value.status, e.value.message) == (
        "ALREADY_EXISTS",
        "shared memory region 'a' already in manager",
    )
    with pytest.raises(TritonError, match="reserved prefix"):
        registry.register("p", "/" + RESERVED_KEY_PREFIX + "x", 0, 4)
    with pytest.raises(TritonError) as e:
        registry.status("nope")
    assert (e.value.status, e.value.message) == (
        "NOT_FOUND",
        "Unable to find system shared memory region: 'nope'",
    )


def test_input_tensor_is_a_zero_copy_view(registry: SystemSharedMemoryRegistry, key: str) -> None:
    registry.register("r", key, 4100, 400)
    t = registry.input_tensor("r", 16, 32, "INT32", [2, 4])
    expected = np.frombuffer(shm_file(key).read_bytes()[4116:4148], np.int32).reshape(2, 4)
    np.testing.assert_array_equal(t.numpy(), expected)
    # A write through the file shows in the tensor: it is the mapped memory itself.
    with open(shm_file(key), "r+b") as f:
        f.seek(4116)
        f.write(np.int32(-7).tobytes())
    assert t.numpy()[0, 0] == -7
    # byte_size None: the tensor's own size for fixed-size types.
    assert registry.input_tensor("r", 0, None, "UINT8", [5]).numpy().tolist() == [4, 5, 6, 7, 8]


def test_bytes_input_tensor(registry: SystemSharedMemoryRegistry, key: str) -> None:
    data = b"\x02\x00\x00\x00hi\x01\x00\x00\x00!"
    with open(shm_file(key), "r+b") as f:
        f.seek(50)
        f.write(data)
    registry.register("r", key, 50, len(data))
    t = registry.input_tensor("r", 0, None, "BYTES", [2])
    assert t.numpy().tolist() == [b"hi", b"!"]
    with pytest.raises(TritonError, match="BYTES"):
        registry.input_tensor("r", 0, 6, "BYTES", [2])


@pytest.mark.parametrize(
    "region, offset, size, status, message",
    [
        ("nope", 0, 4, "NOT_FOUND", "Unable to find shared memory region: 'nope'"),
        ("r", 400, 4, "INVALID_ARG", "Invalid offset for shared memory region: 'r'"),
        ("r", 390, 16, "INVALID_ARG", "Invalid offset + byte size for shared memory region: 'r'"),
        (
            "r",
            0,
            2**64 - 1,
            "INVALID_ARG",
            "Invalid offset + byte size for shared memory region: 'r'",
        ),
        (
            "r",
            -4,
            4,
            "INVALID_ARG",
            "shared memory region 'r': offset must be a non-negative integer, got -4",
        ),
    ],
)
def test_input_bounds_are_checked(
    registry: SystemSharedMemoryRegistry,
    key: str,
    region: str,
    offset: int,
    size: int,
    status: str,
    message: str,
) -> None:
    registry.register("r", key, 8, 400)
    with pytest.raises(TritonError) as e:
        registry.input_tensor(region, offset, size, "UINT8", [size if size < 1000 else 1])
    assert (e.value.status, e.value.message) == (status, message)


def test_input_size_must_match_the_shape(registry: SystemSharedMemoryRegistry, key: str) -> None:
    registry.register("r", key, 0, 400)
    with pytest.raises(TritonError, match="expected 16 bytes, got 12"):
        registry.input_tensor("r", 0, 12, "INT32", [4])


def test_write_output(registry: SystemSharedMemoryRegistry, key: str) -> None:
    registry.register("out", key, 4000, 300)
    values = np.arange(10, dtype=np.float32)
    assert registry.write_output("out", 20, 40, Tensor.from_numpy(values)) == 40
    raw = shm_file(key).read_bytes()
    np.testing.assert_array_equal(np.frombuffer(raw[4020:4060], np.float32), values)
    strings = np.array([b"ab", b"c"], dtype=np.object_)
    assert registry.write_output("out", 100, None, strings) == 11
    assert shm_file(key).read_bytes()[4100:4111] == b"\x02\x00\x00\x00ab\x01\x00\x00\x00c"
    assert (
        registry.write_output("out", 200, 0, Tensor.from_numpy(strings)) == 11
    )  # 0: rest of region
    with pytest.raises(TritonError) as e:
        registry.write_output("out", 0, 8, Tensor.from_numpy(values), output="OUTPUT0")
    assert e.value.message == (
        "shared memory size specified with the request for output 'OUTPUT0' (8 bytes) should be at "
        "least 40 bytes to hold the results"
    )
    with pytest.raises(TritonError, match="Invalid offset \\+ byte size"):
        registry.write_output("out", 280, 40, values)
    with pytest.raises(TritonError, match="Invalid offset for shared memory region"):
        registry.write_output("out", 300, None, values)
    # Nothing outside the window was touched.
    after = shm_file(key).read_bytes()
    assert after[:4000] == raw[:4000] and after[4300:] == raw[4300:]


def test_unregister_while_a_tensor_is_alive(registry: SystemSharedMemoryRegistry, key: str) -> None:
    registry.register("r", key, 0, 64)
    t = registry.input_tensor("r", 0, 16, "INT32", [4])
    before = t.numpy().copy()
    registry.unregister("r")  # the mapping outlives the registration while t exists
    np.testing.assert_array_equal(t.numpy(), before)
    with pytest.raises(TritonError, match="Unable to find shared memory region: 'r'"):
        registry.input_tensor("r", 0, 16, "INT32", [4])
    del t
    registry.register("r", key, 0, 64)  # the name is free again


def test_a_region_in_use_cannot_be_unregistered(
    registry: SystemSharedMemoryRegistry, key: str
) -> None:
    # Triton 2.51's codes and texts (tests/parity/fixtures/http_shm_in_use.json).
    for name in ("in", "out", "spare"):
        registry.register(name, key, 0, 64)
    registry.acquire(["in", "out", "in"])  # a name once per request, however often named
    registry.acquire(["out"])  # a second request
    with pytest.raises(TritonError) as e:
        registry.unregister("in")
    assert (e.value.status, e.value.message) == (
        "INTERNAL", "Cannot unregister shared memory region 'in', it is currently in use."
    )
    with pytest.raises(TritonError) as e:
        registry.unregister()  # every region: the idle ones go, the busy ones are named
    assert (e.value.status, e.value.message) == (
        "INTERNAL",
        "Failed to unregister the following system shared memory regions: in ,out ,",
    )
    assert [r["name"] for r in registry.status()] == ["in", "out"]
    registry.release(["in", "out"])
    registry.unregister("in")
    with pytest.raises(TritonError, match="'out', it is currently in use"):
        registry.unregister("out")  # the second request still holds it
    registry.release(["out"])
    registry.unregister()
    assert registry.status() == []
    with pytest.raises(TritonError, match="Unable to find shared memory region: 'gone'") as e:
        registry.acquire(["gone"])
    assert e.value.status == "NOT_FOUND"


def test_close_forgets_regions_in_use(registry: SystemSharedMemoryRegistry, key: str) -> None:
    registry.register("r", key, 0, 64)
    registry.acquire(["r"])
    registry.close()
    assert registry.status() == []
    registry.release(["r"])  # a request that ends after the server stopped: harmless


def test_an_empty_window_is_refused(registry: SystemSharedMemoryRegistry, key: str) -> None:
    registry.register("r", key, 0, 64)
    with pytest.raises(TritonError) as e:
        registry.input_tensor("r", 0, 0, "INT32", [0])
    assert (e.value.status, e.value.message) == (
        "INVALID_ARG", "Invalid offset + byte size for shared memory region: 'r'"
    )


def test_concurrent_use(registry: SystemSharedMemoryRegistry, key: str) -> None:
    errors: list[BaseException] = []
    stop = threading.Event()

    def churn(name: str) -> None:
        try:
            while not stop.is_set():
                registry.register(name, key, 128, 256)
                registry.unregister(name)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    def use(name: str) -> None:
        try:
            for _ in range(2000):
                try:
                    t = registry.input_tensor(name, 0, 64, "UINT8", [64])
                    assert t.numpy()[0] == 128 % 256
                    registry.write_output(name, 64, 64, np.zeros(16, np.int32))
                except TritonError as e:
                    assert e.status == "NOT_FOUND"
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=churn, args=(f"r{i}",)) for i in range(2)]
    threads += [threading.Thread(target=use, args=(f"r{i % 2}",)) for i in range(3)]
    for t in threads[2:]:
        t.start()
    for t in threads[:2]:
        t.start()
    for t in threads[2:]:
        t.join(60)
    stop.set()
    for t in threads[:2]:
        t.join(60)
    assert not errors


def test_the_server_owns_one_registry() -> None:
    with Server() as server:
        assert isinstance(server.system_shared_memory, SystemSharedMemoryRegistry)


def test_cuda_registry_answers_like_triton_without_gpus() -> None:
    cuda = CudaSharedMemoryRegistry()
    assert cuda.status() == []
    with pytest.raises(TritonError) as e:
        cuda.register("c", b"\x00" * 64, 0, 16)
    assert (e.value.status, e.value.message) == (
        "INVALID_ARG",
        "failed to register shared memory region: invalid args",  # Triton 2.51 without GPUs
    )
    with pytest.raises(TritonError, match="Unable to find cuda shared memory region: 'c'"):
        cuda.status("c")
    cuda.unregister("c")
    cuda.unregister()
