"""The ``xai-plugins canonize`` command: print what the graph canonizer does to a torchvision or timm model."""

from __future__ import annotations

import argparse

from xai_plugins.cli_models import MODEL_FORMS, build_model
from xai_plugins.cli_output import table, wrap
from xai_plugins.hookspecs import Commands

__all__ = ["build_model", "register_commands", "run"]


def register_commands(subparsers: Commands) -> None:
    """Add the ``canonize`` subcommand (called by the canonizer plugin's ``xai_register_commands`` hook)."""
    p = subparsers.add_parser(
        "canonize", help="show what the graph canonizer merges, makes explicit or leaves in a model",
        description="Build a torchvision or timm model with random weights (nothing is downloaded), plan its "
                    "canonization from the torch.fx graph and print the table of merged BatchNorms, explicit "
                    "modules and what is left for LRP as it is; exits with 1 if the model cannot be canonized.")
    p.add_argument("--model", default="torchvision:resnet18",
                   help=f"{MODEL_FORMS} (default: torchvision:resnet18)")
    p.add_argument("--input-size", type=int, default=None,
                   help="spatial size of the probe input (default: inferred, the first of 64, 128, 224, 299 "
                        "the model accepts)")
    p.add_argument("--num-classes", type=int, default=10, help="classes of the model head (default: 10)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the model, print its canonization table; 1 if something in it cannot be canonized."""
    from xai_plugins.canonizers.graph import explain_canonization

    model = build_model(args.model, args.num_classes)
    shape = None
    if args.input_size is not None:
        from torch import nn

        first = next(m for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)))
        shape = (1, first.in_channels, args.input_size, args.input_size)
    plan = explain_canonization(model, shape)
    counts = plan.counts()
    print(wrap(f"{args.model}: {type(model).__name__}"))
    print(table([(row.action, row.node, row.module, row.detail) for row in plan],
                ["action", "node", "module", "detail"]))
    print(wrap(f"({', '.join(f'{n} {action}' for action, n in counts.items()) or 'nothing to do'})"))
    return 1 if counts.get("unsupported") else 0
