"""Resolution-aware defaults of the input masks: the paper's constants at 224 pixels, proportional elsewhere.

The paper's grid step (7 px), bump radius sigma (21 px) and strongest blur (20 px) are tuned for 224 x 224
images. At another size they describe a different mask: at 32 x 32 one bump of radius 21 covers most of the
image. Here each is scaled by ``min(H, W) / 224``, with floors that keep the masks smooth: a grid step of at least
1 px, a bump radius of at least 3 px (so a mask edge is never sharper than a few pixels) and at least 1.5 grid
steps (so neighbouring bumps overlap), and a blur of at least 2 px.
"""

from __future__ import annotations

from typing import NamedTuple

PAPER_SIZE = 224
PAPER_STEP = 7
PAPER_SIGMA = 21.0
PAPER_MAX_BLUR = 20.0
MIN_STEP = 1
MIN_SIGMA = 3.0
MIN_SIGMA_PER_STEP = 1.5
MIN_MAX_BLUR = 2.0


class MaskScales(NamedTuple):
    """Grid step (px), bump radius sigma (px) and strongest blur (px) of the input masks."""

    step: int
    sigma: float
    max_blur: float


def mask_scales(height: int, width: int, step: int | None = None, sigma: float | None = None,
                max_blur: float | None = None) -> MaskScales:
    """The scales for an ``height`` x ``width`` image; arguments that are not ``None`` are kept as given."""
    ratio = min(height, width) / PAPER_SIZE
    if step is None:
        step = max(MIN_STEP, round(PAPER_STEP * ratio))
    if sigma is None:
        sigma = max(PAPER_SIGMA * ratio, MIN_SIGMA, MIN_SIGMA_PER_STEP * step)
    if max_blur is None:
        max_blur = max(PAPER_MAX_BLUR * ratio, MIN_MAX_BLUR)
    return MaskScales(int(step), float(sigma), float(max_blur))
