"""Registers the ExplainFix initializers of spatial filters (import strings keep discovery cheap)."""

from __future__ import annotations

from xai_plugins import hookimpl

PAPER = ("Gaudio, Faloutsos, Smailagic, Costa, Campilho, ExplainFix: Explainable Spatially Fixed Deep "
         "Networks, WIREs Data Mining and Knowledge Discovery 2023")
MODEL_TYPES = ("torch.nn.Conv1d", "torch.nn.Conv2d", "torch.nn.Conv3d")
MODULE = "xai_plugins.explainfix.initializers"
FIXER = "xai_plugins.explainfix.fixing:fix_spatial_filters"
"""The conformance suite fixes filters with the family's own fixer (metadata key ``fixer``)."""


GUIDED = "xai_plugins.explainfix.guided"
FITTED_SHAPES = [[8, 4, 3, 3], [6, 1, 3, 3]]

_PLAIN = (
    ("dct_basis", "dct_basis_init", "each spatial filter is one orthonormal DCT-II basis filter [DCT2]"),
    ("dct_steered", "dct_steered", "random steering of the 4 lowest-frequency DCT-II basis filters [GHaar4.s1]"),
    ("ghaar4_s2", "ghaar4_s2", "random steering of the DCT-II basis filters of frequencies 0 and 2 [GHaar4.s2]"),
    ("ghaar_r_ms", "ghaar_r_ms", "steering of a random subset of 2**U(0, log2 k) DCT-II basis filters [GHaarR.ms]"),
    ("ghaar2_ms", "ghaar2_ms", "steering of 2 random DCT-II basis filters per filter [GHaar2.ms]"),
    ("ghaar4_ms", "ghaar4_ms", "steering of 4 random DCT-II basis filters per filter [GHaar4.ms]"),
    ("psine_r_ms", "psine_r_ms", "polynomial steering of a random subset of DCT-II basis filters [PsineR.ms]"),
    ("dct2_fill0", "dct2_fill0", "per input one complete DCT-II basis on random outputs, zeros elsewhere [DCT2fill0]"),
    ("ghaar", "ghaar", "generalised Haar: steered separable cosines of random frequency, unscaled [GHaar]"),
    ("haar", "haar", "Haar-like steered cosines, frequency range growing with the filter index [haar]"),
    ("psine", "psine", "polynomial combinations of 3 to 66 separable random sine waves [Psine]"),
)
_FITTED = (
    ("guided_steered", "guided_steered", "factory: kernel density estimate per layer of a source [GuidedSteer]"),
    ("svd_steered", "svd_steered", "factory: a source model's SVD basis, steering statistics per layer [SVDsteering]"),
    ("dct2_steered", "dct2_steered", "factory: DCT-II coefficient statistics per layer of a source [DCT2steering]"),
)


@hookimpl
def xai_register_initializers(register) -> None:
    """Register the paper's initializers and the three factories fitted to a source model."""
    for name, function, summary in _PLAIN:
        register(name, f"{MODULE}:{function}", paper=PAPER, model_types=MODEL_TYPES, fixer=FIXER, summary=summary)
    for name, function, summary in _FITTED:
        register(name, f"{GUIDED}:{function}", paper=PAPER, model_types=MODEL_TYPES, fixer=FIXER, summary=summary,
                 factory=True, example_shapes=FITTED_SHAPES)


@hookimpl
def xai_register_commands(commands) -> None:
    """Add the ``explainfix`` subcommand."""
    from xai_plugins.explainfix.cli import register_commands

    register_commands(commands)
