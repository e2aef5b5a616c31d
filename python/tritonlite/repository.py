"""Model repositories and model lifecycles.

Owns: scanning one or more repository paths (Triton's layout), the per-version lifecycle
(UNAVAILABLE / LOADING / READY / UNLOADING, with a reason), the model control modes (none,
poll, explicit), loading with config and file overrides, reloading changed models without
dropping requests (the new version is READY before the old one is unloaded), and rejecting
model names that would reach outside a repository.

Locking: a load or unload holds only its own model's lock, for as long as it runs (off the
event loop); the model table itself is guarded by a short lock that is never held across a
load, a backend call or a wait. Readiness and the index read a snapshot of the table, so they
answer at once while any model loads.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import config as model_config
from .backends import get_backend_factory
from .backends.ensemble import EnsembleConfigError
from .errors import INTERNAL, INVALID_ARG, TritonError
from .model import LoadedModel
from .model_table import ModelTable

CONTROL_MODES = ("none", "poll", "explicit")

#: Triton's --model-load-thread-count default: models the server loads at once.
DEFAULT_LOAD_THREAD_COUNT = 4

UNAVAILABLE_STATE = "UNAVAILABLE"
LOADING = "LOADING"
READY = "READY"
UNLOADING = "UNLOADING"

_log = logging.getLogger("tritonlite.repository")


def check_model_name(name: str) -> None:
    """Reject names that could reach outside a repository (INVALID_ARG)."""
    bad = (
        not name
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or "\x00" in name
        or name.startswith("~")
        or Path(name).is_absolute()
    )
    if bad:
        raise TritonError(
            f"invalid model name '{name}': a model name must be a single directory name inside "
            "the model repository (no path separators, '..' or NUL)",
            INVALID_ARG,
        )


# Longest file-name component and path the file overrides may use (Linux's NAME_MAX, PATH_MAX).
_NAME_MAX = 255
_PATH_MAX = 4096


def _check_override_path(name: str, key: str) -> None:
    """Refuse a file override key ('file:<version>/<path>') that is not a plain relative path
    inside the model directory, before anything is written (INVALID_ARG)."""
    rel = key[len("file:") :] if key.startswith("file:") else key
    parts = rel.split("/")
    reason = ""
    if not rel or rel.startswith("/") or "\\" in rel:
        reason = "is outside the model directory"
    elif "\x00" in rel:
        reason = "contains a NUL character"
    elif any(p in ("..", ".") for p in parts) or any(not p for p in parts):
        reason = "is outside the model directory" if ".." in parts else "is not a file path"
    elif len(rel.encode()) > _PATH_MAX or any(len(p.encode()) > _NAME_MAX for p in parts):
        reason = f"has a path longer than {_PATH_MAX} bytes or a name longer than {_NAME_MAX}"
    if reason:
        raise TritonError(f"failed to load '{name}': file override '{key}' {reason}", INVALID_ARG)


def _fingerprint(path: Path) -> tuple[tuple[str, int, int], ...]:
    """What a model directory holds, to notice changes when polling."""
    entries = []
    for p in sorted(path.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            st = p.stat()
            entries.append((str(p.relative_to(path)), st.st_mtime_ns, st.st_size))
    return tuple(entries)


def _model_timestamp(path: Path) -> int:
    """Triton's modification time of a model directory: the newest mtime (ns) of the directory
    and of everything below it (0 when the directory cannot be read)."""
    try:
        newest = path.stat().st_mtime_ns
    except OSError:
        return 0
    for root, dirs, files in os.walk(path):
        for child in (*dirs, *files):
            try:
                newest = max(newest, os.stat(os.path.join(root, child)).st_mtime_ns)
            except OSError:
                pass  # gone meanwhile
    return newest


def _dependency_order(names: Iterable[str], steps_of: Callable[[str], set[str]]) -> list[str]:
    """``names`` with every model after the models (among ``names``) its ensemble steps call;
    otherwise in name order. Models on a cycle come last (their loads report it)."""
    remaining = sorted(set(names))
    order: list[str] = []
    while remaining:
        ready = [n for n in remaining if not (steps_of(n) & set(remaining)) - {n}]
        if not ready:
            return order + remaining
        order += ready
        remaining = [n for n in remaining if n not in ready]
    return order


def _python_auto_complete(config: model_config.ModelConfig, model_dir: Path) -> Any:
    """A python model's own auto_complete_config (imported only for python models)."""
    from .backends import python as python_backend

    return python_backend.python_auto_complete(config, model_dir)


def _is_ensemble(path: Path, config_name: str = "") -> bool:
    """Whether a model directory's config declares platform "ensemble"."""
    try:
        text = model_config.config_file(path, config_name).read_text(encoding="utf-8")
        return model_config.parse_config_text(text, path.name).platform == "ensemble"
    except (OSError, TritonError):
        return False


@dataclass
class _VersionState:
    state: str
    reason: str = ""


@dataclass
class _ModelEntry:
    path: Path | None = None
    fingerprint: tuple[tuple[str, int, int], ...] = ()
    versions: dict[int, _VersionState] = field(default_factory=dict)
    error: str = ""  # model-level failure (config, duplicates) when no version got that far
    temp_dir: Path | None = None  # holds the model's latest files from file overrides
    # _model_timestamp of its directory when it last loaded (a later time after a load with a
    # config override, 0 after one with files): explicit mode reloads a served model only when
    # its files are newer (Triton's rule, which keeps an override until the files change).
    timestamp: int = 0
    # In the dependency graph (explicit mode): loaded, or tried, by a load request (its own or
    # an ensemble's) and not unloaded since. An ensemble stays in it while a model it calls is
    # unloaded, and comes back when that model loads again.
    node: bool = False
    # The models its ensemble steps call, with the version each asks for (-1: any).
    steps: frozenset[tuple[str, int]] = frozenset()
    # Earlier upload directories, deleted once no served version uses them any more.
    stale_dirs: list[Path] = field(default_factory=list)


#: Makes the served form of one version: ``loader(config, version, backend, model_dir)``.
VersionLoader = Callable[[model_config.ModelConfig, int, Any, Path], LoadedModel]


class ModelRepository:
    """The models of one Server: where they live and in which state each version is.

    What is served lives in ``table`` (shared with the server); ``loader`` turns a backend into
    a served version; ``backend_host`` is passed to backend factories (ensembles and BLS call
    back into the server through it).
    """

    def __init__(
        self,
        table: ModelTable,
        paths: Iterable[str | Path],
        *,
        loader: VersionLoader,
        backend_host: Any = None,
        control_mode: str = "none",
        auto_complete: bool = True,
        backend_config: Mapping[str, Mapping[str, str]] | None = None,
        load_thread_count: int = DEFAULT_LOAD_THREAD_COUNT,
        load_retry_count: int = 0,
        config_name: str = "",
    ) -> None:
        if control_mode not in CONTROL_MODES:
            raise TritonError(
                f"unknown model control mode '{control_mode}': expected one of "
                + ", ".join(CONTROL_MODES),
                INVALID_ARG,
            )
        self.table = table
        self.loader = loader
        self.backend_host = backend_host  # what backends that call back in get (ensemble, BLS)
        self.backend_config = backend_config  # --backend-config: see config.load_model_config
        self.paths = [Path(p) for p in paths]
        for p in self.paths:
            if not p.is_dir():
                raise TritonError(f"model repository path '{p}' is not a directory", INVALID_ARG)
        self.control_mode = control_mode
        self.auto_complete = auto_complete
        # --model-load-thread-count: how many models the loads the repository starts itself (at
        # start, on a poll) run at once. 0 means 1, as Triton's max(1, N).
        if isinstance(load_thread_count, bool) or not isinstance(load_thread_count, int) or (
            load_thread_count < 0
        ):
            raise TritonError(
                "model load thread count must be a non-negative integer, got "
                f"{load_thread_count!r}",
                INVALID_ARG,
            )
        self.load_thread_count = max(1, load_thread_count)
        # --model-load-retry-count: a version whose backend fails to load is tried this many
        # more times before it is UNAVAILABLE.
        if isinstance(load_retry_count, bool) or not isinstance(load_retry_count, int) or (
            load_retry_count < 0
        ):
            raise TritonError(
                f"model load retry count must be a non-negative integer, got {load_retry_count!r}",
                INVALID_ARG,
            )
        self.load_retry_count = load_retry_count
        model_config.check_config_name(config_name)
        self.config_name = config_name  # --model-config-name
        self._entries: dict[str, _ModelEntry] = {}
        # Guards _entries and every entry's fields: held for a few dict operations only.
        self._table_lock = threading.Lock()
        # One lifecycle change at a time per model, held for its whole load / unload.
        self._model_locks: dict[str, threading.Lock] = {}
        self._poller: threading.Thread | None = None
        self._stop = threading.Event()
        self._last_poll_error = ""

    # ---- scanning ----------------------------------------------------------------------------

    def scan(self) -> tuple[dict[str, Path], dict[str, str]]:
        """Model directories by name, and names that are errors (duplicates) with a reason."""
        found: dict[str, list[Path]] = {}
        for root in self.paths:
            for child in sorted(root.iterdir()):
                if child.is_dir() and not child.name.startswith("."):
                    found.setdefault(child.name, []).append(child)
        models, errors = {}, {}
        for name, dirs in found.items():
            if len(dirs) > 1:
                errors[name] = (
                    f"model '{name}' appears in more than one model repository: "
                    + ", ".join(str(d) for d in dirs)
                )
            else:
                models[name] = dirs[0]
        return models, errors

    # ---- lifecycle ---------------------------------------------------------------------------

    def load_startup_models(self, load_models: Iterable[str] = ()) -> None:
        """Load what the control mode loads at start: everything (none, poll) or the named
        models (explicit; '*' for all)."""
        names = list(load_models)
        if self.control_mode == "explicit" and "*" not in names:
            models, _ = self.scan()
            self._load_many(names, models, with_dependencies=True)
            return
        models, errors = self.scan()
        with self._table_lock:
            for name, reason in errors.items():
                self._entries[name] = _ModelEntry(error=reason)
        self._load_many(models, models, errors=errors)

    def _load_many(
        self,
        names: Iterable[str],
        models: Mapping[str, Path],
        with_dependencies: bool = False,
        errors: Mapping[str, str] | None = None,
    ) -> None:
        """Load ``names`` (failures are recorded in the index), up to ``load_thread_count`` at
        once, then the ensembles among them one at a time, each after the ensembles it calls
        (an ensemble checks its composing models, which must be loaded first).
        ``with_dependencies`` (explicit mode's --load-model): an ensemble loads the models it
        calls as a load request does. ``models`` / ``errors`` are the scan the caller just made:
        each load uses it instead of scanning the repositories again (a scan per model made
        loading N models O(N^2): 1,000 models took 10 s)."""
        names = list(names)
        ensembles = {n for n in names if n in models and _is_ensemble(models[n], self.config_name)}
        plain = sorted(set(names) - ensembles)
        scan = (models, errors if errors is not None else {})
        if with_dependencies:
            load: Callable[[str], None] = self._load_explicit_recorded
        else:

            def load(name: str) -> None:
                self._load_recorded(name, scan)

        if self.load_thread_count == 1 or len(plain) <= 1:
            for name in plain:
                load(name)
        else:
            workers = min(self.load_thread_count, len(plain))
            with ThreadPoolExecutor(workers, thread_name_prefix="tritonlite-load") as pool:
                list(pool.map(load, plain))
        steps = {n: {m for m, _ in self._steps_on_disk(n, models[n])} for n in ensembles}
        for name in _dependency_order(ensembles, lambda n: steps.get(n, set())):
            load(name)

    def _load_recorded(
        self, name: str, scan: tuple[Mapping[str, Path], Mapping[str, str]] | None = None
    ) -> None:
        try:
            self._load_one(name, scan=scan)
        except TritonError:
            pass  # recorded in the index with its reason; the others still load

    def _load_explicit_recorded(self, name: str) -> None:
        try:
            self.load(name)
        except TritonError:
            pass  # recorded in the index with its reason; the others still load

    def _model_lock(self, name: str) -> threading.Lock:
        with self._table_lock:
            return self._model_locks.setdefault(name, threading.Lock())

    def load(
        self,
        name: str,
        config_override: str | None = None,
        files: Mapping[str, bytes] | None = None,
    ) -> None:
        """A load request (explicit mode), as Triton's: the model and, for an ensemble, the
        models its steps call (recursively) are loaded where they are not served or their
        files changed since they loaded; a model served and unchanged stays as it is (so a
        config override stays in use). The ensembles that call a (re)loaded model are loaded
        again, each after the models it calls; an ensemble whose models are not all available
        is unloaded (and loads again when they are). Raises TritonError after recording a
        failure in the index."""
        self._check_load_request(name, config_override, files)
        chain, missing = self._poll_chain(name, config_override, files)
        if name not in chain:  # not in the repository: the load reports it
            self._load_one(name, config_override, files)
            return
        to_load = [
            m for m in chain
            if (m == name and (config_override is not None or files))
            or not self._served(m) or self._modified(m)
        ]  # fmt: skip
        affected = set(to_load) | self._users(to_load)
        with self._table_lock:
            for m in affected | set(chain):
                self._entries.setdefault(m, _ModelEntry()).node = True
        failures: dict[str, tuple[bool, str]] = {}  # model -> (an invalid ensemble?, reason)
        own_error: TritonError | None = None
        for m in _dependency_order(affected, lambda n: {s for s, _ in self._steps_known(n)}):
            problem = self._dependency_problem(m, missing, failures)
            if problem:
                failures[m] = (True, problem)
                if self._served(m):
                    self._unload_one(m)
                continue
            try:
                if m == name:
                    self._load_one(m, config_override, files)
                else:
                    self._load_one(m)
            except EnsembleConfigError as e:  # as a dependency problem: no state is kept
                failures[m] = (True, e.message)
                self._forget_failed_versions(m)
                if self._served(m):
                    self._unload_one(m)
            except TritonError as e:
                failures[m] = (False, e.message)
                if m == name:
                    own_error = e
        if own_error is not None:
            raise own_error
        if name in failures:  # Triton's text for an ensemble whose models are not available
            raise TritonError(f"load failed for model '{name}': {failures[name][1]}\n", INVALID_ARG)

    def _forget_failed_versions(self, name: str) -> None:
        with self._table_lock:
            entry = self._entries[name]
            entry.versions = {
                v: st for v, st in entry.versions.items()
                if st.state == READY or st.reason == "unloaded"
            }  # fmt: skip
            entry.error = ""

    def _check_load_request(
        self,
        name: str,
        config_override: str | None,
        files: Mapping[str, bytes] | None,
        scan: tuple[Mapping[str, Path], Mapping[str, str]] | None = None,
    ) -> None:
        check_model_name(name)
        if not files:
            with self._table_lock:
                known = name in self._entries
            if not known and not any(name in found for found in (scan or self.scan())):
                # Not a model of this repository: nothing to track (no lock made for it either:
                # a lock removed while another thread waits on it would let two loads run).
                # Triton answers INTERNAL (HTTP 500) with this text.
                raise TritonError(
                    f"failed to load '{name}', failed to poll from model repository", INTERNAL
                )
        if config_override is not None or files:
            try:
                if config_override is not None:
                    model_config.check_override(config_override, name)
                for key in files or ():
                    _check_override_path(name, key)
            except TritonError as e:
                # Triton answers a malformed override (config or files) with its poll failure:
                # the reason goes to the log.
                _log.error("%s", e.message)
                raise TritonError(
                    f"failed to load '{name}', failed to poll from model repository", INTERNAL
                ) from None

    def _poll_chain(
        self, name: str, config_override: str | None, files: Mapping[str, bytes] | None
    ) -> tuple[list[str], set[str]]:
        """The model and, for an ensemble, the models its steps call, recursively (Triton's
        polling chain); and the called models the repository does not have."""
        models, _ = self.scan()
        chain: list[str] = []
        missing: set[str] = set()
        todo = [name]
        while todo:
            m = todo.pop(0)
            if m in chain or m in missing:
                continue
            if m == name and (files or config_override is not None):
                steps = self._steps_of_config(m, config_override)
            elif m in models:
                steps = self._steps_on_disk(m, models[m])
            else:
                missing.add(m)
                continue
            chain.append(m)
            with self._table_lock:
                self._entries.setdefault(m, _ModelEntry()).steps = frozenset(steps)
            todo += sorted({s for s, _ in steps})
        return chain, missing

    def _steps_on_disk(self, name: str, path: Path) -> set[tuple[str, int]]:
        try:
            text = model_config.config_file(path, self.config_name).read_text(encoding="utf-8")
            config = model_config.parse_config_text(text, name)
        except (OSError, TritonError):
            return set()  # its load reports the problem
        return {(s.model_name, s.model_version) for s in config.ensemble_scheduling.step}

    @staticmethod
    def _steps_of_config(name: str, config_override: str | None) -> set[tuple[str, int]]:
        if config_override is None:
            return set()
        try:
            config = model_config._parse_override(config_override, name)
        except TritonError:
            return set()
        return {(s.model_name, s.model_version) for s in config.ensemble_scheduling.step}

    def _steps_known(self, name: str) -> set[tuple[str, int]]:
        with self._table_lock:
            entry = self._entries.get(name)
            return set(entry.steps) if entry is not None else set()

    def _served(self, name: str) -> bool:
        return bool(self.table.versions(name))

    def _modified(self, name: str) -> bool:
        """Whether a model's files are newer than when it last loaded (Triton's rule)."""
        with self._table_lock:
            entry = self._entries.get(name)
            if entry is None or entry.path is None or not entry.timestamp:
                return True
            path, timestamp = entry.path, entry.timestamp
        models, _ = self.scan()
        return models.get(name) != path or _model_timestamp(path) > timestamp

    def _users(self, names: Iterable[str]) -> set[str]:
        """The ensembles in the dependency graph that call any of ``names``, recursively."""
        found: set[str] = set()
        todo = set(names)
        while todo:
            with self._table_lock:
                direct = {
                    user for user, entry in self._entries.items()
                    if entry.node and user not in found and {s for s, _ in entry.steps} & todo
                }  # fmt: skip
            found |= direct
            todo = direct
        return found

    def _dependency_problem(
        self, name: str, missing: set[str], failures: Mapping[str, tuple[bool, str]]
    ) -> str:
        """Why ensemble ``name`` cannot load now (Triton's texts), or ""."""
        steps = self._steps_known(name)
        with self._table_lock:
            absent = sorted({
                s for s, _ in steps
                if s in missing or s not in self._entries or not self._entries[s].node
            })  # fmt: skip
        if absent:
            return (
                f"ensemble {name} contains models that are not available or ambiguous: "
                + ", ".join(absent)
            )
        for model, version in sorted(steps):
            if model in failures:
                invalid, reason = failures[model]
                if invalid:
                    return (
                        f"ensemble '{name}' depends on '{model}' which is not valid. Model "
                        f"'{model}' failed with error: {reason}"
                    )
                return (
                    f"ensemble '{name}' depends on '{model}' which has no loaded version. Model "
                    f"'{model}' loading failed with error: {reason}"
                )
            served = self.table.versions(model)
            if not served:
                return f"ensemble '{name}' depends on '{model}' which has no loaded version."
            if version > 0 and version not in served:
                return (
                    f"ensemble '{name}' depends on '{model}' whose required version {version} "
                    "is not loaded."
                )
        return ""

    def _load_one(
        self,
        name: str,
        config_override: str | None = None,
        files: Mapping[str, bytes] | None = None,
        scan: tuple[Mapping[str, Path], Mapping[str, str]] | None = None,
    ) -> None:
        """Load (or reload) one model: every version its version_policy selects. Raises
        TritonError after recording the failure in the index. Holds only this model's lock.
        ``scan``: a scan of the repositories just made (else this load makes its own)."""
        self._check_load_request(name, config_override, files, scan)
        with self._model_lock(name):
            if files:
                models, errors = {}, {}
            elif scan is not None:
                models, errors = scan
            else:
                models, errors = self.scan()
            with self._table_lock:
                entry = self._entries.setdefault(name, _ModelEntry())
                entry.node = True
            try:
                path = self._model_source(name, entry, config_override, files, models, errors)
                timestamp = _model_timestamp(path)  # before the load, as Triton's
                try:
                    self._load_versions(name, entry, path, config_override)
                finally:
                    if files:
                        self._adopt_upload(name, entry, path)
                with self._table_lock:
                    # Triton: an override's config counts as changed now (so a later plain
                    # load keeps it until a file is newer); uploaded files load again.
                    if files:
                        entry.timestamp = 0
                    elif config_override is not None:
                        entry.timestamp = max(timestamp, time.time_ns())
                    else:
                        entry.timestamp = timestamp
            except TritonError as e:
                with self._table_lock:
                    if not entry.versions or all(
                        v.state != READY for v in entry.versions.values()
                    ):
                        entry.error = e.message
                raise
            finally:
                self._drop_unused_dirs(name, entry)

    def unload(self, name: str, unload_dependents: bool = False) -> None:
        """Unload every version of a model, waiting for its in-flight requests. With
        ``unload_dependents`` an ensemble's composing models follow it (recursively), except
        those another loaded ensemble still uses — what Triton 2.51 does."""
        check_model_name(name)
        with self._table_lock:
            if name not in self._entries:  # never loaded, or not a model: Triton answers success
                return
        composing = self._composing_models(name) if unload_dependents else set()
        with self._table_lock:
            self._entries[name].node = False
        self._unload_one(name)
        # As Triton: the ensembles that call it are unloaded too (they stay in the dependency
        # graph and load again with it).
        for user in _dependency_order(self._users([name]), self._composing_models)[::-1]:
            if self._served(user):
                self._unload_one(user)
        for model in sorted(composing):
            if not any(model in self._composing_models(user) for user in self._ready_names()):
                self.unload(model, unload_dependents=True)

    def _composing_models(self, name: str) -> set[str]:
        """The models the loaded versions of ensemble ``name`` call (empty for other models)."""
        return {
            step.model_name
            for loaded in self.table.versions(name).values()
            for step in loaded.config.ensemble_scheduling.step
        }

    def _unload_one(self, name: str) -> None:
        with self._model_lock(name):
            with self._table_lock:
                entry = self._entries.get(name)
                if entry is None:
                    return
                for state in entry.versions.values():
                    if state.state == READY:
                        state.state = UNLOADING
            self.table.uninstall(name)  # waits for in-flight requests: no table lock held
            with self._table_lock:
                for state in entry.versions.values():
                    state.state, state.reason = UNAVAILABLE_STATE, "unloaded"
                if entry.temp_dir is not None:
                    entry.stale_dirs.append(entry.temp_dir)
                    entry.temp_dir = None
            self._drop_unused_dirs(name, entry)

    def _ready_names(self) -> list[str]:
        with self._table_lock:
            return [
                name
                for name, entry in self._entries.items()
                if any(v.state == READY for v in entry.versions.values())
            ]

    def unload_all(self) -> None:
        for name in self._ready_names():
            self.unload(name)

    def poll(self) -> None:
        """One poll: load new models, unload removed ones, reload changed ones."""
        models, errors = self.scan()
        for name, reason in errors.items():
            with self._table_lock:
                known = name in self._entries
            if known:
                self.unload(name)
            with self._table_lock:
                self._entries[name] = _ModelEntry(error=reason)
        with self._table_lock:
            gone = [
                name
                for name, entry in self._entries.items()
                if name not in models and name not in errors and entry.temp_dir is None
            ]
        for name in gone:
            self.unload(name)
            with self._table_lock:
                self._entries.pop(name, None)
        changed = []
        for name, path in models.items():
            with self._table_lock:
                entry = self._entries.get(name)
                seen = None if entry is None else (entry.path, entry.fingerprint)
            if seen is None or seen[0] != path or seen[1] != _fingerprint(path):
                changed.append(name)
        self._load_many(changed, models, errors=errors)

    def start_polling(self, interval_s: float) -> None:
        def run() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.poll()
                    self._last_poll_error = ""
                except Exception as e:  # noqa: BLE001 - a poll must never kill the poller
                    self._poll_failed(e)

        self._poller = threading.Thread(target=run, name="tritonlite-repository-poll", daemon=True)
        self._poller.start()

    def _poll_failed(self, error: BaseException) -> None:
        """Log a failed poll once per distinct error (a broken repository fails every poll)."""
        text = f"{type(error).__name__}: {error}"
        if text != self._last_poll_error:
            self._last_poll_error = text
            _log.error("polling the model repository failed: %s", text, exc_info=error)

    def close(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join()
        self.unload_all()

    # ---- index -------------------------------------------------------------------------------

    def index(self, ready_only: bool = False) -> list[dict[str, str]]:
        """Triton's repository index: every model known, with each version's state."""
        models, errors = self.scan()
        out: list[dict[str, str]] = []
        with self._table_lock:  # a snapshot: never waits for a load
            names = sorted(set(models) | set(errors) | set(self._entries))
            for name in names:
                entry = self._entries.get(name)
                if entry is None or (not entry.versions and not entry.error):
                    if not ready_only:
                        out.append({"name": name})
                    continue
                if not entry.versions:
                    if not ready_only:
                        out.append({"name": name, "state": UNAVAILABLE_STATE, "reason": entry.error})
                    continue
                for version, st in sorted(entry.versions.items()):
                    if ready_only and st.state != READY:
                        continue
                    out.append(
                        {"name": name, "version": str(version), "state": st.state, "reason": st.reason}
                    )
        return out

    def has_versions(self, name: str) -> bool:
        """Whether some version of the model was loaded, or tried (whatever its state now)."""
        with self._table_lock:
            entry = self._entries.get(name)
            return entry is not None and bool(entry.versions)

    def all_ready(self) -> bool:
        """Strict readiness without touching the disk: every version tracked is READY or was
        unloaded on purpose, and no model failed before any version was tried. Reads a snapshot:
        never waits for a load."""
        with self._table_lock:
            for entry in self._entries.values():
                if not entry.versions and entry.error:
                    return False
                for st in entry.versions.values():
                    if st.state != READY and st.reason != "unloaded":
                        return False
        return True

    # ---- internals ---------------------------------------------------------------------------

    def _model_source(
        self,
        name: str,
        entry: _ModelEntry,
        config_override: str | None,
        files: Mapping[str, bytes] | None,
        models: Mapping[str, Path],
        errors: Mapping[str, str],
    ) -> Path:
        """Where the model's files are: its repository directory (from the scan ``load`` just
        made) or a private directory holding the uploaded files."""
        if files:
            if config_override is None:
                raise TritonError(
                    f"failed to load '{name}': file overrides need a config override as well",
                    INVALID_ARG,
                )
            return self._materialize_files(name, entry, files)
        if name in errors:
            raise TritonError(errors[name], INVALID_ARG)
        path = models.get(name)
        if path is None:
            raise TritonError(
                f"failed to load '{name}', failed to poll from model repository", INTERNAL
            )
        return path

    def _materialize_files(self, name: str, entry: _ModelEntry, files: Mapping[str, bytes]) -> Path:
        """A model made of uploaded files ('file:<version>/<name>' keys), in a private dir."""
        for key in files:
            _check_override_path(name, key)
        root = Path(tempfile.mkdtemp(prefix="tritonlite-model-")) / name
        try:
            root.mkdir()
            for key, content in files.items():
                rel = key.removeprefix("file:")
                target = (root / rel).resolve()
                if not rel or Path(rel).is_absolute() or root.resolve() not in target.parents:
                    raise TritonError(
                        f"failed to load '{name}': file override '{key}' is outside the model "
                        "directory",
                        INVALID_ARG,
                    )
                target.parent.mkdir(parents=True, exist_ok=True)
                data = content if isinstance(content, bytes) else base64.b64decode(content)
                target.write_bytes(data)
        except OSError as e:  # e.g. a file and a directory of the same name
            shutil.rmtree(root.parent, ignore_errors=True)
            raise TritonError(
                f"failed to load '{name}': cannot write the file overrides: {e.strerror}",
                INVALID_ARG,
            ) from e
        except BaseException:
            shutil.rmtree(root.parent, ignore_errors=True)
            raise
        # The previous upload stays until the versions served from it are retired (see load).
        return root

    def _adopt_upload(self, name: str, entry: _ModelEntry, root: Path) -> None:
        """After a load from uploaded files: the new directory becomes the model's if a version
        now serves from it (the previous one waits to be unused), else it is dropped."""
        serving = any(m.model_dir == root for m in self.table.versions(name).values())
        with self._table_lock:
            if serving:
                if entry.temp_dir is not None:
                    entry.stale_dirs.append(entry.temp_dir)
                entry.temp_dir = root.parent
            else:
                entry.stale_dirs.append(root.parent)

    def _drop_unused_dirs(self, name: str, entry: _ModelEntry) -> None:
        """Delete upload directories that no served version of the model reads any more."""
        in_use = [m.model_dir for m in self.table.versions(name).values() if m.model_dir]
        with self._table_lock:
            drop = [d for d in entry.stale_dirs if not any(d in p.parents for p in in_use)]
            entry.stale_dirs = [d for d in entry.stale_dirs if d not in drop]
        for d in drop:
            shutil.rmtree(d, ignore_errors=True)

    def _load_versions(
        self, name: str, entry: _ModelEntry, path: Path, config_override: str | None
    ) -> None:
        fingerprint = _fingerprint(path)
        try:
            config = model_config.load_model_config(
                path,
                config_name=self.config_name,
                auto_complete=self.auto_complete,
                override=config_override,
                backend_hints=self.backend_config,
                python_auto_complete=lambda partial: _python_auto_complete(partial, path),
            )
            available = model_config.version_dirs(path)
            versions = model_config.select_versions(config, available)
        except TritonError as e:
            with self._table_lock:
                entry.path, entry.fingerprint = path, fingerprint
                self._mark_failed(entry, e.message)
            raise
        except Exception as e:  # config code must not take the server down
            with self._table_lock:
                entry.path, entry.fingerprint = path, fingerprint
                self._mark_failed(entry, str(e))
            raise TritonError(f"failed to load '{name}': {e}", INTERNAL) from e

        loaded: dict[int, LoadedModel] = {}
        failures: dict[int, str] = {}
        config_error: EnsembleConfigError | None = None
        for version in versions:
            with self._table_lock:
                entry.versions.setdefault(version, _VersionState(LOADING))
                if entry.versions[version].state != READY:
                    entry.versions[version] = _VersionState(LOADING)
            for attempt in range(self.load_retry_count + 1):
                try:  # no table lock: a backend may take seconds
                    factory = get_backend_factory(config.backend or config.platform, name)
                    backend = factory(config, path, available[version], server=self.backend_host)
                    loaded[version] = self.loader(config, version, backend, path)
                    failures.pop(version, None)
                    break
                except EnsembleConfigError as e:
                    failures[version] = e.message
                    config_error = e
                    break  # it does not fit its models: trying again cannot help
                except TritonError as e:
                    failures[version] = e.message
                except Exception as e:  # a backend's bug is that model's failure, not ours
                    failures[version] = f"{type(e).__name__}: {e}"
                if attempt < self.load_retry_count:
                    _log.warning(
                        "failed to load '%s' version %d (attempt %d of %d), retrying: %s",
                        name, version, attempt + 1, self.load_retry_count + 1, failures[version],
                    )  # fmt: skip

        # Swap in what loaded (old versions keep serving until now), then retire the rest.
        self.table.install(name, loaded, keep=set(versions))
        served = self.table.versions(name)
        with self._table_lock:
            for version in loaded:
                entry.versions[version] = _VersionState(READY)
            for version, reason in failures.items():
                previous = entry.versions.get(version)
                if previous is None or previous.state != READY or version not in served:
                    entry.versions[version] = _VersionState(UNAVAILABLE_STATE, reason)
            for version in list(entry.versions):
                if version not in versions:
                    entry.versions[version] = _VersionState(UNAVAILABLE_STATE, "unloaded")
            entry.path, entry.fingerprint, entry.error = path, fingerprint, ""
            if failures:
                entry.error = next(iter(failures.values()))
        if config_error is not None:
            raise config_error
        if failures:
            first = next(iter(failures.values()))
            raise TritonError(f"failed to load '{name}' version {min(failures)}: {first}", INVALID_ARG)

    @staticmethod
    def _mark_failed(entry: _ModelEntry, reason: str) -> None:
        """(Called with the table lock held.)"""
        entry.error = reason
        for st in entry.versions.values():
            if st.state != READY:
                st.state, st.reason = UNAVAILABLE_STATE, reason
