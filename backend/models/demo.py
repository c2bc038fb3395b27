"""The demo model: a CIFAR-style ResNet-18 of reduced width for 1x28x28 Fashion-MNIST images.

CIFAR-style means a 3x3 stride-1 stem and no max-pool, so the 28x28 input keeps its resolution in the first
stage (28 -> 14 -> 7 -> 4). Every conv is followed by a BatchNorm and has no bias, which is what the
pruning code expects (a pruned filter's BatchNorm output is zeroed too).

The widths are kept small so that the whole 10k test set can be profiled on a 2-core CPU in well under
three minutes (measured numbers: docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

DEFAULT_WIDTHS = (16, 32, 64, 128)
BLOCKS_PER_STAGE = 2  # ResNet-18: four stages of two basic blocks

FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]

# Mean and std of the Fashion-MNIST *training* pixels in [0, 1], computed with
#   python -c "from backend.data import load_dataset as l; x=l('fashion-mnist:train').raw_images/255.; print(x.mean(), x.std())"
# -> 0.28604 0.35302; the demo model's input is (pixel / 255 - mean) / std.
FASHION_MNIST_MEAN = 0.2860
FASHION_MNIST_STD = 0.3530


def conv_bn(c_in: int, c_out: int, stride: int = 1, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False), nn.BatchNorm2d(c_out)
    )


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU()
        self.shortcut = conv_bn(c_in, c_out, stride, kernel=1) if stride != 1 or c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class DemoResNet(nn.Module):
    """ResNet-18 layout (2-2-2-2 basic blocks) with stage widths ``widths``; ``features()`` is the penultimate layer."""

    def __init__(self, widths: Sequence[int] = DEFAULT_WIDTHS, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        if len(widths) != 4 or min(widths) < 1:
            raise ValueError(f"need four positive stage widths, got {tuple(widths)}")
        self.widths = tuple(int(w) for w in widths)
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        stages, c_in = [], widths[0]
        for i, width in enumerate(widths):
            blocks = [BasicBlock(c_in if b == 0 else width, width, (1 if i == 0 else 2) if b == 0 else 1)
                      for b in range(BLOCKS_PER_STAGE)]
            stages.append(nn.Sequential(*blocks))
            c_in = width
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        # Zero-init the last BN of each block: every block starts as the identity, which trains faster.
        for m in self.modules():
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features ``[N, widths[-1]]`` (the input of ``fc``)."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.pool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor]) -> "DemoResNet":
        """Build a model whose widths, input channels and class count match ``state`` (weights not loaded)."""
        try:
            stem = state["conv1.weight"]
            widths = [state[f"layer{i}.0.conv1.weight"].shape[0] for i in range(1, 5)]
            num_classes = state["fc.weight"].shape[0]
        except KeyError as exc:
            raise ValueError(f"not a demo ResNet state dict: key {exc.args[0]!r} is missing") from None
        return cls(widths, num_classes=num_classes, in_channels=stem.shape[1])
