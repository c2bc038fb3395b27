"""The building blocks, checked against plain references: per-row pruning and weight changes, bootstrap,
rank correlation, Grad-CAM by hand, pixel masking and stage randomization."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from backend.experiments.common import bootstrap, rankdata, spearman
from backend.experiments.gradcam import CamLayer, cam_layer, grad_cam, input_gradient, last_conv_stage, pooled
from backend.experiments.masking import mask_pixels
from backend.experiments.sanity import randomize, stages
from backend.saliency import FilterLayout, prune_filters, row_weight_deltas
from tests.precompute.tiny import tiny_model


def test_per_row_keep_equals_prune_filters_row_by_row():
    model = tiny_model()
    layout = FilterLayout.from_model(model)
    x = torch.randn(4, 1, 8, 8)
    sets = [[], [0, 5], [3, 9, 12, 15], list(range(layout.num_filters))]
    keep = torch.ones(4, layout.num_filters, dtype=torch.bool)
    for row, chosen in enumerate(sets):
        keep[row, chosen] = False
    with torch.no_grad(), prune_filters(model, layout=layout, keep=keep):
        batched = model(x)
    for row, chosen in enumerate(sets):
        with torch.no_grad(), prune_filters(model, chosen, layout):
            alone = model(x[row : row + 1])
        torch.testing.assert_close(batched[row : row + 1], alone, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(model(x[:1]), batched[:1])  # hooks gone; row 0 pruned nothing
    assert not torch.allclose(batched[1], model(x[1:2])[0])


def test_row_weight_deltas_equal_changed_weights():
    model = tiny_model()
    layout = FilterLayout.from_model(model)
    params = dict(model.named_parameters())
    generator = torch.Generator().manual_seed(3)
    groups, size = 3, 2
    deltas = {span.name: torch.randn(groups, *params[span.name].shape, generator=generator) * 0.1
              for span in layout.spans[1:]}
    x = torch.randn(size, 1, 8, 8)
    with torch.no_grad(), row_weight_deltas(model, layout, deltas, group_size=size):
        batched = model(x.repeat(groups, 1, 1, 1))
    for g in range(groups):
        changed = copy.deepcopy(model)
        with torch.no_grad():
            for name, delta in deltas.items():
                dict(changed.named_parameters())[name].add_(delta[g])
            torch.testing.assert_close(batched[g * size : (g + 1) * size], changed(x), rtol=1e-4, atol=1e-5)


def test_bootstrap_is_seeded_and_brackets_the_mean():
    values = np.random.default_rng(1).normal(size=(200, 3))
    values[:5, 2] = np.nan
    a, b = bootstrap(values, seed=4), bootstrap(values, seed=4)
    assert a == b
    for k in range(3):
        assert a["low"][k] <= a["mean"][k] <= a["high"][k]
        assert a["high"][k] - a["low"][k] < 0.5
    assert a["count"] == [200, 200, 195]
    assert a["mean"][2] == pytest.approx(np.nanmean(values[:, 2]), abs=1e-6)
    single = bootstrap(np.ones(10), seed=0)
    assert single["mean"] == single["low"] == single["high"] == 1.0
    assert bootstrap(np.zeros((0, 2)), seed=0)["mean"] == [None, None]


def test_spearman_matches_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, size=(7, 7)).astype(float)
    b = a + rng.normal(size=(7, 7))
    np.testing.assert_allclose(rankdata(a), stats.rankdata(a.ravel()))
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a.ravel(), b.ravel())[0], abs=1e-12)
    assert np.isnan(spearman(np.ones(4), np.arange(4)))


class CamNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(3, 4)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def test_grad_cam_equals_hand_computation():
    torch.manual_seed(0)
    model = CamNet().eval()
    x = torch.randn(2, 2, 6, 6)
    classes = torch.tensor([1, 3])
    assert last_conv_stage(model) == "features"
    cam = grad_cam(model, x, classes)
    with torch.no_grad():
        activations = model.features(x)  # [2, 3, 6, 6]
        # d logit_c / d A_k(i, j) = w[c, k] / 36 everywhere, so alpha_k = w[c, k] / 36
        alpha = model.fc.weight[classes] / 36.0
        expected = torch.relu(torch.einsum("bk,bkij->bij", alpha, activations))
    torch.testing.assert_close(cam, expected)
    torch.testing.assert_close(grad_cam(model, x, classes, upsample=False), expected)
    assert all(p.grad is None for p in model.parameters())


class TokenMixer(nn.Module):
    """Mixes the tokens (as attention does), so the first token reads the patches."""

    def __init__(self, tokens: int, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.mix = nn.Linear(tokens, tokens)

    def forward(self, x):
        return x + torch.tanh(self.mix(self.norm(x).transpose(1, 2))).transpose(1, 2)


class TinyTokenNet(nn.Module):
    """A ViT in miniature with a rectangular patch grid (3 x 2) and two prefix tokens before the patches; the
    head reads the first token only."""

    def __init__(self, dim: int = 6, classes: int = 4):
        super().__init__()
        self.patch = nn.Conv2d(2, dim, 4, stride=4)
        self.prefix = nn.Parameter(torch.randn(1, 2, dim))
        self.blocks = nn.Sequential(TokenMixer(8, dim), TokenMixer(8, dim))
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.prefix.expand(x.shape[0], -1, -1), tokens], dim=1)
        return self.head(self.blocks(tokens)[:, 0])


def test_grad_cam_on_patch_tokens_follows_the_patch_grid():
    torch.manual_seed(0)
    model = TinyTokenNet().eval()
    x = torch.randn(3, 2, 12, 8)
    classes = torch.tensor([0, 3, 1])
    layer = cam_layer(model, x)
    assert layer == CamLayer("blocks.1", grid=(3, 2), prefix=2)
    cam = grad_cam(model, x, classes, upsample=False)
    # token by token, in the order the patch conv's output was flattened (row-major over the 3 x 2 grid)
    with torch.no_grad():
        tokens = model.blocks[0](torch.cat([model.prefix.expand(3, -1, -1), model.patch(x).flatten(2).transpose(1, 2)], 1))
    tokens.requires_grad_()
    (grad,) = torch.autograd.grad(model.head(model.blocks[1](tokens)[:, 0]).gather(1, classes[:, None]).sum(), tokens)
    alpha = grad[:, 2:].mean(dim=1)  # [B, dim]
    expected = torch.relu(torch.einsum("bk,btk->bt", alpha, tokens[:, 2:].detach())).view(3, 3, 2)
    assert expected.abs().sum() > 0
    torch.testing.assert_close(cam, expected)
    assert grad_cam(model, x, classes).shape == (3, 12, 8)


def test_grad_cam_layer_of_a_torchvision_vit_is_its_last_encoder_block():
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.VisionTransformer(image_size=16, patch_size=4, num_layers=2, num_heads=2,
                                                 hidden_dim=8, mlp_dim=16, num_classes=3).eval()
    nn.init.normal_(model.heads.head.weight)  # torchvision starts the head at zero: no gradient anywhere
    x = torch.randn(2, 3, 16, 16)
    assert cam_layer(model, x) == CamLayer("encoder.layers.encoder_layer_1", grid=(4, 4), prefix=1)
    cam = grad_cam(model, x, torch.tensor([0, 2]), upsample=False)
    assert cam.shape == (2, 4, 4) and bool((cam >= 0).all()) and cam.sum() > 0
    assert cam_layer(CamNet().eval(), torch.randn(1, 2, 6, 6)) == CamLayer("features")


def test_grad_cam_reads_swin_stages_channels_last_and_convnext_channels_first():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    swin = torchvision.models.swin_t(num_classes=3).eval()
    x = torch.randn(2, 3, 64, 64)
    layer = cam_layer(swin, x)
    assert layer == CamLayer("features", channels_last=True)
    with torch.no_grad():
        stage = swin.features(x)  # [2, 2, 2, 768]
    cam = grad_cam(swin, x, torch.tensor([0, 2]), layer, upsample=False)
    assert stage.shape == (2, 2, 2, 768) and cam.shape == (2, 2, 2)
    convnext = torchvision.models.convnext_tiny(num_classes=3).eval()
    assert cam_layer(convnext, x) == CamLayer("features")


def test_input_gradient_equals_one_sample_at_a_time():
    model = tiny_model()
    x = torch.randn(3, 1, 8, 8)
    labels = torch.tensor([0, 2, 1])
    maps = input_gradient(model, x, labels)
    assert all(p.grad is None for p in model.parameters())
    for i in range(3):
        xi = x[i : i + 1].clone().requires_grad_()
        torch.nn.functional.cross_entropy(model(xi), labels[i : i + 1]).backward()
        torch.testing.assert_close(maps[i], xi.grad[0].abs().amax(dim=0))
    heat = np.arange(16, dtype=np.float64).reshape(4, 4)
    assert pooled(heat, (2, 2)).tolist() == [[2.5, 4.5], [10.5, 12.5]]


def test_mask_pixels_zeroes_exactly_the_top_pixels():
    images = torch.randn(2, 3, 4, 4) + 5
    heats = torch.arange(32, dtype=torch.float32).view(2, 4, 4)
    masked = mask_pixels(images, heats, 3)
    zero = (masked == 0).all(dim=1)
    assert zero.sum().item() == 6
    assert zero[:, 3, 1:].all()  # the three largest entries of each map
    assert torch.equal(masked[~zero.unsqueeze(1).expand_as(masked)], images[~zero.unsqueeze(1).expand_as(images)])


def test_randomize_resets_one_stage_reproducibly():
    model = tiny_model()
    assert stages(model) == ["body", "head"]
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    randomize(a.head, 5)
    randomize(b.head, 5)
    assert torch.equal(a.head.weight, b.head.weight)
    assert not torch.equal(a.head.weight, model.head.weight)
    assert all(torch.equal(p, q) for p, q in zip(a.body.parameters(), model.body.parameters()))
