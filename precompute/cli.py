"""Compute everything the dashboard shows for a model and a dataset, and write it to an artifacts dir.

Writes per-sample predictions, raw and standardized filter-saliency profiles, their statistics,
penultimate-layer features and a FAISS cosine index; manifest.json is written last. Work is saved in
shards, so rerunning the same command after an interruption resumes it. An up-to-date dir is left alone
(use --force to recompute). Under torchrun (`torchrun --nproc_per_node N -m precompute ...`) the shards are
split across the processes.

Preprocessing: --input-size/--resize/--mean/--std/--interpolation win; otherwise what the model spec knows
(torchvision weights' transforms, the demo's), else the model's own pretrained_cfg (timm's convention),
else ImageNet defaults (resize 256, centre crop 224, ImageNet mean/std, RGB). The result is recorded in the
manifest, and `pss serve`, uploads and `pss experiments` use exactly it.

examples:
  pss precompute --model demo --data fashion-mnist:test --out artifacts/demo
  pss precompute --model python:mynet:build:mynet.pt --data imagefolder:photos?classes=classes.json \\
      --input-size 128 --mean 0.5 0.5 0.5 --std 0.5 0.5 0.5 --out artifacts/mynet
  torchrun --nproc_per_node 4 -m precompute --model torchvision:resnet50:IMAGENET1K_V2 \\
      --data imagefolder:/data/imagenet/val --out artifacts/resnet50 --device cuda --index sq8
"""

from __future__ import annotations

import argparse
import errno
import logging
import os

from backend.data import load_dataset
from backend.errors import PSSError
from backend.models import IMAGENET_DEFAULT, INTERPOLATIONS, load_model, model_input_spec, resolve_device
from backend.store import PARAMS

log = logging.getLogger("precompute")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="demo", help="model spec (default: demo), e.g. torchvision:resnet50:IMAGENET1K_V2, "
                                                       "timm:resnet50, python:mynet:build (see README)")
    parser.add_argument("--data", default="fashion-mnist:test", help="dataset spec (default: fashion-mnist:test)")
    parser.add_argument("--out", required=True, help="artifacts dir to write (created if missing)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward/backward pass (default 64)")
    parser.add_argument("--device", choices=["cpu", "cuda", "auto"], default="auto",
                        help="where the model runs (default auto: cuda when available)")
    parser.add_argument("--index", choices=["flat", "sq8", "ivf", "ivfpq"], default="flat",
                        help="FAISS index over the standardized profiles: flat = exact (default); sq8/ivf/ivfpq = "
                             "approximate, smaller/faster for large N (their recall@10 is measured and printed); "
                             "ivfpq keeps about F/32 bytes a row (see docs/scaling.md)")
    parser.add_argument("--dtype", choices=["float32", "float16"], default="float32",
                        help="storage of profiles_std/features (float16) and profiles_raw (bfloat16, whose range "
                             "holds tiny saliencies): half the disk and page cache, values within 16-bit rounding "
                             "(default float32)")
    parser.add_argument("--limit", type=int, help="only the first N samples of the dataset")
    parser.add_argument("--shard-size", type=int, default=1024,
                        help="samples per resumable shard (default 1024)")
    parser.add_argument("--workers", type=int, default=None,
                        help="data-loading processes for datasets read from disk (default: min(8, CPUs - 1))")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads per process (default 1, safe on a shared machine: there, threads that "
                             "wait for busy cores made runs several times slower). On an idle machine more threads "
                             "help (demo, 2-core VM: 24 s with 2 threads, 40 s with 1, identical results), and "
                             "`torchrun --nproc_per_node N -m precompute ...` uses N cores too")
    parser.add_argument("--feature-layer", metavar="MODULE",
                        help="module whose input is the penultimate feature vector "
                             "(default: the last nn.Linear that runs, i.e. the classifier head)")
    parser.add_argument("--force", action="store_true", help="recompute even if DIR is up to date or holds other artifacts")
    parser.add_argument("--params", choices=PARAMS, default="conv",
                        help="which weights are filters: conv = output channels of every conv (default); linear = "
                             "output rows of every Linear weight (attention projections included); conv+linear = "
                             "both (vision transformers)")
    group = parser.add_argument_group(
        "preprocessing", "override the model's own preprocessing (its weights' transforms or pretrained_cfg, else "
                         "ImageNet defaults); what is used is printed and recorded in the manifest")
    group.add_argument("--input-size", type=int, metavar="PX",
                       help="side of the centre crop fed to the model (the resize keeps its ratio unless --resize)")
    group.add_argument("--resize", type=int, metavar="PX", help="resize the shorter side to PX before the crop")
    group.add_argument("--mean", type=float, nargs="+", metavar="M",
                       help="per-channel mean of pixels in [0, 1]: 3 values (RGB) or 1 (grayscale)")
    group.add_argument("--std", type=float, nargs="+", metavar="S", help="per-channel std, as many values as --mean")
    group.add_argument("--interpolation", choices=INTERPOLATIONS, help="resize filter (default: the model's)")


def run(args: argparse.Namespace) -> int:
    import torch

    from .job import run_precompute

    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # which SIMD build loaded is noise here
    if args.limit is not None and args.limit < 2:
        raise PSSError("--limit must be at least 2")
    if args.threads < 1:
        raise PSSError("--threads must be at least 1")
    torch.set_num_threads(args.threads)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    device = _device(args.device, distributed)
    if distributed:
        _init_distributed(device)
    try:
        model = load_model(args.model, device)
        dataset = load_dataset(args.data, args.model, input_spec(args, model))
        workers = args.workers if args.workers is not None else min(8, max((os.cpu_count() or 1) - 1, 0))
        manifest = run_precompute(
            model, dataset, args.out, model_spec=args.model, data_spec=args.data, batch_size=args.batch_size,
            shard_size=args.shard_size, index=args.index, dtype=args.dtype, limit=args.limit,
            feature_layer=args.feature_layer, force=args.force, num_workers=workers, params=args.params,
        )
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise
        raise PSSError(f"{exc.strerror} while writing {args.out}; free some space and rerun the same command "
                       "(finished shards are kept; no manifest was written, so nothing will serve a partial dir)") from exc
    finally:
        if distributed:
            torch.distributed.destroy_process_group()
    if manifest is not None:
        recall = manifest.index.recall_at_10
        print(f"artifacts ready in {args.out}: {manifest.num_samples} samples, {manifest.num_filters} filters, "
              f"accuracy {100 * manifest.accuracy:.2f}%, index {manifest.index.kind}"
              + (f" (recall@10 {recall:.4f})" if recall is not None else " (exact)"))
    return 0


def input_spec(args: argparse.Namespace, model):
    """The flags over the model's own preprocessing; said once on rank 0, with a notice when it is a guess."""
    spec = model_input_spec(args.model, model).with_overrides(
        input_size=args.input_size, resize=args.resize, mean=args.mean, std=args.std,
        interpolation_name=args.interpolation)
    if int(os.environ.get("RANK", "0")) == 0:
        if spec is IMAGENET_DEFAULT:
            print(f"note: {args.model} says nothing about its input (no pretrained_cfg), so ImageNet defaults are "
                  f"used: {spec.describe()}; set --input-size/--resize/--mean/--std/--interpolation if it was "
                  "trained otherwise", flush=True)
        log.info("preprocessing (%s): %s", spec.source, spec.describe())
    return spec


def _device(name: str, distributed: bool):
    """``resolve_device``, and under torchrun each process's own GPU (LOCAL_RANK)."""
    import torch

    device = resolve_device(name)
    if device.type == "cuda" and distributed:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return device


def _init_distributed(device) -> None:
    """One process group per torchrun job: nccl between GPUs, gloo between CPU processes."""
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", device_id=device
                                if device.type == "cuda" else None)
    log.info("rank %d of %d on %s", dist.get_rank(), dist.get_world_size(), device)
