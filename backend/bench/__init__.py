"""Benchmarks behind `pss bench ...`: each prints ratios measured side by side in one run."""

import argparse
from pathlib import Path


def existing_dir(value: str) -> Path:
    """argparse type of ``--dir``: a one-line error for a missing folder instead of a traceback mid-run."""
    path = Path(value).expanduser()
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{value!r} is not an existing directory")
    return path
