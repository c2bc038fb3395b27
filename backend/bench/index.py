"""Nearest-neighbour query latency (k=10) on synthetic standardized profiles, ImageNet-size by default.

The default is 50,000 samples x 26,560 filters with ResNet-50's real 53-layer layout. For the full profile
and two layer ranges it times, query by query side by side, the plain exact scan (a BLAS pass over the
memory-mapped float32 matrix, normalized with per-layer prefix norms) and the exact search the backend uses
(backend/store/exact.py: 4-bit residual codes of every row scanned first with per-row error bounds, 4 more
bits for the rows that can still make the top k, then float32 only for the few left), checks that both give
the same top k on every query, and prints the bytes each query read. Then the FAISS index of --index (sq8 by
default), with its recall@k against exact. The data is written to a temporary dir (--dir) and deleted
afterwards; it needs about samples x filters x 5 bytes of RAM for the page cache (7 GB by default).

examples:
  pss bench index                                  # 50,000 x 26,560
  pss bench index --samples 5000 --filters 4096    # a quick check
"""

from __future__ import annotations

import argparse

from backend.bench import existing_dir

TIE_TOLERANCE = 1e-6  # answers may differ only in the order of rows whose float32 scores are this close


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--samples", type=int, default=50_000, help="rows (default 50,000: ImageNet val)")
    parser.add_argument("--filters", type=int, default=None,
                        help="profile length (default: ResNet-50's 26,560 filters and real layer layout); "
                             "otherwise split into --layers equal layers")
    parser.add_argument("--layers", type=int, default=53, help="layers when --filters is given (default 53)")
    parser.add_argument("--queries", type=int, default=40, help="timed queries per method (default 40)")
    parser.add_argument("--k", type=int, default=10, help="neighbours per query (default 10)")
    parser.add_argument("--classes", type=int, default=1000, help="synthetic clusters (default 1000)")
    parser.add_argument("--index", choices=["sq8", "ivf", "ivfpq"], default="sq8",
                        help="the approximate FAISS index timed after the exact methods, with its recall (default sq8)")
    parser.add_argument("--no-sq8", action="store_true", help="skip building and timing the approximate index")
    parser.add_argument("--dir", type=existing_dir, default=None,
                        help="an existing folder for the temporary data (default: system temp)")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    import logging
    import os
    import tempfile
    import time
    from pathlib import Path

    import numpy as np

    from backend.errors import PSSError
    from backend.store import exact, native, search

    if args.samples < args.k + 2 or args.queries < 1 or args.k < 1:
        raise PSSError("need --samples > --k + 1, and positive --queries and --k")
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    logging.getLogger("backend.store.exact").setLevel(logging.WARNING)  # the build is reported below
    print(f"exact search kernel: {native.kernel_status()}")
    layout = _layout(args.filters, args.layers)
    n, f = args.samples, layout.num_filters
    print(f"synthetic profiles: {n:,} x {f:,} float32 ({n * f * 4 / 1e9:.2f} GB), {len(layout)} layers, "
          f"{args.classes} clusters; k={args.k}, {args.queries} queries per method; "
          f"load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="pss-bench-index-") as tmp:
        started = time.perf_counter()
        matrix = _synthetic(f"{tmp}/profiles_std.npy", n, f, args.classes, args.seed)
        boundaries = [s.start for s in layout.spans] + [f]
        prefix = search.prefix_squares(matrix, boundaries)
        print(f"data written and prefix norms computed in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        prefiltered = exact.ExactSearch(matrix, prefix, boundaries, Path(tmp), "bench", min_bytes=0)
        prefiltered.prepare()
        print(f"search copy built in {time.perf_counter() - started:.1f} s "
              f"({(Path(tmp) / exact.CODES).stat().st_size / 1e9:.2f} GB of codes, "
              f"{(Path(tmp) / exact.BOUNDS).stat().st_size / 1e9:.2f} GB of side arrays)")
        queries = np.random.default_rng(args.seed + 1).choice(n, size=args.queries, replace=False)
        allowed = np.ones(n, dtype=bool)

        def scan(layers):
            """The plain exact scan: numpy's BLAS over the float32 columns of the range."""
            bounds = (boundaries[layers[0]], boundaries[layers[1]])

            def query(qid):
                allowed[qid] = False
                ids, scores = search.top_k(search.range_cosine(matrix, prefix, matrix[qid], bounds, layers), args.k,
                                           allowed)
                allowed[qid] = True
                return exact.SearchResult(ids, scores, n * ((bounds[1] - bounds[0]) * 4 + 16), n)

            return query

        def served(layers):
            def query(qid):
                allowed[qid] = False
                found = prefiltered.search(matrix[qid], args.k, layers, allowed)
                allowed[qid] = True
                return found

            return query

        third = max(1, len(layout) // 3)
        ranges = {
            f"full profile ({f:,} filters)": (0, len(layout)),
            f"layers 0:{third} ({layout.spans[third - 1].stop:,} filters)": (0, third),
            f"layers {len(layout) - third}:{len(layout)} ({f - layout.spans[len(layout) - third].start:,} filters)":
                (len(layout) - third, len(layout)),
        }
        methods = {}
        for label, layers in ranges.items():
            methods[f"float32 scan, {label}"] = scan(layers)
            methods[f"exact, {label}"] = served(layers)
        results, answers = _time_side_by_side(methods, queries)
        mismatches = 0
        for label in ranges:
            want, got = answers[f"float32 scan, {label}"], answers[f"exact, {label}"]
            same = sum(_same_top_k(g, w) for g, w in zip(got, want))
            mismatches += len(queries) - same
            print(f"exact vs float32 scan, {label}: {same}/{len(queries)} queries with the same top {args.k}"
                  f" (ties within {TIE_TOLERANCE:g} aside)")
            results[f"exact, {label}"]["ratio"] = (results[f"exact, {label}"]["p50"]
                                                   / results[f"float32 scan, {label}"]["p50"])

        if not args.no_sq8:
            started = time.perf_counter()
            index = search.build_index(args.index, matrix, seed=args.seed)
            print(f"{args.index} index built in {time.perf_counter() - started:.1f} s "
                  f"({index.sa_code_size() * n / 1e9:.2f} GB of codes; {search.index_params(index)})")

            def approximate(qid):
                allowed[qid] = False
                ids, scores = search.faiss_search(index, matrix[qid], args.k, allowed)
                allowed[qid] = True
                return exact.SearchResult(ids, scores, index.sa_code_size() * n, 0)

            name = f"faiss {args.index}, full profile"
            timed, found = _time_side_by_side({name: approximate}, queries)
            exact_ids = answers[f"float32 scan, {next(iter(ranges))}"]
            timed[name]["recall"] = float(np.mean([len(set(g.ids) & set(w.ids)) / args.k
                                                   for g, w in zip(found[name], exact_ids)]))
            results.update(timed)
            del index
        del matrix, prefiltered

    print(f"\n{'method':<56} {'p50 ms':>8} {'p95 ms':>8} {'vs f32':>7} {'MB read':>8} {'re-scored':>9}  "
          f"recall@{args.k}")
    for name, r in results.items():
        recall = f"{r['recall']:.3f}" if "recall" in r else "exact"
        ratio = f"{r['ratio']:.2f}x" if "ratio" in r else "-"
        print(f"{name:<56} {r['p50']:>8.1f} {r['p95']:>8.1f} {ratio:>7} {r['mb_read']:>8.2f} {r['rescored']:>9.0f}  "
              f"{recall}")
    print(f"load average {os.getloadavg()[0]:.2f}; MB read: per query, of the float32 matrix, the codes and "
          "their side arrays; re-scored: median rows scored in float32")
    return 1 if mismatches else 0


def _layout(filters: int | None, layers: int):
    from backend.saliency import FilterLayout, LayerSpan

    if filters is None:
        import torch
        import torchvision

        with torch.device("meta"):  # the real layout, no memory
            return FilterLayout.from_model(torchvision.models.resnet50())
    if filters < layers or layers < 1:
        raise ValueError("--filters must be at least --layers")
    cuts = [round(i * filters / layers) for i in range(layers + 1)]
    return FilterLayout([LayerSpan(f"layer{i}.weight", cuts[i], cuts[i + 1], (cuts[i + 1] - cuts[i], 1, 1, 1))
                         for i in range(layers)])


def _synthetic(path: str, n: int, f: int, classes: int, seed: int):
    """Cluster centre (one of ``classes``) plus per-sample noise of the same scale: like z-scored profiles
    whose neighbours share a class. Written in chunks; returns a read-only memory map."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, f), dtype=np.float32)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, f))
    chunk = max(1, (1 << 27) // (4 * f))
    for start in range(0, n, chunk):
        rows = min(chunk, n - start)
        block = rng.standard_normal((rows, f), dtype=np.float32)
        block += centres[rng.integers(0, classes, size=rows)]
        out[start : start + rows] = block
    out.flush()
    del out
    return np.load(path, mmap_mode="r")


def _time_side_by_side(methods: dict, query_ids) -> tuple[dict, dict]:
    """Times every method on every query, the methods interleaved (rotating order) so that changing load
    hits them alike; returns per-method p50/p95 ms, mean MB read and median rows re-scored, and the answers."""
    import time

    import numpy as np

    for query in methods.values():
        query(query_ids[0])  # warm-up: page cache, BLAS threads, the int8 copy
    times = {name: [] for name in methods}
    answers = {name: [] for name in methods}
    names = list(methods)
    for turn, qid in enumerate(query_ids):
        for name in names[turn % len(names):] + names[: turn % len(names)]:
            started = time.perf_counter()
            found = methods[name](qid)
            times[name].append(time.perf_counter() - started)
            answers[name].append(found)
    results = {}
    for name in names:
        ms = np.asarray(times[name]) * 1000
        results[name] = {"p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)),
                         "mb_read": float(np.mean([a.bytes_read for a in answers[name]])) / 1e6,
                         "rescored": float(np.median([a.rescored for a in answers[name]]))}
    return results, answers


def _same_top_k(got, want) -> bool:
    """The same scores rank by rank (so the same ids, except rows whose scores tie within TIE_TOLERANCE)."""
    import numpy as np

    return len(got.ids) == len(want.ids) and np.allclose(got.scores, want.scores, rtol=0, atol=TIE_TOLERANCE)
