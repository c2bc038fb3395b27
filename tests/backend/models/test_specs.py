"""Model specs: every form, bad specs, checkpoints (incl. a malicious one), transforms, weights hashing."""

from __future__ import annotations

import copy
import importlib.util

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from safetensors.torch import save_file

import backend.models as models
from backend.errors import PSSError
from backend.data import model_input_transform
from backend.models import load_model, model_class_names, weights_sha256
from backend.models.families import demo as demo_family
from backend.models.demo import FASHION_MNIST_CLASSES, FASHION_MNIST_MEAN, FASHION_MNIST_STD, DemoResNet
from backend.saliency import FilterLayout


def _photo(width=300, height=200, seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


# ------------------------------------------------------------------------------------------- bad specs
@pytest.mark.parametrize("spec", ["", "resnet50", "tv:resnet50", "torchvision:", "torchvision:resnet18:a:b",
                                  "checkpoint:model.pt", "checkpoint::demo"])
def test_bad_spec_lists_the_valid_forms(spec):
    with pytest.raises(PSSError, match="valid model specs"):
        load_model(spec)


def test_unknown_torchvision_name_suggests_close_ones():
    with pytest.raises(PSSError, match="unknown torchvision classification model 'resnet5'.*resnet50"):
        load_model("torchvision:resnet5")


def test_unknown_weights_name_lists_the_valid_weights():
    with pytest.raises(PSSError, match="unknown weights 'IMAGENET9K' .*IMAGENET1K_V1, IMAGENET1K_V2"):
        model_class_names("torchvision:resnet50:IMAGENET9K")
    with pytest.raises(PSSError, match="unknown weights"):
        load_model("torchvision:resnet18:ResNet50_Weights.IMAGENET1K_V1")  # another architecture's enum


# ------------------------------------------------------------------------------------------ torchvision
@pytest.mark.parametrize("spec", ["torchvision:resnet18", pytest.param("timm:test_resnet", marks=pytest.mark.skipif(
    importlib.util.find_spec("timm") is None, reason="timm is an optional extra"))])
def test_random_init_is_seeded_and_in_eval_mode(spec):
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = load_model(spec)
    after = torch.rand(1)
    b = load_model(spec)
    assert not a.training and not b.training
    assert weights_sha256(a) == weights_sha256(b)
    assert torch.equal(before, after), "loading must not consume the caller's RNG"
    with torch.no_grad():
        assert a(torch.zeros(1, 3, 64, 64)).shape == (1, 1000)
    assert model_class_names(spec) == [f"class {i}" for i in range(1000)]


@pytest.mark.parametrize("weights", ["IMAGENET1K_V1", "ResNet18_Weights.IMAGENET1K_V1", "DEFAULT"])
def test_torchvision_weights_give_their_categories_and_transforms(weights):
    expected = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    spec = f"torchvision:resnet18:{weights}"
    assert model_class_names(spec) == expected.meta["categories"]
    image = _photo()
    assert torch.equal(model_input_transform(spec)(image), expected.transforms()(image))


def test_torchvision_weights_transform_follows_the_weights_not_the_architecture():
    v2 = torchvision.models.ResNet50_Weights.IMAGENET1K_V2
    transform = model_input_transform("torchvision:resnet50:IMAGENET1K_V2")
    image = _photo(320, 240)
    assert transform.resize == 232  # V2 resizes to 232 where V1 resizes to 256
    assert torch.equal(transform(image), v2.transforms()(image))
    assert transform.geometry(image).size == (224, 224)


def test_random_init_transform_uses_imagenet_stats_and_the_architecture_input_size():
    resnet = model_input_transform("torchvision:resnet18")
    assert resnet.mean == models.IMAGENET_MEAN and resnet.std == models.IMAGENET_STD
    assert resnet(_photo()).shape == (3, 224, 224)
    assert model_input_transform("torchvision:inception_v3")(_photo()).shape == (3, 299, 299)
    gray = Image.new("L", (50, 40), 128)
    x = resnet(gray)
    assert x.shape == (3, 224, 224)
    expected = [(128 / 255 - m) / s for m, s in zip(models.IMAGENET_MEAN, models.IMAGENET_STD)]
    assert torch.allclose(x[:, 100, 100], torch.tensor(expected), atol=1e-6)


# ---------------------------------------------------------------------------------------------- demo
def test_demo_without_checkpoint_says_to_run_train_demo(monkeypatch, tmp_path):
    monkeypatch.setattr(demo_family, "DEMO_CHECKPOINT", tmp_path / "missing.pt")
    with pytest.raises(PSSError, match="pss train-demo"):
        load_model("demo")


def test_demo_names_and_transform():
    assert model_class_names("demo") == FASHION_MNIST_CLASSES
    pixels = np.arange(28 * 28, dtype=np.uint8).reshape(28, 28)
    x = model_input_transform("demo")(Image.fromarray(pixels, mode="L"))
    expected = (torch.from_numpy(pixels).float() / 255 - FASHION_MNIST_MEAN) / FASHION_MNIST_STD
    assert x.shape == (1, 28, 28)
    assert torch.allclose(x[0], expected, atol=1e-6)


# ---------------------------------------------------------------------------------------- checkpoints
def test_checkpoint_torchvision_pt_infers_num_classes(tmp_path):
    torch.manual_seed(1)
    source = torchvision.models.resnet18(num_classes=7).eval()
    path = tmp_path / "model.pt"
    torch.save(source.state_dict(), path)
    model = load_model(f"checkpoint:{path}:resnet18")
    assert model.fc.out_features == 7 and not model.training
    assert weights_sha256(model) == weights_sha256(source)
    assert model_class_names(f"checkpoint:{path}:resnet18") == [f"class {i}" for i in range(7)]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), source(x))


def test_checkpoint_safetensors_and_wrapped_ddp_state(tmp_path):
    torch.manual_seed(2)
    source = torchvision.models.mobilenet_v3_small(num_classes=5).eval()
    state = source.state_dict()
    safe = tmp_path / "m.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(safe))
    assert weights_sha256(load_model(f"checkpoint:{safe}:mobilenet_v3_small")) == weights_sha256(source)
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": torch.tensor(3)}, wrapped)
    assert weights_sha256(load_model(f"checkpoint:{wrapped}:mobilenet_v3_small")) == weights_sha256(source)


def test_checkpoint_demo_arch_infers_widths_and_classes(tmp_path):
    source = DemoResNet((4, 8, 8, 16), num_classes=3).eval()
    path = tmp_path / "small_demo.pt"
    torch.save(source.state_dict(), path)
    spec = f"checkpoint:{path}:demo"
    model = load_model(spec)
    assert model.widths == (4, 8, 8, 16)
    assert FilterLayout.from_model(model).num_filters == FilterLayout.from_model(source).num_filters
    assert weights_sha256(model) == weights_sha256(source)
    assert model_class_names(spec) == ["class 0", "class 1", "class 2"]
    assert repr(model_input_transform(spec)) == repr(model_input_transform("demo"))


class _RunsCode:
    """Pickles to 'call open(marker, "w")': loading it with full pickle would create the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_pickle_checkpoint_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"conv1.weight": torch.zeros(1), "payload": _RunsCode(marker)}, path)
    with pytest.raises(PSSError, match="refusing checkpoint .*evil.pt"):
        load_model(f"checkpoint:{path}:resnet18")
    assert not marker.exists()


@pytest.mark.parametrize(
    "content, message",
    [
        (b"not a checkpoint at all", "not a readable torch.save file"),
        (None, "not a state dict"),
    ],
)
def test_unreadable_or_non_state_dict_checkpoints(tmp_path, content, message):
    path = tmp_path / "bad.pt"
    if content is None:
        torch.save([torch.zeros(2)], path)
    else:
        path.write_bytes(content)
    with pytest.raises(PSSError, match=message):
        load_model(f"checkpoint:{path}:demo")


def test_checkpoint_errors_name_the_problem(tmp_path):
    with pytest.raises(PSSError, match="does not exist"):
        load_model(f"checkpoint:{tmp_path / 'nope.pt'}:resnet18")
    path = tmp_path / "demo.pt"
    torch.save(DemoResNet((4, 4, 4, 4)).state_dict(), path)
    with pytest.raises(PSSError, match="classifier keys"):
        load_model(f"checkpoint:{path}:vgg11")
    with pytest.raises(PSSError, match="does not fit ResNet: .*missing"):
        load_model(f"checkpoint:{path}:resnet18")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 20)
    with pytest.raises(PSSError, match="not a readable safetensors file"):
        load_model(f"checkpoint:{bad}:demo")


# ------------------------------------------------------------------------------------------- hashing
def test_weights_sha256_is_stable_and_sensitive():
    torch.manual_seed(0)
    model = DemoResNet((4, 4, 8, 8))
    reference = weights_sha256(model)
    assert reference == weights_sha256(copy.deepcopy(model)) == weights_sha256(model.state_dict())
    assert len(reference) == 64

    nudged = copy.deepcopy(model)
    with torch.no_grad():
        nudged.conv1.weight[0, 0, 0, 0] = torch.nextafter(nudged.conv1.weight[0, 0, 0, 0], torch.tensor(2.0))
    buffers = copy.deepcopy(model)
    buffers.bn1.running_mean[0] += 1
    renamed = {("x" + k if k == "fc.bias" else k): v for k, v in model.state_dict().items()}
    as_double = copy.deepcopy(model).double()
    hashes = {reference, weights_sha256(nudged), weights_sha256(buffers), weights_sha256(renamed),
              weights_sha256(as_double)}
    assert len(hashes) == 5


def test_weights_sha256_covers_shape_not_just_bytes():
    flat = {"w": torch.arange(6, dtype=torch.float32)}
    square = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}
    assert weights_sha256(flat) != weights_sha256(square)
    assert weights_sha256(square) == weights_sha256({"w": square["w"].t().contiguous().t()})  # layout-independent
