"""Run the paper's validation experiments (Levin et al., sections 3.1-3.4, A.2, A.5, A.8-A.10) on an artifacts dir.

Each experiment uses the dir's misclassified samples and writes DIR/experiments/<name>.json (parameters,
per-n curves with seeded 95% bootstrap confidence intervals, sample counts, and the command). The dashboard's
Experiments page shows them. --which lists the experiments.
"""

from __future__ import annotations

import argparse
import shlex

import torch

from backend.errors import PSSError
from backend.store import open_run

from . import EXPERIMENTS, NAMES
from .common import QUICK_LIMIT, Context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--artifacts", required=True, metavar="DIR", help="a finished artifacts dir (pss precompute)")
    parser.add_argument("--which", default="all", metavar="NAMES",
                        help=f"comma-separated experiments to run (default: all = {','.join(NAMES)})")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="use at most N misclassified samples per experiment (a seeded subset), for quick runs")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice and bootstrap (default: 0)")
    parser.add_argument("--batch-size", type=int, default=64, metavar="N", help="samples per forward (default: 64)")
    for flag in _flags():
        parser.add_argument(flag.flag, dest=_dest(flag), type=flag.type, default=None, metavar=flag.metavar,
                            help=flag.help)
    parser.add_argument("--threads", type=int, default=1, metavar="N",
                        help="torch CPU threads (default: 1, like pss train-demo: on a busy 2-core machine two "
                             "spinning threads per process are many times slower than one)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--quick", action="store_true",
                        help=f"a seeded subset of {QUICK_LIMIT} mistakes per experiment and fewer settings for the "
                             "slowest ones (what the dashboard's 'run all, quick' runs; docs/benchmarks.md has its "
                             "time on the demo); --limit and the experiments' flags win")
    parser.add_argument("--progress-lines", action="store_true",
                        help="progress as plain lines on stdout ('start NAME', 'progress DONE TOTAL'), for programs")


def _flags():
    return [flag for experiment in EXPERIMENTS.values() for flag in experiment.flags]


def _dest(flag) -> str:
    return flag.flag.removeprefix("--").replace("-", "_")


def parse_which(text: str) -> list[str]:
    if text.strip() == "all":
        return list(NAMES)
    chosen = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in NAMES]
    if unknown or not chosen:
        raise PSSError(f"unknown experiment {unknown[0] if unknown else text!r}; choose from {', '.join(NAMES)} or all")
    return [name for name in NAMES if name in chosen]


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this run (recorded in every result)."""
    parts = ["pss", "experiments", "--artifacts", str(args.artifacts)]
    if args.which != "all":
        parts += ["--which", args.which]
    if args.quick:
        parts.append("--quick")
    settings = [("--limit", args.limit, None), ("--device", args.device, "cpu"), ("--seed", args.seed, 0),
                ("--batch-size", args.batch_size, 64)]
    settings += [(flag.flag, getattr(args, _dest(flag)), None) for flag in _flags()]
    for flag, value, default in [*settings, ("--threads", args.threads, 1)]:
        if value != default:
            parts += [flag, str(value)]
    return shlex.join(parts)


def load_context(args: argparse.Namespace) -> Context:
    """Artifacts, model and dataset, refused with one line when they do not belong together."""
    limit = QUICK_LIMIT if args.quick and args.limit is None else args.limit
    if limit is not None and limit < 1:
        raise PSSError("--limit must be a positive number of samples")
    if args.batch_size < 1:
        raise PSSError("--batch-size must be positive")
    run = open_run(args.artifacts, args.device)
    if run.artifacts.correct.all():
        raise PSSError(f"the model classifies all {run.artifacts.num_samples} samples correctly: no mistakes to study")
    return Context(run.artifacts, run.model, run.dataset, command=command_line(args), seed=args.seed,
                   limit=limit, batch_size=args.batch_size, progress=not (args.no_progress or args.progress_lines),
                   progress_lines=args.progress_lines)


def options(args: argparse.Namespace, name: str) -> dict:
    """The runner's keyword arguments: its quick settings under --quick, then those given on the command line."""
    given = {flag.option: getattr(args, _dest(flag)) for flag in EXPERIMENTS[name].flags}
    quick = dict(EXPERIMENTS[name].quick) if args.quick else {}
    return quick | {option: value for option, value in given.items() if value is not None}


def run(args: argparse.Namespace) -> int:
    which = parse_which(args.which)
    if args.threads < 1:
        raise PSSError("--threads must be positive")
    torch.set_num_threads(args.threads)
    ctx = load_context(args)
    print(f"{len(ctx.mistakes)} misclassified samples of {ctx.artifacts.num_samples}; running {', '.join(which)}")
    total = 0.0
    for name in which:
        if args.progress_lines:
            print(f"start {name}", flush=True)
        with torch.inference_mode(False):
            doc = EXPERIMENTS[name].run(ctx, **options(args, name))
        total += doc["seconds"]
        print(f"{name:13s} {doc['num_samples']:6d} samples {doc['seconds']:8.1f} s -> "
              f"{ctx.artifacts.directory}/experiments/{name}.json", flush=True)
    print(f"total {total:.1f} s")
    return 0
