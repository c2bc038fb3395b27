"""Throughput of parameter-saliency profiles, three ways on the same model, batch and machine.

  reference  batch-size-1 loop of torch.autograd.grad over the conv weights (the definition)
  engine     backend.saliency.filter_saliency on the whole batch
  plain      one batched forward + backward of the same summed loss (a training step's work: the floor)

Rounds interleave the three so that machine noise hits them alike; medians are reported, and the ratios
engine/reference and engine/plain are the numbers to compare across machines. Weights are random (nothing
is downloaded); the engine's output is checked against the reference on the benchmark batch.
"""

from __future__ import annotations

import argparse
import statistics
import time

from backend.models import resolve_device


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="demo", help="model spec, e.g. demo, torchvision:resnet50 (default: demo)")
    parser.add_argument("--image-size", type=int, default=None, help="input side in pixels (default: 28 for demo, else 224)")
    parser.add_argument("--batch-size", type=int, default=128, help="batch for engine and plain (default: 128)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default: auto)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds after one warm-up (default: 5)")
    parser.add_argument(
        "--reference-samples", type=int, default=None,
        help="samples per round for the slow batch-size-1 loop (default: min(batch, 32))",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own choice)")
    parser.add_argument("--params", default="conv", choices=("conv", "linear", "conv+linear"),
                        help="which weights are filters: conv output channels, Linear rows, or both (default: conv)")
    parser.add_argument("--channels-last", action="store_true", help="channels_last memory format for model and input")


def run(args: argparse.Namespace) -> int:
    import torch

    from backend.errors import PSSError

    if args.batch_size < 1 or args.rounds < 1:
        raise PSSError("--batch-size and --rounds must be >= 1")
    if args.threads is not None:
        if args.threads < 1:
            raise PSSError("--threads must be >= 1")
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model, channels, side = _model(args.model, args.image_size)
    model = model.to(device).eval()
    images = torch.randn(args.batch_size, channels, side, side, device=device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, _num_classes(model, images), (args.batch_size,), device=device)
    ref_n = min(args.batch_size, args.reference_samples or 32)
    results = measure(model, images, labels, rounds=args.rounds, reference_samples=ref_n, params=args.params)
    print(_report(args, device, results))
    return 0


def measure(model, images, labels, *, rounds: int, reference_samples: int, params: str = "conv") -> dict:
    """Median images/s of each method, and the engine's error against the reference on these inputs."""
    import torch
    import torch.nn.functional as F

    from backend.saliency import FilterLayout, filter_saliency, reference_filter_saliency

    layout = FilterLayout.from_model(model, params=params)
    batch = images.shape[0]
    ref_images, ref_labels = images[:reference_samples], labels[:reference_samples]

    def engine():
        return filter_saliency(model, images, labels, batch_size=batch, layout=layout)

    def reference():
        return reference_filter_saliency(model, ref_images, ref_labels, layout)

    def plain():
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), labels, reduction="sum").backward()
        model.zero_grad(set_to_none=True)

    methods = {"reference": (reference, reference_samples), "engine": (engine, batch), "plain": (plain, batch)}
    rates: dict[str, list[float]] = {name: [] for name in methods}
    for round_index in range(rounds + 1):  # round 0 warms up
        for name, (fn, count) in methods.items():
            _sync(images)
            start = time.perf_counter()
            fn()
            _sync(images)
            if round_index:
                rates[name].append(count / (time.perf_counter() - start))
    check = engine()[:reference_samples].double()
    expected = reference().double()
    error = ((check - expected).norm(dim=1) / expected.norm(dim=1).clamp_min(1e-30)).max().item()
    result = {name: statistics.median(values) for name, values in rates.items()}
    result.update(num_filters=layout.num_filters, max_relative_error=error, threads=torch.get_num_threads())
    return result


def _report(args, device, r: dict) -> str:
    import torch

    from backend.saliency.kernels import kernel_status

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {r['threads']} threads"
    lines = [
        f"model {args.model}  params {args.params}  filters {r['num_filters']}  batch {args.batch_size}  "
        f"device {where}",
        f"  reference (batch-size-1 loop)  {r['reference']:10.1f} images/s",
        f"  engine (filter_saliency)       {r['engine']:10.1f} images/s",
        f"  plain forward+backward         {r['plain']:10.1f} images/s",
        f"  engine / reference             {r['engine'] / r['reference']:10.2f}x",
        f"  engine / plain                 {r['engine'] / r['plain']:10.2f}x",
        f"  engine vs reference, max per-sample relative error {r['max_relative_error']:.2e}",
    ]
    if device.type == "cpu":
        lines.append(f"  engine per-sample reduction: {kernel_status()}")
    return "\n".join(lines)


def _model(spec: str, image_size: int | None):
    """The model with its weights (random init where nothing is stored), input channels and side."""
    from backend.models import DEMO_CHECKPOINT, load_model, model_input_spec

    if spec == "demo" and not DEMO_CHECKPOINT.exists():  # speed does not depend on the trained weights
        from backend.models.demo import DemoResNet

        model = DemoResNet()
    else:
        model = load_model(spec)
    default_side = 28 if spec == "demo" else 224
    channels = len(model_input_spec(spec, model).mean)
    return model, channels, image_size or default_side


def _num_classes(model, images) -> int:
    import torch

    with torch.no_grad():
        return model(images[:1]).shape[1]


def _sync(tensor) -> None:
    import torch

    if tensor.is_cuda:
        torch.cuda.synchronize(tensor.device)


if __name__ == "__main__":  # `python -m backend.bench.profiles` works where the rest of the CLI is not installed
    import sys

    cli = argparse.ArgumentParser(prog="python -m backend.bench.profiles", description=__doc__)
    add_arguments(cli)
    sys.exit(run(cli.parse_args()))
