"""The built-in canonizer plugin: registers every canonizer of the one table
(:mod:`xai_plugins.canonizers.families`) and the reference Relation Network model.

Registering imports the canonizer modules (torch, not torchvision: a torchvision class is looked up only when
a model exists); the canonizers are registered as import strings.
"""

from __future__ import annotations

from xai_plugins.hookspecs import Commands, Register, hookimpl

PAPER = ("Pahde, Yolcu, Binder, Samek and Lapuschkin, Optimizing Explanations by Network Canonization and "
         "Hyperparameter Search, CVPRW 2023")
RELATION_NETWORK_PAPER = "Santoro et al., A simple neural network module for relational reasoning, NeurIPS 2017"

_RN = "xai_plugins.canonizers.relation_network"


@hookimpl
def xai_register_canonizers(register: Register) -> None:
    from xai_plugins.canonizers.families import BUILTIN_CANONIZERS

    for entry in BUILTIN_CANONIZERS:
        metadata = {"architecture": entry.name, **entry.extra} if entry.model_type else dict(entry.extra)
        register(entry.name, entry.target, summary=entry.summary, paper=PAPER,
                 model_types=(entry.model_type,) if entry.model_type else (), family="canonizers", **metadata)


@hookimpl
def xai_register_models(register: Register) -> None:
    register("relation_network", f"{_RN}:relation_network",
             summary="small CLEVR-style Relation Network (conv encoder with BN, pairwise g-MLP, sum, f-MLP)",
             paper=RELATION_NETWORK_PAPER, model_types=(f"{_RN}.RelationNetwork",), family="canonizers")


@hookimpl
def xai_register_commands(commands: Commands) -> None:
    """Add the ``canonize`` subcommand (the graph canonizer's table for a torchvision or timm model)."""
    from xai_plugins.canonizers.cli import register_commands

    register_commands(commands)
