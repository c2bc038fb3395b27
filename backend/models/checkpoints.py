"""Reading state dicts safely (tensors only), loading them strictly, and the weights hash."""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from backend.errors import PSSError


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


def load_strict(model: nn.Module, state: Mapping[str, torch.Tensor], path: Path) -> None:
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
