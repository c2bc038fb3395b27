"""`pss export`: one row per sample of an artifacts dir, as Parquet or CSV (by the --out extension).

Columns: id, label, pred, confidence, loss, correct, filter_1..filter_K and z_1..z_K (most salient filters,
largest standardized saliency first), failure_mode, saliency_x, saliency_y, feature_x, feature_y (empty for
correctly classified samples: the maps and failure modes cover the mistakes). README.md describes them.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from backend.errors import PSSError
from backend.store import Artifacts
from precompute.analysis.export import FORMATS, TOP_K, artifacts_table, write_table

log = logging.getLogger("precompute")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--artifacts", required=True, help="a finished artifacts dir (pss precompute --out)")
    parser.add_argument("--out", required=True, help=f"the table to write: {', '.join(FORMATS)} chooses the format")
    parser.add_argument("--top-k", type=int, default=TOP_K, help=f"salient filters per row (default {TOP_K})")


def run(args) -> int:
    out = Path(args.out)
    if out.suffix.lower() not in FORMATS:
        raise PSSError(f"--out {out}: cannot tell the format; end the name with one of {', '.join(FORMATS)}")
    if args.top_k < 1:
        raise PSSError(f"--top-k must be at least 1, got {args.top_k}")
    if not out.parent.is_dir():
        raise PSSError(f"--out {out}: the folder {out.parent} does not exist")
    table = artifacts_table(Artifacts.open(args.artifacts), args.top_k)
    kind = write_table(table, out)
    log.info("wrote %d rows x %d columns to %s (%s)", table.num_rows, table.num_columns, out, kind)
    return 0
