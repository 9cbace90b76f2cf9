"""Registers the ExplainFix initializers of spatial filters (import strings keep discovery cheap)."""

from __future__ import annotations

from xai_plugins import hookimpl

PAPER = ("Gaudio, Faloutsos, Smailagic, Costa, Campilho, ExplainFix: Explainable Spatially Fixed Deep "
         "Networks, WIREs Data Mining and Knowledge Discovery 2023")
MODEL_TYPES = ("torch.nn.Conv1d", "torch.nn.Conv2d", "torch.nn.Conv3d")
MODULE = "xai_plugins.explainfix.initializers"
FIXER = "xai_plugins.explainfix.fixing:fix_spatial_filters"
"""The conformance suite fixes filters with the family's own fixer (metadata key ``fixer``)."""


@hookimpl
def xai_register_initializers(register) -> None:
    """Register dct_basis, dct_steered, ghaar, psine and the guided_steered factory."""
    register("dct_basis", f"{MODULE}:dct_basis_init", paper=PAPER, model_types=MODEL_TYPES, fixer=FIXER,
             summary="each spatial filter is one orthonormal DCT-II basis filter")
    register("dct_steered", f"{MODULE}:dct_steered", paper=PAPER, model_types=MODEL_TYPES, fixer=FIXER,
             summary="random steering of the low-frequency DCT-II basis filters")
    register("ghaar", f"{MODULE}:ghaar", paper=PAPER, model_types=MODEL_TYPES, fixer=FIXER,
             summary="generalised Haar filters: steered separable cosines of random frequency")
    register("psine", f"{MODULE}:psine", paper=PAPER, model_types=MODEL_TYPES, fixer=FIXER,
             summary="polynomial combinations of separable random sine waves")
    register("guided_steered", f"{MODULE}:guided_steered", paper=PAPER, model_types=MODEL_TYPES, fixer=FIXER,
             summary="factory: guided_steered(source_model) fits DCT steering to its filters, returns init",
             factory=True, example_shapes=[[8, 4, 3, 3], [6, 1, 3, 3]])


@hookimpl
def xai_register_commands(commands) -> None:
    """Add the ``explainfix`` subcommand."""
    from xai_plugins.explainfix.cli import register_commands

    register_commands(commands)
