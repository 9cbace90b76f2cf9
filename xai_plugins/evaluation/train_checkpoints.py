"""Reproduce the shipped checkpoints: ``python -m xai_plugins.evaluation.train_checkpoints [NAME ...]``.

Trains each named recipe (all by default) from its seed and writes ``<name>.safetensors`` and ``<name>.json``
into ``xai_plugins/evaluation/checkpoints/`` (or ``--output-dir DIR``). A recipe whose family is not installed is
reported and skipped.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from xai_plugins.cli_options import add_no_progress, add_output_dir
from xai_plugins.evaluation.training import CHECKPOINT_DIR, RECIPES, save_checkpoint, train


def main(argv: list[str] | None = None) -> int:
    """Train and save the requested checkpoints; exit code 1 if any recipe failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"recipes to train (default: all of {', '.join(RECIPES)})")
    add_output_dir(parser, CHECKPOINT_DIR, "directory for the checkpoints (default: the shipped ones)", type=Path)
    add_no_progress(parser)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: these small models train fastest on one thread, "
                             "and far faster than on two when the CPU is shared)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    failed = []
    for name in args.names or list(RECIPES):
        start = time.perf_counter()
        try:
            model, record = train(name, progress=not args.no_progress)
        except ImportError as exc:
            print(f"{name}: skipped, its family is not available ({exc})", file=sys.stderr)
            failed.append(name)
            continue
        record["train_seconds"] = round(time.perf_counter() - start, 1)
        path = save_checkpoint(model, name, record, args.output_dir)
        print(f"{name}: test accuracy {record['test_accuracy']:.3f} in {record['train_seconds']} s -> {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
