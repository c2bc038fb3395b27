"""The what-ifs on a group of samples (chosen ids, one confusion, or one failure mode): prune the filters the
group shares, or take one gradient step of the group's loss on them; the group's, its neighbours' and the whole
dataset's predictions before and after, and the patched weights as a download. The served model never changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from starlette.concurrency import run_in_threadpool

from backend.saliency import prune_filters, pruned_state_dict
from backend.saliency.profile import logits_of

from .analysis import AnalysisService
from .jobs import JobHandle
from .service import Invalid, Service
from .whatif import conv_gradients, filter_norms, predictions_with, renormalized_step, step_weights

MAX_GROUP = 2000
INLINE_SAMPLES = 2048  # larger datasets get their accuracy after the change from a background job
CHUNK = 256  # images per compute-worker job while evaluating the dataset (interactive requests interleave)
DATASET_KIND = "dataset-accuracy"


@dataclass(frozen=True)
class Patch:
    """A change of the model: filters switched off, or changed copies of some weights."""

    intervention: str
    filters: list[int]
    weights: dict[str, torch.Tensor] | None = None

    def predictions(self, service: Service, images: torch.Tensor) -> list[dict]:
        if self.weights is not None:
            return predictions_with(service, self.weights, images)
        with torch.no_grad(), prune_filters(service.model, self.filters, layout=service.layout):
            return service._predictions(logits_of(service.model(images.to(service.device))))


def members(service: Service, analysis: AnalysisService, body) -> np.ndarray:
    """The group's sample ids, ascending: the given ids, one confusion's mistakes, or one failure mode's."""
    sample_ids, confusion = body.sample_ids, body.confusion
    if body.failure_mode is not None:
        ids = analysis.failure_mode_members(body.failure_mode)
    elif confusion is not None:
        classes = len(service.class_names)
        true, pred = confusion
        if not (0 <= true < classes and 0 <= pred < classes):
            raise Invalid(f"confusion classes must be in [0, {classes - 1}], got [{true}, {pred}]")
        ids = np.flatnonzero((service.labels == true) & (service.preds == pred))
        if ids.size == 0:
            raise Invalid(f"no samples of class {true} are predicted as {pred}")
    else:
        ids = np.array(sorted(set(sample_ids)), dtype=np.int64)
        bad = ids[(ids < 0) | (ids >= service.num_samples)]
        if bad.size:
            raise Invalid(f"sample ids must be in [0, {service.num_samples - 1}], got {int(bad[0])}")
    if ids.size > MAX_GROUP:
        raise Invalid(f"a group holds at most {MAX_GROUP} samples, this one {ids.size}")
    return ids


def shared_filters(service: Service, mean: np.ndarray, top_k: int, mode: str, seed: int) -> tuple[list[int], list[int]]:
    """(chosen, salient): filters by the group's mean standardized saliency ``mean`` (random: seeded)."""
    service._check_range("top_k", top_k, 1, service.num_filters)
    salient = sorted(int(f) for f in np.argsort(-mean, kind="stable")[:top_k])
    if mode == "salient":
        return salient, salient
    if mode == "least":
        return sorted(int(f) for f in np.argsort(mean, kind="stable")[:top_k]), salient
    return sorted(int(f) for f in np.random.default_rng(seed).choice(service.num_filters, top_k, replace=False)), salient


def make_patch(service: Service, intervention: str, ids: np.ndarray, chosen: list[int], salient: list[int],
               step: float) -> Patch:
    """Worker thread only. Fine-tuning: one step of the group's mean loss (true labels) on the chosen filters."""
    if intervention == "prune":
        return Patch("prune", chosen)
    grads: dict[str, torch.Tensor] = {}
    for start in range(0, len(ids), CHUNK):  # the mean loss's gradient, a chunk at a time (bounded memory)
        part = ids[start : start + CHUNK]
        labels = torch.as_tensor(service.labels[part], device=service.device)
        chunk = conv_gradients(service.model, service.layout, _images(service, part).to(service.device), labels)
        for name, grad in chunk.items():
            grads[name] = grads.get(name, 0) + grad * (len(part) / len(ids))
    size = renormalized_step(filter_norms(service.layout, grads), chosen, salient, step)
    return Patch("finetune", chosen, step_weights(service.model, service.layout, grads, chosen, size))


async def intervene(service: Service, analysis: AnalysisService, intervention: str, body) -> dict:
    ids = members(service, analysis, body)
    mean = await run_in_threadpool(service.artifacts.mean_profile, ids)
    chosen, salient = shared_filters(service, mean, body.top_k, body.mode, body.seed)
    neighbor_ids = await run_in_threadpool(_neighbors, service, ids, mean, body.neighbors)
    patch = await service.worker.run(make_patch, service, intervention, ids, chosen, salient, body.step)
    after = []
    for start in range(0, len(ids) + len(neighbor_ids), CHUNK):  # small worker jobs: others interleave
        part = np.concatenate([ids, neighbor_ids])[start : start + CHUNK]
        after += await service.worker.run(lambda p=part: patch.predictions(service, _images(service, p)))
    group, neighbours = _rows(service, ids, after[: len(ids)]), _rows(service, neighbor_ids, after[len(ids) :])
    answer = {"intervention": intervention, "filters": chosen, "group": group, "group_accuracy": _accuracy(group),
              "neighbors": neighbours, "neighbors_accuracy": _accuracy(neighbours) if neighbours else None,
              "dataset_accuracy": None, "dataset_job": None}
    if service.num_samples <= INLINE_SAMPLES:
        answer["dataset_accuracy"] = await run_in_threadpool(dataset_accuracy, service, patch, None)
    else:
        job = service.jobs.start(DATASET_KIND, f"dataset accuracy after {intervention} of {len(chosen)} filters",
                                 lambda handle: dataset_accuracy(service, patch, handle))
        answer["dataset_job"] = job.id
    return answer


def dataset_accuracy(service: Service, patch: Patch, handle: JobHandle | None) -> dict:
    """Accuracy over every sample before (stored) and after the patch, in worker chunks."""
    hits = 0
    for start in range(0, service.num_samples, CHUNK):
        ids = np.arange(start, min(start + CHUNK, service.num_samples))
        preds = service.worker.call(lambda: [p["pred"] for p in patch.predictions(service, _images(service, ids))])
        hits += int(np.sum(np.asarray(preds) == service.labels[ids]))
        if handle is not None:
            handle.report((start + len(ids)) / service.num_samples)
    return {"before": float(np.mean(service.labels == service.preds)), "after": hits / service.num_samples}


async def export(service: Service, analysis: AnalysisService, body) -> bytes:
    """The patched model's whole state dict as safetensors bytes (loadable with ``checkpoint:PATH:ARCH``)."""
    from safetensors.torch import save

    ids = members(service, analysis, body)
    mean = await run_in_threadpool(service.artifacts.mean_profile, ids)
    chosen, salient = shared_filters(service, mean, body.top_k, body.mode, body.seed)
    state = await service.worker.run(_export_job, service, body.intervention, ids, chosen, salient, body.step)
    return await run_in_threadpool(save, state)


def _export_job(service: Service, intervention: str, ids, chosen, salient, step: float) -> dict:
    patch = make_patch(service, intervention, ids, chosen, salient, step)
    if patch.weights is None:
        state = pruned_state_dict(service.model, chosen, _images(service, ids[:1]).to(service.device), service.layout)
    else:
        state = {k: v.detach().clone() for k, v in service.model.state_dict().items()}
        state.update(patch.weights)
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def _neighbors(service: Service, ids: np.ndarray, mean: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` mistakes nearest to the group's mean profile in saliency space, group members left out."""
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    available = int((~service.artifacts.correct).sum())
    hits = service.artifacts.neighbors(mean.astype(np.float32), k=min(available, k + len(ids)), misclassified_only=True)
    members_ = set(ids.tolist())
    return np.array([h["id"] for h in hits if h["id"] not in members_][:k], dtype=np.int64)


def _images(service: Service, ids) -> torch.Tensor:
    return torch.stack([service.dataset[int(i)][0] for i in ids])


def _rows(service: Service, ids: np.ndarray, after: list[dict]) -> list[dict]:
    return [{"id": int(i), "label": int(service.labels[i]), "after": a,
             "before": {"pred": int(service.preds[i]), "probs": service.probs[i].tolist()}}
            for i, a in zip(ids, after)]


def _accuracy(rows: list[dict]) -> dict:
    return {"before": float(np.mean([r["before"]["pred"] == r["label"] for r in rows])),
            "after": float(np.mean([r["after"]["pred"] == r["label"] for r in rows]))}

