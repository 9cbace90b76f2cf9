"""ExplainFix (Gaudio et al., WIREs Data Mining and Knowledge Discovery 2023) for PyTorch.

Fixed spatial filters, their spectra (ExplainSteer) and channel pruning:

- :func:`dct_basis` — the orthonormal DCT-II basis of any kernel shape.
- :func:`fix_spatial_filters` — initialise spatial convolutions with a registered method and freeze them.
- :func:`explain_steer` / :func:`plot_spectra` — ExplainSteer: energy of each layer's spatial filters by DCT
  basis filter, by frequency and by orientation, optionally weighted by gradient saliency.
- :func:`prune_spatial_filters` — zero the least salient spatial filters and remove emptied channels with
  torch.fx graph surgery.

Names load lazily so that plugin discovery stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xai_plugins._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "dct_basis": "xai_plugins.explainfix.basis",
    "frequency_order": "xai_plugins.explainfix.basis",
    "spatial_convs": "xai_plugins.explainfix.spatial",
    "NoSpatialConvError": "xai_plugins.explainfix.spatial",
    "dct_basis_init": "xai_plugins.explainfix.initializers",
    "dct_steered": "xai_plugins.explainfix.initializers",
    "ghaar": "xai_plugins.explainfix.initializers",
    "psine": "xai_plugins.explainfix.initializers",
    "ghaar4_s2": "xai_plugins.explainfix.initializers",
    "ghaar_r_ms": "xai_plugins.explainfix.initializers",
    "ghaar2_ms": "xai_plugins.explainfix.initializers",
    "ghaar4_ms": "xai_plugins.explainfix.initializers",
    "psine_r_ms": "xai_plugins.explainfix.initializers",
    "dct2_fill0": "xai_plugins.explainfix.initializers",
    "haar": "xai_plugins.explainfix.initializers",
    "guided_steered": "xai_plugins.explainfix.guided",
    "svd_steered": "xai_plugins.explainfix.guided",
    "dct2_steered": "xai_plugins.explainfix.guided",
    "GuidedSteering": "xai_plugins.explainfix.guided",
    "SVDSteering": "xai_plugins.explainfix.guided",
    "DCT2Steering": "xai_plugins.explainfix.guided",
    "refill_zeroed_filters": "xai_plugins.explainfix.refill",
    "FixReport": "xai_plugins.explainfix.fixing",
    "UnknownMethodError": "xai_plugins.explainfix.fixing",
    "fix_spatial_filters": "xai_plugins.explainfix.fixing",
    "SpectraResult": "xai_plugins.explainfix.explainsteer",
    "explain_steer": "xai_plugins.explainfix.explainsteer",
    "spatial_filter_saliency": "xai_plugins.explainfix.saliency",
    "plot_spectra": "xai_plugins.explainfix.plotting",
    "PruneResult": "xai_plugins.explainfix.pruning",
    "PruneError": "xai_plugins.explainfix.pruning",
    "prune_spatial_filters": "xai_plugins.explainfix.pruning",
}

if TYPE_CHECKING:  # the lazy exports, visible to type checkers and editors
    from xai_plugins.explainfix.basis import dct_basis, frequency_order  # noqa: F401
    from xai_plugins.explainfix.explainsteer import SpectraResult, explain_steer  # noqa: F401
    from xai_plugins.explainfix.fixing import FixReport, UnknownMethodError, fix_spatial_filters  # noqa: F401
    from xai_plugins.explainfix.guided import (  # noqa: F401
        DCT2Steering,
        GuidedSteering,
        SVDSteering,
        dct2_steered,
        guided_steered,
        svd_steered,
    )
    from xai_plugins.explainfix.initializers import (  # noqa: F401
        dct2_fill0,
        dct_basis_init,
        dct_steered,
        ghaar,
        ghaar2_ms,
        ghaar4_ms,
        ghaar4_s2,
        ghaar_r_ms,
        haar,
        psine,
        psine_r_ms,
    )
    from xai_plugins.explainfix.plotting import plot_spectra  # noqa: F401
    from xai_plugins.explainfix.pruning import PruneError, PruneResult, prune_spatial_filters  # noqa: F401
    from xai_plugins.explainfix.refill import refill_zeroed_filters  # noqa: F401
    from xai_plugins.explainfix.saliency import spatial_filter_saliency  # noqa: F401
    from xai_plugins.explainfix.spatial import NoSpatialConvError, spatial_convs  # noqa: F401

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
