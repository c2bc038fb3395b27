"""Per-row weight changes and pruning written into weights, on every layout the engine profiles: conv
subclasses, functional convs, weight-normed convs and Linears, MHA projections, weights used twice."""

import copy

import pytest
import torch
from torch import nn

from backend.saliency import FilterLayout, prune_filters, pruned_state_dict, row_weight_deltas

from .models import ConvKindsNet, TokenNet


def changed_copy(model: nn.Module, deltas: dict[str, torch.Tensor], group: int) -> nn.Module:
    """The model with group ``group``'s changes written into its parameters (the definition)."""
    changed = copy.deepcopy(model)
    params = dict(changed.named_parameters())
    with torch.no_grad():
        for name, delta in deltas.items():
            params[name].add_(delta[group])
    return changed


def random_deltas(model, layout, names, groups, seed=0):
    generator = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    return {name: torch.randn(groups, *params[name].shape, generator=generator, dtype=torch.float64) * 0.2
            for name in names}


CASES = [
    # (model, params, input shape, filter weights to change)
    (ConvKindsNet, "conv", (3, 9, 8), ["stem.weight", "functional.weight", "normed.parametrizations.weight.original1"]),
    (TokenNet, "linear", (3, 8, 8), None),  # every Linear row, MHA projections and weight norm included
]


@pytest.mark.parametrize("factory,params,shape,names", CASES, ids=["convs", "linear-rows"])
def test_row_weight_deltas_equal_changed_weights_float64(factory, params, shape, names):
    torch.manual_seed(0)
    model = factory().double().eval()
    layout = FilterLayout.from_model(model, params=params)
    names = names or [span.name for span in layout.spans]
    groups, size = 3, 2
    deltas = random_deltas(model, layout, names, groups)
    x = torch.randn(size, *shape, dtype=torch.float64)
    with torch.no_grad(), row_weight_deltas(model, layout, deltas, group_size=size):
        batched = model(x.repeat(groups, 1, 1, 1))
    with torch.no_grad():
        unchanged = model(x)
    for g in range(groups):
        with torch.no_grad():
            expected = changed_copy(model, deltas, g)(x)
        torch.testing.assert_close(batched[g * size : (g + 1) * size], expected, rtol=1e-10, atol=1e-12)
        assert (expected - unchanged).abs().max() > 1e-3  # the changes matter at this tolerance


def test_weight_change_through_a_forward_transform_is_refused_clearly():
    model = ConvKindsNet().double()
    layout = FilterLayout.from_model(model)
    deltas = random_deltas(model, layout, ["std.weight"], 1)
    with pytest.raises(ValueError, match="std.weight: its weight reaches the op through a transform computed in forward"):
        with torch.no_grad(), row_weight_deltas(model, layout, deltas):
            model(torch.randn(1, 3, 9, 8, dtype=torch.float64))
    with torch.no_grad():
        model(torch.randn(1, 3, 9, 8, dtype=torch.float64))  # the mode is gone after the error


def test_bad_deltas_are_refused_clearly():
    model = ConvKindsNet()
    layout = FilterLayout.from_model(model)
    with pytest.raises(ValueError, match="head.weight: not a filter weight"):
        row_weight_deltas(model, layout, {"head.weight": torch.zeros(1, 4, 8)})
    with pytest.raises(ValueError, match=r"must be \[groups, \*\(8, 6, 3, 3\)\]"):
        row_weight_deltas(model, layout, {"functional.weight": torch.zeros(1, 8, 6, 3)})
    deltas = {"stem.weight": torch.zeros(2, 6, 3, 3, 3)}
    with pytest.raises(ValueError, match="expects 2 x 1 rows, the batch has 3"):
        with torch.no_grad(), row_weight_deltas(model, layout, deltas):
            model(torch.randn(3, 3, 9, 8))


def output_of(model: nn.Module, module_name: str, x: torch.Tensor) -> torch.Tensor:
    seen = []
    handle = dict(model.named_modules())[module_name].register_forward_hook(lambda m, a, out: seen.append(out))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return seen[0]


@pytest.mark.parametrize("factory,params,module,shape", [
    (ConvKindsNet, "conv", "normed", (3, 9, 8)),
    (TokenNet, "linear", "normed", (3, 8, 8)),
], ids=["weight-normed-conv", "weight-normed-linear"])
def test_pruned_weight_normed_filter_gives_finite_weights_and_zero_output(factory, params, module, shape):
    torch.manual_seed(0)
    model = factory().double().eval()
    layout = FilterLayout.from_model(model, params=params)
    span = next(s for s in layout.spans if s.name == f"{module}.parametrizations.weight.original1")
    chosen = [span.start + 1, span.start + 4]
    x = torch.randn(2, *shape, dtype=torch.float64)
    state = pruned_state_dict(model, chosen, x[:1], layout)
    assert all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point())
    loaded = copy.deepcopy(model)
    loaded.load_state_dict(state)
    out = output_of(loaded, module, x)
    assert not out[..., [1, 4]].any() if params == "linear" else not out[:, [1, 4]].any()
    with torch.no_grad(), prune_filters(model, chosen, layout):
        expected = model(x)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), expected, rtol=1e-10, atol=1e-12)
        assert (loaded(x) - model(x)).abs().max() > 1e-4


def test_pruned_state_dict_covers_functional_and_subclassed_convs():
    torch.manual_seed(0)
    model = ConvKindsNet().double().eval()
    layout = FilterLayout.from_model(model)
    chosen = [layout.spans[0].start + 2, layout.spans[1].start + 3, layout.spans[2].start]
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64)
    loaded = copy.deepcopy(model)
    loaded.load_state_dict(pruned_state_dict(model, chosen, x[:1], layout))
    with torch.no_grad(), prune_filters(model, chosen, layout):
        expected = model(x)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), expected, rtol=1e-10, atol=1e-12)
