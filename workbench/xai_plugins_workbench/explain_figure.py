"""The picture ``xai-plugins explain`` saves: the input, the attribution with a colour bar, and the
attribution laid over the image.

Signed attributions (relevance, gradients) use a diverging colour map centred on zero with a symmetric
99.5th-percentile scale, so red is evidence for the class and blue against it; non-negative maps (extremal
masks, saliency magnitudes) use a sequential colour map from zero, since there is no sign to show.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xai_plugins_workbench.explain import Explanation

DIVERGING = "bwr"
SEQUENTIAL = "inferno"
OVERLAY_ALPHA = 0.6


def heat_map(explanation: Explanation) -> np.ndarray:
    """The attribution summed over channels, ``(H, W)``."""
    return explanation.attribution[0].sum(0).detach().cpu().numpy()


def colour_scale(heat: np.ndarray) -> tuple[str, float, float]:
    """``(colour map, vmin, vmax)``: sequential from 0 for a map without negative values, else diverging and
    symmetric around 0 at the 99.5th percentile of the magnitudes (a few extreme pixels do not wash it out)."""
    if float(heat.min()) >= 0:
        return SEQUENTIAL, 0.0, max(float(np.percentile(heat, 99.5)), float(heat.max()) * 1e-3, 1e-12)
    lim = max(float(np.percentile(np.abs(heat), 99.5)), 1e-12)
    return DIVERGING, -lim, lim


def save_figure(explanation: Explanation, path: Path, title: str) -> Path:
    """Save input, attribution (with a colour bar) and attribution over the grey image to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    image = explanation.image[0].permute(1, 2, 0).detach().cpu().numpy()
    heat = heat_map(explanation)
    cmap, vmin, vmax = colour_scale(heat)
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4))
    axes[0].imshow(image)
    axes[0].set_title(f"input (predicted class {explanation.predicted})", fontsize=9)
    shown = axes[1].imshow(heat, cmap=cmap, vmin=vmin, vmax=vmax)
    axes[1].set_title(f"attribution of class {explanation.target}", fontsize=9)
    fig.colorbar(shown, ax=axes[1], fraction=0.046, pad=0.04)
    axes[2].imshow(image.mean(-1), cmap="gray", vmin=0, vmax=1)
    axes[2].imshow(heat, cmap=cmap, vmin=vmin, vmax=vmax, alpha=OVERLAY_ALPHA)
    axes[2].set_title("attribution over the image", fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
