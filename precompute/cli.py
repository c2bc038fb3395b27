"""Compute everything the dashboard shows for a model and a dataset, and write it to an artifacts dir.

Writes per-sample predictions, raw and standardized filter-saliency profiles, their statistics,
penultimate-layer features and a FAISS cosine index; manifest.json is written last. Work is saved in
shards, so rerunning the same command after an interruption resumes it. An up-to-date dir is left alone
(use --force to recompute). Under torchrun (`torchrun --nproc_per_node N -m precompute ...`) the shards are
split across the processes.

examples:
  pss precompute --model demo --data fashion-mnist:test --out artifacts/demo
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
from backend.models import load_model, resolve_device

log = logging.getLogger("precompute")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="demo", help="model spec (default: demo), e.g. torchvision:resnet50:IMAGENET1K_V2")
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
        dataset = load_dataset(args.data, args.model)
        workers = args.workers if args.workers is not None else min(8, max((os.cpu_count() or 1) - 1, 0))
        manifest = run_precompute(
            model, dataset, args.out, model_spec=args.model, data_spec=args.data, batch_size=args.batch_size,
            shard_size=args.shard_size, index=args.index, dtype=args.dtype, limit=args.limit, feature_layer=args.feature_layer,
            force=args.force, num_workers=workers,
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
