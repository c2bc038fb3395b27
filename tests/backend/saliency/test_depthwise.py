"""Depthwise convs (one input channel per group) against the batch-size-1 definition, float64.

They take their own CPU path (one grouped forward conv with the batch folded into the channels), so every
setting that changes where a tap reads from is varied here: stride, padding, dilation, rectangular kernels,
channel multipliers, string and non-zero padding modes, outputs that leave input rows unread, and the
small and large output sizes that used to pick different torch paths."""

import pytest
import torch
from torch import nn
import torch.nn.functional as F

from backend.saliency import filter_saliency, reference_filter_saliency
from backend.saliency.profile import per_sample_abs_mean, per_sample_weight_grads

from .models import randomize_batchnorm
from .test_profile import assert_float64_match

# (channels, out channels, input H x W, conv kwargs)
DEPTHWISE = [
    (6, 6, (9, 9), dict(kernel_size=3, padding=1)),
    (6, 6, (8, 8), dict(kernel_size=3, stride=2)),  # the last input row and column are never read
    (5, 5, (16, 14), dict(kernel_size=7, padding=3)),  # ConvNeXt's block conv, 224 output positions
    (4, 4, (13, 11), dict(kernel_size=5, stride=2, padding=2)),  # EfficientNet's downsampling conv
    (4, 4, (12, 12), dict(kernel_size=3, padding=2, dilation=2)),
    (3, 3, (15, 10), dict(kernel_size=(3, 5), stride=(2, 1), padding=(2, 1), dilation=(1, 2))),
    (3, 6, (9, 8), dict(kernel_size=3, padding=1)),  # channel multiplier 2
    (4, 12, (11, 11), dict(kernel_size=3, stride=2, padding=1, dilation=2)),  # multiplier 3, strided, dilated
    (4, 4, (7, 6), dict(kernel_size=4, padding="same")),
    (4, 4, (9, 9), dict(kernel_size=3, padding=1, padding_mode="reflect")),
    (2, 2, (5, 5), dict(kernel_size=5)),  # one output position
]


def definition(conv: nn.Conv2d, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """``[B, Cout, fan_in]``: sample by sample, d<conv(x_n), grad_n>/dW by autograd."""
    rows = []
    for xn, gn in zip(x, grad):
        (w,) = torch.autograd.grad((conv(xn[None]) * gn[None]).sum(), conv.weight)
        rows.append(w.reshape(w.shape[0], -1))
    return torch.stack(rows)


@pytest.mark.parametrize("cin,cout,size,kwargs", DEPTHWISE)
def test_depthwise_per_sample_gradients_match_definition_float64(cin, cout, size, kwargs):
    torch.manual_seed(0)
    conv = nn.Conv2d(cin, cout, groups=cin, bias=False, **kwargs).double()
    x = torch.randn(4, cin, *size, dtype=torch.float64)
    grad = torch.randn_like(conv(x))
    expected = definition(conv, x, grad)
    full = per_sample_weight_grads(conv, x, grad)
    assert full.shape == expected.shape
    assert ((full - expected).abs().max() / expected.abs().max()).item() <= 1e-12
    reduced = per_sample_abs_mean(conv, x, grad)
    mean = expected.abs().mean(dim=2)
    assert ((reduced - mean).abs() / mean).max().item() <= 1e-12


class DepthwiseNet(nn.Module):
    """Inverted-residual and ConvNeXt-style blocks: depthwise convs of every kind between pointwise ones,
    one depthwise conv applied twice (its gradients must be summed before |.|)."""

    def __init__(self, num_classes: int = 4):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.block = nn.Conv2d(8, 8, 7, padding=3, groups=8)
        self.down = nn.Conv2d(8, 8, 5, stride=2, padding=2, groups=8, bias=False)
        self.dilated = nn.Conv2d(8, 16, 3, padding=2, dilation=2, groups=8)
        self.same = nn.Conv2d(16, 16, 4, padding="same", groups=16, bias=False)
        self.bn = nn.BatchNorm2d(16)
        self.twice = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.head = nn.Linear(16, num_classes)

    def forward(self, x):
        x = F.relu(self.stem(x))
        x = F.gelu(self.block(x)) + x
        x = F.relu(self.down(x))
        x = F.relu(self.dilated(x))
        x = F.relu(self.bn(self.same(x)))
        x = torch.tanh(self.twice(F.relu(self.twice(x))))
        return self.head(x.mean(dim=(2, 3)))


def test_depthwise_model_matches_reference_float64():
    torch.manual_seed(0)
    model = randomize_batchnorm(DepthwiseNet()).double()
    images, labels = torch.randn(5, 3, 23, 21, dtype=torch.float64), torch.randint(0, 4, (5,))
    engine = filter_saliency(model, images, labels, batch_size=3)
    assert_float64_match(engine, reference_filter_saliency(model, images, labels))
    assert engine.abs().sum() > 0
