"""imagefolder:PATH datasets: ImageFolder order, class-index mappings, fingerprints, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from backend.data import load_dataset
from backend.errors import PSSError
from backend.data import model_input_transform


@pytest.fixture
def folder(tmp_path):
    """Three classes (unsorted on purpose), images of assorted sizes and modes, plus a non-image file."""
    root = tmp_path / "val"
    rng = np.random.default_rng(0)
    layout = {"n02": ["b.png", "a.png"], "n01": ["z.jpg", "sub/y.png"], "n03": ["x.PNG"]}
    for cls, names in layout.items():
        for name in names:
            path = root / cls / name
            path.parent.mkdir(parents=True, exist_ok=True)
            h, w = rng.integers(20, 60, size=2)
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    (root / "n01" / "notes.txt").write_text("not an image")
    return root


def test_order_and_labels_match_torchvision_imagefolder(folder):
    ds = load_dataset(f"imagefolder:{folder}")
    reference = torchvision.datasets.ImageFolder(str(folder))
    assert ds.class_names == reference.classes == ["n01", "n02", "n03"]
    assert [str(folder / f) for f in ds.files] == [p for p, _ in reference.samples]
    assert ds.labels.tolist() == reference.targets
    assert ds.spec == f"imagefolder:{folder}"


def test_items_are_the_models_preprocessing(folder):
    demo = load_dataset(f"imagefolder:{folder}", model_spec="demo")
    x, y = demo[2]
    assert x.shape == (1, 28, 28) and y == demo.labels[2]
    assert demo.display_image(2).shape == (28, 28)
    assert demo.tensors() is None

    resnet = load_dataset(f"imagefolder:{folder}", model_spec="torchvision:resnet18")
    x, _ = resnet[0]
    expected = model_input_transform("torchvision:resnet18")(Image.open(folder / resnet.files[0]).convert("RGB"))
    assert torch.equal(x, expected)
    display = resnet.display_image(0)
    assert display.shape == (224, 224, 3) and display.dtype == np.uint8


def test_class_index_inside_the_folder_in_keras_format(folder):
    index = {"0": ["n00", "tench"], "1": ["n03", "goldfish"], "2": ["n01", "shark"], "3": ["n02", "ray"], "5": ["n05", "hen"]}
    (folder / "class_index.json").write_text(json.dumps(index))
    ds = load_dataset(f"imagefolder:{folder}")
    assert ds.class_names == ["tench", "goldfish", "shark", "ray", "class 4", "hen"]
    by_folder = {f.split("/")[0]: int(label) for f, label in zip(ds.files, ds.labels)}
    assert by_folder == {"n01": 2, "n02": 3, "n03": 1}
    assert ds.spec.endswith(f"?classes={folder / 'class_index.json'}")


def test_explicit_class_index_file_folder_to_index(folder, tmp_path):
    mapping = tmp_path / "classes.json"
    mapping.write_text(json.dumps({"n01": 7, "n02": 0, "n03": 3}))
    ds = load_dataset(f"imagefolder:{folder}?classes={mapping}")
    assert len(ds.class_names) == 8 and ds.class_names[7] == "n01" and ds.class_names[1] == "class 1"
    assert sorted(set(ds.labels.tolist())) == [0, 3, 7]
    assert ds.labels[0] == 7  # n01 images still come first (folder order), now labelled 7


def test_class_index_errors(folder, tmp_path):
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"n01": 0, "n02": 1}))
    with pytest.raises(PSSError, match="no entry for folder.*n03"):
        load_dataset(f"imagefolder:{folder}?classes={partial}")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(PSSError, match="not readable JSON"):
        load_dataset(f"imagefolder:{folder}?classes={broken}")
    wrong_shape = tmp_path / "list.json"
    wrong_shape.write_text(json.dumps(["n01", "n02"]))
    with pytest.raises(PSSError, match="must be"):
        load_dataset(f"imagefolder:{folder}?classes={wrong_shape}")
    with pytest.raises(PSSError, match=r"the only option is \?classes="):
        load_dataset(f"imagefolder:{folder}?labels=x.json")


def test_fingerprint_tracks_files_and_labels(folder, tmp_path):
    first = load_dataset(f"imagefolder:{folder}").fingerprint()
    assert first == load_dataset(f"imagefolder:{folder}", model_spec="torchvision:resnet18").fingerprint()
    mapping = tmp_path / "classes.json"
    mapping.write_text(json.dumps({"n01": 1, "n02": 0, "n03": 2}))
    assert load_dataset(f"imagefolder:{folder}?classes={mapping}").fingerprint() != first
    Image.new("RGB", (8, 8)).save(folder / "n03" / "new.png")
    assert load_dataset(f"imagefolder:{folder}").fingerprint() != first


def test_bad_folders(tmp_path):
    with pytest.raises(PSSError, match="does not exist"):
        load_dataset(f"imagefolder:{tmp_path / 'missing'}")
    with pytest.raises(PSSError, match="no class sub-folders"):
        load_dataset(f"imagefolder:{tmp_path}")
    (tmp_path / "cls").mkdir()
    (tmp_path / "cls" / "readme.txt").write_text("x")
    with pytest.raises(PSSError, match="has no images"):
        load_dataset(f"imagefolder:{tmp_path}")
    (tmp_path / "cls" / "broken.png").write_bytes(b"not a png")
    ds = load_dataset(f"imagefolder:{tmp_path}")
    with pytest.raises(PSSError, match="cannot read image .*broken.png"):
        ds[0]
