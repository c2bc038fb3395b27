"""The `pss` command line.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``.
Those modules keep their top-level imports light (heavy imports go inside ``run``) so that
``pss --help`` answers instantly. A subcommand whose module is not there yet says so instead of failing.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# name -> (module implementing it, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("backend.demo", "run everything on the embedded default (Fashion-MNIST + demo ResNet) and print the URL"),
    "train-demo": ("backend.models.train_demo", "train the demo ResNet on Fashion-MNIST (seeded) and write its checkpoint"),
    "precompute": ("precompute.cli", "compute profiles, statistics, features and the FAISS index for a dataset"),
    "serve": ("backend.api.cli", "serve an artifacts dir over HTTP (FastAPI)"),
    "ui": ("app.cli", "start the Dash dashboard against a running backend"),
    "experiments": ("backend.experiments.cli", "run the paper's validation experiments on an artifacts dir"),
}

BENCH_COMMANDS: dict[str, tuple[str, str]] = {
    "profiles": ("backend.bench.profiles", "engine vs batch-size-1 reference vs plain forward+backward"),
    "index": ("backend.bench.index", "nearest-neighbour query latency on synthetic profiles"),
    "api": ("backend.bench.api", "HTTP route latency against a warm server"),
}


def _load(module_name: str):
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            return None
        raise


def _add_commands(subparsers, table: dict[str, tuple[str, str]]) -> None:
    for name, (module_name, help_text) in table.items():
        module = _load(module_name)
        if module is None:
            parser = subparsers.add_parser(name, help=f"{help_text} (not yet available)")
            parser.set_defaults(_run=_not_available(name))
            continue
        parser = subparsers.add_parser(
            name, help=help_text, description=module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        module.add_arguments(parser)
        parser.set_defaults(_run=module.run)


def _not_available(name: str):
    def run(_args) -> int:
        print(f"`pss {name}` is not yet available in this version.")
        return 0

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pss",
        description="Parameter-space saliency maps: find out where your vision model goes wrong.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_commands(subparsers, COMMANDS)
    bench = subparsers.add_parser("bench", help="benchmarks that print side-by-side ratios")
    _add_commands(bench.add_subparsers(dest="bench_command", metavar="BENCH", required=True), BENCH_COMMANDS)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from backend.errors import PSSError

    try:
        return int(args._run(args) or 0)
    except PSSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
