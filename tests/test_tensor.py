"""The C++ Tensor: datatypes, zero-copy numpy/DLPack, BYTES codec, and bad-input errors."""

from __future__ import annotations

import struct

import numpy as np
import pytest

import tritonlite
from tritonlite import Tensor, TritonError, datatypes

NUMERIC = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}


def _sample(dtype: type, shape: tuple[int, ...] = (2, 3)) -> np.ndarray:
    rng = np.random.default_rng(0)
    if dtype is np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("name", sorted(NUMERIC))
def test_every_numeric_datatype_round_trips_zero_copy(name: str) -> None:
    arr = _sample(NUMERIC[name])
    t = Tensor.from_numpy(arr)
    assert t.datatype == name
    assert t.shape == arr.shape
    assert t.byte_size == arr.nbytes
    assert t.data_ptr == arr.ctypes.data
    back = t.numpy()
    assert back.dtype == arr.dtype
    np.testing.assert_array_equal(back, arr)
    assert back.ctypes.data == arr.ctypes.data


@pytest.mark.parametrize("name", [*sorted(NUMERIC), "BYTES"])
def test_numpy_dtype_of_every_datatype(name: str) -> None:
    # The core hands numpy its descriptors by type number: each must be the dtype numpy names.
    expected = np.dtype(object) if name == "BYTES" else np.dtype(NUMERIC[name])
    assert tritonlite._core.datatype_to_numpy(name) == expected
    assert tritonlite._core.datatype_to_numpy(name).itemsize == expected.itemsize


def test_bf16_round_trips_through_numpy_with_ml_dtypes() -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    arr = np.array([[1.5, -2.0], [3.25, 0.0]], dtype=ml_dtypes.bfloat16)
    t = Tensor.from_numpy(arr)
    assert t.datatype == "BF16"
    assert t.data_ptr == arr.ctypes.data
    back = t.numpy()
    assert back.dtype == arr.dtype
    np.testing.assert_array_equal(back.astype(np.float32), arr.astype(np.float32))


def test_bf16_round_trips_through_torch() -> None:
    torch = pytest.importorskip("torch")
    x = torch.tensor([[1.5, -2.0, 3.0]], dtype=torch.bfloat16)
    t = Tensor.from_dlpack(x)
    assert t.datatype == "BF16"
    assert t.data_ptr == x.data_ptr()
    y = torch.from_dlpack(t)
    assert y.dtype == torch.bfloat16
    assert y.data_ptr() == x.data_ptr()
    assert torch.equal(x, y)


def test_torch_tensor_zero_copy_both_ways() -> None:
    torch = pytest.importorskip("torch")
    x = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    t = Tensor.from_array(x)
    assert t.datatype == "FP32" and t.shape == (3, 4)
    y = torch.from_dlpack(t)
    y[0, 0] = 42.0
    assert x[0, 0].item() == 42.0


def test_write_through_one_view_is_seen_through_the_other() -> None:
    arr = np.zeros((4,), dtype=np.float32)
    t = Tensor.from_numpy(arr)
    view = t.numpy()
    view[2] = 7.0
    assert arr[2] == 7.0
    arr[0] = -1.0
    assert np.from_dlpack(t)[0] == -1.0


def test_dlpack_export_and_import_share_memory() -> None:
    arr = np.arange(10, dtype=np.int64)
    t = Tensor.from_dlpack(arr)
    assert t.data_ptr == arr.ctypes.data
    out = np.from_dlpack(t)
    assert out.ctypes.data == arr.ctypes.data
    assert t.__dlpack_device__() == (1, 0)


def test_tensor_keeps_its_source_alive() -> None:
    t = Tensor.from_numpy(np.full((1000,), 3, dtype=np.int32))
    import gc

    gc.collect()
    assert int(t.numpy().sum()) == 3000


def test_numpy_view_outlives_the_tensor() -> None:
    view = Tensor.from_numpy(np.arange(5, dtype=np.int16)).numpy()
    import gc

    gc.collect()
    assert view.tolist() == [0, 1, 2, 3, 4]


def test_from_buffer_is_zero_copy_and_read_only_over_bytes() -> None:
    raw = struct.pack("<4i", 1, 2, 3, 4)
    t = Tensor.from_buffer("INT32", [2, 2], raw)
    view = t.numpy()
    assert view.tolist() == [[1, 2], [3, 4]]
    assert not view.flags.writeable
    buf = bytearray(raw)
    view2 = Tensor.from_buffer("INT32", [4], buf).numpy()
    view2[0] = 9
    assert buf[0] == 9


def test_from_buffer_with_offset() -> None:
    raw = bytes(4) + struct.pack("<2f", 1.0, 2.0)
    t = Tensor.from_buffer("FP32", [2], raw, offset=4, byte_size=8)
    assert t.numpy().tolist() == [1.0, 2.0]


def test_bytes_round_trip_with_empty_and_binary_elements() -> None:
    elements = [b"", b"\x00\xff\xfe", "héllo".encode(), b"x" * 1000, b""]
    arr = np.array(elements, dtype=np.object_).reshape(5, 1)
    t = Tensor.from_numpy(arr)
    assert t.datatype == "BYTES"
    assert t.shape == (5, 1)
    back = t.numpy()
    assert back.dtype == np.object_ and back.shape == (5, 1)
    assert back.ravel().tolist() == elements


def test_bytes_serialization_is_tritons() -> None:
    arr = np.array([b"ab", b"", "ç"], dtype=np.object_)
    raw = tritonlite._core.serialize_bytes(arr)
    assert raw == b"\x02\x00\x00\x00ab" + b"\x00\x00\x00\x00" + b"\x02\x00\x00\x00\xc3\xa7"
    back = tritonlite._core.deserialize_bytes(raw, [3])
    assert back.tolist() == [b"ab", b"", "ç".encode()]


def test_bytes_matches_tritonclient_serialization() -> None:
    utils = pytest.importorskip("tritonclient.utils")
    arr = np.array([b"one", b"", b"\x00\x01", "two".encode()], dtype=np.object_)
    theirs = utils.serialize_byte_tensor(arr).item()
    assert tritonlite._core.serialize_bytes(arr) == theirs
    t = Tensor.from_buffer("BYTES", [4], theirs)
    assert t.numpy().tolist() == arr.tolist()


def test_numpy_fixed_width_bytes_and_str_arrays_become_bytes() -> None:
    assert Tensor.from_numpy(np.array([b"a", b"bc"])).numpy().tolist() == [b"a", b"bc"]
    assert Tensor.from_numpy(np.array(["a", "bc"])).numpy().tolist() == [b"a", b"bc"]


@pytest.mark.parametrize("name", datatypes.DATATYPES)
def test_datatype_name_conversions(name: str) -> None:
    assert datatypes.to_wire_name(datatypes.to_config_name(name)) == name
    if name not in ("BF16",):
        assert datatypes.from_numpy(datatypes.to_numpy(name)) == name


def test_config_spelling_of_strings() -> None:
    assert datatypes.to_config_name("BYTES") == "TYPE_STRING"
    assert datatypes.to_wire_name("TYPE_STRING") == "BYTES"
    assert datatypes.element_size("TYPE_FP16") == 2
    assert datatypes.element_size("BYTES") == 0


# ---- bad input: always a clear Python exception, never a crash or an out-of-bounds read ----


def test_unsupported_dtype_is_rejected() -> None:
    with pytest.raises(TritonError, match="unsupported numpy dtype 'complex64'") as info:
        Tensor.from_numpy(np.zeros(3, dtype=np.complex64))
    assert info.value.status == "INVALID_ARG"
    with pytest.raises(TritonError, match="unsupported datatype 'FP8'"):
        Tensor.from_buffer("FP8", [1], b"\x00")
    with pytest.raises(TritonError, match="no Triton datatype"):
        datatypes.from_numpy(np.complex128)


def test_non_contiguous_array_is_rejected() -> None:
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    with pytest.raises(TritonError, match="non-contiguous array of shape \\[3,2\\]"):
        Tensor.from_numpy(arr[:, ::2])
    with pytest.raises(TritonError, match="non-contiguous"):
        Tensor.from_dlpack(arr.T)


def test_non_contiguous_torch_tensor_is_rejected() -> None:
    torch = pytest.importorskip("torch")
    with pytest.raises(TritonError, match="non-contiguous"):
        Tensor.from_dlpack(torch.zeros(3, 4).t())


def test_byte_size_mismatch_is_rejected() -> None:
    with pytest.raises(
        TritonError, match=r"INT32 tensor of shape \[2,2\]: expected 16 bytes, got 12"
    ):
        Tensor.from_buffer("INT32", [2, 2], bytes(12))
    with pytest.raises(TritonError, match="outside the buffer of 8 bytes"):
        Tensor.from_buffer("INT32", [2], bytes(8), offset=4, byte_size=8)
    with pytest.raises(TritonError, match="negative dimension"):
        Tensor.from_buffer("INT32", [-1], bytes(4))


@pytest.mark.parametrize(
    "raw, match",
    [
        (b"\x05\x00\x00\x00abc", "length runs past the end"),
        (b"\xff\xff\xff\xffa", "length runs past the end"),
        (b"\x01\x00", "truncated length prefix"),
        (b"\x01\x00\x00\x00a\x01\x00", "truncated length prefix"),
    ],
)
def test_malformed_bytes_buffer_is_rejected(raw: bytes, match: str) -> None:
    with pytest.raises(TritonError, match=match):
        Tensor.from_buffer("BYTES", [1], raw)
    with pytest.raises(TritonError, match=match):
        tritonlite._core.deserialize_bytes(raw, [1])


def test_bytes_element_count_must_match_shape() -> None:
    raw = b"\x01\x00\x00\x00a\x01\x00\x00\x00b"
    with pytest.raises(TritonError, match="expected 3 BYTES elements for its shape, got 2"):
        Tensor.from_buffer("BYTES", [3], raw)


def test_bytes_element_count_reads_only_contiguous_buffers() -> None:
    raw = b"\x01\x00\x00\x00a\x01\x00\x00\x00b"
    assert tritonlite._core.bytes_element_count(raw) == 2
    assert tritonlite._core.bytes_element_count(memoryview(raw)[5:]) == 1
    # A reversed or strided view's bytes are not ptr..ptr+len: refused, never read past.
    for view in (memoryview(raw)[::-1], memoryview(raw)[::2]):
        with pytest.raises(TritonError, match="C-contiguous"):
            tritonlite._core.bytes_element_count(view)


def test_non_buffer_and_non_dlpack_objects_are_rejected() -> None:
    with pytest.raises(TritonError, match="not a C-contiguous buffer"):
        Tensor.from_buffer("INT32", [1], object())
    with pytest.raises(TritonError, match="does not support DLPack"):
        Tensor.from_dlpack(object())


def test_dlpack_capsule_can_be_consumed_once() -> None:
    cap = np.arange(3, dtype=np.int32).__dlpack__()
    t = Tensor.from_dlpack(cap)
    assert t.numpy().tolist() == [0, 1, 2]
    with pytest.raises(TritonError, match="consumed only once"):
        Tensor.from_dlpack(cap)


def test_bytes_tensor_has_no_dlpack() -> None:
    t = Tensor.from_numpy(np.array([b"a"], dtype=np.object_))
    with pytest.raises(TritonError, match="BYTES tensors have no DLPack"):
        t.__dlpack__()


def _visible_gpus() -> int:
    """CUDA devices this process can use, found without CUDA: the NVIDIA device nodes, narrowed
    by CUDA_VISIBLE_DEVICES as the CUDA runtime narrows them."""
    import os
    import re

    nodes = [n for n in os.listdir("/dev") if re.fullmatch(r"nvidia\d+", n)]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return len(nodes)
    count = 0
    for item in visible.split(","):  # the runtime stops at the first invalid entry
        item = item.strip()
        if not item.isdigit() or int(item) >= len(nodes):
            break
        count += 1
    return count


def test_cuda_reports_no_device_cleanly() -> None:
    """Without a CUDA build or without a GPU: exactly 0, never an error. A CUDA build on a GPU
    machine counts the visible devices; hiding them all gives 0 again."""
    import os
    import subprocess
    import sys

    count = tritonlite._core.cuda_device_count()
    expected = _visible_gpus() if tritonlite._core.built_with_cuda else 0
    assert type(count) is int and count == expected
    hidden = subprocess.run(
        [sys.executable, "-c", "import tritonlite._core as c; print(c.cuda_device_count())"],
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert hidden.stdout.strip() == "0"


def _read_only(values: np.ndarray) -> Tensor:
    """A tensor over immutable memory, as a received request's input is."""
    return Tensor.from_buffer(
        datatypes.from_numpy(values.dtype), list(values.shape), values.tobytes()
    )


class _LegacyConsumerView:
    """An object whose ``__dlpack__`` takes no ``max_version``, so numpy asks it for a legacy
    (pre-1.0) capsule, as older consumers do."""

    def __init__(self, tensor: Tensor) -> None:
        self.tensor = tensor

    def __dlpack__(self, stream: object = None) -> object:
        return self.tensor.__dlpack__()

    def __dlpack_device__(self) -> object:
        return self.tensor.__dlpack_device__()


def test_dlpack_export_of_a_read_only_tensor_is_read_only() -> None:
    t = _read_only(np.arange(4, dtype=np.float32))
    assert t.numpy().flags.writeable is False
    # DLPack 1.0 (numpy >= 2.1 asks for it): zero-copy, flagged read-only.
    a = np.from_dlpack(t)
    assert a.flags.writeable is False and a.ctypes.data == t.data_ptr
    with pytest.raises(ValueError, match="read-only"):
        a[0] = 7
    # A legacy capsule cannot carry the flag: the consumer gets a private copy.
    legacy = np.from_dlpack(_LegacyConsumerView(t))
    assert legacy.ctypes.data != t.data_ptr and legacy.tolist() == [0, 1, 2, 3]
    with pytest.raises(BufferError, match="read-only"):
        t.__dlpack__(copy=False)
    # Writable tensors stay zero-copy and writable both ways.
    w = Tensor.from_numpy(np.zeros(3, np.int32))
    for exported in (np.from_dlpack(w), np.from_dlpack(_LegacyConsumerView(w))):
        assert exported.ctypes.data == w.data_ptr
    assert np.from_dlpack(w).flags.writeable
    copied = np.from_dlpack(w, copy=True)
    assert copied.ctypes.data != w.data_ptr and copied.flags.writeable


def test_dlpack_versioned_capsule_carries_the_flags() -> None:
    import ctypes

    class Versioned(ctypes.Structure):  # DLManagedTensorVersioned's head (DLPack 1.0)
        _fields_ = [
            ("major", ctypes.c_uint32),
            ("minor", ctypes.c_uint32),
            ("manager_ctx", ctypes.c_void_p),
            ("deleter", ctypes.c_void_p),
            ("flags", ctypes.c_uint64),
        ]

    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype, get_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]

    def flags(capsule: object) -> tuple[bytes, int, int]:
        name = get_name(capsule)
        head = Versioned.from_address(get_pointer(capsule, name))
        return name, head.major, head.flags

    read_only, writable = _read_only(np.arange(2, dtype=np.int8)), Tensor.from_numpy(np.ones(2))
    assert flags(read_only.__dlpack__(max_version=(1, 0))) == (b"dltensor_versioned", 1, 1)
    assert flags(writable.__dlpack__(max_version=(1, 1))) == (b"dltensor_versioned", 1, 0)
    assert flags(read_only.__dlpack__(max_version=(1, 0), copy=True))[2] == 2  # IS_COPIED
    assert get_name(writable.__dlpack__(max_version=(0, 8))) == b"dltensor"
    assert get_name(writable.__dlpack__()) == b"dltensor"
