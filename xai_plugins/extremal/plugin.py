"""Registers the extremal perturbation attributors with xai-plugins (entry point ``extremal``)."""

from __future__ import annotations

from xai_plugins.hookspecs import Register, hookimpl

PAPER = ("Fong, Patrick and Vedaldi, Understanding Deep Networks via Extremal Perturbations and Smooth Masks, "
         "ICCV 2019")


@hookimpl
def xai_register_attributors(register: Register) -> None:
    """Input-mask and channel-mask extremal perturbations."""
    register("extremal_perturbation", "xai_plugins.extremal.attributors:extremal_attribution",
             summary="Smooth input masks of fixed area that maximally preserve (or delete) the target score",
             paper=PAPER, model_types=(), attribution_kind="perturbation", takes_additional_forward_args=True,
             variants=["preserve", "delete", "dual"], default_areas=[0.1],
             example_kwargs={"max_iter": 6, "step": 4, "sigma": 8}, tolerance=1e-3)
    register("channel_extremal_perturbation", "xai_plugins.extremal.attributors:channel_extremal_attribution",
             summary="Per-instance masks over the channels of a layer, shown where the kept channels fire",
             paper=PAPER, model_types=(), attribution_kind="perturbation", takes_additional_forward_args=True,
             layer="last nn.Conv2d unless layer= is given",
             example_kwargs={"max_iter": 6}, tolerance=1e-3,
             # it explains a model's internals (one layer's channels), which equivalent models implement differently
             implementation_invariant=False)
