"""The workbench's ``demo``, ``evaluate``, ``explain`` and ``search`` subcommands of ``xai-plugins``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _threads(args: argparse.Namespace) -> None:
    """Use ``--threads`` torch CPU threads (default 1: the benchmark models are small, and one thread is
    as fast as two on an idle machine and many times faster when the CPU is shared)."""
    import torch

    torch.set_num_threads(max(1, args.threads))


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the demo and print where the figure and report are."""
    _threads(args)
    from xai_plugins_workbench.demo import run_demo

    result = run_demo(Path(args.out), images=args.images, metric_images=args.metric_images, seed=args.seed,
                      progress=not args.no_progress)
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
    paths = write_report(rows, settings, Path(args.out))
    print(paths["markdown"].read_text())
    for kind, path in paths.items():
        print(f"{kind}: {path.resolve()}")
    return 1 if any("error" in r for r in rows) else 0


def _evaluate_relational(args: argparse.Namespace) -> int:
    """The relational benchmark: LRP on the shipped Relation Network with and without its canonizer."""
    from xai_plugins.evaluation.relational import load
    from xai_plugins_workbench.relational import evaluate_relational, markdown

    rows = evaluate_relational(load(args.checkpoint_dir), images=args.images, seed=args.seed,
                               batch_size=args.batch_size)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = f"# Relational benchmark on {args.images} Sort-of-CLEVR test scenes (seed {args.seed})\n\n" + \
        markdown(rows) + "\n"
    (out / "relational.md").write_text(text)
    (out / "relational.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(text)
    print(f"markdown: {(out / 'relational.md').resolve()}")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    """Explain one image with one method and save the picture."""
    _threads(args)
    from xai_plugins_workbench.explain import (
        IMAGENET_MEAN,
        IMAGENET_STD,
        build_model,
        explain_image,
        load_image,
        save_figure,
    )

    model = build_model(args.model, Path(args.weights) if args.weights else None, args.num_classes)
    image, inputs = load_image(Path(args.image), args.size, args.normalize)
    low, high = 0.0, 1.0
    if args.normalize == "imagenet":
        import torch

        mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        low, high = ((0 - mean) / std).expand_as(inputs), ((1 - mean) / std).expand_as(inputs)
    kwargs = {}
    if args.method in ("lrp", "captum-lrp"):
        kwargs["canonize"] = not args.no_canonize
    if args.method == "lrp":
        kwargs.update(composite=args.composite, low=low, high=high)
    explanation = explain_image(model, image, inputs, args.target, args.method, **kwargs)
    title = args.method if args.method != "lrp" else f"LRP {args.composite}" + (
        "" if args.no_canonize else " + canonizers")
    path = save_figure(explanation, Path(args.output), title)
    print(f"explained class {explanation.target} (predicted {explanation.predicted}) -> {path.resolve()}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    """LRP composite hyperparameter search; prints the ranked table and writes it as JSON."""
    _threads(args)
    from xai_plugins_workbench.search import grid, search

    configs = grid(args.gammas, (True, False) if args.canonize == "both" else (args.canonize == "yes",))
    result = search(args.model, configs, metric=args.metric, images=args.images, seed=args.seed,
                    backend=args.backend, progress=not args.no_progress)
    print(result.markdown())
    print(f"best: {result.best.config} -> {result.objective} {result.best.score:.4f}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"objective": result.objective,
                                              "trials": [{"config": t.config, "score": t.score}
                                                         for t in result.trials]}, indent=2) + "\n")
        print(f"trials: {Path(args.out).resolve()}")
    return 0


def register_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``demo``, ``evaluate``, ``explain`` and ``search`` to the ``xai-plugins`` parser."""
    from xai_plugins.evaluation.training import DATASETS, RECIPES
    from xai_plugins_workbench.evaluate import METRICS
    from xai_plugins_workbench.explain import COMPOSITES
    from xai_plugins_workbench.methods import METHODS
    from xai_plugins_workbench.search import OBJECTIVES

    models = ("resnet", "densenet", "efficientnet", "bcos", "explainfix")
    p = subparsers.add_parser("demo", help="explain shipped checkpoints with every family: figure + HTML report")
    p.add_argument("-o", "--out", default="out/demo", help="output directory (default: out/demo)")
    p.add_argument("--images", type=int, default=4, help="images in the figure")
    p.add_argument("--metric-images", type=int, default=16, help="images for the metric table")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.set_defaults(func=cmd_demo)

    p = subparsers.add_parser("evaluate", help="methods x models x metrics on the ground-truth dataset")
    p.add_argument("-o", "--out", default="out/evaluate", help="output directory (default: out/evaluate)")
    p.add_argument("--dataset", choices=[*DATASETS, "sort-of-clevr"], default="digits",
                   help="ground truth: digits on a dark canvas or on textured backgrounds, or the relational "
                        "Sort-of-CLEVR benchmark of the Relation Network (default: digits)")
    p.add_argument("--checkpoint-dir", type=Path, default=None,
                   help="directory of the benchmark checkpoints (default: the ones shipped in the package)")
    p.add_argument("--models", nargs="+", choices=list(RECIPES),
                   help="benchmark models (default: every model trained on the dataset)")
    p.add_argument("--methods", nargs="+", choices=list(METHODS), help="methods (default: all that apply)")
    p.add_argument("--metrics", nargs="+", choices=list(METRICS), help="metrics (default: all but the slow "
                   "max_sensitivity)")
    p.add_argument("--images", type=int, default=64, help="test images (default: 64)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--metrics-backend", choices=("quantus", "torch"), default="quantus",
                   help="compute the metrics Quantus has through Quantus (default) or our batched torch ones")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.set_defaults(func=cmd_evaluate)

    p = subparsers.add_parser("explain", help="explain your own model and image, save a PNG")
    p.add_argument("--model", required=True, help="torchvision:NAME, registry:NAME or checkpoint:RECIPE")
    p.add_argument("--weights", help="state dict (.safetensors, or a torch file loaded with weights_only)")
    p.add_argument("--num-classes", type=int, help="classifier size (default: read from the weights)")
    p.add_argument("--image", required=True, help="image file (PNG, JPEG, ...)")
    p.add_argument("--method", default="lrp", help="lrp, captum-lrp, gradient or a registered attributor")
    p.add_argument("--composite", default="epsilon_gamma_box", choices=COMPOSITES, help="Zennit composite for lrp")
    p.add_argument("--no-canonize", action="store_true", help="LRP without canonizers")
    p.add_argument("--target", type=int, help="class to explain (default: the predicted class)")
    p.add_argument("--size", type=int, default=224, help="resize + centre-crop to this size (0: keep)")
    p.add_argument("--normalize", default="imagenet", choices=("imagenet", "none"))
    p.add_argument("-o", "--output", default="explanation.png", help="output PNG")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.set_defaults(func=cmd_explain)

    p = subparsers.add_parser("search", help="LRP composite hyperparameter search (gamma per layer group)")
    p.add_argument("--model", default="resnet", choices=models[:3], help="benchmark checkpoint")
    p.add_argument("--metric", default="mass_accuracy", choices=OBJECTIVES, help="objective to maximise")
    p.add_argument("--gammas", nargs="+", type=float, default=[0.0, 0.25, 1.0], help="gamma values per group")
    p.add_argument("--canonize", choices=("both", "yes", "no"), default="both")
    p.add_argument("--images", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="ray: Ray Tune (extra 'distributed'); runs on a cluster if Ray is connected to one")
    p.add_argument("-o", "--out", help="write the ranked trials as JSON here")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.set_defaults(func=cmd_search)
