"""What the routes do, without HTTP: samples and uploads as "subjects", their views, and the model work.

All model work is submitted to the one ``ComputeWorker``; cheap reads (memory-mapped profiles, the FAISS
index) run directly in the request's thread.
"""

from __future__ import annotations

import logging
import secrets
import threading
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from starlette.concurrency import run_in_threadpool

from backend.data import preprocess_upload
from backend.errors import PSSError
from backend.render import overlay, png_bytes
from backend.saliency import input_saliency, profile_batch, prune_filters
from backend.saliency.profile import logits_of
from backend.store import Run

from .cache import TTLCache
from .images import UploadRejected, decode_upload, describe_error
from .jobs import Jobs
from .settings import Settings
from .worker import ComputeWorker

log = logging.getLogger(__name__)

DISPLAY_SIZE = 224  # small images (28x28 Fashion-MNIST) are enlarged to this for display
UPLOAD_ID_BITS = 52  # ids stay exact as JavaScript numbers and cannot be guessed
SUMMARY_CHUNK = 4096  # profile rows read at a time for the summary (bounded memory on large datasets)


class NotFound(Exception):
    """Answered 404."""


class Invalid(Exception):
    """Answered 422: the message names the allowed range."""


@dataclass(frozen=True)
class Subject:
    """A dataset sample or an upload: what every per-image view needs."""

    kind: Literal["sample", "upload"]
    id: int
    label: int | None
    saliency_label: int
    pred: int
    probs: np.ndarray
    loss: float | None
    raw: np.ndarray
    z: np.ndarray
    image: torch.Tensor | None = None  # uploads only; samples read theirs from the dataset
    display: np.ndarray | None = None
    features: np.ndarray | None = None
    # what the profile's loss is taken against: the true label, a class the user chose (?target=), or the
    # predicted class (an upload sent without a label)
    target_source: Literal["label", "chosen", "predicted"] = "label"


class Service:
    def __init__(self, settings: Settings, run: Run):
        artifacts = run.artifacts
        self.settings = settings
        self.artifacts = artifacts
        self.model = run.model
        self.dataset = run.dataset
        self.device = run.device
        self.layout = artifacts.layout
        self.stats = artifacts.stats
        self.class_names = list(artifacts.class_names)
        self.num_samples = int(artifacts.num_samples)
        self.num_filters = int(self.layout.num_filters)
        self.num_layers = len(self.layout.spans)
        self.labels = np.asarray(artifacts.labels, dtype=np.int64)
        self.preds = np.asarray(artifacts.preds, dtype=np.int64)
        self.probs = np.asarray(artifacts.probs, dtype=np.float32)
        self.losses = np.asarray(artifacts.loss, dtype=np.float32)
        self.confidence = self.probs[np.arange(self.num_samples), self.preds]
        self.weights_sha256 = run.weights_sha256
        self.worker = ComputeWorker(settings.queue_size)
        self.results = TTLCache(settings.result_cache_size, settings.result_ttl_s)
        self.uploads = TTLCache(settings.upload_cache_size, settings.upload_ttl_s)
        self.ready = threading.Event()
        self.feature_layer = artifacts.manifest.engine.feature_layer
        self.jobs = Jobs()
        self._summary: dict | None = None
        self._summary_lock = threading.Lock()

    # ------------------------------------------------------------------------------------ lifecycle
    def warm_up(self) -> None:
        """One profile on the worker (as for an upload), so the first real request pays no start-up cost."""
        try:
            image, label = self.dataset[0]
            self.worker.call(self._upload_job, image, label)
        except Exception:
            log.exception("warm-up failed; the server stays not ready (see /api/health)")
            return
        self.ready.set()

    def close(self) -> None:
        self.jobs.close()
        self.worker.stop()

    # ------------------------------------------------------------------------------------- subjects
    def sample(self, sample_id: int) -> Subject:
        if not 0 <= sample_id < self.num_samples:
            raise NotFound(f"no sample {sample_id}: ids are 0..{self.num_samples - 1}")
        label = int(self.labels[sample_id])
        return Subject(
            kind="sample",
            id=sample_id,
            label=label,
            saliency_label=label,
            pred=int(self.preds[sample_id]),
            probs=self.probs[sample_id],
            loss=float(self.losses[sample_id]),
            raw=np.asarray(self.artifacts.profiles_raw[sample_id]),
            z=np.asarray(self.artifacts.profiles_std[sample_id]),
        )

    def upload(self, upload_id: int) -> Subject:
        subject = self.uploads.get(upload_id)
        if subject is None:
            raise NotFound(f"no upload {upload_id}: unknown, or expired (uploads are kept for a limited time)")
        return subject

    def decode(self, data: bytes) -> tuple[torch.Tensor, np.ndarray]:
        """Upload bytes -> (model input, display image); CPU work done in the request's thread."""
        image = decode_upload(data, self.settings.max_upload_pixels)
        try:
            return preprocess_upload(image, self.artifacts.model_spec, self.artifacts.manifest.preprocess)
        except PSSError:
            raise
        except Exception as exc:  # malformed metadata (EXIF, ICC) surfaces here as any kind of error
            raise UploadRejected(422, f"the image cannot be converted: {describe_error(exc)}")

    async def add_upload(self, tensor: torch.Tensor, display: np.ndarray, label: int | None) -> Subject:
        if label is not None and not 0 <= label < len(self.class_names):
            raise Invalid(f"label must be in [0, {len(self.class_names) - 1}], got {label}")
        logits, raw, features = await self.worker.run(self._upload_job, tensor, label)
        probs = torch.softmax(logits.double(), dim=0).float().numpy()
        pred = int(logits.argmax())
        saliency_label = pred if label is None else label
        loss = None if label is None else float(F.cross_entropy(logits[None].double(), torch.tensor([label])))
        subject = Subject(
            kind="upload",
            id=secrets.randbits(UPLOAD_ID_BITS),
            label=label,
            saliency_label=saliency_label,
            pred=pred,
            probs=probs,
            loss=loss,
            raw=raw,
            z=self.stats.standardize(raw),
            image=tensor,
            display=display,
            features=features,
            target_source="predicted" if label is None else "label",
        )
        self.uploads.put(subject.id, subject)
        return subject

    # ---------------------------------------------------------------------------------------- views
    def detail(self, s: Subject) -> dict:
        return {
            "id": s.id,
            "label": s.label,
            "pred": s.pred,
            "probs": s.probs.tolist(),
            "loss": s.loss,
            "correct": None if s.label is None else s.label == s.pred,
            "saliency_label": s.saliency_label,
            "target": self.target(s),
            "label_name": None if s.label is None else self.class_names[s.label],
            "pred_name": self.class_names[s.pred],
            "class_names": self.class_names,
        }

    def layers(self) -> list[dict]:
        return [{"index": i, "name": n, "start": a, "stop": b} for i, (n, a, b) in enumerate(self.layout.layers)]

    def top_filters(self, s: Subject, top_k: int) -> list[dict]:
        self._check_range("top", top_k, 1, self.num_filters)  # the query parameter's name
        order = np.argsort(-s.z, kind="stable")[:top_k]
        out = []
        for f in order.tolist():
            layer = self.layout.layer_of(f)
            name, channel = self.layout.locate(f)
            out.append({"filter": f, "layer": name, "layer_index": layer, "channel": channel,
                        "z": float(s.z[f]), "raw": float(s.raw[f])})
        return out

    def profile(self, s: Subject) -> dict:
        return {"id": s.id, "z": s.z.astype(np.float64).tolist(), "layers": self.layers(), "target": self.target(s)}

    @staticmethod
    def target(s: Subject) -> dict:
        """Which class the subject's profile differentiates, and why that class."""
        return {"class": s.saliency_label, "source": s.target_source}

    def image_png(self, s: Subject) -> bytes:
        key = ("image", s.kind, s.id)
        png = self.results.get(key)
        if png is None:
            png = png_bytes(self._display(s), upscale_to=DISPLAY_SIZE)
            self.results.put(key, png)
        return png

    async def input_saliency_png(self, s: Subject, top_k: int, boost: float, filters: list[int] | None = None) -> bytes:
        """``filters``: boost exactly these filter ids instead of the ``top_k`` most salient."""
        if filters is None:
            self._check_range("top_k", top_k, 1, self.num_filters)
        else:
            for f in filters:
                self._check_range("filters", f, 0, self.num_filters - 1)
            filters = sorted(set(filters))
        key = ("input-saliency", s.kind, s.id, s.saliency_label, top_k if filters is None else tuple(filters), boost)
        png = self.results.get(key)
        if png is None:
            png = await self.worker.run(self._input_saliency_job, s, top_k, boost, filters)
            self.results.put(key, png)
        return png

    def neighbors(
        self, s: Subject, k: int, layers: tuple[int, int] | None, space: str, misclassified_only: bool
    ) -> list[dict]:
        self._check_range("k", k, 1, self.num_samples - (s.kind == "sample"))
        if layers is not None and space != "saliency":
            raise Invalid("a layer range applies to space=saliency only")
        if layers is not None and layers[1] > self.num_layers:
            raise Invalid(f"layers must be START:STOP with 0 <= START < STOP <= {self.num_layers}, "
                          f"got {layers[0]}:{layers[1]}")
        if s.kind == "sample" and (space == "feature" or s.target_source == "label"):
            query = s.id
        else:
            query = s.z if space == "saliency" else s.features
        itself = s.kind == "sample" and not isinstance(query, int)  # a re-targeted sample finds itself: drop it
        hits = self.artifacts.neighbors(query, k=k + itself, layers=layers, space=space,
                                        misclassified_only=misclassified_only)
        hits = [h for h in hits if not (itself and h["id"] == s.id)][:k]
        return [{"id": int(h["id"]), "score": float(h["score"]), "label": int(self.labels[h["id"]]),
                 "pred": int(self.preds[h["id"]])} for h in hits]

    async def prune(self, s: Subject, filters: list[int] | None, top_k: int | None, mode: str, seed: int,
                    neighbors: int | None) -> dict:
        """Before: the stored predictions (what every other view shows). After: computed now, with pruning."""
        chosen = self._choose_filters(s, filters, top_k, mode, seed)
        k = self.settings.prune_neighbors if neighbors is None else neighbors
        k = min(k, self.num_samples - (s.kind == "sample"))
        key = ("prune", s.kind, s.id, tuple(chosen), k)
        result = self.results.get(key)
        if result is None:
            hits = await run_in_threadpool(self.neighbors, s, k, None, "saliency", False) if k else []
            ids = [h["id"] for h in hits]
            after = await self.worker.run(self._prune_job, s, ids, chosen)
            result = {
                "filters": chosen,
                "before": {"pred": s.pred, "probs": s.probs.tolist()},
                "after": after[0],
                "neighbors": [
                    {"id": i, "label": int(self.labels[i]), "after": a,
                     "before": {"pred": int(self.preds[i]), "probs": self.probs[i].tolist()}}
                    for i, a in zip(ids, after[1:])
                ],
            }
            self.results.put(key, result)
        return result

    def list_samples(self, correct: bool | None, true_class: int | None, pred_class: int | None,
                     offset: int, limit: int, sort: str) -> dict:
        for name, value in (("true_class", true_class), ("pred_class", pred_class)):
            if value is not None:
                self._check_range(name, value, 0, len(self.class_names) - 1)
        mask = np.ones(self.num_samples, dtype=bool)
        if correct is not None:
            mask &= (self.labels == self.preds) == correct
        if true_class is not None:
            mask &= self.labels == true_class
        if pred_class is not None:
            mask &= self.preds == pred_class
        ids = np.flatnonzero(mask)
        if sort == "loss":
            ids = ids[np.argsort(-self.losses[ids], kind="stable")]
        elif sort == "confidence":
            ids = ids[np.argsort(-self.confidence[ids], kind="stable")]
        page = ids[offset : offset + limit]
        items = [
            {"id": int(i), "label": int(self.labels[i]), "pred": int(self.preds[i]), "confidence": float(self.confidence[i])}
            for i in page
        ]
        return {"total": int(ids.size), "offset": offset, "limit": limit, "items": items}

    def info(self) -> dict:
        return {
            "model": self.artifacts.model_spec,
            "dataset": self.artifacts.data_spec,
            "device": str(self.device),
            "num_samples": self.num_samples,
            "num_filters": self.num_filters,
            "num_layers": self.num_layers,
            "accuracy": float(np.mean(self.labels == self.preds)),
            "classes": self.class_names,
            "layers": self.layers(),
            "weights_sha256": self.weights_sha256,
        }

    def summary(self) -> dict:
        """Dataset-wide aggregates for the overview page, computed once (one pass over the profiles)."""
        with self._summary_lock:
            if self._summary is None:
                self._summary = self._compute_summary()
            return self._summary

    def _compute_summary(self) -> dict:
        num_classes = len(self.class_names)
        confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
        np.add.at(confusion, (self.labels, self.preds), 1)
        sums = np.zeros((2, self.num_filters), dtype=np.float64)
        correct = self.labels == self.preds
        profiles = self.artifacts.profiles_std
        for start in range(0, self.num_samples, SUMMARY_CHUNK):
            rows = np.asarray(profiles[start : start + SUMMARY_CHUNK], dtype=np.float64)
            mask = correct[start : start + SUMMARY_CHUNK]
            sums[1] += rows[mask].sum(axis=0)
            sums[0] += rows[~mask].sum(axis=0)
        counts = np.array([(~correct).sum(), correct.sum()])
        means = sums / np.maximum(counts, 1)[:, None]
        return {
            "confusion": confusion.tolist(),
            "num_correct": int(counts[1]),
            "num_misclassified": int(counts[0]),
            "mean_profile_correct": means[1].tolist() if counts[1] else [],
            "mean_profile_misclassified": means[0].tolist() if counts[0] else [],
            "mean_raw": self.stats.mean.tolist(),
        }

    # ------------------------------------------------------------------------------------- helpers
    def _check_range(self, name: str, value: int, low: int, high: int) -> None:
        if not low <= value <= high:
            raise Invalid(f"{name} must be in [{low}, {high}], got {value}")

    def _choose_filters(self, s: Subject, filters: list[int] | None, top_k: int | None, mode: str, seed: int) -> list[int]:
        if filters is not None:
            bad = [f for f in filters if not 0 <= f < self.num_filters]
            if bad:
                raise Invalid(f"filter ids must be in [0, {self.num_filters - 1}], got {bad[0]}")
            return sorted(set(filters))
        self._check_range("top_k", top_k, 1, self.num_filters)
        if mode == "salient":
            chosen = np.argsort(-s.z, kind="stable")[:top_k]
        elif mode == "least":
            chosen = np.argsort(s.z, kind="stable")[:top_k]
        else:
            chosen = np.random.default_rng(seed).choice(self.num_filters, size=top_k, replace=False)
        return sorted(int(f) for f in chosen)

    def _display(self, s: Subject) -> np.ndarray:
        return s.display if s.display is not None else self.dataset.display_image(s.id)

    def _image(self, s: Subject) -> torch.Tensor:
        return s.image if s.image is not None else self.dataset[s.id][0]

    # --------------------------------------------------------------------- jobs (worker thread only)
    def _upload_job(self, image: torch.Tensor, label: int | None):
        """Profile, features and logits from one forward/backward, as the precompute job makes them; without
        a label, a plain forward first finds the predicted class to differentiate."""
        x = image[None]
        if label is None:
            with torch.no_grad():
                label = int(logits_of(self.model(x.to(self.device))).argmax())
        out = profile_batch(self.model, self.layout, x, torch.tensor([label]), self.feature_layer)
        return out.logits[0], out.raw[0].numpy(), out.features[0].numpy()


    def _input_saliency_job(self, s: Subject, top_k: int, boost: float, filters: list[int] | None) -> bytes:
        heat = input_saliency(
            self.model, self._image(s), s.saliency_label, self.stats, top_k=top_k, boost=boost, layout=self.layout,
            filters=filters,
        )
        return png_bytes(overlay(self._display(s), heat.detach().cpu().numpy()), upscale_to=DISPLAY_SIZE)

    def _prune_job(self, s: Subject, neighbor_ids: list[int], filters: list[int]) -> list[dict]:
        images = torch.stack([self._image(s)] + [self.dataset[i][0] for i in neighbor_ids]).to(self.device)
        with torch.no_grad(), prune_filters(self.model, filters, layout=self.layout):
            return self._predictions(logits_of(self.model(images)))

    @staticmethod
    def _predictions(logits: torch.Tensor) -> list[dict]:
        probs = torch.softmax(logits.double(), dim=1).float().cpu()
        return [{"pred": int(p.argmax()), "probs": p.tolist()} for p in probs]
