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
