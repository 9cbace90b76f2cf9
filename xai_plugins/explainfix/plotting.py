"""The paper's spectra figure for an ExplainSteer result (matplotlib is imported only when plotting)."""

from __future__ import annotations

import os

import torch

from xai_plugins.explainfix.explainsteer import SpectraResult

__all__ = ["plot_spectra"]


def _ragged(rows: list[torch.Tensor]) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.stack([torch.nn.functional.pad(r.float(), (0, width - len(r))) for r in rows])


def plot_spectra(result: SpectraResult, path: str | os.PathLike | None = None, *, log: bool = False):
    """Draw the spectra of every spatial layer and save them to ``path`` (format from its suffix).

    Left: the heat map of ``e_d`` (basis filters ordered from low to high frequency, rows, against spatial
    layers, columns) with its marginal sums, as in the paper; middle: ``e_0``, energy by frequency; right:
    energy by orientation (2-D kernels). Layers whose kernels have fewer basis filters are zero-padded.
    ``log`` shows ``log(1 + log(1 + e))`` as the paper's log-log option. Returns the matplotlib Figure.
    """
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not len(result):
        raise ValueError("the ExplainSteer result has no layers to plot")
    e_d = _ragged([layer.basis_by_frequency for layer in result]).T.numpy()
    e_0 = _ragged([layer.frequency for layer in result]).T.numpy()
    oriented = [layer for layer in result if layer.orientation is not None]

    def shown(e):
        return np.log1p(np.log1p(e)) if log else e

    fig = Figure(figsize=(15, 5), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(4, 12)
    main = fig.add_subplot(grid[1:, 0:4])
    right = fig.add_subplot(grid[1:, 4], sharey=main)
    top = fig.add_subplot(grid[0, 0:4], sharex=main)
    image = main.imshow(shown(e_d), aspect="auto", cmap="Greens", vmin=0, interpolation="nearest")
    main.set_xlabel("spatial layer index")
    main.set_ylabel("DCT-II basis filter (low to high frequency)" + (", log-log" if log else ""))
    right.barh(range(e_d.shape[0]), e_d.sum(1), color="tab:green")
    top.bar(range(e_d.shape[1]), e_d.sum(0), color="tab:green")
    for ax in (right, top):
        ax.axis("off")
    fig.colorbar(image, ax=right, fraction=0.5)
    freq = fig.add_subplot(grid[:, 6:9])
    image = freq.imshow(shown(e_0), aspect="auto", cmap="Blues", vmin=0, interpolation="nearest")
    freq.set_xlabel("spatial layer index")
    freq.set_ylabel("frequency index (e0)")
    fig.colorbar(image, ax=freq)
    ori = fig.add_subplot(grid[:, 9:12])
    if oriented:
        matrix = torch.stack([layer.orientation for layer in oriented]).T.numpy()
        image = ori.imshow(shown(matrix), aspect="auto", cmap="Purples", vmin=0, interpolation="nearest")
        edges = result.orientation_edges.tolist()
        ori.set_yticks(range(len(edges) - 1), [f"{a:.0f}-{b:.0f} deg" for a, b in zip(edges, edges[1:])])
        ori.set_xlabel("2-D spatial layer index")
        fig.colorbar(image, ax=ori)
    else:
        ori.text(0.5, 0.5, "no 2-D kernels", ha="center", va="center")
        ori.axis("off")
    ori.set_title("energy by orientation")
    kind = "with gradient saliency" if result.saliency else "without saliency"
    fig.suptitle(f"ExplainSteer spectra of {len(result)} spatial layers ({kind})")
    if path is not None:
        fig.savefig(os.fspath(path), dpi=100)
    return fig
