"""Bring your own model: ``python:MODULE:CALLABLE[:CHECKPOINT]`` and ``timm:NAME[:FILE]`` specs, and what each
model expects as input (flags > family > pretrained_cfg > ImageNet defaults)."""

from __future__ import annotations

import sys
import textwrap
import uuid

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from backend.data import model_input_transform
from backend.errors import PSSError
from backend.models import IMAGENET_DEFAULT, InputSpec, load_model, model_class_names, model_input_spec, weights_sha256

timm = pytest.importorskip("timm")

NET = """
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self, classes=3):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, classes)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))

def build():
    torch.manual_seed(7)
    return Net()

def trained():
    model = build()
    with torch.no_grad():
        model.conv.weight.fill_(0.25)
    return model

def with_cfg():
    model = build()
    model.pretrained_cfg = {"input_size": (3, 48, 48), "crop_pct": 0.75, "interpolation": "bicubic",
                            "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}
    return model

def not_a_model():
    return 42

def broken():
    raise RuntimeError("no GPU here")

NUMBER = 3
"""


@pytest.fixture
def own_module(tmp_path, monkeypatch):
    """A module of the user's own code in the current directory, under a fresh name (imports are cached)."""
    name = f"own_net_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(NET))
    monkeypatch.chdir(tmp_path)
    yield name
    sys.modules.pop(name, None)


def _photo(width=90, height=70, seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


# ------------------------------------------------------------------------------------------- python:
def test_python_spec_uses_the_model_the_callable_returns_with_its_weights(own_module):
    model = load_model(f"python:{own_module}:trained")
    assert not model.training
    assert torch.all(model.conv.weight == 0.25)
    assert weights_sha256(model) == weights_sha256(load_model(f"python:{own_module}:trained"))
    assert model_class_names(f"python:{own_module}:build") == ["class 0", "class 1", "class 2"]


def test_python_spec_loads_a_checkpoint_pt_or_safetensors(own_module, tmp_path):
    reference = load_model(f"python:{own_module}:build")
    with torch.no_grad():
        for param in reference.parameters():
            param.add_(1.0)
    torch.save(reference.state_dict(), tmp_path / "net.pt")
    save_file(reference.state_dict(), str(tmp_path / "net.safetensors"))
    for file in ("net.pt", "net.safetensors"):
        loaded = load_model(f"python:{own_module}:build:{tmp_path / file}")
        assert weights_sha256(loaded) == weights_sha256(reference)
    assert weights_sha256(loaded) != weights_sha256(load_model(f"python:{own_module}:build"))


def test_python_spec_is_found_on_pythonpath_too(tmp_path, monkeypatch):
    name = f"path_net_{uuid.uuid4().hex[:8]}"
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / f"{name}.py").write_text(textwrap.dedent(NET))
    monkeypatch.syspath_prepend(str(tmp_path / "lib"))  # what PYTHONPATH does
    try:
        assert isinstance(load_model(f"python:{name}:build"), torch.nn.Module)
    finally:
        sys.modules.pop(name, None)


@pytest.mark.parametrize(("spec", "message"), [
    ("python:no_such_module_xyz:build", r"no Python module 'no_such_module_xyz' in the current directory .* PYTHONPATH"),
    ("python:{m}:missing", r"module '{m}' has no 'missing'"),
    ("python:{m}:NUMBER", r"{m}:NUMBER is a int, not a callable"),
    ("python:{m}:not_a_model", r"{m}:not_a_model\(\) returned a int, not a torch nn.Module"),
    ("python:{m}:broken", r"calling {m}:broken\(\) failed: RuntimeError: no GPU here"),
    ("python:{m}:build:/nonexistent/net.pt", r"checkpoint /nonexistent/net.pt does not exist"),
    ("python:{m}", r"need python:MODULE:CALLABLE\[:CHECKPOINT\]"),
])
def test_python_spec_errors_are_one_line(own_module, spec, message):
    with pytest.raises(PSSError, match=message.format(m=own_module)) as info:
        load_model(spec.format(m=own_module))
    assert "\n" not in str(info.value)


def test_python_spec_import_error_inside_the_module_is_named(tmp_path, monkeypatch):
    name = f"bad_import_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("import not_installed_dependency_xyz\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PSSError, match=f"importing module '{name}' failed: ModuleNotFoundError: .*not_installed"):
        load_model(f"python:{name}:build")


def test_a_checkpoint_that_does_not_fit_names_the_keys(own_module, tmp_path):
    torch.save({"other.weight": torch.zeros(2)}, tmp_path / "wrong.pt")
    with pytest.raises(PSSError, match="does not fit Net: missing: conv.weight"):
        load_model(f"python:{own_module}:build:{tmp_path / 'wrong.pt'}")


# ------------------------------------------------------------------------------------------- timm:
def test_timm_file_gives_weights_and_classes_from_the_file(tmp_path):
    source = timm.create_model("test_resnet", pretrained=False, num_classes=5)
    torch.save(source.state_dict(), tmp_path / "r.pt")
    model = load_model(f"timm:test_resnet:{tmp_path / 'r.pt'}")
    assert weights_sha256(model) == weights_sha256(source)
    assert model.num_classes == 5
    assert model_class_names(f"timm:test_resnet:{tmp_path / 'r.pt'}") == [f"class {i}" for i in range(5)]


def test_timm_file_of_another_architecture_is_refused_in_one_line(tmp_path):
    torch.save(timm.create_model("test_resnet", pretrained=False).state_dict(), tmp_path / "r.pt")
    with pytest.raises(PSSError, match="has no classifier weight of test_vit"):
        load_model(f"timm:test_vit:{tmp_path / 'r.pt'}")


def test_timm_unknown_name_suggests_close_ones():
    with pytest.raises(PSSError, match=r"unknown timm model 'resnet5O' \(did you mean .*resnet50"):
        load_model("timm:resnet5O")


def test_timm_missing_is_one_line_that_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` now raises ImportError
    with pytest.raises(PSSError, match=r"need the optional package timm; install it with pip install -e '.\[timm\]'"):
        load_model("timm:test_resnet")


# ----------------------------------------------------------------------------------- preprocessing
def test_timm_preprocessing_is_timms_own_eval_transform():
    model = load_model("timm:test_vit")
    spec = model_input_spec("timm:test_vit", model)
    assert spec.source == "pretrained_cfg" and (spec.resize, spec.crop) == (168, 160)
    config = timm.data.resolve_data_config({}, model=model)
    theirs = timm.data.create_transform(**config)
    image = _photo(300, 200)
    assert torch.allclose(model_input_transform("timm:test_vit", model)(image), theirs(image), atol=1e-6)


def test_python_model_without_pretrained_cfg_gets_imagenet_defaults(own_module):
    spec = model_input_spec(f"python:{own_module}:build")
    assert spec is IMAGENET_DEFAULT
    assert (spec.mode, spec.resize, spec.crop, spec.mean) == ("RGB", 256, 224, (0.485, 0.456, 0.406))


def test_python_model_with_pretrained_cfg_uses_it(own_module):
    spec = model_input_spec(f"python:{own_module}:with_cfg")
    assert (spec.resize, spec.crop, spec.interpolation.value, spec.mean, spec.std) == (
        64, 48, "bicubic", (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert model_input_transform(f"python:{own_module}:with_cfg")(_photo()).shape == (3, 48, 48)


def test_flags_win_and_an_input_size_alone_keeps_the_resize_ratio():
    base = IMAGENET_DEFAULT
    assert base.with_overrides() is base
    smaller = base.with_overrides(input_size=112)
    assert (smaller.resize, smaller.crop, smaller.source) == (128, 112, "flags")
    explicit = base.with_overrides(input_size=112, resize=112, interpolation_name="bicubic")
    assert (explicit.resize, explicit.crop, explicit.interpolation.value) == (112, 112, "bicubic")
    gray = base.with_overrides(mean=[0.5], std=[0.2])
    assert (gray.mode, gray.mean, gray.std, gray.background) == ("L", (0.5,), (0.2,), 0)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"mean": [0.5, 0.5]}, "take 1 .* or 3 .* values, got 2"),
    ({"mean": [0.5]}, "give both --mean and --std"),
    ({"mean": [0.5, 0.5, 0.5], "std": [0.5]}, "same number of values"),
    ({"std": [0.5, 0.0, 0.5]}, "--std values must be positive"),
    ({"input_size": 0}, "--input-size must be a positive"),
    ({"interpolation_name": "sinc"}, "unknown interpolation 'sinc'"),
])
def test_bad_preprocessing_flags_are_one_line(overrides, message):
    with pytest.raises(PSSError, match=message):
        IMAGENET_DEFAULT.with_overrides(**overrides)


def test_input_spec_json_round_trip_keeps_every_field():
    for spec in (IMAGENET_DEFAULT, model_input_spec("demo"), model_input_spec("timm:test_vit"),
                 InputSpec("RGB", (240, 320), (224, 288), (0.1, 0.2, 0.3), (1.0, 1.0, 1.0), source="flags")):
        again = InputSpec.from_dict(spec.to_dict())
        assert again == spec and again.source == spec.source
