"""Resident memory of a served artifacts dir (synthetic, ImageNet-size by default), per storage dtype.

Writes a complete artifacts dir of synthetic profiles (ResNet-50's 26,560-filter layout, clustered raw
saliencies, features of --feature-dim) in the chosen --dtype, with the int8 search copy the precompute job
makes; then a fresh process opens it as the backend does and runs a few queries of each kind (sample
detail rows, exact neighbours over the full profile and two layer ranges, feature neighbours, mistakes
only), printing its resident memory (VmRSS, split into anonymous and file-backed pages) after each step, and
last after one full pass over the profiles (what the /api/summary route does once). The dir is deleted
afterwards. Needs about samples x filters x 10 bytes of disk for float32 (x 5 for float16).

examples:
  pss bench memory --dtype float32
  pss bench memory --dtype float16 --samples 5000
"""

from __future__ import annotations

import argparse

from backend.bench import existing_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dtype", choices=["float32", "float16"], default="float32", help="storage (as precompute)")
    parser.add_argument("--samples", type=int, default=50_000, help="rows (default 50,000: ImageNet val)")
    parser.add_argument("--feature-dim", type=int, default=2048, help="feature length (default 2048: ResNet-50)")
    parser.add_argument("--queries", type=int, default=3, help="queries of each kind (default 3)")
    parser.add_argument("--dir", type=existing_dir, default=None,
                        help="an existing folder for the temporary dir (default: system temp)")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    import os
    import subprocess
    import sys
    import tempfile
    import time

    from backend.errors import PSSError

    if args.samples < 20 or args.queries < 1:
        raise PSSError("need --samples >= 20 and --queries >= 1")
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="pss-bench-memory-") as tmp:
        started = time.perf_counter()
        _write_dir(tmp, args.samples, args.feature_dim, args.dtype, args.seed)
        sizes = {name: os.path.getsize(os.path.join(tmp, name)) / 1e6 for name in sorted(os.listdir(tmp))}
        print(f"synthetic artifacts ({args.dtype}) written in {time.perf_counter() - started:.0f} s: "
              + ", ".join(f"{name} {mb:,.1f} MB" for name, mb in sizes.items()))
        child = [sys.executable, "-c", f"from backend.bench.memory import measure; measure({tmp!r}, {args.queries})"]
        return subprocess.run(child, check=False).returncode


def measure(directory: str, queries: int) -> None:
    """In a fresh process: open the dir as the backend does, query, and print the RSS after each step."""
    import os
    import time

    import numpy as np

    from backend.store import Artifacts

    def report(step: str, started: float, count: int) -> None:
        status = dict(line.split(":", 1) for line in open("/proc/self/status") if line.startswith(("VmRSS", "Rss")))
        mb = {key: int(value.split()[0]) / 1024 for key, value in status.items()}
        print(f"{step:<44} RSS {mb['VmRSS']:>7,.0f} MB (anon {mb['RssAnon']:>6,.0f}, file {mb['RssFile']:>6,.0f})"
              f"  {1000 * (time.perf_counter() - started) / count:>8.1f} ms each  load {os.getloadavg()[0]:.1f}")

    started = time.perf_counter()
    a = Artifacts.open(directory)
    report("open", started, 1)
    ids = np.random.default_rng(1).choice(a.num_samples, size=queries, replace=False).tolist()
    layers = len(a.layout)
    steps = {
        "sample rows (detail, filters, profile)": lambda i: (a.profiles_raw[i], a.profiles_std[i]),
        "neighbours, full profile (exact)": lambda i: a.neighbors(i, k=10),
        f"neighbours, layers 0:{layers // 3}": lambda i: a.neighbors(i, k=10, layers=(0, layers // 3)),
        f"neighbours, layers {layers - layers // 3}:{layers}":
            lambda i: a.neighbors(i, k=10, layers=(layers - layers // 3, layers)),
        "neighbours, feature space": lambda i: a.neighbors(i, k=10, space="feature"),
        "neighbours, mistakes only": lambda i: a.neighbors(i, k=10, misclassified_only=True),
    }
    for step, query in steps.items():
        started = time.perf_counter()
        for i in ids:
            query(i)
        report(step, started, queries)
    started = time.perf_counter()
    for start in range(0, a.num_samples, 256):  # /api/summary's one pass over every profile
        np.asarray(a.profiles_std[start : start + 256], dtype=np.float64).sum(axis=0)
    report("one full pass over profiles_std (summary)", started, 1)


def _write_dir(directory: str, n: int, feature_dim: int, dtype: str, seed: int) -> None:
    """A finished artifacts dir of synthetic data, written as the precompute job writes it."""
    import hashlib
    from datetime import datetime, timezone
    from pathlib import Path

    import numpy as np
    import torch
    import torchvision

    from backend.saliency import FilterLayout, SaliencyStats
    from backend.store import artifacts as store
    from backend.store import search, storage
    from backend.store.atomic import AtomicNpy, save_npz_atomic
    from backend.store.manifest import DataRecord, EngineRecord, IndexRecord, Manifest, ModelRecord, StorageRecord

    out = Path(directory)
    with torch.device("meta"):
        layout = FilterLayout.from_model(torchvision.models.resnet50())
    f, classes, chunk = layout.num_filters, 1000, 512
    boundaries = [span.start for span in layout.spans] + [f]
    centres = np.random.default_rng(seed).standard_normal((classes, f), dtype=np.float32)
    labels = np.random.default_rng(seed + 1).integers(0, classes, n)

    def raw_rows(start: int) -> np.ndarray:  # the same rows on every pass: one generator per chunk
        rng = np.random.default_rng([seed, start])
        rows = rng.standard_normal((min(chunk, n - start), f), dtype=np.float32)
        rows += centres[labels[start : start + rows.shape[0]]]
        return np.exp(rows - 12, out=rows)  # positive, over many decades, like mean |dL/dW|

    stats = SaliencyStats(f)
    for start in range(0, n, chunk):
        stats.update(raw_rows(start))
    stored = StorageRecord.for_dtype(dtype)
    with (
        AtomicNpy(out / store.PROFILES_RAW, (n, f), storage.numpy_dtype(stored.profiles_raw)) as raw_out,
        AtomicNpy(out / store.PROFILES_STD, (n, f), storage.numpy_dtype(stored.profiles_std)) as std_out,
        AtomicNpy(out / store.FEATURES, (n, feature_dim), storage.numpy_dtype(stored.features)) as feat_out,
        AtomicNpy(out / store.PROFILE_NORMS, (n, len(boundaries)), np.float64) as norms_out,
    ):
        for start in range(0, n, chunk):
            raw = raw_rows(start)
            stop = start + raw.shape[0]
            z = storage.encode(stats.standardize(raw), stored.profiles_std, "z")
            raw_out.array[start:stop] = storage.encode(raw, stored.profiles_raw, "raw")
            std_out.array[start:stop] = z
            norms_out.array[start:stop] = search.prefix_squares(storage.decode(z, stored.profiles_std), boundaries)
            features = np.maximum(raw[:, :feature_dim] * 1e5, 0)
            feat_out.array[start:stop] = storage.encode(features, stored.features, "features")
    preds = np.where(np.random.default_rng(seed + 2).random(n) < 0.76, labels, (labels + 1) % classes)
    save_npz_atomic(out / store.PREDICTIONS, {"label": labels, "pred": preds, "loss": np.ones(n, np.float32),
                                              "probs": np.full((n, classes), 1 / classes, np.float32)})
    save_npz_atomic(out / store.STATS, stats.state_dict())
    (out / store.INDEX).write_bytes(b"")  # flat: the exact path serves, the file is not read
    manifest = Manifest(
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        job_key=hashlib.sha256(f"bench-memory {n} {dtype} {seed}".encode()).hexdigest(),
        model=ModelRecord("torchvision:resnet50", "synthetic", "torch.float32"),
        data=DataRecord("synthetic", "synthetic", None),
        num_samples=n, num_classes=classes, feature_dim=feature_dim, class_names=[str(c) for c in range(classes)], accuracy=float(np.mean(
            labels == preds)), layout=layout, engine=EngineRecord(128, 1024, "fc"), index=IndexRecord("flat"),
        versions={}, files={name: store.describe_file(out / name) for name in store.DATA_FILES}, storage=stored,
    )
    store.build_search_copy(out, manifest)
    manifest.write(out)
