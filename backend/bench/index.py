"""Nearest-neighbour query latency (k=10) on synthetic standardized profiles, ImageNet-size by default.

The default is 50,000 samples x 26,560 filters with ResNet-50's real 53-layer layout. It times the exact
query path the backend uses (a BLAS scan of a memory-mapped float32 matrix, normalized with stored
per-layer prefix norms) for the full profile and for layer ranges, and the FAISS sq8 index (with its
recall@10 against exact). The data is written to a temporary .npy (--dir) and deleted afterwards; it needs
about samples x filters x 5 bytes of RAM for the page cache and the sq8 index (6.6 GB by default).

examples:
  pss bench index                                  # 50,000 x 26,560
  pss bench index --samples 5000 --filters 4096    # a quick check
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--samples", type=int, default=50_000, help="rows (default 50,000: ImageNet val)")
    parser.add_argument("--filters", type=int, default=None,
                        help="profile length (default: ResNet-50's 26,560 filters and real layer layout); "
                             "otherwise split into --layers equal layers")
    parser.add_argument("--layers", type=int, default=53, help="layers when --filters is given (default 53)")
    parser.add_argument("--queries", type=int, default=40, help="timed queries per method (default 40)")
    parser.add_argument("--k", type=int, default=10, help="neighbours per query (default 10)")
    parser.add_argument("--classes", type=int, default=1000, help="synthetic clusters (default 1000)")
    parser.add_argument("--no-sq8", action="store_true", help="skip building and timing the sq8 index")
    parser.add_argument("--dir", default=None, help="where to write the temporary data (default: system temp)")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    import logging
    import tempfile
    import time

    import numpy as np

    from backend.errors import PSSError
    from backend.store import search

    if args.samples < args.k + 2 or args.queries < 1 or args.k < 1:
        raise PSSError("need --samples > --k + 1, and positive --queries and --k")
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    layout = _layout(args.filters, args.layers)
    n, f = args.samples, layout.num_filters
    print(f"synthetic profiles: {n:,} x {f:,} float32 ({n * f * 4 / 1e9:.2f} GB), {len(layout)} layers, "
          f"{args.classes} clusters; k={args.k}, {args.queries} queries per method")
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="pss-bench-index-") as tmp:
        started = time.perf_counter()
        matrix = _synthetic(f"{tmp}/profiles_std.npy", n, f, args.classes, args.seed)
        boundaries = [s.start for s in layout.spans] + [f]
        prefix = search.prefix_squares(matrix, boundaries)
        print(f"data written and prefix norms computed in {time.perf_counter() - started:.1f} s")
        rng = np.random.default_rng(args.seed + 1)
        queries = rng.choice(n, size=args.queries, replace=False)
        allowed = np.ones(n, dtype=bool)

        def exact(layers):
            start, stop = layers
            bounds = (layout.spans[start].start, layout.spans[stop - 1].stop)

            def query(qid):
                allowed[qid] = False
                ids, _ = search.top_k(search.range_cosine(matrix, prefix, matrix[qid], bounds, (start, stop)),
                                      args.k, allowed)
                allowed[qid] = True
                return ids

            return query

        third = max(1, len(layout) // 3)
        methods = {
            f"exact, full profile ({f:,} filters)": exact((0, len(layout))),
            f"exact, layers 0:{third} ({layout.spans[third - 1].stop:,} filters)": exact((0, third)),
            f"exact, layers {len(layout) - third}:{len(layout)} "
            f"({f - layout.spans[len(layout) - third].start:,} filters)": exact((len(layout) - third, len(layout))),
        }
        results = {name: _time(fn, queries) for name, fn in methods.items()}
        exact_ids = {int(q): methods[next(iter(methods))](q) for q in queries}

        if not args.no_sq8:
            started = time.perf_counter()
            index = search.build_index("sq8", matrix, seed=args.seed)
            print(f"sq8 index built in {time.perf_counter() - started:.1f} s ({index.sa_code_size() * n / 1e9:.2f} GB)")

            def sq8(qid):
                allowed[qid] = False
                ids, _ = search.faiss_search(index, matrix[qid], args.k, allowed)
                allowed[qid] = True
                return ids

            name = "faiss sq8, full profile"
            results[name] = _time(sq8, queries)
            found = {int(q): sq8(q) for q in queries}
            recall = np.mean([len(set(found[q]) & set(exact_ids[q])) / args.k for q in exact_ids])
            results[name]["recall"] = float(recall)
            del index
        del matrix

    print(f"\n{'method':<48} {'p50 ms':>9} {'p95 ms':>9}  recall@{args.k}")
    for name, r in results.items():
        recall = f"{r['recall']:.3f}" if "recall" in r else "exact"
        print(f"{name:<48} {r['p50']:>9.1f} {r['p95']:>9.1f}  {recall}")
    return 0


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


def _time(query, query_ids) -> dict:
    import time

    import numpy as np

    query(query_ids[0])  # warm-up: page cache, BLAS threads
    times = []
    for qid in query_ids:
        started = time.perf_counter()
        query(qid)
        times.append(time.perf_counter() - started)
    times = np.asarray(times) * 1000
    return {"p50": float(np.percentile(times, 50)), "p95": float(np.percentile(times, 95))}
