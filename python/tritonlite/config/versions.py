"""Model versions: the version directories of a model and the ones its version policy
serves."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from ..errors import INVALID_ARG, TritonError
from .constants import VERSION_DIR_RE, ModelConfig

_log = logging.getLogger("tritonlite.config")


def version_dirs(model_dir: Path | str) -> dict[int, Path]:
    """The version subdirectories of ``model_dir``, by version, in ascending order.

    Only plain decimal names count ("1", "20"); Triton ignores names with leading zeros
    ("03") and anything that is not a number.
    """
    found: dict[int, Path] = {}
    root = Path(model_dir)
    if not root.is_dir():
        return found
    for child in root.iterdir():
        if child.is_dir() and VERSION_DIR_RE.fullmatch(child.name):
            found[int(child.name)] = child
    return dict(sorted(found.items()))


def select_versions(config: ModelConfig, available: Iterable[int]) -> list[int]:
    """The versions to serve under ``config.version_policy``, ascending.

    latest{n}: the n highest; all: every one; specific{versions}: those listed that exist
    (each listed one that is missing is logged with Triton's text, as Triton does). No
    version left raises TritonError(INVALID_ARG) with Triton's message.
    """
    have = sorted(set(available))
    policy = config.version_policy
    which = policy.WhichOneof("policy_choice")
    if which == "all":
        chosen = have
    elif which == "specific":
        chosen = []
        for version in sorted(set(policy.specific.versions)):
            if version in have:
                chosen.append(version)
            else:
                _log.error(
                    "version %d is specified for model '%s', but the version directory "
                    "is not present",
                    version,
                    config.name,
                )
    else:
        n = policy.latest.num_versions if which == "latest" else 1
        chosen = sorted(have[-n:]) if n > 0 else []
    if not chosen:
        raise TritonError(
            "at least one version must be available under the version policy of model "
            f"'{config.name}'",
            INVALID_ARG,
        )
    return chosen

