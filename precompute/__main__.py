"""``python -m precompute`` / ``torchrun --nproc_per_node N -m precompute``: the same flags as ``pss precompute``."""

import argparse
import logging
import os
import sys

from backend.errors import PSSError

from . import cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m precompute", description=cli.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_arguments(parser)
    args = parser.parse_args(argv)
    rank = os.environ.get("RANK")
    logging.basicConfig(level=logging.INFO,
                        format=f"%(asctime)s %(levelname)s {'' if rank is None else f'[rank {rank}] '}%(name)s: %(message)s")
    try:
        return cli.run(args)
    except PSSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
