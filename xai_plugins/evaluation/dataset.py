"""A ground-truth dataset that needs no download: scikit-learn's digits placed on a larger cluttered canvas.

Each item is an RGB canvas with one coloured digit at a random position and scale, distractor clutter
(fragments of other digits and line segments, in other colours) and Gaussian noise. The class is the digit and
the mask marks where it is, so an explanation can be scored against the truth (relevance mass, rank accuracy,
pointing game). Item ``i`` depends only on ``(seed, split, i)``: the dataset is deterministic and any length.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch.utils.data import Dataset

NUM_CLASSES = 10
_TEST_FRACTION = 0.25
_SPLITS = ("train", "test")


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1797 8x8 digits shipped with scikit-learn, scaled to [0, 1], and their labels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError("DigitsOnCanvas needs scikit-learn; install it with: pip install 'xai-plugins[eval]'") \
            from exc
    data = load_digits()
    return (data.images / 16.0).astype(np.float32), data.target.astype(np.int64)


def _split_indices(split: str) -> np.ndarray:
    """Digit indices of a split: a fixed, class-stratified 75/25 partition, so test digits are unseen."""
    images, labels = _digits()
    rng = np.random.default_rng(12345)
    chosen = []
    for c in range(NUM_CLASSES):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_test = int(round(len(idx) * _TEST_FRACTION))
        chosen.append(idx[:n_test] if split == "test" else idx[n_test:])
    return np.sort(np.concatenate(chosen))


def _colour(rng: np.random.Generator) -> np.ndarray:
    """A bright, saturated random colour (RGB in [0, 1]), so colour carries no class information."""
    hue = rng.uniform(0.0, 6.0)
    x = 1.0 - abs(hue % 2.0 - 1.0)
    sector = int(hue) % 6
    rgb = [(1, x, 0), (x, 1, 0), (0, 1, x), (0, x, 1), (x, 0, 1), (1, 0, x)][sector]
    return 0.35 + 0.65 * np.asarray(rgb, dtype=np.float32)


@dataclass(frozen=True)
class CanvasConfig:
    """How a canvas is drawn: size in pixels, digit scale range (integer upsampling of the 8x8 digit),
    number of distractors, and noise standard deviation."""

    size: int = 32
    scales: tuple[int, ...] = (2, 3)
    distractors: int = 3
    noise: float = 0.05


class DigitsOnCanvas(Dataset):
    """Digits on a cluttered canvas with ground-truth masks; items are ``(image, label, mask)``.

    ``image`` is ``(3, size, size)`` float32 in [0, 1], ``label`` an int, ``mask`` ``(1, size, size)`` float32
    with 1 on the digit's box (``mask="box"``) or on its strokes (``mask="stroke"``). Train and test splits use
    disjoint sets of the scikit-learn digits.
    """

    def __init__(self, length: int = 1000, *, split: str = "train", seed: int = 0, size: int = 32,
                 scales: tuple[int, ...] = (2, 3), distractors: int = 3, noise: float = 0.05,
                 mask: str = "box") -> None:
        if split not in _SPLITS:
            raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
        if mask not in ("box", "stroke"):
            raise ValueError(f"mask must be 'box' or 'stroke', got {mask!r}")
        if length < 0:
            raise ValueError(f"length must be >= 0, got {length}")
        if not scales or min(scales) < 1 or 8 * max(scales) > size:
            raise ValueError(f"scales {scales} must be >= 1 and fit the canvas: 8 * max(scales) <= size={size}")
        self.length = length
        self.split = split
        self.seed = seed
        self.mask_kind = mask
        self.config = CanvasConfig(size=size, scales=tuple(scales), distractors=distractors, noise=noise)
        self._indices = _split_indices(split)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, torch.Tensor]:
        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} out of range for a DigitsOnCanvas of length {self.length}")
        index %= self.length
        image, label, mask = self.render(index)
        return torch.from_numpy(image), label, torch.from_numpy(mask)

    def render(self, index: int) -> tuple[np.ndarray, int, np.ndarray]:
        """Draw item ``index`` as numpy arrays (image ``(3,S,S)``, label, mask ``(1,S,S)``)."""
        cfg = self.config
        images, labels = _digits()
        rng = np.random.default_rng([self.seed, _SPLITS.index(self.split), index])
        s = cfg.size
        canvas = self._background(rng, s)

        digit_id = int(self._indices[rng.integers(len(self._indices))])
        scale = int(rng.choice(cfg.scales))
        glyph = np.kron(images[digit_id], np.ones((scale, scale), dtype=np.float32))
        side = glyph.shape[0]
        top, left = (int(v) for v in rng.integers(0, s - side + 1, size=2))

        occupied = np.zeros((s, s), dtype=bool)
        occupied[top:top + side, left:left + side] = True
        for _ in range(cfg.distractors):
            self._draw_distractor(canvas, occupied, rng)

        colour = _colour(rng)[:, None, None]
        region = canvas[:, top:top + side, left:left + side]
        canvas[:, top:top + side, left:left + side] = region * (1 - glyph) + colour * glyph
        if cfg.noise > 0:
            canvas += rng.normal(0.0, cfg.noise, size=canvas.shape).astype(np.float32)
        np.clip(canvas, 0.0, 1.0, out=canvas)

        mask = np.zeros((1, s, s), dtype=np.float32)
        if self.mask_kind == "box":
            mask[0, top:top + side, left:left + side] = 1.0
        else:
            mask[0, top:top + side, left:left + side] = glyph > 0.25
        return canvas, int(labels[digit_id]), mask

    def _background(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """The empty canvas ``(3, size, size)``: a dark uniform colour (a subclass draws textures here)."""
        canvas = np.zeros((3, size, size), dtype=np.float32)
        canvas += rng.uniform(0.0, 0.15, size=(3, 1, 1)).astype(np.float32)
        return canvas

    def _draw_distractor(self, canvas: np.ndarray, occupied: np.ndarray, rng: np.random.Generator) -> None:
        """Draw a digit fragment or a line segment where nothing is yet (up to 20 placement tries)."""
        images, _ = _digits()
        s = canvas.shape[-1]
        colour = _colour(rng)[:, None, None] * rng.uniform(0.6, 1.0)
        if rng.random() < 0.5:
            frag = images[int(self._indices[rng.integers(len(self._indices))])]
            r0, c0 = (int(v) for v in rng.integers(0, 5, size=2))
            frag = frag[r0:r0 + 4, c0:c0 + 4]
            scale = int(rng.choice(self.config.scales))
            patch = np.kron(frag, np.ones((scale, scale), dtype=np.float32))
        else:
            length = int(rng.integers(6, 14))
            patch = np.zeros((length, length), dtype=np.float32)
            if rng.random() < 0.5:
                patch[int(rng.integers(length)), :] = 1.0
            else:
                np.fill_diagonal(patch, 1.0)
                if rng.random() < 0.5:
                    patch = patch[::-1].copy()
        h, w = patch.shape
        for _ in range(20):
            top, left = (int(v) for v in rng.integers(0, s - h + 1, size=2))
            if not occupied[max(top - 1, 0):top + h + 1, max(left - 1, 0):left + w + 1].any():
                region = canvas[:, top:top + h, left:left + w]
                canvas[:, top:top + h, left:left + w] = region * (1 - patch) + colour * patch
                occupied[top:top + h, left:left + w] = True
                return

    def tensors(self, indices: range | list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Stacked ``(images, labels, masks)`` of the given items (all by default)."""
        indices = range(self.length) if indices is None else indices
        items = [self.render(i) for i in indices]
        if not items:
            s = self.config.size
            return torch.zeros(0, 3, s, s), torch.zeros(0, dtype=torch.long), torch.zeros(0, 1, s, s)
        return (torch.from_numpy(np.stack([it[0] for it in items])),
                torch.tensor([it[1] for it in items], dtype=torch.long),
                torch.from_numpy(np.stack([it[2] for it in items])))
