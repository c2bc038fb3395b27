"""The `pss` command line: the top layer, which may import every other one.

Each subcommand lives in a module exposing ``add_arguments(parser)`` and ``run(args) -> int``; they are
imported statically here, so import-linter sees every edge. A user error is printed as one line: a
``PSSError`` from the backend, or ``SystemExit("message")`` from the dashboard (which does not import
the backend).
"""

from __future__ import annotations

import argparse
import logging
import sys
from types import ModuleType

import app.cli
import precompute.cli
from precompute import export_cli
from precompute.analysis import bench as bench_analysis
from backend import demo, train_demo
from backend.api import cli as serve_cli
from backend.bench import api as bench_api
from backend.bench import index as bench_index
from backend.bench import memory as bench_memory
from backend.bench import profiles as bench_profiles
from backend.errors import PSSError
from backend.experiments import cli as experiments_cli

# name -> (module implementing it, one-line help)
COMMANDS: dict[str, tuple[ModuleType, str]] = {
    "demo": (demo, "run everything on the embedded default (Fashion-MNIST + demo ResNet) and print the URL"),
    "train-demo": (train_demo, "train the demo ResNet on Fashion-MNIST (seeded) and write its checkpoint"),
    "precompute": (precompute.cli, "compute profiles, statistics, features and the FAISS index for a dataset"),
    "serve": (serve_cli, "serve an artifacts dir over HTTP (FastAPI)"),
    "ui": (app.cli, "start the Dash dashboard against a running backend"),
    "experiments": (experiments_cli, "run the paper's validation experiments on an artifacts dir"),
    "export": (export_cli, "write one row per sample (prediction, top filters, failure mode, map) as Parquet or CSV"),
}

BENCH_COMMANDS: dict[str, tuple[ModuleType, str]] = {
    "profiles": (bench_profiles, "engine vs batch-size-1 reference vs plain forward+backward"),
    "index": (bench_index, "nearest-neighbour query latency on synthetic profiles"),
    "api": (bench_api, "HTTP route latency against a warm server"),
    "memory": (bench_memory, "resident memory of a served artifacts dir, float32 or float16"),
    "analysis": (bench_analysis, "what the filter/confusion/map analysis adds to a precompute job, on synthetic profiles"),
}


def _add_commands(subparsers, table: dict[str, tuple[ModuleType, str]]) -> None:
    for name, (module, help_text) in table.items():
        parser = subparsers.add_parser(
            name, help=help_text, description=module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        module.add_arguments(parser)
        parser.set_defaults(_run=module.run)


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
    try:
        return int(args._run(args) or 0)
    except PSSError as exc:
        return user_error(str(exc))
    except SystemExit as exc:
        if isinstance(exc.code, str):  # SystemExit("message"): a user error from a layer without PSSError
            return user_error(exc.code)
        raise
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def user_error(message: str) -> int:
    """One line on stderr and exit status 2, like argparse (``error: `` once, also if the message has it)."""
    print(f"error: {message.removeprefix('error: ')}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
