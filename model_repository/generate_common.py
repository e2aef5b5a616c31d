"""What the recipes of the generated repositories share (generate_minilm.py,
generate_textgen.py): the cache key of a recipe, and writing its repository atomically unless
the one already there was written by the same recipe."""

from __future__ import annotations

import hashlib
import importlib.metadata
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path


def recipe_key(script: Path, templates: Path, packages: Iterable[str]) -> str:
    """A digest of the recipe: its script, every template file (names and bytes) and the
    versions of the packages it reads."""
    h = hashlib.sha256()
    h.update(script.read_bytes())
    for f in sorted(templates.rglob("*")):
        if f.is_file() and "__pycache__" not in f.parts:
            h.update(str(f.relative_to(templates)).encode())
            h.update(f.read_bytes())
    for pkg in packages:
        h.update(f"{pkg}={importlib.metadata.version(pkg)}".encode())
    return h.hexdigest()


def write_repository(
    out: Path,
    templates: Path,
    key_file: str,
    key: str,
    fill: Callable[[Path, Path], None],
    force: bool = False,
) -> Path:
    """``out``: a copy of ``templates`` completed by ``fill(repo, scratch)`` (``scratch``: a
    folder for intermediate files, removed after), with ``key`` in ``out/key_file``. Nothing is
    written when ``out`` already holds that key (unless ``force``); otherwise the repository is
    made beside ``out`` and replaces it whole, so a failed run leaves the old one."""
    key_path = out / key_file
    if not force and key_path.is_file() and key_path.read_text() == key:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        repo = staging / "repo"
        shutil.copytree(templates, repo, ignore=shutil.ignore_patterns("__pycache__"))
        scratch = staging / "scratch"
        scratch.mkdir()
        fill(repo, scratch)
        (repo / key_file).write_text(key)
        if out.exists():
            shutil.rmtree(out)
        repo.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
