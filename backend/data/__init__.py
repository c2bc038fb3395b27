"""Dataset specs and upload preprocessing.

``load_dataset(spec, model_spec, input_spec=None)`` returns a torch ``Dataset`` of ``(image_tensor, label)``; a
sample's id is its index, stable for a given dataset. The tensors are preprocessed following ``input_spec``
(what a run's manifest recorded), or, without it, what ``model_spec`` expects (``model_input_transform``, in
``preprocess.py``).

Spec forms:

* ``fashion-mnist:test`` / ``fashion-mnist:train`` -- the gzip IDX files of the Debian package
  ``dataset-fashion-mnist`` in ``/usr/share/datasets/fashion-mnist`` (another directory can be named with the
  environment variable ``PSS_FASHION_MNIST_DIR``). Only when that directory does not exist at all are the
  files fetched with torchvision's ``FashionMNIST(download=True)`` into ``$PSS_CACHE_DIR/fashion-mnist``
  (default ``~/.cache/pss/fashion-mnist``). Headers and sizes are validated; a corrupt file is named.
* ``imagefolder:PATH`` -- ImageNet-val style: one sub-folder per class holding that class's images. Without a
  class index, classes are the sorted folder names and labels 0..K-1, exactly like torchvision's
  ``ImageFolder``. For pretrained ImageNet weights the labels must follow the weights' class order, so a
  class index can be given, either as ``PATH/class_index.json`` (picked up automatically) or explicitly with
  ``imagefolder:PATH?classes=FILE.json``. The JSON is either ``{"n01440764": 0, ...}`` (folder -> index) or
  the common ``{"0": ["n01440764", "tench"], ...}`` (index -> [folder, name]); the second also gives the
  class names. Every folder must appear in the index; indices absent from the folder tree are still
  counted in ``class_names`` so that label ``i`` means the model's output ``i``.

Uploads (``preprocess_upload``) are turned upright (EXIF orientation), converted to 8-bit RGB/L (palette,
RGBA/LA, CMYK, 16-bit and float modes handled; transparent pixels composited onto the model's background)
and then go through exactly the dataset's preprocessing. They are used as given: Fashion-MNIST images are
light objects on a black background, and an upload of a dark object on white is *not* inverted.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import Dataset

from backend.errors import PSSError
from backend.models import InputSpec
from backend.models.demo import FASHION_MNIST_CLASSES

from .preprocess import Preprocess, model_input_transform

FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60000),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10000),
}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
CLASS_INDEX_FILE = "class_index.json"

SPEC_FORMS = (
    "valid data specs: 'fashion-mnist:test', 'fashion-mnist:train', 'imagefolder:PATH', "
    "'imagefolder:PATH?classes=FILE.json'"
)

__all__ = [
    "FashionMNIST",
    "ImageFolderDataset",
    "Preprocess",
    "load_dataset",
    "model_input_transform",
    "open_image",
    "preprocess_upload",
    "read_idx",
    "to_standard_mode",
]


def load_dataset(spec: str, model_spec: str = "demo", input_spec: InputSpec | None = None
                 ) -> "FashionMNIST | ImageFolderDataset":
    """The dataset named by ``spec``, preprocessed by ``input_spec``, else for the model named by ``model_spec``."""
    if not isinstance(spec, str) or ":" not in spec:
        raise PSSError(f"bad data spec {spec!r}; {SPEC_FORMS}")
    kind, _, rest = spec.strip().partition(":")
    if kind == "fashion-mnist":
        if rest not in FASHION_MNIST_FILES:
            raise PSSError(f"bad data spec {spec!r}: the split must be 'test' or 'train'; {SPEC_FORMS}")
        return FashionMNIST(rest, _preprocess(model_spec, input_spec))
    if kind == "imagefolder":
        path, _, query = rest.partition("?")
        classes = None
        if query:
            key, _, value = query.partition("=")
            if key != "classes" or not value:
                raise PSSError(f"bad data spec {spec!r}: the only option is ?classes=FILE.json; {SPEC_FORMS}")
            classes = Path(value).expanduser()
        if not path:
            raise PSSError(f"bad data spec {spec!r}: missing PATH; {SPEC_FORMS}")
        return ImageFolderDataset(Path(path).expanduser(), _preprocess(model_spec, input_spec), classes)
    raise PSSError(f"unknown data spec {spec!r}; {SPEC_FORMS}")


def _preprocess(model_spec: str, input_spec: InputSpec | None) -> Preprocess:
    return Preprocess(input_spec) if input_spec is not None else model_input_transform(model_spec)


class _PreprocessedDataset(Dataset):
    """Common interface: ``spec``, ``class_names``, ``fingerprint()``, ``display_image(i)``, ``tensors()``."""

    spec: str
    class_names: list[str]
    preprocess: Preprocess
    labels: np.ndarray

    def pil_image(self, index: int) -> Image.Image:  # pragma: no cover - implemented by subclasses
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.preprocess(self.pil_image(self._check(index))), int(self.labels[index])

    def display_image(self, index: int) -> np.ndarray:
        """uint8 ``[H, W]`` or ``[H, W, 3]``: the model's view after resize/crop, before normalization."""
        return np.asarray(self.preprocess.geometry(self.pil_image(self._check(index))), dtype=np.uint8)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(images [N, C, H, W] float32, labels [N] int64)`` when the whole set fits in memory, else None."""
        return None

    def _check(self, index: int) -> int:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"sample id {index} out of range [0, {len(self)})")
        return index

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(spec={self.spec!r}, samples={len(self)}, classes={len(self.class_names)})"


# ---------------------------------------------------------------------------------- Fashion-MNIST
class FashionMNIST(_PreprocessedDataset):
    """A Fashion-MNIST split held in memory as uint8 ``raw_images [N, 28, 28]`` and ``labels [N]``."""

    def __init__(self, split: str, preprocess: Preprocess):
        self.spec = f"fashion-mnist:{split}"
        self.split = split
        self.preprocess = preprocess
        self.class_names = list(FASHION_MNIST_CLASSES)
        self.raw_images, self.labels = _fashion_mnist_arrays(split)
        # 28x28 grayscale preprocessing is the identity geometrically: normalize the array directly.
        self._native = preprocess.mode == "L" and preprocess.geometry(self.pil_image(0)).size == (28, 28)

    def pil_image(self, index: int) -> Image.Image:
        return Image.fromarray(self.raw_images[index], mode="L")

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if self._native:
            index = self._check(index)
            return self.preprocess.normalize(torch.from_numpy(self.raw_images[index][None].copy())), int(self.labels[index])
        return super().__getitem__(index)

    def display_image(self, index: int) -> np.ndarray:
        return self.raw_images[self._check(index)].copy() if self._native else super().display_image(index)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        if not self._native:
            return None
        images = self.preprocess.normalize(torch.tensor(self.raw_images)[:, None])
        return images, torch.from_numpy(self.labels.astype(np.int64))

    def fingerprint(self) -> str:
        """sha256 over the split name, the image bytes and the labels."""
        digest = hashlib.sha256(f"{self.spec}\0{self.raw_images.shape}\0".encode())
        digest.update(self.raw_images.tobytes())
        digest.update(self.labels.astype(np.int64).tobytes())
        return digest.hexdigest()


def fashion_mnist_dir() -> Path:
    """Where the IDX files are read from; downloads through torchvision only when the directory is missing."""
    directory = Path(os.environ.get("PSS_FASHION_MNIST_DIR", FASHION_MNIST_SYSTEM_DIR))
    if directory.is_dir():
        return directory
    cache = Path(os.environ.get("PSS_CACHE_DIR", Path.home() / ".cache" / "pss")) / "fashion-mnist"
    raw = cache / "FashionMNIST" / "raw"
    if not all((raw / name).is_file() for split in FASHION_MNIST_FILES.values() for name in split[:2]):
        import torchvision

        try:
            for train in (True, False):
                torchvision.datasets.FashionMNIST(str(cache), train=train, download=True)
        except Exception as exc:  # the downloader raises many kinds (URLError, RuntimeError on checksums, ...)
            raise PSSError(
                f"{directory} does not exist and downloading Fashion-MNIST into {cache} failed ({exc}); "
                "install the Debian package dataset-fashion-mnist or set PSS_FASHION_MNIST_DIR"
            ) from exc
    return raw


@functools.lru_cache(maxsize=4)
def _read_split(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    image_file, label_file, expected = FASHION_MNIST_FILES[split]
    images = read_idx(directory / image_file, dims=3)
    labels = read_idx(directory / label_file, dims=1)
    if images.shape != (expected, 28, 28):
        raise PSSError(f"{directory / image_file}: expected {expected} images of 28x28, found {images.shape}")
    if labels.shape != (expected,):
        raise PSSError(f"{directory / label_file}: expected {expected} labels, found {labels.shape[0]}")
    if labels.max() >= len(FASHION_MNIST_CLASSES):
        raise PSSError(f"{directory / label_file}: label {labels.max()} is not a Fashion-MNIST class (0-9)")
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def _fashion_mnist_arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
    return _read_split(fashion_mnist_dir(), split)


def read_idx(path: Path, dims: int) -> np.ndarray:
    """A uint8 IDX array (gzip-compressed or not), with its magic number and size checked."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise PSSError(f"Fashion-MNIST file {path} is missing") from None
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise PSSError(f"Fashion-MNIST file {path} is corrupt: {exc}") from exc
    header = 4 + 4 * dims
    if len(data) < header:
        raise PSSError(f"Fashion-MNIST file {path} is corrupt: {len(data)} bytes is shorter than its header")
    magic = int.from_bytes(data[:4], "big")
    if magic != 0x0800 + dims:
        raise PSSError(
            f"Fashion-MNIST file {path} is corrupt: magic number {magic:#010x}, expected {0x0800 + dims:#010x} "
            f"(uint8, {dims} dimensions)"
        )
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    size = int(np.prod(shape))
    if len(data) != header + size:
        raise PSSError(
            f"Fashion-MNIST file {path} is corrupt: header says {shape} = {size} bytes of data, found {len(data) - header}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape).copy()


# ----------------------------------------------------------------------------------- ImageFolder
class ImageFolderDataset(_PreprocessedDataset):
    """Class sub-folders of images, sorted like torchvision's ImageFolder; images are read on access."""

    def __init__(self, root: Path, preprocess: Preprocess, class_index: Path | None = None):
        if not root.is_dir():
            raise PSSError(f"image folder {root} does not exist or is not a directory")
        self.root = root
        self.preprocess = preprocess
        folders = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
        if not folders:
            raise PSSError(f"image folder {root} has no class sub-folders (expected ROOT/CLASS/IMAGE files)")
        if class_index is None and (root / CLASS_INDEX_FILE).is_file():
            class_index = root / CLASS_INDEX_FILE
        self.class_index_file = class_index
        folder_to_label, self.class_names = _class_mapping(folders, class_index)
        files, labels = [], []
        for folder in folders:
            for directory, _, names in sorted(os.walk(root / folder, followlinks=True)):
                for name in sorted(names):
                    if name.lower().endswith(IMAGE_EXTENSIONS):
                        files.append(Path(directory, name).relative_to(root).as_posix())
                        labels.append(folder_to_label[folder])
        if not files:
            raise PSSError(f"image folder {root} has no images with extensions {', '.join(IMAGE_EXTENSIONS)}")
        self.files = files
        self.labels = np.asarray(labels, dtype=np.int64)
        self.spec = f"imagefolder:{root}" + (f"?classes={class_index}" if class_index else "")

    def pil_image(self, index: int) -> Image.Image:
        return open_image(self.root / self.files[index], background=self.preprocess.background)

    def fingerprint(self) -> str:
        """sha256 over every file's relative path, size and label, plus the class names."""
        digest = hashlib.sha256(json.dumps(self.class_names).encode())
        for name, label in zip(self.files, self.labels):
            digest.update(f"{name}\0{(self.root / name).stat().st_size}\0{label}\n".encode())
        return digest.hexdigest()


def _class_mapping(folders: list[str], class_index: Path | None) -> tuple[dict[str, int], list[str]]:
    if class_index is None:
        return {folder: i for i, folder in enumerate(folders)}, list(folders)
    try:
        raw = json.loads(Path(class_index).read_text())
    except (OSError, ValueError) as exc:
        raise PSSError(f"class index {class_index} is not readable JSON: {exc}") from exc
    names: dict[int, str] = {}
    mapping: dict[str, int] = {}
    try:
        for key, value in raw.items():
            if isinstance(value, list):  # {"0": ["n01440764", "tench"]}
                index, folder = int(key), str(value[0])
                names[index] = str(value[1]) if len(value) > 1 else folder
            else:  # {"n01440764": 0}
                index, folder = int(value), key
                names[index] = folder
            if index < 0:
                raise ValueError(f"negative class index {index}")
            mapping[folder] = index
    except (AttributeError, ValueError, TypeError, IndexError) as exc:
        raise PSSError(
            f"class index {class_index} must be {{\"FOLDER\": INDEX}} or {{\"INDEX\": [\"FOLDER\", \"NAME\"]}}: {exc}"
        ) from exc
    unknown = [folder for folder in folders if folder not in mapping]
    if unknown:
        raise PSSError(f"class index {class_index} has no entry for folder(s) {', '.join(unknown[:5])}")
    count = max(mapping.values()) + 1
    return mapping, [names.get(i, f"class {i}") for i in range(count)]


# -------------------------------------------------------------------------------------- uploads
def open_image(path: Path, background: int = 255) -> Image.Image:
    """Read an image file, upright and in a standard 8-bit mode (see ``to_standard_mode``)."""
    try:
        with Image.open(path) as image:
            image.load()
            return to_standard_mode(image, background)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise PSSError(f"cannot read image {path}: {exc}") from exc


def to_standard_mode(image: Image.Image, background: int = 255) -> Image.Image:
    """Upright 8-bit ``L`` or ``RGB``: EXIF orientation applied, transparency composited onto ``background``.

    16-bit and 32-bit integer images are scaled from 0..65535, float images from 0..1.
    """
    image = ImageOps.exif_transpose(image)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif image.mode == "PA":
        image = image.convert("RGBA")
    if image.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        array = np.asarray(image, dtype=np.float64)
        scale = 65535.0 if image.mode != "F" else 1.0
        array = np.clip(np.rint(array / scale * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(array, mode="L")
    if image.mode in ("RGBA", "LA", "RGBa", "La"):
        base_mode = "L" if image.mode in ("LA", "La") else "RGB"
        image = image.convert(base_mode + "A")
        fill = background if base_mode == "L" else (background,) * 3
        canvas = Image.new(base_mode, image.size, fill)
        canvas.paste(image, mask=image.getchannel("A"))
        return canvas
    if image.mode == "1":
        return image.convert("L")
    if image.mode not in ("L", "RGB"):  # CMYK, YCbCr, LAB, HSV, RGBX, ...
        return image.convert("RGB")
    return image


def preprocess_upload(image: Image.Image, model_spec: str = "demo", input_spec: InputSpec | None = None
                      ) -> tuple[torch.Tensor, np.ndarray]:
    """A user's image -> ``(model input [C, H, W] float32, display uint8 [H, W] or [H, W, 3])``, preprocessed by
    ``input_spec`` (the run's, as its manifest recorded it), else for the model named by ``model_spec``.

    The display array is the image as the model sees it geometrically, so input-space heatmaps align with it.
    """
    preprocess = _preprocess(model_spec, input_spec)
    geometric = preprocess.geometry(to_standard_mode(image, preprocess.background))
    return preprocess.to_tensor(geometric), np.asarray(geometric, dtype=np.uint8).copy()
