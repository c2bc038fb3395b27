"""Tiny hand-made models covering the conv variants the engine must handle."""

import torch
from torch import nn
import torch.nn.functional as F


class VariantsNet(nn.Module):
    """Grouped, depthwise, dilated, strided, biased, 'same'/reflect-padded and rectangular convs."""

    def __init__(self, num_classes: int = 5):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=True)
        self.grouped = nn.Conv2d(8, 12, 3, padding=2, dilation=2, groups=4, bias=False)
        self.depthwise = nn.Conv2d(12, 12, 3, stride=2, padding=1, groups=12, bias=True)
        self.rect = nn.Conv2d(12, 6, (1, 3), stride=(1, 2), padding=(0, 1), bias=False)
        self.same = nn.Conv2d(6, 6, 4, padding="same", bias=True)
        self.reflect = nn.Conv2d(6, 7, 3, padding=1, padding_mode="reflect", bias=False)
        self.bn = nn.BatchNorm2d(7)
        self.head = nn.Linear(7, num_classes)

    def forward(self, x):
        x = F.relu(self.stem(x))
        x = F.relu(self.grouped(x))
        x = F.relu(self.depthwise(x))
        x = torch.tanh(self.rect(x))
        x = F.relu(self.same(x))
        x = F.relu(self.bn(self.reflect(x)))
        return self.head(x.mean(dim=(2, 3)))


class ReuseNet(nn.Module):
    """One conv applied twice, and a weight shared by two modules: gradients must sum before |.|."""

    def __init__(self, num_classes: int = 4):
        super().__init__()
        self.stem = nn.Conv2d(2, 5, 3, padding=1)
        self.shared = nn.Conv2d(5, 5, 3, padding=1, bias=False)
        self.tied = nn.Conv2d(5, 5, 3, padding=1, bias=False)
        self.tied.weight = self.shared.weight
        self.head = nn.Linear(5, num_classes)

    def forward(self, x):
        x = F.relu(self.stem(x))
        x = F.relu(self.shared(x))
        x = F.relu(self.shared(x))
        x = torch.sigmoid(self.tied(x))
        return self.head(x.mean(dim=(2, 3)))


class ConvBnNet(nn.Module):
    """conv -> BN -> ReLU blocks, the pattern pruning must see through."""

    def __init__(self, num_classes: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1, stride=2, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.head(x.mean(dim=(2, 3)))


def randomize_batchnorm(model: nn.Module) -> nn.Module:
    """Non-trivial running statistics and affine parameters, so eval-mode BN is not the identity."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            if m.affine:
                m.weight.data.uniform_(0.5, 1.5)
                m.bias.data.uniform_(-0.5, 0.5)
    return model


class SamePadConv(nn.Conv2d):
    """TF-"SAME" padding computed in forward, then F.conv2d (the pattern of EfficientNet ports, timm's
    Conv2dSame)."""

    def forward(self, x):
        pads = []
        for size, k, s, d in zip(reversed(x.shape[2:]), reversed(self.kernel_size), reversed(self.stride),
                                 reversed(self.dilation)):
            total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class StandardizedConv(nn.Conv2d):
    """Weight standardization inside forward (timm's StdConv2d): the saliency is of the raw parameter."""

    def forward(self, x):
        w = self.weight
        w = (w - w.mean(dim=(1, 2, 3), keepdim=True)) / (w.var(dim=(1, 2, 3), keepdim=True, unbiased=False) + 1e-5).sqrt()
        return self._conv_forward(x, w, self.bias)


class FunctionalConv(nn.Module):
    """A weight parameter used by F.conv2d in a custom forward, with string padding."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, 3, 3) * 0.3)

    def forward(self, x):
        return F.conv2d(x, self.weight, padding="same")


class ConvKindsNet(nn.Module):
    """Every way a model may call a conv: subclass with SAME padding, functional, standardized, weight-normed,
    a weight-normed conv applied twice."""

    def __init__(self, num_classes: int = 4):
        super().__init__()
        self.stem = SamePadConv(3, 6, 3, stride=2)
        self.functional = FunctionalConv(6, 8)
        self.std = StandardizedConv(8, 8, 3, padding=1, groups=2)
        self.normed = torch.nn.utils.parametrizations.weight_norm(nn.Conv2d(8, 8, 3, padding=1))
        self.head = nn.Linear(8, num_classes)

    def forward(self, x):
        x = F.relu(self.stem(x))
        x = F.relu(self.functional(x))
        x = F.relu(self.std(x))
        x = torch.tanh(self.normed(F.relu(self.normed(x))))
        return self.head(x.mean(dim=(2, 3)))


class ScaledLinear(nn.Linear):
    """A Linear subclass with its own forward."""

    def forward(self, x):
        return F.linear(x * 0.5, self.weight, self.bias)


class TokenNet(nn.Module):
    """Patch tokens through Linear layers of every kind: self-attention (batch-first), packed cross-attention
    and cross-attention with other key/value sizes (sequence-first), a subclass, a tied weight used twice,
    a weight-normed Linear, and a one-token head."""

    def __init__(self, num_classes: int = 3, dim: int = 8):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 4, stride=4)
        self.attn = nn.MultiheadAttention(dim, 2, batch_first=True)
        self.cross = nn.MultiheadAttention(dim, 2)
        self.memory = nn.Linear(dim, 6)
        self.cross_kv = nn.MultiheadAttention(dim, 2, kdim=6, vdim=6)
        self.up = nn.Linear(dim, 2 * dim)
        self.down = ScaledLinear(2 * dim, dim)
        self.tied = nn.Linear(dim, dim)
        self.normed = torch.nn.utils.parametrizations.weight_norm(nn.Linear(dim, dim))
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)  # [B, T, dim]
        t = t + self.attn(t, t, t, need_weights=False)[0]
        q = t.transpose(0, 1)  # [T, B, dim]
        kv = torch.tanh(q)
        q = q + self.cross(q, kv, kv, need_weights=False)[0]
        memory = self.memory(q)
        q = q + self.cross_kv(q, memory, memory)[0]
        t = q.transpose(0, 1)
        t = t + self.down(F.gelu(self.up(t)))
        t = self.normed(self.tied(torch.tanh(self.tied(t))))
        return self.head(t.mean(dim=1))
