"""A harder ground truth: the digits of :class:`DigitsOnCanvas` on structured, bright backgrounds.

On a black canvas every map that multiplies by the input (input x gradient, LRP's first layer, the input itself)
is zero off the object for free, so localisation metrics reward the multiplication rather than the explanation.
Here the background carries as much intensity and as many edges as the objects: oriented gratings in the
objects' colour statistics, smooth colour blobs, and more distractor objects (digit fragments and strokes drawn
like the target). A control that just returns the input, its edges or noise then scores about the share of the
canvas the target covers; the benchmark's validity test checks that those controls rank at the bottom.
"""

from __future__ import annotations

import numpy as np

from xai_plugins.evaluation.dataset import DigitsOnCanvas, _colour

__all__ = ["TexturedCanvas"]


def _grating(rng: np.random.Generator, size: int) -> np.ndarray:
    """A sinusoidal grating in [0, 1] of random orientation, phase and period (3 to 8 pixels)."""
    theta = rng.uniform(0.0, np.pi)
    period = rng.uniform(3.0, 8.0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    phase = rng.uniform(0.0, 2 * np.pi)
    return 0.5 + 0.5 * np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period + phase)


def _blobs(rng: np.random.Generator, size: int, cells: int = 4) -> np.ndarray:
    """Smooth random blobs in [0, 1]: a ``cells x cells`` uniform grid, bilinearly upsampled to the canvas."""
    grid = rng.uniform(0.0, 1.0, size=(cells + 1, cells + 1)).astype(np.float32)
    coords = np.linspace(0.0, cells, size, dtype=np.float32)
    i = np.minimum(coords.astype(int), cells - 1)
    f = coords - i
    rows = grid[i] * (1 - f)[:, None] + grid[i + 1] * f[:, None]
    return rows[:, i] * (1 - f)[None, :] + rows[:, i + 1] * f[None, :]


class TexturedCanvas(DigitsOnCanvas):
    """:class:`DigitsOnCanvas` with textured backgrounds; items are ``(image, label, mask)`` as there.

    Defaults: a 48-pixel canvas (the target's box covers 11 % or 25 % of it), six distractors, and a background
    of two gratings and colour blobs whose mean intensity is about that of the objects. Train and test splits use
    disjoint digits, as in :class:`DigitsOnCanvas`; item ``i`` depends only on ``(seed, split, i)``.
    """

    def __init__(self, length: int = 1000, *, split: str = "train", seed: int = 0, size: int = 48,
                 scales: tuple[int, ...] = (2, 3), distractors: int = 6, noise: float = 0.05,
                 mask: str = "box") -> None:
        super().__init__(length, split=split, seed=seed, size=size, scales=scales, distractors=distractors,
                         noise=noise, mask=mask)

    def _background(self, rng: np.random.Generator, size: int) -> np.ndarray:
        canvas = rng.uniform(0.05, 0.3, size=(3, 1, 1)).astype(np.float32) * np.ones((3, size, size), np.float32)
        for _ in range(2):
            colour = _colour(rng)[:, None, None] * rng.uniform(0.25, 0.5)
            canvas += colour * _grating(rng, size)[None]
        canvas += (_colour(rng)[:, None, None] * rng.uniform(0.1, 0.3)) * _blobs(rng, size)[None]
        return np.clip(canvas, 0.0, 1.0)
