"""The ``xai-plugins explainfix`` command: fix a torchvision or timm model's spatial filters and plot their spectra."""

from __future__ import annotations

import argparse

from xai_plugins.cli_models import MODEL_FORMS, build_model
from xai_plugins.cli_options import add_output_file
from xai_plugins.hookspecs import Commands

__all__ = ["register_commands", "run"]


def register_commands(subparsers: Commands) -> None:
    """Add the ``explainfix`` subcommand (through the explainfix plugin's ``xai_register_commands``)."""
    p = subparsers.add_parser(
        "explainfix", help="fix a torchvision or timm model's spatial filters and plot their ExplainSteer spectra",
        description="Initialise and freeze the spatial convolutions of a torchvision or timm model (random "
                    "weights, nothing is downloaded), print the trainable-parameter report and write the "
                    "ExplainSteer spectra plot.")
    p.add_argument("--model", default="torchvision:resnet18", help=f"{MODEL_FORMS} (default: torchvision:resnet18)")
    p.add_argument("--method", default="dct_steered",
                   help="registered initializer (see 'xai-plugins list --kind initializer'; default: dct_steered)")
    p.add_argument("--seed", type=int, default=0, help="seed of the filters (default: 0)")
    p.add_argument("--num-classes", type=int, default=1000, help="classes of the model head (default: 1000)")
    add_output_file(p, "spectra.png", "plot file (default: spectra.png)")
    p.add_argument("--log", action="store_true", help="log-log scale of the spectra, as in the paper")
    p.set_defaults(func=run)


def _is_factory(method: str) -> bool:
    """True for a registered initializer that must first be fitted to a source model."""
    import xai_plugins
    from xai_plugins.errors import ComponentNotFoundError

    try:
        return bool(xai_plugins.describe("initializer", method).extra.get("factory"))
    except ComponentNotFoundError:
        return False


def run(args: argparse.Namespace) -> int:
    """Build the model, fix its spatial filters, print the report, write the spectra plot."""
    from xai_plugins.cli import UsageError
    from xai_plugins.explainfix.explainsteer import explain_steer
    from xai_plugins.explainfix.fixing import UnknownMethodError, fix_spatial_filters
    from xai_plugins.explainfix.plotting import plot_spectra

    if _is_factory(args.method):
        raise UsageError(f"{args.method} is fitted to a trained model's filters; use it from Python: "
                         f"fix_spatial_filters(model, {args.method!r}, source=trained_model)")
    model = build_model(args.model, args.num_classes)
    try:
        report = fix_spatial_filters(model, args.method, seed=args.seed)
    except UnknownMethodError as exc:
        raise UsageError(str(exc)) from None
    print(f"{args.model}: {report}")
    result = explain_steer(model)
    plot_spectra(result, args.output, log=args.log)
    print(f"wrote the spectra of {len(result)} spatial layers to {args.output}")
    return 0
