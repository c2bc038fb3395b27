"""Every kind of filter weight against the batch-size-1 definition: conv subclasses, functional convs,
weight transforms, Linear rows (attention included), transformers from torchvision and timm."""

import copy
import logging

import pytest
import torch
import torchvision
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from backend.saliency import FilterLayout, SaliencyStats, filter_saliency, input_saliency, prune_filters
from backend.saliency import reference_filter_saliency

from .models import ConvKindsNet, TokenNet, randomize_batchnorm
from .test_input_space import eq3_reference
from .test_profile import assert_float64_match, assert_same_state, model_state


def check_kind(model, shape, classes, params, *, batch=3, micro=2, caplog=None):
    """Engine == reference in float64 for ``params``, with every layer on the fast path."""
    model = randomize_batchnorm(model).double().eval()
    layout = FilterLayout.from_model(model, params=params)
    images = torch.randn(batch, *shape, dtype=torch.float64)
    labels = torch.randint(0, classes, (batch,))
    with caplog.at_level(logging.WARNING, logger="backend.saliency.profile"):
        engine = filter_saliency(model, images, labels, batch_size=micro, layout=layout)
    assert_float64_match(engine, reference_filter_saliency(model, images, labels, layout))
    assert not [r for r in caplog.records if "slow path" in r.message]
    assert (engine.abs().sum(dim=0) > 0).float().mean() > 0.9  # nearly every filter got a gradient
    return layout


def test_conv_subclasses_functional_and_parametrized_convs_match_reference(caplog):
    layout = check_kind(ConvKindsNet(), (3, 13, 11), 4, "conv", caplog=caplog)
    assert [n for n, _, _ in layout.layers] == [
        "stem.weight", "functional.weight", "std.weight", "normed.parametrizations.weight.original1"]


@pytest.mark.parametrize("params", ["linear", "conv+linear"])
def test_linear_rows_attention_and_tied_weights_match_reference(params, caplog):
    layout = check_kind(TokenNet(), (3, 12, 12), 3, params, caplog=caplog)
    names = [n for n, _, _ in layout.layers]
    assert ("patch.weight" in names) == (params == "conv+linear")
    assert {"attn.in_proj_weight", "attn.out_proj.weight", "cross_kv.q_proj_weight", "cross_kv.k_proj_weight",
            "tied.weight", "normed.parametrizations.weight.original1", "head.weight"} <= set(names)
    model = TokenNet()
    assert names == [n for n, _ in model.named_parameters() if n in set(names)]


def test_layout_params_choice_is_checked():
    with pytest.raises(ValueError, match="params must be one of"):
        FilterLayout.from_model(TokenNet(), params="all")
    with pytest.raises(ValueError, match="no Linear weights"):
        FilterLayout.from_model(nn.Sequential(nn.Conv2d(1, 2, 3)), params="linear")


def test_torchvision_vision_transformer_matches_reference(caplog):
    model = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                                 hidden_dim=16, mlp_dim=24, num_classes=5)
    nn.init.normal_(model.heads.head.weight)  # torchvision starts it at zero: nothing would reach the encoder
    check_kind(model, (3, 32, 32), 5, "conv+linear", caplog=caplog)


@pytest.mark.parametrize("name", ["swin_t", "convnext_tiny", "efficientnet_b0"])
def test_torchvision_models_with_linear_rows_match_reference(name, caplog):
    model = torchvision.models.get_model(name, weights=None, num_classes=5)
    check_kind(model, (3, 96, 96), 5, "conv+linear", batch=2, caplog=caplog)


def test_timm_models_match_reference(caplog):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2,
                            num_classes=4)
    check_kind(vit, (3, 32, 32), 4, "conv+linear", caplog=caplog)
    same_padded = timm.create_model("tf_efficientnet_b0", pretrained=False, num_classes=4)
    check_kind(same_padded, (3, 48, 48), 4, "conv", batch=2, caplog=caplog)
    std = nn.Sequential(timm.layers.StdConv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(6, 4))
    check_kind(std, (3, 9, 9), 4, "conv+linear", caplog=caplog)


class LayerScaled(nn.Module):
    """A 4-D parameter that is multiplied into activations, not used by a conv: only the slow path knows."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.scale = nn.Parameter(torch.rand(1, 3, 1, 1) + 0.5)
        self.head = nn.Linear(3, 2)

    def forward(self, x):
        return self.head((self.conv(x) * self.scale).mean(dim=(2, 3)))


def test_weights_used_outside_conv_ops_take_the_exact_slow_path_and_are_logged_once(caplog):
    model = LayerScaled().double()
    images, labels = torch.randn(5, 2, 6, 6, dtype=torch.float64), torch.randint(0, 2, (5,))
    with caplog.at_level(logging.WARNING, logger="backend.saliency.profile"):
        engine = filter_saliency(model, images, labels, batch_size=2)
    assert_float64_match(engine, reference_filter_saliency(model, images, labels))
    logged = [r.message for r in caplog.records if "slow path" in r.message]
    assert len(logged) == 1 and "scale" in logged[0] and "conv.weight" not in logged[0]


def test_parametrized_model_left_exactly_as_found_also_on_error():
    model = TokenNet().train()
    model.up.weight.requires_grad_(False)
    model.head.weight.grad = torch.ones_like(model.head.weight)
    layout = FilterLayout.from_model(model, params="conv+linear")
    before = model_state(model)
    filter_saliency(model, torch.randn(2, 3, 8, 8), torch.tensor([0, 1]), layout=layout)
    assert_same_state(before, model_state(model))
    with pytest.raises(IndexError):
        filter_saliency(model, torch.randn(2, 3, 8, 8), torch.tensor([0, 99]), layout=layout)
    assert_same_state(before, model_state(model))
    assert torch.nn.utils.parametrize.is_parametrized(model.normed, "weight")
    assert torch._C._len_torch_function_stack() == 0


def zeroed_rows_copy(model: nn.Module, layout: FilterLayout, filter_ids: list[int]) -> nn.Module:
    """The definition of pruning a Linear row: that weight row and its bias entry set to zero."""
    clone = copy.deepcopy(model)
    params = dict(clone.named_parameters())
    with torch.no_grad():
        for filter_id in filter_ids:
            name, row = layout.locate(filter_id)
            params[name][row] = 0
            bias = params.get(name.replace("in_proj_weight", "in_proj_bias").replace("weight", "bias"))
            if bias is not None and bias.shape[0] == params[name].shape[0]:
                bias[row] = 0
    return clone


def test_pruning_linear_rows_equals_zeroed_rows_including_attention_projections():
    torch.manual_seed(1)
    model = TokenNet().double().eval()
    layout = FilterLayout.from_model(model, params="conv+linear")
    spans = {name: (start, stop) for name, start, stop in layout.layers}
    filter_ids = [spans["attn.in_proj_weight"][0] + i for i in (0, 9, 17)]  # a q, a k and a v row
    filter_ids += [spans["cross.in_proj_weight"][0] + 12, spans["attn.out_proj.weight"][0] + 3,
                   spans["up.weight"][0] + 5, spans["tied.weight"][0] + 1, spans["patch.weight"][0] + 2]
    images = torch.randn(3, 3, 12, 12, dtype=torch.float64)
    with torch.no_grad():
        with prune_filters(model, filter_ids, layout=layout):
            pruned = model(images)
        expected = zeroed_rows_copy(model, layout, filter_ids)(images)
        torch.testing.assert_close(pruned, expected, rtol=1e-10, atol=1e-12)
        assert not torch.allclose(pruned, model(images), rtol=1e-4, atol=1e-4)
    # one forward, each row its own pruned set
    keep = torch.ones(3, layout.num_filters, dtype=torch.bool)
    keep[1, filter_ids[:3]] = False
    keep[2, filter_ids[3:]] = False
    with torch.no_grad(), prune_filters(model, layout=layout, keep=keep):
        rows = model(images)
    with torch.no_grad():
        torch.testing.assert_close(rows[0], model(images[:1])[0], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(rows[1], zeroed_rows_copy(model, layout, filter_ids[:3])(images[1:2])[0],
                                   rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(rows[2], zeroed_rows_copy(model, layout, filter_ids[3:])(images[2:3])[0],
                                   rtol=1e-10, atol=1e-12)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_pruning_functional_and_subclassed_convs_zeroes_their_channels():
    model = ConvKindsNet().double().eval()
    layout = FilterLayout.from_model(model)
    seen = {}
    model.std.register_forward_pre_hook(lambda m, args: seen.update(x=args[0].detach().clone()))
    with torch.no_grad(), prune_filters(model, [layout.filter_range(1, 2)[0] + 3], layout=layout):
        model(torch.randn(2, 3, 13, 11, dtype=torch.float64))
    assert (seen["x"][:, 3] == 0).all() and (seen["x"][:, [0, 1, 2]] != 0).any()


def test_input_saliency_on_linear_rows_matches_double_backward():
    model = TokenNet().double().eval()
    layout = FilterLayout.from_model(model, params="conv+linear")
    images, labels = torch.randn(6, 3, 12, 12, dtype=torch.float64), torch.randint(0, 3, (6,))
    stats = SaliencyStats().update(filter_saliency(model, images, labels, layout=layout))
    heat = input_saliency(model, images[0], int(labels[0]), stats, top_k=5, layout=layout)
    with sdpa_kernel(SDPBackend.MATH):  # the fused CPU attention kernel cannot be differentiated twice
        expected = eq3_reference(model, images[0], int(labels[0]), stats, 5, 100.0, layout=layout)
    torch.testing.assert_close(heat, expected, rtol=1e-8, atol=1e-12 * float(expected.max()))


def test_linear_tiles_do_not_change_the_result(monkeypatch):
    """One row of one sample per tile gives the same profile as whole samples (tiling is only for memory)."""
    model = TokenNet().double()
    layout = FilterLayout.from_model(model, params="linear")
    images, labels = torch.randn(4, 3, 12, 12, dtype=torch.float64), torch.randint(0, 3, (4,))
    expected = filter_saliency(model, images, labels, layout=layout)
    monkeypatch.setattr("backend.saliency.linear._CPU_TILE_BYTES", 1)
    torch.testing.assert_close(filter_saliency(model, images, labels, layout=layout), expected, rtol=1e-12, atol=0)
