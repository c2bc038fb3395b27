"""What-ifs on one image: mask the pixels its input-space map points at (paper 3.4), or take one gradient step
on its most salient filters (paper 3.3), and see what changes. The served model is never modified: masks change
the input only, and a step is applied through ``torch.func.functional_call`` with changed copies of the weights.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from starlette.concurrency import run_in_threadpool
from torch import nn
from torch.func import functional_call

from backend.data import model_input_transform
from backend.experiments.masking import mask_pixels
from backend.render import png_bytes
from backend.saliency import FilterLayout, filter_saliency, input_saliency
from backend.saliency.profile import eval_mode, logits_of

from .service import DISPLAY_SIZE, Service, Subject


# ------------------------------------------------------------------------------------------ masks
async def mask(service: Service, s: Subject, percent: float, mode: str, top_k: int, boost: float,
               seed: int) -> tuple[dict, bytes]:
    """(answer, masked image PNG), cached together: the POST and the PNG of the same parameters agree."""
    service._check_range("top_k", top_k, 1, service.num_filters)
    key = ("mask", s.kind, s.id, s.saliency_label, percent, mode, top_k, boost, seed)
    cached = service.results.get(key)
    if cached is None:
        cached = await service.worker.run(_mask_job, service, s, percent, mode, top_k, boost, seed)
        service.results.put(key, cached)
    return cached


def _mask_job(service: Service, s: Subject, percent: float, mode: str, top_k: int, boost: float,
              seed: int) -> tuple[dict, bytes]:
    image = service._image(s).to(service.device)
    if mode == "salient":
        heat = input_saliency(service.model, image, s.saliency_label, service.stats, top_k=top_k, boost=boost,
                              layout=service.layout)
    else:
        heat = torch.as_tensor(np.random.default_rng(seed).random(image.shape[-2:]), device=image.device)
    count = max(1, math.ceil(percent / 100 * heat.numel()))
    masked = mask_pixels(image[None], heat[None], count)
    label = torch.tensor([s.saliency_label], device=service.device)
    with torch.no_grad():
        after = service._predictions(logits_of(service.model(masked)))[0]
    raw = filter_saliency(service.model, masked, label, layout=service.layout)[0].float().cpu().numpy()
    z_after = service.stats.standardize(raw)
    top = np.argsort(-s.z, kind="stable")[:top_k]
    answer = {
        "before": {"pred": s.pred, "probs": s.probs.tolist()},
        "after": after,
        "masked_pixels": count,
        "filters": [{"filter": int(f), "z_before": float(s.z[f]), "z_after": float(z_after[f])} for f in top],
        "target": service.target(s),
    }
    positions = torch.zeros(heat.numel(), dtype=torch.bool)
    positions[heat.flatten().topk(count).indices.cpu()] = True
    return answer, png_bytes(_masked_display(service, s, positions.view(heat.shape).numpy()), upscale_to=DISPLAY_SIZE)


def _masked_display(service: Service, s: Subject, positions: np.ndarray) -> np.ndarray:
    """The display image with the masked pixels set to the fill the model saw (0 after normalization = the
    normalization mean)."""
    display = np.array(service._display(s), dtype=np.uint8)
    if positions.shape != display.shape[:2]:  # a display at another size than the model input: nearest
        rows = np.arange(display.shape[0]) * positions.shape[0] // display.shape[0]
        cols = np.arange(display.shape[1]) * positions.shape[1] // display.shape[1]
        positions = positions[rows][:, cols]
    mean = np.round(np.asarray(model_input_transform(service.artifacts.model_spec).mean) * 255).astype(np.uint8)
    display[positions] = mean if display.ndim == 3 else mean[0]
    return display


# ------------------------------------------------------------------------------------ one step
def conv_gradients(model: nn.Module, layout: FilterLayout, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """d mean cross-entropy / dW for every filter-bearing weight, BatchNorm in eval mode, through detached copies
    (the model's parameters, ``requires_grad`` flags and ``.grad`` are left alone)."""
    params = dict(model.named_parameters())
    copies = {span.name: params[span.name].detach().clone().requires_grad_() for span in layout.spans}
    with eval_mode(model), torch.enable_grad():
        loss = F.cross_entropy(logits_of(functional_call(model, copies, (x,))), y)
        grads = torch.autograd.grad(loss, list(copies.values()), allow_unused=True)
    return {n: torch.zeros_like(copies[n]) if g is None else g.detach() for n, g in zip(copies, grads)}


def filter_norms(layout: FilterLayout, grads: dict[str, torch.Tensor]) -> torch.Tensor:
    """``[F]``: each filter's gradient norm."""
    return torch.cat([grads[span.name].flatten(1).norm(dim=1) for span in layout.spans])


def step_weights(model: nn.Module, layout: FilterLayout, grads: dict[str, torch.Tensor], filters: list[int],
                 step: float) -> dict[str, torch.Tensor]:
    """Copies of the weights holding ``filters``, moved by ``-step * grad`` on those filters only."""
    params = dict(model.named_parameters())
    chosen = torch.zeros(layout.num_filters, dtype=torch.bool)
    chosen[filters] = True
    stepped = {}
    for span in layout.spans:
        rows = chosen[span.start : span.stop]
        if bool(rows.any()):
            grad = grads[span.name] * rows.to(grads[span.name].device).view(-1, *[1] * (grads[span.name].dim() - 1))
            stepped[span.name] = params[span.name].detach() - step * grad
    return stepped


def predictions_with(service: Service, weights: dict[str, torch.Tensor], images: torch.Tensor) -> list[dict]:
    with torch.no_grad():
        return service._predictions(logits_of(functional_call(service.model, weights, (images.to(service.device),))))


def renormalized_step(norms: torch.Tensor, chosen: list[int], salient: list[int], step: float) -> float:
    """The experiment's protocol: random and least salient filters' steps are scaled to the salient filters'
    gradient norm, so every mode moves the weights as far and only the choice of filters differs."""
    if chosen == salient:
        return step
    own = float(norms[chosen].norm())
    return step * float(norms[salient].norm()) / own if own > 0 else 0.0


async def finetune(service: Service, s: Subject, top_k: int, mode: str, step: float, neighbors: int,
                   seed: int) -> dict:
    chosen = service._choose_filters(s, None, top_k, mode, seed)
    salient = service._choose_filters(s, None, top_k, "salient", seed)
    k = min(neighbors, int((~service.artifacts.correct).sum()) - (s.kind == "sample" and s.label != s.pred))
    key = ("finetune", s.kind, s.id, s.saliency_label, tuple(chosen), step, k)
    result = service.results.get(key)
    if result is None:
        ids = []
        if k > 0:
            hits = await run_in_threadpool(service.neighbors, s, k, None, "saliency", True)
            ids = [h["id"] for h in hits]
        after, size = await service.worker.run(_finetune_job, service, s, ids, chosen, salient, step)
        result = {
            "filters": chosen,
            "step": size,
            "before": {"pred": s.pred, "probs": s.probs.tolist()},
            "after": after[0],
            "neighbors": [
                {"id": i, "label": int(service.labels[i]), "after": a,
                 "before": {"pred": int(service.preds[i]), "probs": service.probs[i].tolist()}}
                for i, a in zip(ids, after[1:])
            ],
            "target": service.target(s),
        }
        service.results.put(key, result)
    return result


def _finetune_job(service: Service, s: Subject, neighbor_ids: list[int], chosen: list[int], salient: list[int],
                  step: float) -> tuple[list[dict], float]:
    image = service._image(s)[None].to(service.device)
    grads = conv_gradients(service.model, service.layout, image,
                           torch.tensor([s.saliency_label], device=service.device))
    size = renormalized_step(filter_norms(service.layout, grads), chosen, salient, step)
    weights = step_weights(service.model, service.layout, grads, chosen, size)
    images = torch.cat([image.cpu()] + [service.dataset[i][0][None] for i in neighbor_ids])
    return predictions_with(service, weights, images), size
