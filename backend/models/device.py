"""The one place a ``--device`` name becomes a torch device."""

from __future__ import annotations

import torch

from backend.errors import PSSError


def resolve_device(name: str | torch.device) -> torch.device:
    """``auto`` -> cuda when torch sees one, else cpu; an unavailable cuda is refused with one line."""
    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PSSError("--device cuda was asked for, but torch sees no CUDA device; use --device cpu or auto")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise PSSError(f"unknown --device {name!r}: use cpu, cuda, cuda:N or auto") from exc
