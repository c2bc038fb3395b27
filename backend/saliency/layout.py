"""Which parameters are filters, and where each filter sits in a profile vector."""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.modules.conv import _ConvTransposeNd
from torch.nn.utils import parametrize

PARAM_KINDS = ("conv", "linear", "conv+linear")
_ATTENTION_WEIGHTS = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")


@dataclass(frozen=True)
class LayerSpan:
    """One filter weight: its parameter name and the half-open range of profile entries it owns."""

    name: str
    start: int
    stop: int
    shape: tuple[int, ...]

    @property
    def num_filters(self) -> int:
        return self.stop - self.start


class FilterLayout:
    """Filters are the output channels of conv weights and, on request, the output rows of Linear weights,
    in ``named_parameters()`` order.

    A profile vector has one entry per filter; layers own contiguous ranges of it, so a range of layers
    is a contiguous range of filters.
    """

    def __init__(self, spans: list[LayerSpan]):
        offset = 0
        for span in spans:
            if span.start != offset or span.stop < span.start:
                raise ValueError(f"layer spans must be contiguous and ordered; {span.name} starts at {span.start}")
            offset = span.stop
        self.spans: tuple[LayerSpan, ...] = tuple(spans)
        self.num_filters: int = offset
        self._starts = [span.start for span in self.spans]

    @classmethod
    def from_model(cls, model: nn.Module, params: str = "conv") -> "FilterLayout":
        """``params``: "conv" (every 4-D weight: 2-D convolutions however called), "linear" (every
        ``nn.Linear`` weight and ``nn.MultiheadAttention``'s projections) or "conv+linear".

        A parametrized weight (``torch.nn.utils.parametrize``) counts through the parameter the optimizer
        updates: its original of the weight's shape (weight norm's direction, not its magnitude)."""
        if params not in PARAM_KINDS:
            raise ValueError(f"params must be one of {', '.join(PARAM_KINDS)}; got {params!r}")
        chosen = _filter_weights(model, conv="conv" in params, linear="linear" in params)
        spans, offset = [], 0
        for name, param in model.named_parameters():
            if id(param) in chosen:
                spans.append(LayerSpan(name, offset, offset + param.shape[0], tuple(param.shape)))
                offset += param.shape[0]
        if not spans:
            what = {"conv": "2-D convolution", "linear": "Linear", "conv+linear": "convolution or Linear"}[params]
            raise ValueError(f"the model has no {what} weights, so it has no filters to profile (params={params!r})")
        return cls(spans)

    @property
    def layers(self) -> list[tuple[str, int, int]]:
        """``[(param_name, start, stop)]`` in profile order."""
        return [(s.name, s.start, s.stop) for s in self.spans]

    def __len__(self) -> int:
        return len(self.spans)

    def locate(self, filter_id: int) -> tuple[str, int]:
        """``(param_name, channel)`` of a filter id."""
        span = self.spans[self.layer_of(filter_id)]
        return span.name, filter_id - span.start

    def layer_of(self, filter_id: int) -> int:
        """Index into ``layers`` of the layer owning ``filter_id``."""
        if not 0 <= filter_id < self.num_filters:
            raise IndexError(f"filter id {filter_id} out of range [0, {self.num_filters})")
        return bisect.bisect_right(self._starts, filter_id) - 1

    def filter_range(self, start_layer: int, stop_layer: int) -> tuple[int, int]:
        """Half-open filter range covered by layers ``start_layer:stop_layer`` (Python slice semantics, no step)."""
        chosen = self.spans[start_layer:stop_layer]
        if not chosen:
            raise ValueError(
                f"layer range {start_layer}:{stop_layer} selects no layer; valid layers are 0..{len(self.spans) - 1}"
            )
        return chosen[0].start, chosen[-1].stop

    def filter_name(self, filter_id: int) -> str:
        name, channel = self.locate(filter_id)
        return f"{name.removesuffix('.weight')}[{channel}]"

    def layer_ids(self) -> torch.Tensor:
        """Layer index of every filter, ``[num_filters]`` int64."""
        return torch.repeat_interleave(
            torch.arange(len(self.spans)), torch.tensor([s.num_filters for s in self.spans])
        )

    def to_dict(self) -> dict:
        return {"layers": [{"name": s.name, "start": s.start, "stop": s.stop, "shape": list(s.shape)} for s in self.spans]}

    @classmethod
    def from_dict(cls, data: dict) -> "FilterLayout":
        return cls([LayerSpan(d["name"], int(d["start"]), int(d["stop"]), tuple(d["shape"])) for d in data["layers"]])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FilterLayout) and self.spans == other.spans

    def __hash__(self) -> int:
        return hash(self.spans)

    def __repr__(self) -> str:
        return f"FilterLayout({len(self.spans)} layers, {self.num_filters} filters)"


def _filter_weights(model: nn.Module, *, conv: bool, linear: bool) -> set[int]:
    """Ids of the parameters whose rows are filters."""
    chosen: set[int] = set()
    for module in model.modules():
        if isinstance(module, (parametrize.ParametrizationList, _ConvTransposeNd)):
            continue
        for name, tensor in _own_tensors(module):
            is_conv = conv and tensor.dim() == 4
            is_linear = linear and tensor.dim() == 2 and (
                (isinstance(module, nn.Linear) and name == "weight")
                or (isinstance(module, nn.MultiheadAttention) and name in _ATTENTION_WEIGHTS)
            )
            if is_conv or is_linear:
                chosen.update(id(p) for p in _trained_params(module, name, tensor))
    return chosen


def _own_tensors(module: nn.Module):
    """``(name, tensor)`` of a module's own parameters and parametrized tensors."""
    yield from ((n, p) for n, p in module._parameters.items() if p is not None)
    if parametrize.is_parametrized(module):
        with torch.no_grad():
            yield from ((n, getattr(module, n)) for n in module.parametrizations)


def _trained_params(module: nn.Module, name: str, tensor: torch.Tensor) -> list[nn.Parameter]:
    """The parameter itself, or a parametrized tensor's originals of its own shape."""
    if not (parametrize.is_parametrized(module, name)):
        return [tensor]
    return [p for p in module.parametrizations[name].parameters(recurse=False) if p.shape == tensor.shape]
