"""A tiny CNN and a synthetic dataset with the interface the precompute job needs (seeded, CPU, milliseconds)."""

from __future__ import annotations

import hashlib

import torch
from torch import nn


class TinyNet(nn.Module):
    """Plain, strided and grouped convs with BatchNorm, and a Linear head whose input is the feature vector."""

    def __init__(self, num_classes: int = 3):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
            nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(6, 6, 3, padding=1, groups=2), nn.BatchNorm2d(6), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(6, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.body(x)), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def tiny_model(seed: int = 0) -> TinyNet:
    """Random weights and non-trivial BatchNorm statistics, in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    model = TinyNet()
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    return model.eval()


class SyntheticDataset(torch.utils.data.Dataset):
    """Seeded random 1x8x8 images and labels; ``bulk=False`` hides ``tensors()`` to exercise the DataLoader path."""

    class_names = ["zero", "one", "two"]

    def __init__(self, n: int = 120, seed: int = 0, bulk: bool = True):
        generator = torch.Generator().manual_seed(seed)
        self.images = torch.randn(n, 1, 8, 8, generator=generator)
        self.labels = torch.randint(0, 3, (n,), generator=generator)
        self.bulk = bulk

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int):
        return self.images[index], int(self.labels[index])

    def tensors(self):
        return (self.images, self.labels) if self.bulk else None

    def fingerprint(self) -> str:
        return hashlib.sha256(self.images.numpy().tobytes() + self.labels.numpy().tobytes()).hexdigest()


def build_artifacts(out, *, n: int = 120, index: str = "flat", shard_size: int = 32, batch_size: int = 16, **kwargs):
    """Runs the real precompute job on the tiny model and data; returns (model, dataset, manifest)."""
    from precompute.job import run_precompute

    model, dataset = tiny_model(), SyntheticDataset(n)
    manifest = run_precompute(model, dataset, out, model_spec="tiny", data_spec="synthetic", batch_size=batch_size,
                              shard_size=shard_size, index=index, show_progress=False, **kwargs)
    return model, dataset, manifest


def small_demo_checkpoint(path, widths=(4, 8, 8, 8)) -> str:
    """Saves a random narrow demo ResNet and returns its model spec, for CLI runs on real Fashion-MNIST."""
    from backend.models.demo import DemoResNet

    torch.manual_seed(0)
    torch.save(DemoResNet(widths=widths).state_dict(), path)
    return f"checkpoint:{path}:demo"
