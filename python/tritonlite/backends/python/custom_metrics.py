"""Custom metrics that python models create with ``pb_utils.MetricFamily`` (Triton's Custom
Metrics API).

The metrics themselves live in ``tritonlite.metrics``' process-wide custom registry, which every
metrics endpoint exports after Triton's own families. This module owns the python backend's side
of it: Triton's rules and error texts for each kind (``check_update``, also used in stub
processes before an update is sent), turning registry errors into ``TritonModelException`` for
the model, and lifetimes as in Triton: a family or metric exists while a model holds a Python
object for it (deleting a ``MetricFamily`` deletes the family, deleting a ``Metric`` removes its
series), and whatever a model version still holds is removed when it is unloaded
(``Registry.release``). Families are shared by name (same kind and description); a metric with
the same labels in a family is the same series.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from ...errors import TritonError
from .pb_utils import MetricFamily, TritonModelException

__all__ = ["Metric", "Registry", "check_update", "registry"]

KIND_NAMES = {MetricFamily.COUNTER: "COUNTER", MetricFamily.GAUGE: "GAUGE",
              MetricFamily.HISTOGRAM: "HISTOGRAM"}  # fmt: skip
_VERBS = {"increment": ("increment", "Increment"), "set": ("set", "Set"),
          "observe": ("observe", "Observe"), "value": ("get", "Value")}  # fmt: skip


def check_update(kind: int, op: str, value: float, instance: str) -> None:
    """Raise Triton's error for an operation the metric's kind does not allow."""
    verb, api = _VERBS[op]
    kind_name = f"TRITONSERVER_METRIC_KIND_{KIND_NAMES[kind]}"
    allowed = {
        MetricFamily.COUNTER: ("increment", "value"),
        MetricFamily.GAUGE: ("increment", "set", "value"),
        MetricFamily.HISTOGRAM: ("observe",),
    }[kind]
    if op not in allowed:
        problem = f"{kind_name} does not support {api}"
    elif op == "increment" and kind == MetricFamily.COUNTER and value < 0:
        problem = f"{kind_name} can only be incremented monotonically by non-negative values"
    else:
        return
    raise TritonModelException(
        f"Failed to {verb} metric value: Failed to process the request for model '{instance}', "
        f"message: {problem}"
    )


class Metric:
    """One labelled metric in the server's registry, for a model's ``pb_utils.Metric``."""

    __slots__ = ("instance", "key", "kind", "metric")

    def __init__(self, key: tuple[Any, ...], kind: int, metric: Any, instance: str) -> None:
        self.key = key
        self.kind = kind
        self.metric = metric
        self.instance = instance

    def increment(self, value: float) -> None:
        check_update(self.kind, "increment", value, self.instance)
        self.metric.increment(value)

    def set(self, value: float) -> None:
        check_update(self.kind, "set", value, self.instance)
        self.metric.set(value)

    def observe(self, value: float) -> None:
        check_update(self.kind, "observe", value, self.instance)
        self.metric.observe(value)

    def value(self) -> float:
        check_update(self.kind, "value", 0.0, self.instance)
        return float(self.metric.value)

    def apply(self, op: str, value: float) -> None:
        getattr(self, op)(value)


class Registry:
    """How many live Python objects of which model hold each custom family and metric."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._families: dict[str, tuple[Any, Counter[Any]]] = {}  # name -> (handle, refs)
        self._metrics: dict[tuple[Any, ...], tuple[Any, Counter[Any]]] = {}  # key -> (family, refs)

    def family(self, name: str, description: str, kind: int, owner: Any) -> tuple[str, Any, int]:
        """A reference to family ``name`` for one MetricFamily object of ``owner``."""
        from ... import metrics

        try:
            handle = metrics.register_custom_family(name, description, KIND_NAMES[kind])
        except TritonError as e:
            raise TritonModelException(f"Failed to create metric family: {e.message}") from None
        with self._lock:
            entry = self._families.get(name)
            if entry is None or entry[0] is not handle:
                entry = self._families[name] = (handle, Counter())
            entry[1][owner] += 1
        return name, handle, kind

    def metric(
        self,
        family: tuple[str, Any, int],
        labels: dict[str, str],
        buckets: list[float] | None,
        owner: Any,
        instance: str,
    ) -> Metric:
        """A reference to the metric with ``labels`` for one Metric object of ``owner``."""
        name, handle, kind = family
        try:
            metric = handle.metric(labels, buckets)
        except TritonError as e:
            raise TritonModelException(f"Failed to create metric. {e.message}") from None
        key = (name, id(handle), tuple(sorted(labels.items())))
        with self._lock:
            self._metrics.setdefault(key, (handle, Counter()))[1][owner] += 1
        return Metric(key, kind, metric, instance)

    def drop_family(self, family: tuple[str, Any, int], owner: Any) -> None:
        """A MetricFamily object was deleted: the family goes when nothing holds it."""
        self._drop(self._families, family[0], owner, count=1)

    def drop_metric(self, metric: Metric, owner: Any) -> None:
        self._drop(self._metrics, metric.key, owner, count=1)

    def release(self, owner: Any) -> None:
        """Drop every reference ``owner`` (an unloaded model version) still holds."""
        with self._lock:
            metric_keys = [k for k, (_, refs) in self._metrics.items() if owner in refs]
            family_names = [n for n, (_, refs) in self._families.items() if owner in refs]
        for key in metric_keys:
            self._drop(self._metrics, key, owner, count=None)
        for name in family_names:
            self._drop(self._families, name, owner, count=None)

    def _drop(self, table: dict[Any, Any], key: Any, owner: Any, count: int | None) -> None:
        from ... import metrics

        with self._lock:
            entry = table.get(key)
            if entry is None:
                return
            handle, refs = entry
            refs[owner] -= refs[owner] if count is None else count
            if refs[owner] <= 0:
                del refs[owner]
            if refs:
                return
            del table[key]
        if table is self._families:
            metrics.unregister_custom_family(key)
        else:
            handle.remove_metric(dict(key[2]))


_registry = Registry()


def registry() -> Registry:
    return _registry
