"""The demo ResNet, `pss train-demo` determinism, and the committed checkpoint."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from backend.cli import main
from backend.data import FASHION_MNIST_SYSTEM_DIR, load_dataset
from backend.models import DEMO_CHECKPOINT, load_model, load_state_dict_file, weights_sha256
from backend.models.demo import DEFAULT_WIDTHS, DemoResNet
from backend.train_demo import evaluate
from backend.saliency import FilterLayout

needs_debian_files = pytest.mark.skipif(
    not FASHION_MNIST_SYSTEM_DIR.is_dir(), reason="the Debian package dataset-fashion-mnist is not installed"
)


def test_every_conv_is_bias_free_and_directly_followed_by_its_batchnorm():
    model = DemoResNet().eval()
    calls = []
    hooks = [m.register_forward_hook(lambda m, i, o: calls.append(m)) for m in model.modules()
             if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]
    with torch.no_grad():
        out = model(torch.randn(2, 1, 28, 28))
    for hook in hooks:
        hook.remove()
    assert out.shape == (2, 10) and model.features(torch.randn(3, 1, 28, 28)).shape == (3, DEFAULT_WIDTHS[-1])
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 20  # ResNet-18: stem + 8 blocks x 2 + 3 projection shortcuts
    assert all(conv.bias is None for conv in convs)
    for first, second in zip(calls[::2], calls[1::2]):
        assert isinstance(first, nn.Conv2d) and isinstance(second, nn.BatchNorm2d)
        assert first.out_channels == second.num_features


def test_filter_count_follows_the_widths():
    for widths in [(4, 8, 16, 32), DEFAULT_WIDTHS]:
        stem, stages = widths[0], [4 * w + (w if i else 0) for i, w in enumerate(widths)]  # + projection
        assert FilterLayout.from_model(DemoResNet(widths)).num_filters == stem + sum(stages)


def test_from_state_dict_rebuilds_the_shape_and_rejects_other_dicts():
    source = DemoResNet((4, 6, 8, 10), num_classes=4)
    rebuilt = DemoResNet.from_state_dict(source.state_dict())
    assert rebuilt.widths == (4, 6, 8, 10) and rebuilt.fc.out_features == 4
    with pytest.raises(ValueError, match="'layer1.0.conv1.weight' is missing"):
        DemoResNet.from_state_dict({"conv1.weight": torch.zeros(4, 1, 3, 3)})


@needs_debian_files
def test_train_demo_is_deterministic_for_a_seed(tmp_path):
    def train(name, seed):
        out = tmp_path / f"{name}.pt"
        assert main(["train-demo", "--limit", "192", "--epochs", "1", "--batch-size", "64", "--widths", "4,8,8,16",
                     "--seed", str(seed), "--out", str(out)]) == 0
        return out, json.loads(out.with_suffix(".json").read_text())

    a, record_a = train("a", 0)
    b, record_b = train("b", 0)
    c, record_c = train("c", 1)
    state_a, state_b = load_state_dict_file(a), load_state_dict_file(b)
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert record_a["weights_sha256"] == record_b["weights_sha256"] == weights_sha256(state_a)
    assert record_c["weights_sha256"] != record_a["weights_sha256"]
    assert record_a["test_accuracy"] == record_b["test_accuracy"] and record_a["test_samples"] == 192
    assert record_a["command"].startswith("pss train-demo --epochs 1 --seed 0 ") and "--limit 192" in record_a["command"]
    assert {"torch", "torchvision", "numpy", "python"} <= set(record_a["versions"]) and record_a["duration_s"] > 0
    model = load_model(f"checkpoint:{a}:demo")
    assert model.widths == (4, 8, 8, 16) and weights_sha256(model) == record_a["weights_sha256"]


def test_train_demo_rejects_bad_flags(tmp_path, capsys):
    assert main(["train-demo", "--widths", "16,32", "--out", str(tmp_path / "x.pt")]) == 2
    assert "--widths needs four positive integers" in capsys.readouterr().err
    assert main(["train-demo", "--out", str(tmp_path / "x.bin")]) == 2
    assert "--out must end in .pt" in capsys.readouterr().err


def test_committed_checkpoint_record():
    record = json.loads(DEMO_CHECKPOINT.with_suffix(".json").read_text())
    assert record["test_accuracy"] >= 0.92 and record["test_samples"] == 10000 and record["train_samples"] == 60000
    assert record["command"].startswith("pss train-demo")
    model = load_model("demo")
    assert not model.training and weights_sha256(model) == record["weights_sha256"]
    assert DEMO_CHECKPOINT.stat().st_size < 10 * 2**20


@needs_debian_files
def test_committed_checkpoint_reaches_its_recorded_accuracy():
    record = json.loads(DEMO_CHECKPOINT.with_suffix(".json").read_text())
    images, labels = load_dataset("fashion-mnist:test").tensors()
    accuracy = evaluate(load_model("demo"), images, labels)
    # The same weights on the same images; a thread count other than training's may reorder float sums,
    # which could flip a near-tie, so allow one image.
    assert abs(accuracy - record["test_accuracy"]) <= 1 / 10000
    assert accuracy >= 0.92
