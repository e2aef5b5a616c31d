"""System (POSIX) shared memory regions registered by clients, shared by every frontend.

Owns: Triton's system shared-memory extension state. A client creates ``/dev/shm/<key>``,
registers a window of it (``offset``, ``byte_size``) under a region name, then names that region
in inference requests instead of sending tensor bytes. Triton shares registrations across
protocols, so one ``SystemSharedMemoryRegistry`` lives on the ``Server``
(``server.system_shared_memory``) and the HTTP and gRPC frontends both use it.

- ``register(name, key, offset, byte_size)`` maps the window (read-write, ``MAP_SHARED``).
- ``unregister(name=None)`` forgets one region (``None``: all of them). As Triton, a region that
  an in-flight request uses (``acquire``/``release``: the frontends hold each region a request
  names, input or output, from its decoding until its response is written) cannot be
  unregistered: INTERNAL "... it is currently in use" (unregistering all of them removes the
  others and names those). Tensors still viewing a region after that keep its memory mapped
  until they are released, so unregistering never invalidates memory a model is reading.
- ``status(name=None)`` lists regions as Triton's status JSON objects.
- ``input_tensor(...)`` is a zero-copy ``Tensor`` over part of a region; ``write_output(...)``
  copies an output tensor into a region. Both check bounds against the registered window first:
  a bad offset or size is an ``INVALID_ARG`` error, never an access outside the window.

``CudaSharedMemoryRegistry`` answers the CUDA shared-memory extension the way a Triton built
without GPU support does (registration fails; status lists nothing).

All methods are thread-safe. Error texts are Triton's.
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _core, sizes
from .errors import ALREADY_EXISTS, INTERNAL, INVALID_ARG, NOT_FOUND, TritonError

_log = logging.getLogger("tritonlite.shared_memory")

#: Bytes of a cudaIpcMemHandle_t (what a CUDA region's raw_handle must decode to).
CUDA_IPC_HANDLE_BYTES = 64

Tensor = _core.Tensor

#: Where POSIX shared memory objects live (``shm_open(key)`` opens ``/dev/shm/<key>``).
SHM_DIR = "/dev/shm"

#: Keys with this prefix belong to Triton's python backend; Triton refuses to register them.
RESERVED_KEY_PREFIX = "triton_python_backend_shm_region_"


@dataclass(frozen=True)
class _Region:
    name: str
    key: str
    offset: int  # of the window in the shm object
    byte_size: int
    map: mmap.mmap  # covers [offset - skew, offset + byte_size) of the object
    skew: int  # offset of the window inside `map` (mmap offsets must be page aligned)


def _shm_path(key: str) -> str | None:
    """The file behind a POSIX shm key ('/name' or 'name'), or None when the key could name
    anything but a single object in /dev/shm."""
    name = key.removeprefix("/")
    if not name or name in (".", "..") or "/" in name or "\x00" in name:
        return None
    return os.path.join(SHM_DIR, name)


def _non_negative_int(value: Any, what: str, region: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise TritonError(
            f"shared memory region '{region}': {what} must be a non-negative integer, got "
            f"{value!r}",
            INVALID_ARG,
        )
    return int(value)


class SystemSharedMemoryRegistry:
    """The system shared-memory regions registered with one server (thread-safe)."""

    def __init__(self) -> None:
        self._regions: dict[str, _Region] = {}
        #: In-flight requests using each region (absent: none).
        self._uses: dict[str, int] = {}
        self._lock = threading.Lock()

    # ---- registration ------------------------------------------------------------------------

    def register(self, name: str, key: str, offset: int, byte_size: int) -> None:
        """Map ``byte_size`` bytes at ``offset`` of the shm object ``key`` as region ``name``."""
        offset = _non_negative_int(offset, "offset", name)
        byte_size = _non_negative_int(byte_size, "byte_size", name)
        if not name:
            raise TritonError("shared memory region name must not be empty", INVALID_ARG)
        bare = key.removeprefix("/")
        if bare.startswith(RESERVED_KEY_PREFIX):
            raise TritonError(
                f"cannot register shared memory region '{name}' with key '{key}' as the key "
                f"contains the reserved prefix '{RESERVED_KEY_PREFIX}'",
                INVALID_ARG,
            )
        with self._lock:
            if name in self._regions:
                raise TritonError(
                    f"shared memory region '{name}' already in manager", ALREADY_EXISTS
                )
            path = _shm_path(key)
            try:
                if path is None:
                    raise OSError
                # O_NOFOLLOW, as glibc's shm_open (which Triton uses) opens keys: a symlink
                # planted in the world-writable /dev/shm must not redirect our writes.
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
            except OSError as e:
                # Triton's code and text; why it failed goes to the log only.
                link = e.errno == errno.ELOOP
                _log.warning(
                    "shared memory region '%s': cannot open key '%s': %s", name, key,
                    "it is a symbolic link (keys are not followed)" if link else e.strerror,
                )  # fmt: skip
                raise TritonError(f"Unable to open shared memory region: '{key}'", INTERNAL) from None
            try:
                size = os.fstat(fd).st_size
                if byte_size == 0:  # Triton's text (mmap's EINVAL, as Triton words it)
                    raise TritonError(
                        f"failed to register shared memory region '{name}': unable to process "
                        "address spaceInvalid argument",
                        INVALID_ARG,
                    )
                if offset + byte_size > size:
                    _log.warning(
                        "shared memory region '%s': offset %d + byte_size %d is beyond the %d "
                        "bytes of '%s'", name, offset, byte_size, size, key,
                    )  # fmt: skip
                    raise TritonError(
                        f"failed to register shared memory region '{name}': invalid args",
                        INVALID_ARG,
                    )
                skew = offset % mmap.ALLOCATIONGRANULARITY
                try:
                    mapped = mmap.mmap(fd, byte_size + skew, offset=offset - skew)
                except (OSError, ValueError) as e:
                    raise TritonError(
                        f"failed to register shared memory region '{name}': unable to map "
                        f"'{key}': {e}",
                        INVALID_ARG,
                    ) from None
            finally:
                os.close(fd)
            self._regions[name] = _Region(name, key, offset, byte_size, mapped, skew)

    def unregister(self, name: str | None = None) -> None:
        """Forget region ``name`` (every region when ``None``); unknown names are ignored, as
        Triton does. A region in use by an in-flight request is not removed (INTERNAL, Triton's
        texts); unregistering every region removes the others first. Memory still viewed by
        in-flight tensors is unmapped when they are released."""
        with self._lock:
            if name is None:
                busy = sorted(n for n in self._regions if self._uses.get(n))
                regions = [r for n, r in self._regions.items() if not self._uses.get(n)]
            else:
                busy = [name] if self._uses.get(name) else []
                region = None if busy else self._regions.get(name)
                regions = [region] if region is not None else []
            for region in regions:
                del self._regions[region.name]
        self._unmap(regions)
        if name is not None and busy:
            raise TritonError(
                f"Cannot unregister shared memory region '{name}', it is currently in use.",
                INTERNAL,
            )
        if name is None and busy:
            raise TritonError(
                "Failed to unregister the following system shared memory regions: "
                + "".join(f"{n} ," for n in busy),
                INTERNAL,
            )

    @staticmethod
    def _unmap(regions: Sequence[_Region]) -> None:
        for region in regions:
            try:
                region.map.close()
            except BufferError:
                pass  # views are alive: the mapping goes away with the last of them

    def close(self) -> None:
        """Forget every region, in use or not (the server is stopping)."""
        with self._lock:
            regions = list(self._regions.values())
            self._regions.clear()
            self._uses.clear()
        self._unmap(regions)

    # ---- use by in-flight requests -----------------------------------------------------------

    def acquire(self, names: Sequence[str]) -> None:
        """Mark the regions an in-flight request names as in use (a name once per request);
        NOT_FOUND, and nothing marked, when one is not registered. Pair with ``release``."""
        names = list(dict.fromkeys(names))
        with self._lock:
            for name in names:
                if name not in self._regions:
                    raise TritonError(f"Unable to find shared memory region: '{name}'", NOT_FOUND)
            for name in names:
                self._uses[name] = self._uses.get(name, 0) + 1

    def release(self, names: Sequence[str]) -> None:
        """The request that ``acquire``d ``names`` is done with them."""
        names = list(dict.fromkeys(names))
        with self._lock:
            for name in names:
                left = self._uses.get(name, 0) - 1
                if left > 0:
                    self._uses[name] = left
                else:
                    self._uses.pop(name, None)

    def status(self, name: str | None = None) -> list[dict[str, Any]]:
        """Triton's status objects ``{name, key, offset, byte_size}``; NOT_FOUND for an unknown
        ``name``."""
        with self._lock:
            if name is None:
                regions = list(self._regions.values())
            elif name in self._regions:
                regions = [self._regions[name]]
            else:
                raise TritonError(
                    f"Unable to find system shared memory region: '{name}'", NOT_FOUND
                )
        return [
            {"name": r.name, "key": r.key, "offset": r.offset, "byte_size": r.byte_size}
            for r in regions
        ]

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return name in self._regions

    # ---- tensors -----------------------------------------------------------------------------

    def _window(self, name: str, offset: int, byte_size: int | None) -> tuple[_Region, int]:
        """The region and the byte size of a checked [offset, offset + byte_size) window.
        Called with the lock held, so the region cannot be unmapped while it is used."""
        region = self._regions.get(name)
        if region is None:
            raise TritonError(f"Unable to find shared memory region: '{name}'", NOT_FOUND)
        offset = _non_negative_int(offset, "offset", name)
        if offset >= region.byte_size:
            raise TritonError(f"Invalid offset for shared memory region: '{name}'", INVALID_ARG)
        size = region.byte_size - offset if byte_size is None else byte_size
        size = _non_negative_int(size, "byte_size", name)
        if offset + size > region.byte_size or size == 0:  # Triton: an empty window too
            raise TritonError(
                f"Invalid offset + byte size for shared memory region: '{name}'", INVALID_ARG
            )
        return region, size

    def check_window(self, name: str, offset: int, byte_size: int | None) -> None:
        """The errors ``input_tensor`` gives for a window outside region ``name``, without a
        tensor (Triton checks the window before the size of the tensor it holds)."""
        with self._lock:
            self._window(name, offset, byte_size)

    def input_tensor(
        self,
        region: str,
        offset: int,
        byte_size: int | None,
        datatype: str,
        shape: Sequence[int],
    ) -> Any:
        """A zero-copy ``Tensor`` over ``byte_size`` bytes at ``offset`` of ``region``.

        ``byte_size=None`` means the tensor's own size for fixed-size datatypes and the rest of
        the region for BYTES. The size must match ``datatype`` and ``shape`` (INVALID_ARG)."""
        if byte_size is None and datatype != "BYTES":
            byte_size = sizes.byte_size(datatype, shape)  # exact; checked against the window
        with self._lock:
            r, size = self._window(region, offset, byte_size)
            return Tensor.from_buffer(datatype, list(shape), r.map, r.skew + offset, size)

    def write_output(
        self,
        region: str,
        offset: int,
        byte_size: int | None,
        tensor: Any,
        *,
        output: str | None = None,
    ) -> int:
        """Copy ``tensor`` (a Tensor or numpy array) to ``offset`` of ``region``; returns the bytes
        written. ``byte_size`` is the room the client reserved (``None`` or 0: the rest of the
        region); a larger tensor is an INVALID_ARG error naming both sizes (and ``output``, the
        tensor's name, when given)."""
        data = _raw_bytes(tensor)
        with self._lock:
            r, room = self._window(region, offset, byte_size or None)
            if len(data) > room:
                what = f"output '{output}'" if output else f"output in region '{region}'"
                raise TritonError(
                    f"shared memory size specified with the request for {what} ({room} bytes) "
                    f"should be at least {len(data)} bytes to hold the results",
                    INVALID_ARG,
                )
            start = r.skew + offset
            r.map[start : start + len(data)] = data
        return len(data)


def _raw_bytes(tensor: Any) -> Any:
    """A bytes-like view of a tensor's data in Triton's layout (BYTES serialized)."""
    if isinstance(tensor, np.ndarray):
        if tensor.dtype == np.object_:
            return _core.serialize_bytes(tensor)
        return np.ascontiguousarray(tensor).reshape(-1).view(np.uint8).data
    if tensor.datatype == "BYTES":
        return tensor.tobytes()
    return tensor.numpy().reshape(-1).view(np.uint8).data


class CudaSharedMemoryRegistry:
    """Triton's CUDA shared-memory extension as a build without GPU support answers it:
    registering fails, status lists nothing, unregistering succeeds."""

    def register(self, name: str, raw_handle: bytes, device_id: int, byte_size: int) -> None:
        _log.warning(
            "CUDA shared memory region '%s' refused: this server has no GPU support", name
        )
        raise TritonError("failed to register shared memory region: invalid args", INVALID_ARG)

    def unregister(self, name: str | None = None) -> None:
        return None

    def status(self, name: str | None = None) -> list[dict[str, Any]]:
        if name:
            raise TritonError(f"Unable to find cuda shared memory region: '{name}'", NOT_FOUND)
        return []
