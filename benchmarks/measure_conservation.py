"""The conservation table of docs/canonizers.md: relevance sum / target logit of Zennit's
``EpsilonPlusFlat(zero_params='bias')`` with the adapter's canonizers, on the models and BatchNorm draws of
``tests/canonizers/test_zennit.py`` (``calibrate_batchnorm``), for several seeds of the draw.

Run: ``python benchmarks/measure_conservation.py [--seeds 4]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.canonizers.test_zennit import CONSERVATION, conservation  # noqa: E402
from tests.support.batchnorm import calibrate_batchnorm  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Print one line per model: its input size, the ratio per seed and the bound the test asserts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4, help="seeds of the BatchNorm draw (default: 4)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"{'model':20} {'input':>5}  {'relevance sum / logit per seed':40} bound")
    for name in sorted(CONSERVATION):
        builder, tolerance, size, scale = CONSERVATION[name]
        ratios = []
        for seed in range(args.seeds):
            torch.manual_seed(0)
            ratios.append(conservation(calibrate_batchnorm(builder(), size=size, seed=seed, scale=scale), size))
        print(f"{name:20} {size:5}  {' '.join(f'{r:.6f}' for r in ratios):40} 1 ± {tolerance}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
