"""The example model repository bundled with the package, and the `tritonlite` command.

`tritonlite serve APP` serves the Python functions a module binds or decorates
(tritonlite/pytriton/serve_module.py); `tritonlite tune MODEL --model-repository DIR` finds a
model's best configuration (tritonlite/tune/).

`tritonlite serve-examples [tritonlite-server flags]` serves the bundled repository (the models
of README's "Talking to it") straight from the installed package; `tritonlite copy-examples DIR`
copies it into DIR to edit or extend. In a source checkout (editable install) the repository is
the checkout's model_repository/.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

_PACKAGED = Path(__file__).resolve().parent / "examples"
_CHECKOUT = Path(__file__).resolve().parents[2] / "model_repository"


def examples_dir() -> Path:
    """The bundled example model repository (read it, do not write into it)."""
    for candidate in (_PACKAGED, _CHECKOUT):
        if (candidate / "simple" / "config.pbtxt").is_file():
            return candidate
    raise FileNotFoundError("the bundled example models are missing from this installation")


def copy_examples(dest: Path) -> Path:
    """Copies the bundled repository into ``dest`` (which must not exist or be empty)."""
    if dest.exists() and any(dest.iterdir()):
        raise FileExistsError(f"'{dest}' exists and is not empty")
    shutil.copytree(
        examples_dir(),
        dest,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("__pycache__", "generate*.py", ".minilm", ".textgen"),
    )
    return dest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tritonlite",
        description="tritonlite's example models, and serving Python functions (the server "
        "itself is tritonlite-server).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve-examples",
        help="serve the bundled example models; other flags go to tritonlite-server",
    )
    serve.set_defaults(command="serve-examples")
    copy = sub.add_parser("copy-examples", help="copy the bundled example models into DIR")
    copy.add_argument("dir", type=Path)
    app = sub.add_parser(
        "serve", add_help=False,
        help="serve the Python functions APP (app.py or pkg.app) binds or decorates "
             "(tritonlite serve --help)",
    )  # fmt: skip
    app.add_argument("app_args", nargs=argparse.REMAINDER)
    tune = sub.add_parser(
        "tune", add_help=False,
        help="find a model's best configuration within a p99 budget (tritonlite tune --help)",
    )  # fmt: skip
    tune.add_argument("tune_args", nargs=argparse.REMAINDER)
    args, rest = parser.parse_known_args(argv)
    if args.command == "tune":
        from . import tune as tuner

        return tuner.main([*args.tune_args, *rest])
    if args.command == "serve":
        from .pytriton import serve_module

        return serve_module.run([*args.app_args, *rest])
    if args.command == "copy-examples":
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        try:
            dest = copy_examples(args.dir)
        except (FileExistsError, FileNotFoundError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"copied the example models to {dest}; serve them with:")
        print(f"  tritonlite-server --model-repository {dest}")
        return 0
    if any(flag == "--model-repository" or flag.startswith("--model-repository=") for flag in rest):
        parser.error("serve-examples serves the bundled models: leave out --model-repository")
    from .cli import main as server_main

    return server_main(["--model-repository", str(examples_dir()), *rest])


if __name__ == "__main__":
    sys.exit(main())
