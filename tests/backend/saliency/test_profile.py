"""The batched engine against the definition: a batch-size-1 autograd loop."""

import copy

import pytest
import torch
import torchvision
from torch import nn

from backend.saliency import FilterLayout, filter_saliency, reference_filter_saliency
from backend.saliency.profile import SaliencyRecorder

from .models import ConvBnNet, ReuseNet, VariantsNet, randomize_batchnorm


def assert_float64_match(engine: torch.Tensor, reference: torch.Tensor) -> None:
    """Every filter within 1e-8 relative error; filters that are ~0 in the reference must be ~0 here too."""
    assert engine.shape == reference.shape and engine.dtype == torch.float64
    floor = 1e-12 * reference.abs().amax(dim=1, keepdim=True)
    tiny = reference.abs() < floor
    rel = (engine - reference).abs() / reference.abs().clamp_min(1e-300)
    assert rel[~tiny].max().item() <= 1e-8, f"max relative error {rel[~tiny].max().item():.3e}"
    assert (engine.abs()[tiny] < floor.expand_as(tiny)[tiny]).all()


def check_model(model: nn.Module, shape: tuple, num_classes: int, batch: int = 3) -> None:
    model = randomize_batchnorm(model).double()
    images = torch.randn(batch, *shape, dtype=torch.float64)
    labels = torch.randint(0, num_classes, (batch,))
    engine = filter_saliency(model, images, labels, batch_size=2)  # 2 micro-batches: exercises the split
    reference = reference_filter_saliency(model, images, labels)
    assert_float64_match(engine, reference)
    assert engine.abs().sum() > 0


TORCHVISION = [
    ("resnet18", (3, 64, 64)),
    ("resnet50", (3, 64, 64)),
    ("vgg11", (3, 32, 32)),
    ("densenet121", (3, 32, 32)),
    ("inception_v3", (3, 75, 75)),
    ("mobilenet_v3_small", (3, 64, 64)),
    ("efficientnet_b0", (3, 64, 64)),
    ("shufflenet_v2_x0_5", (3, 64, 64)),
    ("googlenet", (3, 64, 64)),
]


@pytest.mark.parametrize("name,shape", TORCHVISION, ids=[n for n, _ in TORCHVISION])
def test_torchvision_models_match_reference_float64(name, shape):
    kwargs = {"init_weights": True} if name in ("inception_v3", "googlenet") else {}
    model = torchvision.models.get_model(name, weights=None, num_classes=7, **kwargs)
    check_model(model, shape, num_classes=7, batch=2)


@pytest.mark.parametrize("factory,shape,classes", [(VariantsNet, (3, 17, 15), 5), (ReuseNet, (2, 9, 9), 4), (ConvBnNet, (1, 12, 12), 3)])
def test_handmade_conv_variants_match_reference_float64(factory, shape, classes):
    check_model(factory(), shape, classes, batch=5)


def test_reused_weights_are_summed_before_abs(monkeypatch):
    """A weight used three times: |g1 + g2 + g3| per entry, not |g1| + |g2| + |g3| (which is what reducing
    each use on its own would give)."""
    model = ReuseNet().double()
    images, labels = torch.randn(4, 2, 9, 9, dtype=torch.float64), torch.randint(0, 4, (4,))
    start, stop = FilterLayout.from_model(model).filter_range(1, 2)  # the shared weight
    reference = reference_filter_saliency(model, images, labels)[:, start:stop]
    assert torch.allclose(filter_saliency(model, images, labels)[:, start:stop], reference, rtol=1e-10, atol=0)
    # the wrong reduction really is different here, so the check above has teeth
    monkeypatch.setattr(SaliencyRecorder, "_exclusive", lambda self, record: True)
    per_use = filter_saliency(model, images, labels)[:, start:stop]
    assert ((per_use - reference).abs() / reference).max() > 1e-2


@pytest.mark.parametrize("name,shape", [("resnet18", (3, 64, 64)), ("mobilenet_v3_small", (3, 64, 64))])
def test_float32_matches_reference_per_sample_norm(name, shape):
    model = randomize_batchnorm(torchvision.models.get_model(name, weights=None, num_classes=10))
    images, labels = torch.randn(4, *shape), torch.randint(0, 10, (4,))
    engine = filter_saliency(model, images, labels)
    assert engine.dtype == torch.float32
    reference = reference_filter_saliency(model.double(), images.double(), labels)
    rel = (engine.double() - reference).norm(dim=1) / reference.norm(dim=1)
    assert rel.max().item() <= 1e-4


def test_small_tiles_give_identical_results(monkeypatch):
    """Forcing one sample per tile must not change the answer (tiling is only a memory strategy)."""
    model = VariantsNet().double()
    images, labels = torch.randn(6, 3, 17, 15, dtype=torch.float64), torch.randint(0, 5, (6,))
    expected = filter_saliency(model, images, labels)
    monkeypatch.setattr("backend.saliency.profile._CPU_TILE_BYTES", 1)
    assert torch.allclose(filter_saliency(model, images, labels), expected, rtol=1e-12, atol=0)


def model_state(model: nn.Module) -> dict:
    return {
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "hooks": [
            (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks)) for m in model.modules()
        ],
        "state": {k: v.clone() for k, v in model.state_dict().items()},
    }


def assert_same_state(before: dict, after: dict) -> None:
    assert before["training"] == after["training"]
    assert before["requires_grad"] == after["requires_grad"]
    assert before["hooks"] == after["hooks"]
    for a, b in zip(before["grads"], after["grads"]):
        assert (a is None and b is None) or torch.equal(a, b)
    assert before["state"].keys() == after["state"].keys()
    for key in before["state"]:
        assert torch.equal(before["state"][key], after["state"][key]), key


def prepared_model() -> nn.Module:
    """Training mode, some frozen parameters, existing .grad, a user hook: all must survive."""
    model = ConvBnNet().train()
    model.conv1.weight.requires_grad_(False)
    model.head.weight.grad = torch.ones_like(model.head.weight)
    model.conv2.register_forward_hook(lambda *args: None)
    return model


def test_model_left_exactly_as_found():
    model = prepared_model()
    before = model_state(model)
    filter_saliency(model, torch.randn(5, 1, 12, 12), torch.randint(0, 3, (5,)))
    assert_same_state(before, model_state(model))


def test_model_left_exactly_as_found_when_it_raises():
    model = prepared_model()
    before = model_state(model)
    with pytest.raises(IndexError):  # label out of range fails inside the loss, after hooks are installed
        filter_saliency(model, torch.randn(2, 1, 12, 12), torch.tensor([0, 99]))
    assert_same_state(before, model_state(model))


def test_frozen_model_still_profiled():
    model = ConvBnNet().double()
    for p in model.parameters():
        p.requires_grad_(False)
    images, labels = torch.randn(3, 1, 12, 12, dtype=torch.float64), torch.randint(0, 3, (3,))
    engine = filter_saliency(model, images, labels)
    assert_float64_match(engine, reference_filter_saliency(model, images, labels))
    assert not any(p.requires_grad for p in model.parameters())


def test_eval_mode_is_used_even_for_a_training_model():
    model = randomize_batchnorm(ConvBnNet()).double().train()
    images, labels = torch.randn(4, 1, 12, 12, dtype=torch.float64), torch.randint(0, 3, (4,))
    engine = filter_saliency(model, images, labels)
    assert model.training
    assert_float64_match(engine, reference_filter_saliency(copy.deepcopy(model).eval(), images, labels))


def test_no_weight_gradients_are_accumulated_and_input_unchanged():
    model = ConvBnNet()
    images = torch.randn(3, 1, 12, 12)
    copy_of_images = images.clone()
    filter_saliency(model, images, torch.randint(0, 3, (3,)))
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(images, copy_of_images) and not images.requires_grad


def test_in_place_change_of_a_conv_input_is_detected():
    class Mutating(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.head = nn.Linear(2, 2)

        def forward(self, x):
            x = x * 1.0
            y = self.conv(x)
            x.mul_(2)  # the conv's input changes after the conv used it
            return self.head(y.mean(dim=(2, 3)) + x.mean())

    model = Mutating()
    for p in model.conv.parameters():
        p.requires_grad_(False)  # otherwise autograd itself would refuse the backward
    with pytest.raises(RuntimeError, match="modified in place"):
        filter_saliency(model, torch.randn(2, 1, 5, 5), torch.tensor([0, 1]))
    assert all(len(m._forward_hooks) == 0 for m in model.modules())


def test_layout_mismatch_and_bad_arguments_are_clear():
    model = ConvBnNet()
    other = FilterLayout.from_model(VariantsNet())
    with pytest.raises(ValueError, match="layout does not match"):
        filter_saliency(model, torch.randn(1, 1, 12, 12), torch.tensor([0]), layout=other)
    with pytest.raises(ValueError, match="labels"):
        filter_saliency(model, torch.randn(2, 1, 12, 12), torch.tensor([0]))
    with pytest.raises(ValueError, match="batch_size"):
        filter_saliency(model, torch.randn(1, 1, 12, 12), torch.tensor([0]), batch_size=0)


def test_progress_callback_reports_every_micro_batch():
    calls = []
    filter_saliency(ConvBnNet(), torch.randn(5, 1, 8, 8), torch.randint(0, 3, (5,)), batch_size=2,
                    progress=lambda done, total: calls.append((done, total)))
    assert calls == [(2, 5), (4, 5), (5, 5)]


def test_out_of_memory_splits_the_micro_batch(monkeypatch):
    """A device running out of memory at some batch size must not fail the run, nor change the result."""
    import backend.saliency.profile as profile

    model = ConvBnNet().double()
    images, labels = torch.randn(7, 1, 8, 8, dtype=torch.float64), torch.randint(0, 3, (7,))
    expected = filter_saliency(model, images, labels, batch_size=7)
    real, sizes = profile._batch_profile, []

    def small_device(model, layout, x, y, slow_layers):
        sizes.append(x.shape[0])
        if x.shape[0] > 2:
            raise torch.OutOfMemoryError("simulated")
        return real(model, layout, x, y, slow_layers)

    monkeypatch.setattr(profile, "_batch_profile", small_device)
    got = filter_saliency(model, images, labels, batch_size=7)
    assert sizes[:3] == [7, 3, 1] and max(sizes[3:]) == 1
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=0)


class _NoBackward(torch.autograd.Function):
    """Identity whose backward fails: placed before the first convs, it shows whether the engine's backward
    went past them (it need not: nothing recorded lies behind them)."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        raise AssertionError("the gradient behind the first convs was computed")


class TwoStemNet(nn.Module):
    """A learnable scale (not a filter) before two one-channel stems whose outputs meet later."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.5))
        self.left = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.right = nn.Conv2d(1, 4, 5, padding=2, bias=False)
        self.mix = nn.Conv2d(4, 6, 3, stride=2, bias=False)
        self.head = nn.Linear(6, 3)
        self.guarded = True

    def forward(self, x):
        x = x * self.scale
        x = _NoBackward.apply(x) if self.guarded else x
        x = torch.relu(self.left(x)) * torch.sigmoid(self.right(x))
        return self.head(torch.relu(self.mix(x)).mean(dim=(2, 3)))


def test_backward_stops_at_the_first_convs_and_stays_exact():
    torch.manual_seed(0)
    model = TwoStemNet().double()
    images = torch.randn(4, 1, 9, 9, dtype=torch.float64)
    labels = torch.randint(0, 3, (4,))
    engine = filter_saliency(model, images, labels)
    model.guarded = False  # the reference loop differentiates all the way back
    assert_float64_match(engine, reference_filter_saliency(model, images, labels))
