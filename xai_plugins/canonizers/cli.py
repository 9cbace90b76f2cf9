"""The ``xai-plugins canonize`` command: print what the graph canonizer does to a torchvision or timm model."""

from __future__ import annotations

import argparse

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
                   help="torchvision:NAME (a torchvision.models builder) or timm:NAME (default: "
                        "torchvision:resnet18)")
    p.add_argument("--input-size", type=int, default=None,
                   help="spatial size of the probe input (default: inferred, the first of 64, 128, 224, 299 "
                        "the model accepts)")
    p.add_argument("--num-classes", type=int, default=10, help="classes of the model head (default: 10)")
    p.set_defaults(func=run)


def build_model(spec: str, num_classes: int = 10):
    """The model named ``torchvision:NAME`` or ``timm:NAME``, random weights, eval mode."""
    from xai_plugins.cli import UsageError

    source, _, name = spec.partition(":")
    if source == "torchvision":
        import torchvision

        names = torchvision.models.list_models(module=torchvision.models)
        if name not in names:
            raise UsageError(f"unknown torchvision model {name!r}; classification models: {', '.join(names)}")
        return torchvision.models.get_model(name, weights=None, num_classes=num_classes).eval()
    if source == "timm":
        try:
            import timm
        except ImportError:
            raise UsageError("timm is not installed; pip install timm") from None
        if name not in timm.list_models():
            raise UsageError(f"unknown timm model {name!r}; see timm.list_models()")
        return timm.create_model(name, pretrained=False, num_classes=num_classes).eval()
    raise UsageError(f"--model must be torchvision:NAME or timm:NAME, got {spec!r}")


def run(args: argparse.Namespace) -> int:
    """Build the model, print its canonization table; 1 if something in it cannot be canonized."""
    from xai_plugins.canonizers.graph import explain_canonization

    model = build_model(args.model, args.num_classes)
    shape = None
    if args.input_size is not None:
        first = next(m for m in model.modules() if hasattr(m, "in_channels"))
        shape = (1, first.in_channels, args.input_size, args.input_size)
    table = explain_canonization(model, shape)
    print(f"{args.model}: {type(model).__name__}")
    print(table)
    return 1 if table.counts().get("unsupported") else 0
