"""Run the paper's validation experiments (Levin et al., sections 3.1-3.4, A.2, A.5, A.8-A.10) on an artifacts dir.

Each experiment uses the dir's misclassified samples and writes DIR/experiments/<name>.json (parameters,
per-n curves with seeded 95% bootstrap confidence intervals, sample counts, and the command). The dashboard's
Experiments page shows them. Experiments: pruning, perturbation, neighbors, finetuning, masking, gradcam,
sanity.
"""

from __future__ import annotations

import argparse
import shlex

from backend.errors import PSSError

from . import NAMES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--artifacts", required=True, metavar="DIR", help="a finished artifacts dir (pss precompute)")
    parser.add_argument("--which", default="all", metavar="NAMES",
                        help=f"comma-separated experiments to run (default: all = {','.join(NAMES)})")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="use at most N misclassified samples per experiment (a seeded subset), for quick runs")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice and bootstrap (default: 0)")
    parser.add_argument("--batch-size", type=int, default=64, metavar="N", help="samples per forward (default: 64)")
    parser.add_argument("--step-size", type=float, default=None, metavar="LR",
                        help="fine-tuning SGD step size (default: 0.001)")
    parser.add_argument("--noise-std", type=float, default=None, help="perturbation noise std (default: 0.001)")
    parser.add_argument("--mask-percent", type=float, default=None, metavar="P",
                        help="masking: percent of pixels to mask (default: 5)")
    parser.add_argument("--threads", type=int, default=1, metavar="N",
                        help="torch CPU threads (default: 1, like pss train-demo: on a busy 2-core machine two "
                             "spinning threads per process are many times slower than one)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


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
    for flag, value, default in (("--limit", args.limit, None), ("--device", args.device, "cpu"),
                                 ("--seed", args.seed, 0), ("--batch-size", args.batch_size, 64),
                                 ("--step-size", args.step_size, None), ("--noise-std", args.noise_std, None),
                                 ("--mask-percent", args.mask_percent, None), ("--threads", args.threads, 1)):
        if value != default:
            parts += [flag, str(value)]
    return shlex.join(parts)


def load_context(args: argparse.Namespace):
    """Artifacts, model and dataset, refused with one line when they do not belong together."""
    from backend.api.loader import resolve_device
    from backend.data import load_dataset
    from backend.models import load_model, weights_sha256
    from backend.saliency import FilterLayout
    from backend.store import Artifacts

    from .common import Context

    if args.limit is not None and args.limit < 1:
        raise PSSError("--limit must be a positive number of samples")
    if args.batch_size < 1:
        raise PSSError("--batch-size must be positive")
    artifacts = Artifacts.open(args.artifacts)
    model = load_model(artifacts.model_spec, resolve_device(args.device))
    dataset = load_dataset(artifacts.data_spec, artifacts.model_spec)
    artifacts.check_matches(artifacts.model_spec, weights_sha256(model), FilterLayout.from_model(model),
                            dataset.fingerprint())
    if len(dataset) < artifacts.num_samples:
        raise PSSError(f"artifacts in {args.artifacts} hold {artifacts.num_samples} samples but dataset "
                       f"{artifacts.data_spec!r} has only {len(dataset)}; rerun `pss precompute --force`")
    if artifacts.correct.all():
        raise PSSError(f"the model classifies all {artifacts.num_samples} samples correctly: no mistakes to study")
    return Context(artifacts, model, dataset, command=command_line(args), seed=args.seed, limit=args.limit,
                   batch_size=args.batch_size, progress=not args.no_progress)


def runners(args: argparse.Namespace) -> dict:
    """name -> function(ctx) -> result document, with the options given on the command line."""
    from .finetuning import run_finetuning
    from .gradcam import run_gradcam
    from .masking import run_masking
    from .neighbors import run_neighbors
    from .pruning import run_perturbation, run_pruning
    from .sanity import run_sanity

    step = {} if args.step_size is None else {"step_size": args.step_size}
    noise = {} if args.noise_std is None else {"noise_std": args.noise_std}
    percent = {} if args.mask_percent is None else {"percent": args.mask_percent}
    return {
        "pruning": run_pruning,
        "perturbation": lambda ctx: run_perturbation(ctx, **noise),
        "neighbors": run_neighbors,
        "finetuning": lambda ctx: run_finetuning(ctx, **step),
        "masking": lambda ctx: run_masking(ctx, **percent),
        "gradcam": run_gradcam,
        "sanity": run_sanity,
    }


def run(args: argparse.Namespace) -> int:
    import torch

    which = parse_which(args.which)
    if args.threads < 1:
        raise PSSError("--threads must be positive")
    torch.set_num_threads(args.threads)
    ctx = load_context(args)
    table = runners(args)
    print(f"{len(ctx.mistakes)} misclassified samples of {ctx.artifacts.num_samples}; running {', '.join(which)}")
    total = 0.0
    for name in which:
        with torch.inference_mode(False):
            doc = table[name](ctx)
        total += doc["seconds"]
        print(f"{name:13s} {doc['num_samples']:6d} samples {doc['seconds']:8.1f} s -> "
              f"{ctx.artifacts.directory}/experiments/{name}.json", flush=True)
    print(f"total {total:.1f} s")
    return 0
