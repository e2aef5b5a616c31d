"""The model table: which versions of which model are served now.

One table per ``Server``, shared with its ``ModelRepository``: the repository installs what it
loads and uninstalls what it unloads, the server reads it to route requests, and listeners (the
native gRPC transport's C++ table) hear of every change. Writers take a short lock and replace
a model's version map (copy-on-write); readers never lock and never see a half-updated map,
and ``snapshot()`` gives readiness and the index one consistent view.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from .model import LoadedModel

#: ``listener(name, versions)``: the versions now served for a model (empty: none).
ModelListener = Callable[[str, Mapping[int, LoadedModel]], None]


class ModelTable:
    """Served versions by model name, the latest version's runner, and the change listeners."""

    def __init__(self) -> None:
        self._models: dict[str, dict[int, LoadedModel]] = {}
        self._latest: dict[str, Any] = {}  # model name -> runner of its latest version
        self._listeners: list[ModelListener] = []
        # Loads of different models run at once: one table update (and listener call) at a time.
        self._lock = threading.Lock()

    # ---- reading (no lock: the maps are replaced, never changed) ---------------------------

    def versions(self, name: str) -> Mapping[int, LoadedModel]:
        """The versions served for ``name`` ({} when none)."""
        return self._models.get(name, {})

    def names(self) -> list[str]:
        return sorted(self._models)

    def snapshot(self) -> dict[str, Mapping[int, LoadedModel]]:
        """Every model's served versions, as one consistent view."""
        return dict(self._models)

    def latest_runner(self, name: str) -> Any:
        """The core runner of the latest served version of ``name`` (None when none)."""
        return self._latest.get(name)

    # ---- changing ---------------------------------------------------------------------------

    def install(
        self, name: str, loaded: Mapping[int, LoadedModel], keep: set[int] | None = None
    ) -> None:
        """Serve ``loaded`` versions of a model, replacing versions with the same number; with
        ``keep``, versions outside it are retired. Retired versions finish their in-flight
        requests after the new ones are visible, so no request fails during a reload."""
        with self._lock:
            old = self._models.get(name, {})
            new = {v: m for v, m in old.items() if keep is None or v in keep}
            new.update(loaded)
            retired = [m for v, m in old.items() if new.get(v) is not m]
            if new:
                self._models[name] = new  # copy-on-write: readers never see a half-updated dict
                self._latest[name] = new[max(new)].runner
            else:
                self._models.pop(name, None)
                self._latest.pop(name, None)
            for listener in self._listeners:
                listener(name, new)
        for m in retired:  # waits for their in-flight requests: no lock held
            m.stop()

    def uninstall(self, name: str, version: int | None = None) -> None:
        """Stop serving ``version`` of a model (every version when None); waits for in-flight
        requests."""
        keep = set() if version is None else set(self.versions(name)) - {version}
        self.install(name, {}, keep=keep)

    def clear_routes(self) -> None:
        """Route no request to any model any more (the server is closing)."""
        self._latest = {}

    # ---- listeners --------------------------------------------------------------------------

    def add_listener(self, listener: ModelListener) -> None:
        """``listener`` hears of every change, and at once of every model already served."""
        self._listeners.append(listener)
        for name, versions in list(self._models.items()):
            listener(name, versions)

    def remove_listener(self, listener: ModelListener) -> None:
        self._listeners.remove(listener)

    def announce(self) -> None:
        """Every listener hears of every model again."""
        with self._lock:
            for name, versions in list(self._models.items()):
                for listener in self._listeners:
                    listener(name, versions)
