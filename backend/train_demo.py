"""Train the demo ResNet on Fashion-MNIST and write its checkpoint plus a JSON record beside it.

Seeded and deterministic on CPU: the same seed, flags, thread count and library versions give bit-identical
weights. SGD with Nesterov momentum and a one-cycle learning rate; light augmentation (random shifts of up to
2 pixels and horizontal flips) drawn from the seeded generator. The record holds the test accuracy, the
exact command, the duration and the library versions. With --limit the run uses the first N training and
N test images (a smoke test, seconds).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from backend.data import load_dataset
from backend.errors import PSSError
from backend.models import DEMO_CHECKPOINT, weights_sha256
from backend.models.demo import DemoResNet

log = logging.getLogger(__name__)

DEFAULT_OUT = DEMO_CHECKPOINT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=int, default=5, help="passes over the training set (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the init, the shuffling and the augmentation")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"checkpoint path (default {DEFAULT_OUT})")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N train and N test images")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.1, help="peak learning rate of the one-cycle schedule")
    parser.add_argument("--widths", type=str, default="16,32,64,128", help="the four stage widths")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads (default 1: the result then depends on no core count, and a shared "
                             "machine does not stall it the way oversubscribed multi-threaded training stalls)")
    parser.add_argument("--device", default="cpu", help="torch device; bit-for-bit reproducibility holds on cpu only")


def run(args: argparse.Namespace) -> int:
    widths = _parse_widths(args.widths)
    if min(args.epochs, args.batch_size, args.threads) < 1 or args.lr <= 0 or (args.limit is not None and args.limit < 1):
        raise PSSError("--epochs, --batch-size, --threads, --lr and --limit must be positive")
    out = Path(args.out)
    if out.suffix != ".pt":
        raise PSSError(f"--out must end in .pt, got {out}")
    record = train(epochs=args.epochs, seed=args.seed, limit=args.limit, batch_size=args.batch_size, lr=args.lr,
                   widths=widths, out=out, command=_command(args), device=args.device, threads=args.threads)
    print(f"test accuracy {record['test_accuracy']:.4f} on {record['test_samples']} images; "
          f"wrote {out} and {out.with_suffix('.json')} in {record['duration_s']:.0f} s")
    return 0


def _parse_widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in text.split(","))
    except ValueError:
        widths = ()
    if len(widths) != 4 or min(widths) < 1:
        raise PSSError(f"--widths needs four positive integers like 16,32,64,128, got {text!r}")
    return widths


def _command(args: argparse.Namespace) -> str:
    parts = ["pss", "train-demo", "--epochs", str(args.epochs), "--seed", str(args.seed),
             "--batch-size", str(args.batch_size), "--lr", repr(args.lr), "--widths", args.widths,
             "--threads", str(args.threads)]
    if args.limit is not None:
        parts += ["--limit", str(args.limit)]
    if args.device != "cpu":
        parts += ["--device", args.device]
    if Path(args.out).resolve() != DEFAULT_OUT:
        parts += ["--out", str(args.out)]
    return shlex.join(parts)


def train(*, epochs: int, seed: int, limit: int | None, batch_size: int, lr: float, widths: tuple[int, ...],
          out: Path, command: str, device: str = "cpu", threads: int = 1) -> dict:
    """Train, evaluate, write ``out`` (state dict) and ``out.with_suffix('.json')``; returns the JSON record."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    import torchvision


    torch.use_deterministic_algorithms(True, warn_only=device != "cpu")
    torch.set_num_threads(threads)
    started = time.perf_counter()
    train_set = load_dataset("fashion-mnist:train", "demo")
    test_set = load_dataset("fashion-mnist:test", "demo")
    train_raw = torch.tensor(train_set.raw_images[:limit])
    train_labels = torch.tensor(train_set.labels[:limit], dtype=torch.int64)
    normalize = train_set.preprocess.normalize

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = DemoResNet(widths, num_classes=10).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    steps_per_epoch = -(-len(train_raw) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, epochs=epochs, steps_per_epoch=steps_per_epoch)

    progress = _Progress(total=epochs * steps_per_epoch)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(train_raw), generator=generator)
        seen = correct = 0
        loss_sum = 0.0
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            x = normalize(_augment(train_raw[idx], generator)[:, None]).to(device)
            y = train_labels[idx].to(device)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            seen += len(y)
            loss_sum += loss.item() * len(y)
            correct += int((logits.argmax(1) == y).sum())
            progress.update(f"epoch {epoch + 1}/{epochs} loss {loss_sum / seen:.4f} acc {correct / seen:.4f}")
    progress.close()
    train_loss, train_accuracy = loss_sum / seen, correct / seen

    test_images, test_labels = test_set.tensors()
    test_accuracy = evaluate(model.eval(), test_images[:limit], test_labels[:limit])
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    record = {
        "test_accuracy": test_accuracy,
        "test_samples": len(test_labels[:limit]),
        "train_samples": len(train_raw),
        "final_epoch_train_loss": train_loss,
        "final_epoch_train_accuracy": train_accuracy,
        "seed": seed,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "widths": list(widths),
        "parameters": sum(p.numel() for p in model.parameters()),
        "command": command,
        "duration_s": round(time.perf_counter() - started, 1),
        "weights_sha256": weights_sha256(state),
        "train_fingerprint": train_set.fingerprint(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "threads": torch.get_num_threads(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "torchvision": torchvision.__version__, "numpy": np.__version__},
        "device": str(device),
        "machine": platform.machine(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(out, lambda f: torch.save(state, f))
    _atomic_write(out.with_suffix(".json"), lambda f: f.write((json.dumps(record, indent=2) + "\n").encode()))
    return record


def _augment(raw, generator):
    """Random shifts of up to 2 pixels (zero padding = the black background) and horizontal flips, uint8 [B, 28, 28]."""
    import torch

    batch, height, width = raw.shape
    padded = torch.nn.functional.pad(raw, (2, 2, 2, 2))
    dy, dx = torch.randint(0, 5, (2, batch, 1), generator=generator)
    flip = torch.rand(batch, generator=generator) < 0.5
    cols = torch.arange(width).expand(batch, width)
    cols = torch.where(flip[:, None], width - 1 - cols, cols)
    rows = dy + torch.arange(height)
    return padded[torch.arange(batch)[:, None, None], rows[:, :, None], (dx + cols)[:, None, :]]


def evaluate(model, images, labels, batch_size: int = 500) -> float:
    """Top-1 accuracy of ``model`` (in eval mode) on normalized ``images``."""
    import torch

    correct = 0
    with torch.no_grad():
        for start in range(0, len(labels), batch_size):
            device = next(model.parameters()).device
            logits = model(images[start : start + batch_size].to(device)).cpu()
            correct += int((logits.argmax(1) == labels[start : start + batch_size]).sum())
    return correct / len(labels)


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class _Progress:
    """tqdm bar on a terminal; a plain log line every 30 s otherwise."""

    def __init__(self, total: int):
        self.total, self.done, self.last_log = total, 0, time.monotonic()
        self.started = self.last_log
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="step", dynamic_ncols=True)

    def update(self, text: str) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)
            self.bar.update(1)
        elif time.monotonic() - self.last_log >= 30 or self.done == self.total:
            self.last_log = time.monotonic()
            elapsed = self.last_log - self.started
            eta = elapsed / self.done * (self.total - self.done)
            log.info("step %d/%d %s (%.0f s elapsed, ETA %.0f s)", self.done, self.total, text, elapsed, eta)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
