"""Model specs: which network to explain, its class names and its input preprocessing.

Spec forms (``load_model(spec)``):

* ``demo`` -- the committed demo ResNet for Fashion-MNIST (``backend/models/weights/demo_resnet.pt``,
  written by ``pss train-demo``).
* ``torchvision:NAME`` -- a torchvision classification architecture with random weights, seeded
  (seed 0) so that the same spec always gives the same model; nothing is downloaded.
* ``torchvision:NAME:WEIGHTS`` -- pretrained weights through torchvision's weights API, e.g.
  ``torchvision:resnet50:IMAGENET1K_V2`` (``ResNet50_Weights.IMAGENET1K_V2`` and ``DEFAULT`` work too).
  torchvision downloads the file into its cache the first time.
* ``checkpoint:PATH:ARCH`` -- a local state dict (``torch.save`` file read with ``weights_only=True``, or
  ``.safetensors``) for ARCH = ``demo`` or a torchvision architecture name; the number of classes is read
  from the state dict. Pickled code in a checkpoint is refused.

The preprocessing (``model_input_transform``) is a ``Preprocess``: a geometric part (PIL -> PIL, what the
dashboard displays, so input-space heatmaps align with it) followed by the tensor conversion and
normalization.
"""

from __future__ import annotations

import difflib
import hashlib
import pickle
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from PIL import Image
import torchvision
from torch import nn
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from backend.errors import PSSError

from .demo import FASHION_MNIST_CLASSES, FASHION_MNIST_MEAN, FASHION_MNIST_STD, DemoResNet

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEMO_CHECKPOINT = WEIGHTS_DIR / "demo_resnet.pt"
RANDOM_INIT_SEED = 0
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

SPEC_FORMS = (
    "valid model specs: 'demo', 'torchvision:NAME' (random init, e.g. torchvision:resnet50), "
    "'torchvision:NAME:WEIGHTS' (e.g. torchvision:resnet50:IMAGENET1K_V2), "
    "'checkpoint:PATH:ARCH' (ARCH = demo or a torchvision name, e.g. checkpoint:model.pt:resnet18)"
)

__all__ = [
    "DEMO_CHECKPOINT",
    "Preprocess",
    "load_model",
    "load_state_dict_file",
    "model_class_names",
    "model_input_transform",
    "parse_model_spec",
    "weights_sha256",
]


# ----------------------------------------------------------------------------------------------- specs
def parse_model_spec(spec: str) -> tuple[str, dict]:
    """``(kind, fields)`` for a spec string; ``kind`` is ``demo``, ``torchvision`` or ``checkpoint``."""
    if not isinstance(spec, str) or not spec.strip():
        raise PSSError(f"empty model spec; {SPEC_FORMS}")
    spec = spec.strip()
    if spec == "demo":
        return "demo", {}
    kind, _, rest = spec.partition(":")
    if kind == "torchvision":
        parts = rest.split(":")
        if len(parts) not in (1, 2) or not all(parts):
            raise PSSError(f"bad model spec {spec!r}; {SPEC_FORMS}")
        name = _torchvision_name(parts[0])
        weights = _torchvision_weights(name, parts[1]) if len(parts) == 2 else None
        return "torchvision", {"name": name, "weights": weights}
    if kind == "checkpoint":
        path, sep, arch = rest.rpartition(":")
        if not sep or not path or not arch:
            raise PSSError(f"bad model spec {spec!r}: need checkpoint:PATH:ARCH; {SPEC_FORMS}")
        if arch != "demo":
            arch = _torchvision_name(arch)
        return "checkpoint", {"path": Path(path).expanduser(), "arch": arch}
    raise PSSError(f"unknown model spec {spec!r}; {SPEC_FORMS}")


def _torchvision_classifiers() -> list[str]:
    return sorted(torchvision.models.list_models(module=torchvision.models))


def _torchvision_name(name: str) -> str:
    names = _torchvision_classifiers()
    if name in names:
        return name
    close = difflib.get_close_matches(name.lower(), names, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise PSSError(f"unknown torchvision classification model {name!r}{hint}; {len(names)} are available, e.g. resnet50")


def _torchvision_weights(name: str, weights: str):
    """The weights enum member named ``weights`` (``IMAGENET1K_V2``, ``ResNet50_Weights.IMAGENET1K_V2``, ``DEFAULT``)."""
    enum = torchvision.models.get_model_weights(name)
    member = weights.split(".", 1)[1] if weights.startswith(enum.__name__ + ".") else weights
    if member == "DEFAULT":
        return enum.DEFAULT
    if member in enum.__members__:
        return enum[member]
    valid = ", ".join(["DEFAULT", *(m for m in enum.__members__ if m != "DEFAULT")])
    raise PSSError(f"unknown weights {weights!r} for torchvision model {name!r}; valid: {valid}")


# ------------------------------------------------------------------------------------------ loading
def load_model(spec: str, device: str | torch.device = "cpu") -> nn.Module:
    """The model named by ``spec`` on ``device``, in eval mode."""
    kind, fields = parse_model_spec(spec)
    if kind == "demo":
        if not DEMO_CHECKPOINT.is_file():
            raise PSSError(f"the demo checkpoint {DEMO_CHECKPOINT} is missing; run `pss train-demo` to create it")
        model = _demo_from_state(load_state_dict_file(DEMO_CHECKPOINT), DEMO_CHECKPOINT)
    elif kind == "torchvision":
        model = _torchvision_model(fields["name"], fields["weights"])
    else:
        model = _checkpoint_model(fields["path"], fields["arch"])
    return model.to(device).eval()


def _torchvision_model(name: str, weights) -> nn.Module:
    if weights is not None:
        try:
            return torchvision.models.get_model(name, weights=weights)
        except (OSError, RuntimeError) as exc:  # URLError is an OSError
            raise PSSError(f"could not load {weights} for {name}: {exc}") from exc
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        return torchvision.models.get_model(name, weights=None)


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """A tensor-only state dict from a ``torch.save`` file (``weights_only=True``) or a ``.safetensors`` file.

    Accepts ``{"state_dict": ...}`` / ``{"model": ...}`` wrappers and strips a DDP ``module.`` prefix.
    """
    path = Path(path)
    if not path.is_file():
        raise PSSError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise PSSError(f"checkpoint {path} is not a readable safetensors file: {exc}") from exc
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            if "unsupported global" not in str(exc).lower():  # damaged file, not a forbidden object
                raise PSSError(f"checkpoint {path} is not a readable torch.save file: {exc}") from exc
            raise PSSError(
                f"refusing checkpoint {path}: it holds pickled objects other than tensors, which could run code "
                "when loaded; save a plain state dict (torch.save(model.state_dict(), ...)) or use .safetensors"
            ) from exc
        except (RuntimeError, EOFError, OSError, ValueError) as exc:
            raise PSSError(f"checkpoint {path} is not a readable torch.save file: {exc}") from exc
    for key in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PSSError(f"checkpoint {path} is not a state dict (a mapping of parameter names to tensors)")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _demo_from_state(state: dict[str, torch.Tensor], path: Path) -> DemoResNet:
    try:
        model = DemoResNet.from_state_dict(state)
    except ValueError as exc:
        raise PSSError(f"checkpoint {path}: {exc}") from exc
    _load_strict(model, state, path)
    return model


def _checkpoint_model(path: Path, arch: str) -> nn.Module:
    state = load_state_dict_file(path)
    if arch == "demo":
        return _demo_from_state(state, path)
    kwargs = {"num_classes": _classifier_size(arch, state, path)}
    if hasattr(_meta_model(arch), "aux_logits") and not any("aux" in k.lower() for k in state):
        kwargs.update(aux_logits=False, init_weights=False)  # inception_v3 / googlenet saved without aux heads
    model = torchvision.models.get_model(arch, weights=None, **kwargs)
    _load_strict(model, state, path)
    return model


def _meta_model(arch: str) -> nn.Module:
    """The architecture with its default head, on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        return torchvision.models.get_model(arch, weights=None)


def _classifier_size(arch: str, state: Mapping[str, torch.Tensor], path: Path) -> int:
    """Number of classes in ``state``: the output size of the architecture's last 1000-way head."""
    head_keys = [k for k, v in _meta_model(arch).state_dict().items() if v.dim() >= 1 and v.shape[0] == 1000]
    for key in reversed(head_keys):
        if key in state:
            return int(state[key].shape[0])
    raise PSSError(f"checkpoint {path} has none of {arch}'s classifier keys ({', '.join(head_keys)}); wrong ARCH?")


def _load_strict(model: nn.Module, state: Mapping[str, torch.Tensor], path: Path) -> None:
    ours = model.state_dict()
    missing = [k for k in ours if k not in state]
    unexpected = [k for k in state if k not in ours]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in ours.items()
             if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        problems = [f"{label}: {', '.join(items[:4])}{' ...' if len(items) > 4 else ''}"
                    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape", wrong)) if items]
        raise PSSError(f"checkpoint {path} does not fit {type(model).__name__}: {'; '.join(problems)}")
    model.load_state_dict(state, strict=True)


# ------------------------------------------------------------------------------------- class names
def model_class_names(spec: str) -> list[str]:
    """Fashion-MNIST names for the demo, the weights' categories for torchvision weights, else ``class i``."""
    kind, fields = parse_model_spec(spec)
    if kind == "demo":
        return list(FASHION_MNIST_CLASSES)
    if kind == "torchvision" and fields["weights"] is not None:
        return list(fields["weights"].meta["categories"])
    if kind == "torchvision":
        return [f"class {i}" for i in range(1000)]
    state = load_state_dict_file(fields["path"])
    if fields["arch"] == "demo":
        count = state["fc.weight"].shape[0] if "fc.weight" in state else 10
    else:
        count = _classifier_size(fields["arch"], state, fields["path"])
    return [f"class {i}" for i in range(count)]


# ----------------------------------------------------------------------------------- preprocessing
class Preprocess:
    """PIL image -> model input: ``geometry`` (mode, resize, crop; what is displayed) then ``to_tensor``.

    ``background`` is the grey level that transparent pixels of uploads are composited onto (black for the
    demo, whose Fashion-MNIST images are light objects on black; white for photographs).
    """

    def __init__(self, mode: str, resize: int | tuple[int, int] | None, crop: int | None,
                 mean: tuple[float, ...], std: tuple[float, ...], *, interpolation=InterpolationMode.BILINEAR,
                 pad_square: bool = False, background: int = 0):
        self.mode, self.resize, self.crop = mode, resize, crop
        self.mean, self.std = tuple(mean), tuple(std)
        self.interpolation, self.pad_square, self.background = interpolation, pad_square, background

    @classmethod
    def from_torchvision(cls, preset) -> "Preprocess":
        """The same steps as a torchvision ``ImageClassification`` preset (a weights' ``transforms()``)."""
        resize = preset.resize_size[0] if len(preset.resize_size) == 1 else tuple(preset.resize_size)
        return cls("RGB", resize, preset.crop_size[0], tuple(preset.mean), tuple(preset.std),
                   interpolation=preset.interpolation, background=255)

    @property
    def channels(self) -> int:
        return 1 if self.mode == "L" else 3

    def geometry(self, image: Image.Image) -> Image.Image:
        """Colour mode, (padding,) resize and centre crop: the image as the model sees it, before normalization."""
        image = image.convert(self.mode) if image.mode != self.mode else image
        if self.pad_square and image.width != image.height:
            side = max(image.size)
            fill = self.background if self.mode == "L" else (self.background,) * 3
            square = Image.new(self.mode, (side, side), fill)
            square.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
            image = square
        if self.resize is not None:
            image = _resize(image, self.resize, self.interpolation)
        if self.crop is not None:
            image = _center_crop(image, self.crop)
        return image

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 ``[C, H, W]`` (or ``[N, C, H, W]``) -> normalized float32."""
        shape = (-1, 1, 1)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(shape)
        std = torch.tensor(self.std, dtype=torch.float32).view(shape)
        return (pixels.to(torch.float32) / 255.0 - mean) / std

    def to_tensor(self, image: Image.Image) -> torch.Tensor:
        """A geometry-processed PIL image -> normalized float32 ``[C, H, W]``."""
        array = np.array(image, dtype=np.uint8)
        array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
        return self.normalize(torch.from_numpy(np.ascontiguousarray(array)))

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.to_tensor(self.geometry(image))

    def __repr__(self) -> str:
        return (f"Preprocess(mode={self.mode!r}, resize={self.resize}, crop={self.crop}, mean={self.mean}, "
                f"std={self.std}, pad_square={self.pad_square})")


def _resize(image: Image.Image, size, interpolation) -> Image.Image:
    """torchvision's resize rule: an int resizes the shorter side (aspect kept), a pair is (height, width)."""
    return TF.resize(image, list(size) if isinstance(size, tuple) else [size], interpolation=interpolation)


def _center_crop(image: Image.Image, size: int) -> Image.Image:
    return TF.center_crop(image, [size])


def model_input_transform(spec: str) -> Preprocess:
    """PIL image -> model input tensor, for the model named by ``spec``.

    torchvision weights use their own transforms; random-init torchvision models use the architecture's
    default weights' resize/crop sizes with ImageNet mean/std (no download); demo models use grayscale
    28x28 with Fashion-MNIST's mean/std (non-square uploads are padded to a square with black first, the
    way Fashion-MNIST itself fitted the longer side).
    """
    kind, fields = parse_model_spec(spec)
    if kind == "demo" or (kind == "checkpoint" and fields["arch"] == "demo"):
        return Preprocess("L", (28, 28), None, (FASHION_MNIST_MEAN,), (FASHION_MNIST_STD,), pad_square=True)
    name = fields["name"] if kind == "torchvision" else fields["arch"]
    weights = fields.get("weights")
    if weights is not None:
        return Preprocess.from_torchvision(weights.transforms())
    enum = torchvision.models.get_model_weights(name)
    preset = Preprocess.from_torchvision(enum.DEFAULT.transforms())
    preset.mean, preset.std = IMAGENET_MEAN, IMAGENET_STD
    return preset


# ------------------------------------------------------------------------------------------ hashing
def weights_sha256(model: nn.Module | Mapping[str, torch.Tensor]) -> str:
    """sha256 over the state dict in order: each entry's name, dtype, shape and raw bytes (device-independent)."""
    state = model.state_dict() if isinstance(model, nn.Module) else model
    digest = hashlib.sha256()
    for name, tensor in state.items():
        if not isinstance(tensor, torch.Tensor):
            continue
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}\0{str(tensor.dtype)}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
