"""Fashion-MNIST: the real IDX files, validation of corrupt ones, the download fallback, other models' preprocessing."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch
import torchvision
from torchvision.datasets.mnist import read_image_file, read_label_file

import backend.data as data
from backend.data import FASHION_MNIST_FILES, FASHION_MNIST_SYSTEM_DIR, load_dataset, read_idx
from backend.errors import PSSError
from backend.models.demo import FASHION_MNIST_CLASSES, FASHION_MNIST_MEAN, FASHION_MNIST_STD

needs_debian_files = pytest.mark.skipif(
    not FASHION_MNIST_SYSTEM_DIR.is_dir(), reason="the Debian package dataset-fashion-mnist is not installed"
)


@pytest.fixture(autouse=True)
def _fresh_cache():
    data._read_split.cache_clear()
    yield
    data._read_split.cache_clear()


def _idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    magic = 0x0800 + array.ndim if magic is None else magic
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_test_split(directory, images: np.ndarray, labels: np.ndarray) -> None:
    image_file, label_file, _ = FASHION_MNIST_FILES["test"]
    directory.mkdir(parents=True, exist_ok=True)
    with gzip.open(directory / image_file, "wb", compresslevel=1) as f:
        f.write(_idx_bytes(images))
    with gzip.open(directory / label_file, "wb", compresslevel=1) as f:
        f.write(_idx_bytes(labels))


@needs_debian_files
def test_test_split_loads_with_stable_ids_and_bulk_tensors():
    ds = load_dataset("fashion-mnist:test")
    assert len(ds) == 10000 and ds.spec == "fashion-mnist:test"
    assert ds.class_names == FASHION_MNIST_CLASSES
    images, labels = ds.tensors()
    assert images.shape == (10000, 1, 28, 28) and images.dtype == torch.float32
    assert labels.dtype == torch.int64 and sorted(labels.unique().tolist()) == list(range(10))
    assert torch.bincount(labels).tolist() == [1000] * 10  # the test split is balanced
    for i in (0, 1234, 9999):
        x, y = ds[i]
        assert torch.equal(x, images[i]) and y == labels[i]
        assert torch.equal(x, ds.preprocess(ds.pil_image(i)))  # fast path == the generic PIL path
        display = ds.display_image(i)
        assert display.dtype == np.uint8 and display.shape == (28, 28)
        assert torch.allclose(x[0], (torch.from_numpy(display).float() / 255 - FASHION_MNIST_MEAN) / FASHION_MNIST_STD)
    with pytest.raises(IndexError):
        ds[10000]


@needs_debian_files
def test_reading_matches_torchvision_and_the_recorded_normalization(tmp_path):
    ds = load_dataset("fashion-mnist:test")
    image_file, label_file, _ = FASHION_MNIST_FILES["test"]
    for name in (image_file, label_file):
        with gzip.open(FASHION_MNIST_SYSTEM_DIR / name) as src:
            (tmp_path / name.removesuffix(".gz")).write_bytes(src.read())
    assert np.array_equal(read_image_file(str(tmp_path / image_file.removesuffix(".gz"))).numpy(), ds.raw_images)
    assert np.array_equal(read_label_file(str(tmp_path / label_file.removesuffix(".gz"))).numpy(), ds.labels)
    train = load_dataset("fashion-mnist:train").raw_images / 255.0
    assert train.mean() == pytest.approx(FASHION_MNIST_MEAN, abs=5e-5)
    assert train.std() == pytest.approx(FASHION_MNIST_STD, abs=5e-5)


@needs_debian_files
def test_fingerprints_are_stable_and_distinguish_splits():
    test = load_dataset("fashion-mnist:test")
    again = load_dataset("fashion-mnist:test", model_spec="torchvision:resnet18")
    assert test.fingerprint() == again.fingerprint()
    assert test.fingerprint() != load_dataset("fashion-mnist:train").fingerprint()


@needs_debian_files
def test_other_models_get_their_own_preprocessing():
    ds = load_dataset("fashion-mnist:test", model_spec="torchvision:resnet18")
    assert ds.tensors() is None
    x, y = ds[3]
    assert x.shape == (3, 224, 224) and y == int(ds.labels[3])
    display = ds.display_image(3)
    assert display.shape == (224, 224, 3) and display.dtype == np.uint8
    assert np.array_equal(display[..., 0], display[..., 1])  # grey input, replicated to RGB


@pytest.mark.parametrize("spec", ["fashion-mnist", "fashion-mnist:val", "mnist:test", "imagefolder:", 42])
def test_bad_data_specs_list_the_valid_forms(spec):
    with pytest.raises(PSSError, match="valid data specs"):
        load_dataset(spec)


def test_read_idx_rejects_corrupt_files(tmp_path):
    good = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    path = tmp_path / "images.idx"
    path.write_bytes(_idx_bytes(good))
    assert np.array_equal(read_idx(path, dims=3), good)

    cases = {
        "magic.idx": (_idx_bytes(good, magic=0x0D03), "magic number 0x00000d03, expected 0x00000803"),
        "truncated.idx": (_idx_bytes(good)[:-1], r"header says \(2, 3, 3\) = 18 bytes of data, found 17"),
        "header.idx": (b"\x00\x00\x08", "shorter than its header"),
        "notgzip.gz": (b"plain bytes, not gzip", "corrupt"),
        "cut.gz": (gzip.compress(_idx_bytes(good))[:-12], "corrupt"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(PSSError, match=f"{name}.*{message}|{message}.*{name}") as info:
            read_idx(tmp_path / name, dims=3)
        assert str(tmp_path / name) in str(info.value)
    with pytest.raises(PSSError, match="magic number"):
        read_idx(path, dims=1)  # an image file where labels are expected


def test_corrupt_or_wrong_sized_split_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("PSS_FASHION_MNIST_DIR", str(tmp_path))
    images = np.zeros((10000, 28, 28), dtype=np.uint8)
    labels = (np.arange(10000) % 10).astype(np.uint8)
    _write_test_split(tmp_path, images, labels)
    ds = load_dataset("fashion-mnist:test")  # a valid (synthetic) split loads
    assert len(ds) == 10000 and ds[13][1] == 3

    image_file, label_file, _ = FASHION_MNIST_FILES["test"]
    data._read_split.cache_clear()
    _write_test_split(tmp_path, images[:100], labels)
    with pytest.raises(PSSError, match=f"{image_file}: expected 10000 images of 28x28"):
        load_dataset("fashion-mnist:test")

    data._read_split.cache_clear()
    _write_test_split(tmp_path, images, np.full(10000, 11, dtype=np.uint8))
    with pytest.raises(PSSError, match=f"{label_file}: label 11 is not a Fashion-MNIST class"):
        load_dataset("fashion-mnist:test")

    data._read_split.cache_clear()
    (tmp_path / image_file).write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(PSSError, match=f"{image_file} is corrupt"):
        load_dataset("fashion-mnist:test")


@needs_debian_files
def test_missing_directory_falls_back_to_the_torchvision_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PSS_FASHION_MNIST_DIR", str(tmp_path / "not-installed"))
    monkeypatch.setenv("PSS_CACHE_DIR", str(tmp_path / "cache"))
    raw = tmp_path / "cache" / "fashion-mnist" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for split in FASHION_MNIST_FILES.values():
        for name in split[:2]:
            (raw / name).symlink_to(FASHION_MNIST_SYSTEM_DIR / name)
    downloads = []
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", lambda *a, **k: downloads.append((a, k)))
    ds = load_dataset("fashion-mnist:test")
    assert len(ds) == 10000 and downloads == []  # already cached: nothing fetched


def test_missing_directory_downloads_with_torchvision_and_explains_failure(tmp_path, monkeypatch):
    # The network is unreachable here, so the downloader is replaced by one that records the call and fails.
    monkeypatch.setenv("PSS_FASHION_MNIST_DIR", str(tmp_path / "not-installed"))
    monkeypatch.setenv("PSS_CACHE_DIR", str(tmp_path / "cache"))
    calls = []

    def offline(root, train, download):
        calls.append((root, train, download))
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", offline)
    with pytest.raises(PSSError, match="not-installed does not exist and downloading Fashion-MNIST into .*cache"):
        load_dataset("fashion-mnist:test")
    assert calls == [(str(tmp_path / "cache" / "fashion-mnist"), True, True)]
