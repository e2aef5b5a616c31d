"""``tritonlite serve APP``: serve the functions a Python module binds or decorates.

``APP`` is a file (``app.py``: imported as module ``app`` with its directory first on
``sys.path``, so that its functions can also be imported by name, e.g. by an isolated model's
stub process) or a module name (``mypkg.app``, looked up from the working directory too). What it serves, from the module's globals:

- every ``@tritonlite.function`` (a ``TypedFunction``), one model each;
- every ``Triton`` object that has bound models and is not running (``triton = Triton();
  triton.bind(...)`` at module level, its ``triton.serve()`` under ``if __name__ ==
  "__main__":``): its models.

All of them are served by one ``Triton`` on the ports given here (the objects' own
``TritonConfig`` ports are not used), until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from .exceptions import PyTritonValidationError
from .triton import Triton, TritonConfig
from .typed_function import TypedFunction

__all__ = ["add_arguments", "import_app", "collect", "serve"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("app", help="a Python file (app.py) or module name (pkg.app)")
    parser.add_argument("--grpc-port", type=int, default=8001, help="0: a free port")
    parser.add_argument("--http-port", type=int, default=8000, help="0: a free port")
    parser.add_argument("--metrics-port", type=int, default=8002, help="0: a free port")
    parser.add_argument("--address", default="0.0.0.0", help="the address to listen on")
    parser.add_argument("--allow-metrics", default=True, action=argparse.BooleanOptionalAction)


def import_app(app: str) -> ModuleType:
    """The module ``app`` names: a .py file (its directory put first on sys.path) or a name."""
    path = Path(app)
    if app.endswith(".py") or path.is_file():
        if not path.is_file():
            raise PyTritonValidationError(f"no such file: '{app}'")
        directory = str(path.resolve().parent)
        if directory not in sys.path:
            sys.path.insert(0, directory)
        name = path.stem
    else:  # a module name: looked up from the working directory too, as `python -m` does
        name = app
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(name)
    except ImportError as e:
        if getattr(e, "name", None) == name:
            raise PyTritonValidationError(f"cannot import '{app}': {e}") from None
        raise


def collect(module: ModuleType) -> tuple[list[TypedFunction], list[Triton]]:
    """The module's ``@tritonlite.function``s and its not-running Tritons with bound models."""
    functions: list[TypedFunction] = []
    tritons: list[Triton] = []
    for value in vars(module).values():
        if isinstance(value, TypedFunction) and all(value is not f for f in functions):
            functions.append(value)
        elif isinstance(value, Triton) and value._models and not value.is_alive():
            if all(value is not t for t in tritons):
                tritons.append(value)
    return functions, tritons


def serve(app: str, config: TritonConfig, ready: Any = None) -> None:
    """Serve what ``app`` binds or decorates until SIGINT/SIGTERM; ``ready(triton)`` is called
    once it listens."""
    module = import_app(app)
    functions, tritons = collect(module)
    if not functions and not tritons:
        raise PyTritonValidationError(
            f"'{app}' defines nothing to serve: decorate functions with @tritonlite.function, or "
            "bind them on a module-level Triton() (and call triton.serve() only under "
            "if __name__ == \"__main__\")"
        )
    with Triton(config=config) as triton:
        for t in tritons:
            for name, model in t._models:
                if any(name == other for other, _ in triton._models):
                    raise PyTritonValidationError(f"model '{name}' is bound twice in '{app}'")
                triton._models.append((name, model))
        for f in functions:
            f.bind(triton)
        triton.run()
        if ready is not None:
            ready(triton)
        triton.serve()


def main(args: argparse.Namespace) -> int:
    config = TritonConfig(
        grpc_port=args.grpc_port, http_port=args.http_port, metrics_port=args.metrics_port,
        grpc_address=args.address, http_address=args.address,
        allow_metrics=args.allow_metrics,
    )  # fmt: skip

    def ready(triton: Triton) -> None:
        names = ", ".join(name for name, _ in triton._models)
        print(f"serving {names}: gRPC on {args.address}:{triton.grpc_port}, HTTP on "
              f"{args.address}:{triton.http_port}", flush=True)  # fmt: skip

    try:
        serve(args.app, config, ready)
    except PyTritonValidationError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 2
    return 0


def run(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="tritonlite serve")
    add_arguments(parser)
    return main(parser.parse_args(argv))
