"""What issue 12's analysis adds to a precompute job at ImageNet size, on synthetic profiles.

    python -m precompute.analysis.bench [--samples 50000] [--filters 26560] [--threads 1 2] [--full-map]
    python -m precompute.analysis.bench --model torchvision:resnet50 --model-only --threads 1

Streaming parts, per shard of ``--shard-rows`` rows, timed next to a plain float32 pass over the same
shard (read it and sum it): the saliency top-K (on standardized rows), the activation top-K (on a second,
independent stream of the same size, standing in for the channel maxima), and the fingerprints. Then the
final step on the mistakes: PCA + t-SNE map in saliency space and in feature space, k-means failure
modes and their descriptions. With ``--full-map``, also the map of all ``--samples`` rows. Each final
step runs once per ``--threads`` value (BLAS, OpenMP and openTSNE limited to it). With ``--model``, first
the activation side: ``channel_maxima`` (a forward with a max hook per conv) against a plain forward.

The synthetic data is written to a temporary .npy under ``--dir`` (samples x filters x 4 bytes, 5.3 GB by
default) and deleted afterwards: a class centre plus noise for correct samples, a mix of the true and the
predicted class's centres for mistakes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from backend.errors import PSSError

from .failure_modes import cluster_points, describe_modes
from .fingerprints import Fingerprints
from .maps import embed, reduce_rows
from .reference import DEFAULT_K, TopK, channel_maxima

RESNET50_FILTERS = 26_560
RESNET50_FEATURES = 2048


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m precompute.analysis.bench", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 2)[2])
    add_arguments(parser)
    args = parser.parse_args(argv)
    problem = invalid(args)
    if problem:
        parser.error(problem)
    return args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags, shared by ``python -m precompute.analysis.bench`` and ``pss bench analysis``."""
    parser.add_argument("--samples", type=int, default=50_000, help="rows (default 50,000: ImageNet val)")
    parser.add_argument("--filters", type=int, default=RESNET50_FILTERS, help="profile length (default: ResNet-50's 26,560)")
    parser.add_argument("--features", type=int, default=RESNET50_FEATURES, help="feature length (default 2048)")
    parser.add_argument("--classes", type=int, default=1000, help="classes (default 1000)")
    parser.add_argument("--mistake-rate", type=float, default=0.25, help="share of mistakes (default 0.25)")
    parser.add_argument("--shard-rows", type=int, default=1024, help="rows per shard (default 1024, the job's shard size)")
    parser.add_argument("--k", type=int, default=DEFAULT_K, help=f"reference samples per filter (default {DEFAULT_K})")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts for the final step")
    parser.add_argument("--full-map", action="store_true", help="also map all --samples rows (minutes)")
    parser.add_argument("--model", default=None,
                        help="also time channel_maxima against a plain forward of this model SPEC (e.g. torchvision:resnet50)")
    parser.add_argument("--model-only", action="store_true", help="with --model: time only that, no synthetic profiles")
    parser.add_argument("--image-size", type=int, default=224, help="input size for --model (default 224)")
    parser.add_argument("--batch-size", type=int, default=8, help="batch for --model (default 8)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds for --model, after one warm-up (default 3)")
    parser.add_argument("--dir", default=None, help="where to write the temporary data (default: system temp)")
    parser.add_argument("--seed", type=int, default=0)


def invalid(args) -> str | None:
    """What is wrong with the flags, in one line, or None."""
    if min(args.samples, args.filters, args.features, args.classes, args.shard_rows, args.k, args.image_size,
           args.batch_size, args.rounds, *args.threads) < 1:
        return "sizes, --k and --threads must be positive"
    if args.model_only and not args.model:
        return "--model-only needs --model"
    if not 0 < args.mistake_rate < 1:
        return "--mistake-rate must lie strictly between 0 and 1"
    return None


class Clock:
    """Wall and CPU seconds (all threads of this process) of the ``with`` block, added to ``totals[name]``:
    on a shared machine CPU time shows the work, wall time what other jobs left of the cores."""

    def __init__(self, totals: dict, name: str):
        self.totals, self.name = totals, name

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def __exit__(self, *exc):
        wall, cpu = self.totals.get(self.name, (0.0, 0.0))
        self.totals[self.name] = (wall + time.perf_counter() - self.wall, cpu + time.process_time() - self.cpu)


def synthetic(path: Path, args) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(z memmap [n, F], labels, preds)``, written in chunks of ~128 MB."""
    rng = np.random.default_rng(args.seed)
    n, f = args.samples, args.filters
    labels = rng.integers(0, args.classes, n)
    preds = np.where(rng.random(n) < args.mistake_rate, (labels + rng.integers(1, args.classes, n)) % args.classes, labels)
    centres = rng.standard_normal((args.classes, f), dtype=np.float32)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, f))
    chunk = max(1, (1 << 27) // (4 * f))
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        block = rng.standard_normal((stop - start, f), dtype=np.float32)
        block += centres[labels[start:stop]]
        block += 0.5 * centres[preds[start:stop]]
        out[start:stop] = block
    out.flush()
    del out
    return np.load(path, mmap_mode="r"), labels, preds


def streaming(z, labels, preds, args) -> dict:
    """Seconds, summed over shards, of each streaming part and of the plain pass."""
    n, f = z.shape
    saliency, activations = TopK(f, args.k), TopK(f, args.k)
    fingerprints = Fingerprints(args.classes, f)
    noise = np.random.default_rng(args.seed + 1)
    totals = {}
    for start in range(0, n, args.shard_rows):
        stop = min(n, start + args.shard_rows)
        ids = np.arange(start, stop)
        other = noise.standard_normal((stop - start, f), dtype=np.float32)
        with Clock(totals, "plain float32 pass"):
            block = np.array(z[start:stop])
            block.sum(dtype=np.float32)
        with Clock(totals, "saliency top-K"):
            saliency.update(block, ids)
        with Clock(totals, "activation top-K"):
            activations.update(other, ids)
        with Clock(totals, "fingerprints"):
            fingerprints.update(block, labels[start:stop], preds[start:stop])
    return totals


def final_step(z, features, labels, preds, wrong, threads: int, seed: int) -> dict:
    """Seconds of each step on the mistakes, with ``threads`` threads."""
    from threadpoolctl import threadpool_limits

    times = {}
    with threadpool_limits(threads):
        with Clock(times, "gather mistakes' rows"):
            rows = np.asarray(z[wrong])
        for space, data in (("saliency", rows), ("feature", features)):
            with Clock(times, f"{space}: L2 + PCA-50"):
                points, _ = reduce_rows(data, seed=seed)
            with Clock(times, f"{space}: t-SNE"):
                _, params = embed(points, seed=seed, n_jobs=threads)
            if space == "saliency":
                with Clock(times, "failure modes (k-means + descriptions)"):
                    cluster_of, _ = cluster_points(points, seed=seed)
                    describe_modes(cluster_of, rows, labels[wrong], preds[wrong], wrong)
    return times


def full_map(z, threads: int, seed: int) -> dict:
    from threadpoolctl import threadpool_limits

    times = {}
    with threadpool_limits(threads):
        with Clock(times, "L2 + PCA-50"):
            points, _ = reduce_rows(z, seed=seed)
        with Clock(times, "t-SNE"):
            embed(points, seed=seed, n_jobs=threads)
    return times


def activation_cost(args) -> dict:
    """Median per-image (wall, CPU) seconds of a plain no-grad forward and of ``channel_maxima`` (the same
    forward plus a max-reduction hook on every conv output), on random images, with the first ``--threads``."""
    import torch

    from backend.models import load_model

    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads[0])
    try:
        return _activation_rounds(load_model(args.model), args)
    finally:
        torch.set_num_threads(threads)


def _activation_rounds(model, args) -> dict:
    import torch

    images = torch.randn(args.batch_size, 3, args.image_size, args.image_size, generator=torch.Generator().manual_seed(args.seed))
    runs = {"plain forward": lambda: model(images), "channel_maxima (forward + hooks)": lambda: channel_maxima(model, images)}
    rounds = {name: [] for name in runs}
    with torch.no_grad():
        for round_ in range(args.rounds + 1):
            for name, run in runs.items():
                wall, cpu = time.perf_counter(), time.process_time()
                run()
                if round_:  # the first round warms up
                    rounds[name].append(((time.perf_counter() - wall) / args.batch_size, (time.process_time() - cpu) / args.batch_size))
    return {name: tuple(float(np.median([r[i] for r in times])) for i in (0, 1)) for name, times in rounds.items()}


def main(argv=None) -> int:
    return run(parse_args(argv))


def run(args) -> int:
    """``pss bench analysis``: the flags' problems are one-line errors."""
    problem = invalid(args)
    if problem:
        raise PSSError(problem)
    if args.model:
        costs = activation_cost(args)
        print(f"{args.model}, {args.image_size}x{args.image_size}, batch {args.batch_size}, {args.threads[0]} torch thread(s), "
              f"median of {args.rounds} rounds "
              "(wall ms / CPU ms per image):")
        for name, (wall, cpu) in costs.items():
            print(f"  {name:34s} {1000 * wall:8.1f} {1000 * cpu:8.1f}")
        if args.model_only:
            return 0
    n, f = args.samples, args.filters
    print(f"synthetic standardized profiles {n:,} x {f:,} float32 ({n * f * 4 / 1e9:.2f} GB), {args.classes} classes, "
          f"{args.mistake_rate:.0%} mistakes; shards of {args.shard_rows} rows; K={args.k}")
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="pss-bench-analysis-") as tmp:
        clock = time.perf_counter()
        z, labels, preds = synthetic(Path(tmp) / "profiles_std.npy", args)
        wrong = np.flatnonzero(labels != preds)
        features = np.maximum(np.random.default_rng(args.seed + 2).standard_normal((wrong.size, args.features), dtype=np.float32), 0)
        print(f"data written in {time.perf_counter() - clock:.1f} s; {wrong.size:,} mistakes")

        totals = streaming(z, labels, preds, args)
        shards = -(-n // args.shard_rows)
        plain = totals["plain float32 pass"][0]
        print(f"\nstreaming, {shards} shards, one thread (wall s / CPU s in all, wall ms per shard, x the plain pass):")
        for name, (wall, cpu) in totals.items():
            print(f"  {name:24s} {wall:8.2f} {cpu:8.2f} {1000 * wall / shards:8.1f} ms {wall / plain:7.1f}x")
        added = [sum(t[i] for name, t in totals.items() if name != "plain float32 pass") for i in (0, 1)]
        print(f"  {'added by the analysis':24s} {added[0]:8.2f} {added[1]:8.2f}")

        runs = [(f"final step on the {wrong.size:,} mistakes", lambda t: final_step(z, features, labels, preds, wrong, t, args.seed))]
        if args.full_map:
            runs.append((f"map of all {n:,} rows", lambda t: full_map(z, t, args.seed)))
        for title, run in runs:
            for threads in args.threads:
                times = run(threads)
                print(f"\n{title}, {threads} thread(s) (wall s / CPU s):")
                for name, (wall, cpu) in times.items():
                    print(f"  {name:40s} {wall:8.2f} {cpu:8.2f}")
                print(f"  {'total':40s} {sum(t[0] for t in times.values()):8.2f} {sum(t[1] for t in times.values()):8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
