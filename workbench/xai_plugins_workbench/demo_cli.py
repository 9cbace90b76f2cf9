"""The workbench's ``demo``, ``evaluate``, ``explain`` and ``search`` subcommands of ``xai-plugins``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from xai_plugins.cli_options import add_no_progress, add_output_dir, add_output_file
from xai_plugins.hookspecs import Commands
from xai_plugins_workbench.cli_help import DefaultsFormatter, LazyChoices

if TYPE_CHECKING:
    from torch import nn


def _threads(args: argparse.Namespace) -> None:
    """Use ``--threads`` torch CPU threads (default 1: the benchmark models are small, and one thread is
    as fast as two on an idle machine and many times faster when the CPU is shared)."""
    import torch

    torch.set_num_threads(max(1, args.threads))


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the demo and print where the figure and report are."""
    _threads(args)
    from xai_plugins_workbench.demo import DEFAULT_DATASET, run_demo

    result = run_demo(Path(args.output_dir), images=args.images, metric_images=args.metric_images, seed=args.seed,
                      progress=not args.no_progress, dataset=args.dataset or DEFAULT_DATASET)
    print(f"figure:  {result.figure.resolve()}")
    print(f"report:  {result.report.resolve()}")
    print(f"metrics: {result.metrics.resolve()}")
    for item in result.missing:
        print(f"not shown: {item}")
    print(f"done in {result.seconds:.0f} s")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Methods x models x metrics on the ground-truth dataset; writes markdown, JSON and a plot."""
    _threads(args)
    if args.dataset == "sort-of-clevr":
        return _evaluate_relational(args)
    from xai_plugins_workbench.evaluate import DEFAULT_METRICS, EvalSettings, evaluate, write_report

    settings = EvalSettings(images=args.images, seed=args.seed, batch_size=args.batch_size, dataset=args.dataset,
                            metrics=args.metrics or DEFAULT_METRICS, metrics_backend=args.metrics_backend,
                            checkpoint_dir=args.checkpoint_dir)
    if args.models:
        settings.models = args.models
    if args.methods:
        settings.methods = args.methods
    rows = evaluate(settings, progress=not args.no_progress)
    paths = write_report(rows, settings, Path(args.output_dir))
    print(paths["markdown"].read_text())
    for kind, path in paths.items():
        print(f"{kind}: {path.resolve()}")
    return 1 if any("error" in r for r in rows) else 0


NO_WEIGHTS_WARNING = ("xai-plugins: WARNING: no --weights given: this explains a model with RANDOM weights, "
                      "which says nothing about your trained model. Pass --weights FILE (a saved state dict).")


def _evaluate_relational(args: argparse.Namespace) -> int:
    """The relational benchmark: LRP on the shipped Relation Network with and without its canonizer."""
    from xai_plugins.evaluation.relational import load, recipe_of
    from xai_plugins_workbench.relational import evaluate_relational, markdown

    rows = evaluate_relational(load(args.checkpoint_dir), images=args.images, seed=args.seed,
                               batch_size=args.batch_size, recipe=recipe_of(args.checkpoint_dir))
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = f"# Relational benchmark on {args.images} Sort-of-CLEVR test scenes (seed {args.seed})\n\n" + \
        markdown(rows) + "\n"
    (out / "relational.md").write_text(text)
    (out / "relational.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(text)
    print(f"markdown: {(out / 'relational.md').resolve()}")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    """Explain one image with one method and save the picture; every input is checked before the model is
    built."""
    import sys

    from xai_plugins_workbench.explain import (
        build_model,
        check_dependencies,
        check_method,
        explain_image,
        input_encoding,
        load_image,
        load_weights,
        parse_model_spec,
        prepare_inputs,
    )

    spec = parse_model_spec(args.model)
    check_dependencies(spec, Path(args.weights) if args.weights else None)
    check_method(args.method)
    image = load_image(Path(args.image), args.size)
    state = load_weights(Path(args.weights)) if args.weights else None
    _threads(args)
    model = build_model(spec, state, args.num_classes)
    if state is None and not spec.holds_weights:
        print(NO_WEIGHTS_WARNING, file=sys.stderr)
    encoding = input_encoding(model, spec)
    inputs, low, high = prepare_inputs(image, args.normalize, encoding)
    kwargs: dict[str, object] = {}
    if args.method in ("lrp", "captum-lrp"):
        kwargs["canonize"] = not args.no_canonize
    if args.method == "lrp":
        kwargs.update(composite=args.composite, low=low, high=high)
    explanation = explain_image(model, image, inputs, args.target, args.method, **kwargs)
    from xai_plugins_workbench.explain_figure import save_figure

    title = figure_title(model, args, random_weights=state is None and not spec.holds_weights)
    path = save_figure(explanation, Path(args.output), title)
    print(f"explained class {explanation.target} (predicted {explanation.predicted}) -> {path.resolve()}")
    return 0


def figure_title(model: nn.Module, args: argparse.Namespace, random_weights: bool) -> str:
    """The method with its composite and the canonizers it used, the model, and a mark for random weights."""
    method = args.method
    if method in ("lrp", "captum-lrp"):
        if args.no_canonize:
            canon = "no canonizers"
        else:
            from xai_plugins_zennit import canonizers_for

            names = ([type(getattr(c, "canonizer", c)).__name__ for c in canonizers_for(model)]
                     if method == "lrp" else ["canonized()"])
            canon = "canonizers: " + (", ".join(names) or "none needed")
        method = (f"Zennit LRP {args.composite}" if method == "lrp" else "Captum LRP") + f", {canon}"
    return f"{method} | {args.model}" + (" | RANDOM WEIGHTS" if random_weights else "")


def _class_index(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative; a class index is 0 or more")
    return value


def _size(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative; pass a size in pixels, or 0 to keep the image size")
    return value


def _checkpoint_recipe(text: str) -> str:
    """``checkpoint:RECIPE`` or ``RECIPE`` -> ``RECIPE``: the form ``explain --model`` takes for the same models."""
    return text.removeprefix("checkpoint:")


def cmd_search(args: argparse.Namespace) -> int:
    """LRP composite hyperparameter search; prints the ranked table and writes it as JSON."""
    _threads(args)
    from xai_plugins_workbench.search import grid, search

    configs = grid(args.gammas, (True, False) if args.canonize == "both" else (args.canonize == "yes",))
    result = search(args.model, configs, metric=args.metric, images=args.images, seed=args.seed,
                    backend=args.backend, progress=not args.no_progress)
    print(result.markdown())
    print(f"best: {result.best.config} -> {result.objective} {result.best.score:.4f}")
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps({"objective": result.objective,
                                              "trials": [{"config": t.config, "score": t.score}
                                                         for t in result.trials]}, indent=2) + "\n")
        print(f"trials: {Path(args.output).resolve()}")
    return 0


def register_commands(subparsers: Commands) -> None:
    """Add ``demo``, ``evaluate``, ``explain`` and ``search`` to the ``xai-plugins`` parser (imports no torch:
    the choices are read from their tables when a command is parsed)."""
    models = LazyChoices("xai_plugins.evaluation.training:RECIPES")
    p = subparsers.add_parser(
        "demo", help="explain shipped checkpoints with every family: figure + HTML report",
        description="Explain the benchmark checkpoints shipped in the package with every family (canonized LRP "
                    "in Zennit and Captum, B-cos, extremal perturbations, ExplainFix) on the textured or the "
                    "digits-on-canvas ground truth; write a figure, an HTML report and the metric table.",
        formatter_class=DefaultsFormatter)
    add_output_dir(p, "out/demo", "directory for the figure, the HTML report and the metric table")
    p.add_argument("--dataset", choices=LazyChoices("xai_plugins_workbench.demo:DEMO_DATASETS"), metavar="DATASET",
                   help="ground truth of the figure and the table: %(choices)s (default: textured, where canonized "
                        "and plain LRP differ more clearly; families without a textured model, B-cos and "
                        "ExplainFix, are shown on the digits canvas)")
    p.add_argument("--images", type=int, default=4, help="images in the figure")
    p.add_argument("--metric-images", type=int, default=16, help="images for the metric table")
    p.add_argument("--seed", type=int, default=0, help="random seed of the image selection")
    add_no_progress(p)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.set_defaults(func=cmd_demo)

    p = subparsers.add_parser(
        "evaluate", help="methods x models x metrics on the ground-truth dataset",
        description="Score explanation methods on the benchmark checkpoints against the ground truth of the "
                    "digits-on-canvas data; write a markdown table, JSON and a plot.",
        formatter_class=DefaultsFormatter)
    add_output_dir(p, "out/evaluate", "directory for results.md, results.json and results.png")
    p.add_argument("--dataset", choices=LazyChoices("xai_plugins_workbench.evaluate:DATASET_CHOICES"),
                   default="digits", metavar="DATASET",
                   help="ground truth: digits on a dark canvas, on textured backgrounds, or the relational "
                        "Sort-of-CLEVR benchmark of the Relation Network; %(choices)s")
    p.add_argument("--checkpoint-dir", type=Path, default=None,
                   help="directory of the benchmark checkpoints (default: the ones shipped in the package)")
    p.add_argument("--models", nargs="+", choices=models, metavar="MODEL",
                   help="benchmark models (default: every model trained on the dataset); %(choices)s")
    p.add_argument("--methods", nargs="+", choices=LazyChoices("xai_plugins_workbench.methods:METHODS"),
                   metavar="METHOD", help="methods (default: all that apply); %(choices)s")
    p.add_argument("--metrics", nargs="+", choices=LazyChoices("xai_plugins_workbench.evaluate:METRICS"),
                   metavar="METRIC", help="metrics (default: all but the slow max_sensitivity); %(choices)s")
    p.add_argument("--images", type=int, default=64, help="test images")
    p.add_argument("--batch-size", type=int, default=16, help="images per batch")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--metrics-backend", choices=("quantus", "torch"), default="quantus",
                   help="compute the metrics Quantus has through Quantus, or our batched torch ones")
    add_no_progress(p)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.set_defaults(func=cmd_evaluate)

    p = subparsers.add_parser(
        "explain", help="explain your own model and image, save a PNG",
        description="Explain one image with one method and save input, attribution and overlay as a PNG. "
                    "--model is torchvision:NAME, timm:NAME, registry:NAME (xai-plugins list --kind model), "
                    "checkpoint:RECIPE, package.module:builder (your own builder) or a TorchScript file.",
        formatter_class=DefaultsFormatter)
    p.add_argument("--model", required=True, help="the model (forms above), e.g. torchvision:resnet50")
    p.add_argument("--weights", help="state dict of the model (.safetensors, or torch.save(model.state_dict())); "
                   "without it the model has random weights")
    p.add_argument("--num-classes", type=int, help="classifier size (default: read from --weights)")
    p.add_argument("--image", required=True, help="image file (PNG, JPEG, ...)")
    p.add_argument("--method", default="lrp", help="lrp, captum-lrp, gradient, input_x_gradient or a registered "
                   "attributor (xai-plugins list --kind attributor)")
    p.add_argument("--composite", default="epsilon_gamma_box", metavar="COMPOSITE",
                   choices=LazyChoices("xai_plugins_workbench.explain:COMPOSITES"),
                   help="Zennit composite for lrp: %(choices)s")
    p.add_argument("--no-canonize", action="store_true", help="LRP without canonizers")
    p.add_argument("--target", type=_class_index, help="class to explain (default: the predicted class)")
    p.add_argument("--size", type=_size, default=224, help="resize + centre-crop to this size (0: keep)")
    p.add_argument("--normalize", default="auto", choices=("auto", "imagenet", "none"),
                   help="input normalisation; auto: ImageNet statistics, or the model's own input encoding "
                        "(B-cos [x, 1-x]) where its plugin declares one")
    add_output_file(p, "explanation.png", "output PNG file")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.set_defaults(func=cmd_explain)

    p = subparsers.add_parser(
        "search", help="LRP composite hyperparameter search (gamma per layer group)",
        description="Grid search over the gamma of each layer group of a Zennit LRP composite, with and without "
                    "canonizers, scored by a ground-truth metric on a benchmark checkpoint; prints the ranked "
                    "table.", formatter_class=DefaultsFormatter)
    p.add_argument("--model", default="checkpoint:resnet",
                   choices=LazyChoices("xai_plugins_workbench.methods:BN_RECIPES"),
                   type=_checkpoint_recipe, metavar="checkpoint:RECIPE",
                   help="benchmark checkpoint, as explain's --model checkpoint:RECIPE (the prefix may be left "
                        "out): %(choices)s")
    p.add_argument("--metric", default="mass_accuracy", choices=LazyChoices("xai_plugins_workbench.search:OBJECTIVES"),
                   metavar="METRIC", help="objective to maximise: %(choices)s")
    p.add_argument("--gammas", nargs="+", type=float, default=[0.0, 0.25, 1.0], help="gamma values per group")
    p.add_argument("--canonize", choices=("both", "yes", "no"), default="both", help="with canonizers or not")
    p.add_argument("--images", type=int, default=32, help="images scored per trial")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="ray: Ray Tune (extra 'distributed'); runs on a cluster if Ray is connected to one")
    add_output_file(p, None, "write the ranked trials as JSON to this file")
    add_no_progress(p)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.set_defaults(func=cmd_search)
