"""The precompute job: a model and a dataset in, a finished artifacts dir out.

Work is cut into shards of ``shard_size`` consecutive samples. Each shard (raw profiles, features,
logits-derived predictions, plus a header: its sample range and the job key) is written atomically to
``OUT/.shards/`` when done, so a rerun after ``kill -9`` skips finished shards. A shard's content depends
only on the job (model, data, batch size), never on which process computed it or when, and every final
array is assembled from the shard files in shard order; so an interrupted-and-resumed run and an
uninterrupted one give identical bytes.

Under ``torchrun`` (``torch.distributed`` initialized) the pending shards are dealt round-robin to the
ranks. Statistics are computed per shard, summed across ranks into a ``[shards, 2F + 1]`` table (each
entry has one owner, so the sum is exact) and merged in shard order with Chan's formula
(``SaliencyStats.merge``); rank 0 then writes the arrays, the FAISS index and, last, ``manifest.json``.
The output dir must be visible to all ranks (one machine, or a shared filesystem).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import math
import platform
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from backend.errors import PSSError
from backend.saliency import SaliencyStats, UnsupportedModel, profile_batch
from backend.models import InputSpec, model_input_spec, weights_sha256
from backend.store import artifacts as store
from backend.store import filter_layout, search, storage
from backend.store.analysis import ANALYSIS_FILES
from backend.store.manifest import (MANIFEST, DataRecord, EngineRecord, IndexRecord, Manifest, ModelRecord,
                                    StorageRecord)
from backend.store.atomic import AtomicNpy, atomic_writer, remove_stale_temps, save_npz_atomic, write_json_atomic
from precompute.analysis.build import AnalysisAssembly, shard_activations, shard_has_activations

log = logging.getLogger("precompute")

SHARDS_DIR = ".shards"
JOB_FILE = "job.json"
LOG_EVERY_S = 10.0


# ------------------------------------------------------------------------------------ distributed
class Ranks:
    """This process's place in the job: rank 0 of 1 unless ``torch.distributed`` is initialized."""

    def __init__(self):
        import torch.distributed as dist

        self.dist = dist if dist.is_available() and dist.is_initialized() else None
        self.rank = self.dist.get_rank() if self.dist else 0
        self.world = self.dist.get_world_size() if self.dist else 1

    def barrier(self) -> None:
        if self.dist:
            self.dist.barrier()

    def sum_(self, table: torch.Tensor, device: torch.device) -> torch.Tensor:
        if not self.dist:
            return table
        moved = table.to(device)
        self.dist.all_reduce(moved)
        return moved.cpu()


# ------------------------------------------------------------------------------------------ the job
def run_precompute(
    model: nn.Module,
    dataset,
    out_dir: str | Path,
    *,
    model_spec: str,
    data_spec: str,
    batch_size: int = 64,
    shard_size: int = 1024,
    index: str = "flat",
    dtype: str = "float32",
    limit: int | None = None,
    feature_layer: str | None = None,
    force: bool = False,
    num_workers: int = 0,
    class_names: list[str] | None = None,
    show_progress: bool | None = None,
    params: str = "conv",
) -> Manifest | None:
    """Writes (or resumes, or finds up to date) the artifacts dir ``out_dir``; returns its manifest (on rank 0;
    None on the other ranks).

    ``dataset`` yields ``(image tensor, label)`` and has ``fingerprint()`` and ``class_names``; a
    ``tensors()`` method returning in-memory ``(images, labels)`` is used when present; its ``preprocess`` (a
    ``backend.data.Preprocess``), when it has one, is recorded in the manifest for every later consumer. Only
    the first ``limit`` samples are processed when given. ``params`` chooses the filters (conv | linear |
    conv+linear). ``force`` discards whatever ``out_dir`` holds from earlier runs (only the files this job
    writes). ``dtype`` is the storage of the profiles and features (``float16``: half the bytes, see
    ``backend/store/storage.py``).
    """
    if index not in search.INDEX_KINDS:
        raise PSSError(f"unknown index kind {index!r}; choose one of {', '.join(search.INDEX_KINDS)}")
    if dtype not in storage.DTYPES:
        raise PSSError(f"unknown --dtype {dtype!r}; choose one of {', '.join(storage.DTYPES)}")
    stored = StorageRecord.for_dtype(dtype)
    if batch_size < 1 or shard_size < 1:
        raise PSSError("--batch-size and --shard-size must be positive")
    ranks = Ranks()
    out = Path(out_dir)
    total = len(dataset) if limit is None else min(int(limit), len(dataset))
    if total < 2:
        raise PSSError(f"need at least 2 samples to standardize profiles; the dataset gives {total}")
    device = next(model.parameters()).device
    layout = filter_layout(model, params)
    preprocess = getattr(getattr(dataset, "preprocess", None), "spec", None)
    job = {
        "model_spec": model_spec,
        "weights_sha256": weights_sha256(model),
        "data_spec": data_spec,
        "dataset_fingerprint": dataset.fingerprint(),
        "num_samples": total,
        "limit": limit,
        "layout": layout.to_dict(),
        "batch_size": batch_size,
        "shard_size": shard_size,
        "feature_layer": feature_layer,
        "dtype": str(next(model.parameters()).dtype),
    }
    job.update(_settings_beyond_the_spec(model_spec, model, params, preprocess))
    key = hashlib.sha256(json.dumps(job, sort_keys=True).encode()).hexdigest()
    shards = out / SHARDS_DIR

    existing = _inspect(out, key, index, stored, force)  # read-only, so every rank reaches the same verdict
    if existing is not None:
        log.info("%s is up to date (same model, weights, data and settings); use --force to recompute", out)
        if ranks.rank == 0 and shards.exists():
            shutil.rmtree(shards)
        return existing
    ranks.barrier()
    if ranks.rank == 0:
        _prepare(out, shards, job, key, force)
    ranks.barrier()

    num_shards = math.ceil(total / shard_size)
    finished = {i for i in range(num_shards) if _shard_ok(shards, i, key, shard_size, total)}
    ranks.barrier()  # nobody writes a shard before every rank has taken stock
    pending = [i for i in range(num_shards) if i not in finished]
    mine = pending[ranks.rank :: ranks.world]
    if ranks.rank == 0:
        log.info("%d samples in %d shards: %d already done, %d to compute on %d process(es), device %s",
                 total, num_shards, len(finished), len(pending), ranks.world, device)

    progress = _Progress(sum(_shard_range(i, shard_size, total)[1] - _shard_range(i, shard_size, total)[0]
                             for i in mine), ranks, show_progress)
    bulk = dataset.tensors() if hasattr(dataset, "tensors") else None
    class_names = list(class_names or dataset.class_names)
    try:
        for shard in mine:
            start, stop = _shard_range(shard, shard_size, total)
            arrays = _compute_shard(model, layout, dataset, bulk, start, stop, batch_size, feature_layer,
                                    num_workers, len(class_names), progress)
            save_npz_atomic(_shard_path(shards, shard), {**arrays, **_header(key, start, stop)})
            progress.shard_done(shard, num_shards, start, stop)
    finally:
        progress.close()

    stats = _merged_stats(shards, num_shards, layout.num_filters, ranks, device)
    if ranks.rank != 0:
        return None
    manifest = _assemble(out, shards, num_shards, job, key, layout, stats, index, stored, class_names, params,
                         preprocess)
    shutil.rmtree(shards)
    return manifest


def _settings_beyond_the_spec(model_spec: str, model: nn.Module, params: str, preprocess: InputSpec | None) -> dict:
    """Filters and preprocessing enter the job key only where they differ from what the model spec alone gives
    (params conv, the spec's own preprocessing): dirs written before these settings existed keep their key."""
    settings = {}
    if params != "conv":
        settings["params"] = params
    if preprocess is not None and preprocess != model_input_spec(model_spec, model):
        settings["preprocess"] = preprocess.to_dict()
    return settings


def _inspect(out: Path, key: str, index: str, stored: StorageRecord, force: bool) -> Manifest | None:
    """The manifest when ``out`` already holds these exact artifacts; raises when it holds other things."""
    if force or not out.exists():
        return None
    if not out.is_dir():
        raise PSSError(f"--out {out} exists and is not a directory")
    if (out / MANIFEST).exists():
        try:
            manifest = store.Artifacts.open(out).manifest
        except PSSError as exc:
            raise PSSError(f"{out} holds broken artifacts ({exc}); rerun with --force to replace them") from exc
        if manifest.job_key != key or manifest.index.kind != index or manifest.storage != stored:
            raise PSSError(
                f"{out} holds artifacts of another job (model {manifest.model.spec!r}, data "
                f"{manifest.data.spec!r}, index {manifest.index.kind!r}, storage of the profiles "
                f"{manifest.storage.profiles_std}, or different weights/settings); "
                "rerun with --force to replace them, or choose another --out"
            )
        return manifest
    job_file = out / SHARDS_DIR / JOB_FILE
    if job_file.exists():
        try:
            previous = json.loads(job_file.read_text()).get("key")
        except (OSError, ValueError):
            previous = None
        if previous != key:
            raise PSSError(
                f"{out} holds unfinished shards of a different job (model, weights, data or settings changed); "
                "rerun with --force to discard them, or choose another --out"
            )
    return None


def _prepare(out: Path, shards: Path, job: dict, key: str, force: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if force:
        (out / MANIFEST).unlink(missing_ok=True)  # first: readers must never pair it with new files
        if shards.exists():
            shutil.rmtree(shards)
        for name in store.DATA_FILES + ANALYSIS_FILES:
            (out / name).unlink(missing_ok=True)
    shards.mkdir(exist_ok=True)
    removed = remove_stale_temps(out) + remove_stale_temps(shards)
    if removed:
        log.info("removed %d partial file(s) left by an interrupted run", removed)
    if not (shards / JOB_FILE).exists():
        write_json_atomic(shards / JOB_FILE, {"key": key, "job": job})


def _shard_range(shard: int, shard_size: int, total: int) -> tuple[int, int]:
    return shard * shard_size, min((shard + 1) * shard_size, total)


def _shard_path(shards: Path, shard: int) -> Path:
    return shards / f"shard-{shard:06d}.npz"


def _header(key: str, start: int, stop: int) -> dict[str, np.ndarray]:
    return {"job_key": np.array(key), "start": np.array(start, dtype=np.int64), "stop": np.array(stop, dtype=np.int64)}


def _shard_ok(shards: Path, shard: int, key: str, shard_size: int, total: int) -> bool:
    """A shard file counts as done only if its header names this job and the expected sample range."""
    path = _shard_path(shards, shard)
    if not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as archive:
            header = (str(archive["job_key"]), int(archive["start"]), int(archive["stop"]))
            complete = shard_has_activations(archive.files)
    except Exception:  # noqa: BLE001 - any unreadable shard is simply recomputed
        log.warning("recomputing unreadable shard file %s", path)
        return False
    return complete and header == (key, *_shard_range(shard, shard_size, total))


def _compute_shard(model, layout, dataset, bulk, start, stop, batch_size, feature_layer, num_workers, num_classes,
                   progress) -> dict[str, np.ndarray]:
    raws, feats, logits, labels, maxima = [], [], [], [], []
    feature_module = None
    for images, targets in _batches(dataset, bulk, start, stop, batch_size, num_workers):
        targets = torch.as_tensor(targets, dtype=torch.int64)
        if targets.min() < 0 or targets.max() >= num_classes:
            raise PSSError(f"a label in samples {start}..{stop - 1} is outside the dataset's {num_classes} classes")
        try:
            out = profile_batch(model, layout, images, targets, feature_layer, channel_maxima=True)
        except (UnsupportedModel, ValueError) as exc:  # ValueError: a filter's output channels are unreadable
            raise PSSError(str(exc)) from exc
        raw, feat, logit, feature_module = out.raw, out.features, out.logits, out.feature_layer
        if logit.shape[1] != num_classes:
            raise PSSError(f"the model has {logit.shape[1]} outputs but the dataset has {num_classes} classes")
        raws.append(raw)
        maxima.append(out.maxima)
        feats.append(feat)
        logits.append(logit)
        labels.append(targets)
        progress.update(images.shape[0])
    logit = torch.cat(logits)
    label = torch.cat(labels)
    arrays = {
        "raw": torch.cat(raws).numpy(),
        "features": torch.cat(feats).numpy(),
        "probs": torch.softmax(logit, dim=1).numpy(),
        "loss": F.cross_entropy(logit, label, reduction="none").numpy(),
        "label": label.numpy(),
        "pred": logit.argmax(dim=1).numpy(),
        "feature_module": np.array(feature_module),
        **shard_activations(torch.cat(maxima).numpy(), start),
    }
    return arrays


def _batches(dataset, bulk, start, stop, batch_size, num_workers):
    if bulk is not None:
        images, labels = bulk
        for begin in range(start, stop, batch_size):
            end = min(begin + batch_size, stop)
            yield images[begin:end], labels[begin:end]
        return
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(dataset, range(start, stop)), batch_size=batch_size, shuffle=False,
        num_workers=num_workers,
    )
    yield from loader


def _merged_stats(shards: Path, num_shards: int, num_filters: int, ranks: Ranks, device) -> SaliencyStats:
    """Per-shard statistics, summed across ranks (each row has one owner) and merged in shard order."""
    table = torch.zeros(num_shards, 2 * num_filters + 1, dtype=torch.float64)
    for shard in range(ranks.rank, num_shards, ranks.world):
        with np.load(_shard_path(shards, shard), allow_pickle=False) as archive:
            part = SaliencyStats().update(archive["raw"])
        table[shard, 0] = part.count
        table[shard, 1 : num_filters + 1] = torch.from_numpy(part.mean)
        table[shard, num_filters + 1 :] = torch.from_numpy(part.m2)
    table = ranks.sum_(table, device if ranks.dist and ranks.dist.get_backend() == "nccl" else torch.device("cpu"))
    stats = SaliencyStats(num_filters)
    for row in table.numpy():
        part = SaliencyStats()
        part.count, part.mean, part.m2 = int(row[0]), row[1 : num_filters + 1].copy(), row[num_filters + 1 :].copy()
        stats.merge(part)
    return stats


def _assemble(out, shards, num_shards, job, key, layout, stats, index_kind, stored, class_names, params,
              preprocess) -> Manifest:
    """Rank 0: the final arrays from the shards (in order, in the ``stored`` formats), the index, the int8
    search copy, and the manifest last. Norms, index and copy are computed from the stored values."""
    total = job["num_samples"]
    with np.load(_shard_path(shards, 0), allow_pickle=False) as first:
        feature_dim, num_classes = first["features"].shape[1], first["probs"].shape[1]
        feature_module = str(first["feature_module"])
    log.info("writing the artifacts to %s", out)
    boundaries = [span.start for span in layout.spans] + [layout.num_filters]
    analysis = AnalysisAssembly(layout.num_filters, int(num_classes))
    predictions = {"label": np.empty(total, np.int64), "pred": np.empty(total, np.int64),
                   "probs": np.empty((total, num_classes), np.float32), "loss": np.empty(total, np.float32)}
    raw_dtype, std_dtype, feat_dtype = (storage.numpy_dtype(fmt) for fmt in
                                        (stored.profiles_raw, stored.profiles_std, stored.features))
    with (
        AtomicNpy(out / store.PROFILES_RAW, (total, layout.num_filters), raw_dtype) as raw_out,
        AtomicNpy(out / store.PROFILES_STD, (total, layout.num_filters), std_dtype) as std_out,
        AtomicNpy(out / store.FEATURES, (total, feature_dim), feat_dtype) as feat_out,
        AtomicNpy(out / store.PROFILE_NORMS, (total, len(boundaries)), np.float64) as norms_out,
    ):
        for shard in range(num_shards):
            with np.load(_shard_path(shards, shard), allow_pickle=False) as archive:
                start, stop = int(archive["start"]), int(archive["stop"])
                raw = archive["raw"]
                standardized = storage.encode(stats.standardize(raw), stored.profiles_std, "standardized profiles")
                raw_out.array[start:stop] = storage.encode(raw, stored.profiles_raw, "raw profiles")
                std_out.array[start:stop] = standardized
                standardized = storage.decode(standardized, stored.profiles_std)  # the stored values, as float32
                norms_out.array[start:stop] = search.prefix_squares(standardized, boundaries)
                feat_out.array[start:stop] = storage.encode(archive["features"], stored.features, "features")
                for name in predictions:
                    predictions[name][start:stop] = archive[name]
                analysis.add_shard(archive, start, standardized, archive["label"], archive["pred"])
    save_npz_atomic(out / store.PREDICTIONS, predictions)
    save_npz_atomic(out / store.STATS, stats.state_dict())

    import faiss

    profiles_std = storage.open_rows(np.load(out / store.PROFILES_STD, mmap_mode="r", allow_pickle=False),
                                     stored.profiles_std)
    started = time.perf_counter()
    faiss_index = search.build_index(index_kind, profiles_std)
    index_params, recall_at_10 = search.index_params(faiss_index), None
    if index_kind != "flat":
        recall = search.measure_recall(faiss_index, profiles_std, k=10)
        recall_at_10 = recall["recall"]
        index_params["recall_queries"] = recall["queries"]
        log.info("%s index: recall@%d vs exact = %.4f over %d queries", index_kind, recall["k"], recall["recall"],
                 recall["queries"])
    with atomic_writer(out / store.INDEX) as handle:  # through Python, so a full disk is an OSError, not faiss's
        faiss.write_index(faiss_index, faiss.PyCallbackIOWriter(handle.write))  # RuntimeError with a torn temp file
    del faiss_index, profiles_std
    log.info("built the %s index in %.1f s", index_kind, time.perf_counter() - started)

    started = time.perf_counter()
    analysis_record = analysis.write(out, np.load(out / store.PROFILES_STD, mmap_mode="r", allow_pickle=False),
                                     np.load(out / store.FEATURES, mmap_mode="r", allow_pickle=False),
                                     predictions["label"], predictions["pred"])
    log.info("wrote reference samples, fingerprints, maps and failure modes in %.1f s", time.perf_counter() - started)

    correct = predictions["label"] == predictions["pred"]
    manifest = Manifest(
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        job_key=key,
        model=ModelRecord(job["model_spec"], job["weights_sha256"], job["dtype"]),
        data=DataRecord(job["data_spec"], job["dataset_fingerprint"], job["limit"]),
        num_samples=total,
        num_classes=int(num_classes),
        feature_dim=int(feature_dim),
        class_names=list(class_names),
        accuracy=float(correct.mean()),
        layout=layout,
        engine=EngineRecord(job["batch_size"], job["shard_size"], feature_module),
        index=IndexRecord(index_kind, recall_at_10, index_params),
        versions=_versions(),
        files={name: store.describe_file(out / name) for name in store.DATA_FILES + ANALYSIS_FILES},
        params=params,
        preprocess=preprocess,
        storage=stored,
        analysis=analysis_record,
    )
    store.build_search_copy(out, manifest)  # before the manifest: the copy is part of the finished dir
    manifest.write(out)
    log.info("done: %d samples, %d filters, accuracy %.2f%%", total, layout.num_filters, 100 * manifest.accuracy)
    return manifest


def _versions() -> dict:
    import faiss

    return {"pss": importlib.metadata.version("pss-dashboard"), "python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "faiss": faiss.__version__}


# ------------------------------------------------------------------------------------------ progress
class _Progress:
    """A tqdm bar (images/s, ETA) on a terminal, plain log lines every ``LOG_EVERY_S`` otherwise; rank 0 only."""

    def __init__(self, total: int, ranks: Ranks, show: bool | None):
        self.total, self.done, self.ranks = total, 0, ranks
        self.started = self.last_log = time.monotonic()
        self.prefix = f"rank {ranks.rank}: " if ranks.world > 1 else ""
        if show is None:
            show = sys.stderr.isatty()
        self.bar = None
        if show and ranks.rank == 0:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="img", desc="precompute", dynamic_ncols=True)

    def update(self, count: int) -> None:
        self.done += count
        if self.bar is not None:
            self.bar.update(count)
            return
        now = time.monotonic()
        if now - self.last_log >= LOG_EVERY_S:
            self.last_log = now
            log.info("%s%s", self.prefix, self._status(now))

    def _status(self, now: float) -> str:
        rate = self.done / max(now - self.started, 1e-9)
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        return f"{self.done}/{self.total} images ({100 * self.done / max(self.total, 1):.1f}%), {rate:.1f} img/s, ETA {eta:.0f} s"

    def shard_done(self, shard: int, num_shards: int, start: int, stop: int) -> None:
        message = f"{self.prefix}shard {shard + 1}/{num_shards} written (samples {start}..{stop - 1})"
        if self.bar is not None:
            self.bar.write(message)
        else:
            log.info("%s; %s", message, self._status(time.monotonic()))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
