"""Methods x models x metrics on the ground-truth dataset, with a markdown + JSON table and plots.

The benchmark models are the shipped checkpoints of :mod:`xai_plugins.evaluation.training`; the images are
test items of :class:`~xai_plugins.evaluation.dataset.DigitsOnCanvas` (digits never seen in training), and
every method explains the true class. Scores are means over images with their standard error.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from xai_plugins.evaluation import metrics as M
from xai_plugins.evaluation.training import (
    DATASETS,
    RECIPES,
    available_checkpoints,
    load_checkpoint,
    make_dataset,
    prepare_input,
)
from xai_plugins_workbench.methods import METHODS, Method

Metric = Callable[["Sample", Tensor], Tensor]


@dataclass
class Sample:
    """A batch to explain: model, its inputs, images, true classes and ground-truth masks."""

    recipe: str
    model: nn.Module
    inputs: Tensor
    images: Tensor
    target: Tensor
    masks: Tensor
    method: Method
    generator: torch.Generator


def _positive_map(a: Tensor) -> Tensor:
    return M.pixel_relevance(a).clamp(min=0)


def _region_aopc(s: Sample, a: Tensor) -> Tensor:
    return M.region_perturbation(s.model, s.inputs, s.target, _image_map(s, a), patch_size=4, regions=16).mean(1)


def _pixel_flipping(s: Sample, a: Tensor) -> Tensor:
    """Mean softmax probability of the target over the pixel-flipping curve (32 steps to an all-black input)."""
    side = s.inputs.shape[-1]

    def probability(x: Tensor) -> Tensor:
        return torch.softmax(s.model(x), dim=1)

    curve = M.pixel_flipping(probability, s.inputs, s.target, _image_map(s, a), pixels_per_step=side * side // 32)
    return curve.mean(1)


def _image_map(s: Sample, a: Tensor) -> Tensor:
    """Relevance per pixel as a (N, 1, H, W) map (channels of the B-cos encoding summed too)."""
    return M.pixel_relevance(a)[:, None]


def _max_sensitivity(s: Sample, a: Tensor) -> Tensor:
    def explain(x: Tensor, t: Tensor) -> Tensor:
        return s.method.fn(s.model, x, t)

    return M.max_sensitivity(explain, s.inputs, s.target, radius=0.05, samples=2, attributions=a,
                             generator=s.generator)


def _randomisation(s: Sample, a: Tensor) -> Tensor:
    return M.parameter_randomisation(s.method.fn, s.model, s.inputs, s.target, a, seed=int(s.generator.initial_seed()))


def _conservation(s: Sample, a: Tensor) -> Tensor:
    if not s.method.conserving:
        return torch.full((a.shape[0],), float("nan"))
    with torch.no_grad():
        logit = s.model(s.inputs).gather(1, s.target[:, None])[:, 0]
    gap = M.completeness_gap(s.model, s.inputs, s.target, a).abs() / logit.abs().clamp(min=1.0)
    if s.method.name == "bcos":
        from xai_plugins.bcos import logit_bias

        explained = logit - logit_bias(s.model)
        return (a.flatten(1).sum(1) - explained).abs() / explained.abs().clamp(min=1.0)
    return gap


@dataclass(frozen=True)
class MetricSpec:
    """A metric column: key, label, whether higher is better, and the function of (sample, attributions)."""

    key: str
    label: str
    higher_is_better: bool
    fn: Metric
    expensive: bool = False


METRICS: dict[str, MetricSpec] = {m.key: m for m in (
    MetricSpec("mass_accuracy", "Relevance mass accuracy", True,
               lambda s, a: M.relevance_mass_accuracy(a, s.masks)),
    MetricSpec("rank_accuracy", "Relevance rank accuracy", True,
               lambda s, a: M.relevance_rank_accuracy(a, s.masks)),
    MetricSpec("pointing_game", "Pointing game", True, lambda s, a: M.pointing_game(a, s.masks)),
    MetricSpec("region_aopc", "Region perturbation AOPC (MoRF)", True, _region_aopc),
    MetricSpec("pixel_flipping", "Pixel flipping (mean target probability)", False, _pixel_flipping),
    MetricSpec("max_sensitivity", "Max sensitivity (r=0.05)", False, _max_sensitivity, expensive=True),
    MetricSpec("sparseness", "Sparseness (Gini)", True, lambda s, a: M.sparseness(a)),
    MetricSpec("complexity", "Complexity (entropy)", False, lambda s, a: M.complexity(a)),
    MetricSpec("randomisation", "Parameter randomisation (Spearman, Adebayo et al.)", False, _randomisation,
               expensive=True),
    MetricSpec("conservation", "Conservation error (relative)", False, _conservation),
)}
DATASET_CHOICES = (*DATASETS, "sort-of-clevr")
"""What ``xai-plugins evaluate --dataset`` takes: the ground-truth image datasets and the relational benchmark."""
DEFAULT_METRICS = tuple(k for k, m in METRICS.items() if not m.expensive)
METRICS_BACKENDS = {"torch": "xai_plugins.evaluation.metrics (batched torch)",
                    "quantus": "Quantus 0.6 where it has the metric, torch for the rest"}


def _metric_functions(backend: str, keys: Sequence[str]) -> dict[str, Metric]:
    """The function per metric key: Quantus' for the metrics it has with ``backend="quantus"``, else torch."""
    functions = {k: METRICS[k].fn for k in keys}
    if backend == "quantus":
        from xai_plugins_workbench.quantus_metrics import QUANTUS_METRICS

        functions.update({k: QUANTUS_METRICS[k] for k in keys if k in QUANTUS_METRICS})
    return functions


@dataclass
class EvalSettings:
    """What to evaluate: the dataset, recipes (models; by default every recipe trained on that dataset),
    methods, metrics, and on how many test images."""

    models: Sequence[str] | None = None
    dataset: str = "digits"
    methods: Sequence[str] = tuple(METHODS)
    metrics: Sequence[str] = DEFAULT_METRICS
    images: int = 64
    batch_size: int = 16
    seed: int = 0
    checkpoint_dir: Path | None = None
    metrics_backend: str = "torch"
    skipped: list[str] = field(default_factory=list)


def _check(names: Sequence[str], known: dict[str, Any], what: str) -> None:
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown {what} {', '.join(unknown)}; choose from {', '.join(known)}")


def evaluate(settings: EvalSettings, *, progress: bool = True) -> list[dict[str, Any]]:
    """One row per (model, method) with ``mean``/``sem``/``n`` per metric; failures are recorded, not raised."""
    _check(settings.methods, METHODS, "methods")
    _check(settings.metrics, METRICS, "metrics")
    _check([settings.metrics_backend], METRICS_BACKENDS, "metrics backend")
    _check([settings.dataset], DATASETS, "dataset")
    requested = list(settings.models) if settings.models is not None else \
        [name for name, recipe in RECIPES.items() if recipe.dataset == settings.dataset]
    _check(requested, RECIPES, "models")
    other = [m for m in requested if RECIPES[m].dataset != settings.dataset]
    if other:
        raise ValueError(f"models {', '.join(other)} are trained on another dataset than {settings.dataset!r}; "
                         f"evaluate them with --dataset {RECIPES[other[0]].dataset}")
    present = set(available_checkpoints(settings.checkpoint_dir))
    models = [m for m in requested if m in present]
    settings.skipped.extend(f"model {m}: no checkpoint" for m in requested if m not in present)
    size = RECIPES[requested[0]].image_size if requested else 32
    data = make_dataset(settings.dataset, settings.images, split="test", seed=settings.seed + 1000, size=size)
    images, labels, masks = data.tensors()
    jobs = [(r, METHODS[m]) for r in models for m in settings.methods if METHODS[m].applies_to(r)]
    bar = _bar(len(jobs) * math.ceil(settings.images / settings.batch_size), progress, "evaluate")
    rows = []
    for recipe in models:
        model = load_checkpoint(recipe, settings.checkpoint_dir)
        for method in (METHODS[m] for m in settings.methods if METHODS[m].applies_to(recipe)):
            rows.append(_evaluate_one(recipe, model, method, images, labels, masks, settings, bar))
    if bar is not None:
        bar.close()
    return rows


def _evaluate_one(recipe: str, model: nn.Module, method: Method, images: Tensor, labels: Tensor, masks: Tensor,
                  settings: EvalSettings, bar: Any) -> dict[str, Any]:
    scores: dict[str, list[Tensor]] = {k: [] for k in settings.metrics}
    row: dict[str, Any] = {"model": recipe, "method": method.name, "label": method.label}
    generator = torch.Generator().manual_seed(settings.seed)
    functions = _metric_functions(settings.metrics_backend, settings.metrics)
    try:
        for start in range(0, len(images), settings.batch_size):
            sl = slice(start, start + settings.batch_size)
            inputs = prepare_input(recipe, images[sl])
            sample = Sample(recipe, model, inputs, images[sl], labels[sl], masks[sl], method, generator)
            attributions = method.fn(model, inputs, labels[sl])
            for key in settings.metrics:
                scores[key].append(functions[key](sample, attributions).detach().float())
            if bar is not None:
                bar.update(1)
    except Exception as exc:  # noqa: BLE001 - a failing method is a result to report, not a crash
        row["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        return row
    for key, parts in scores.items():
        values = torch.cat(parts)
        values = values[~torch.isnan(values)]
        n = int(values.numel())
        mean = float(values.mean()) if n else float("nan")
        sem = float(values.std() / math.sqrt(n)) if n > 1 else float("nan")
        row[key] = {"mean": mean, "sem": sem, "n": n}
    return row


def _bar(total: int, enabled: bool, desc: str) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="batch")


def _cell(value: dict[str, float] | None) -> str:
    if not value or value["n"] == 0 or math.isnan(value["mean"]):
        return "–"
    if math.isnan(value["sem"]):
        return f"{value['mean']:.3f}"
    return f"{value['mean']:.3f} ± {value['sem']:.3f}"


def markdown_table(rows: Sequence[dict[str, Any]], metrics: Sequence[str]) -> str:
    """The rows as a markdown table (mean ± standard error; ↑/↓ marks the better direction)."""
    head = ["model", "method"] + [f"{METRICS[k].label} {'↑' if METRICS[k].higher_is_better else '↓'}"
                                  for k in metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        if "error" in row:
            cells = [f"failed: {row['error']}"] + [""] * (len(metrics) - 1)
        else:
            cells = [_cell(row.get(k)) for k in metrics]
        lines.append("| " + " | ".join([row["model"], row["label"], *cells]) + " |")
    return "\n".join(lines)


def headline(rows: Sequence[dict[str, Any]], metrics: Sequence[str] = ("mass_accuracy", "rank_accuracy",
                                                                       "region_aopc", "pixel_flipping")
             ) -> list[dict[str, Any]]:
    """Canonized minus plain LRP per BN model, host and metric (positive = canonization better for ↑); a
    DenseNet's untangled canonization (``lrp_*_untangled``) is a second entry, host ``"<host> untangled"``."""
    by_key = {(r["model"], r["method"]): r for r in rows}
    out = []
    for (model, method), row in by_key.items():
        suffix = next((s for s in ("_canonized", "_untangled") if method.endswith(s)), None)
        if suffix is None or "error" in row:
            continue
        plain = by_key.get((model, method[:-len(suffix)] + "_plain"))
        if plain is None:
            continue
        host = method.split("_")[1] + (" untangled" if suffix == "_untangled" else "")
        entry: dict[str, Any] = {"model": model, "host": host}
        if "error" in plain:
            entry["plain_error"] = plain["error"]
        for k in metrics:
            if k in row and "error" in plain:
                entry[k] = {"plain": float("nan"), "canonized": row[k]["mean"], "better": True}
            elif k in row and k in plain:
                entry[k] = {"plain": plain[k]["mean"], "canonized": row[k]["mean"],
                            "better": (row[k]["mean"] > plain[k]["mean"]) == METRICS[k].higher_is_better}
        out.append(entry)
    return out


def headline_markdown(entries: Sequence[dict[str, Any]]) -> str:
    """The canonized-vs-plain comparison as a markdown table (plain → canonized, ✓ where canonized is better)."""
    keys = [k for k in ("mass_accuracy", "rank_accuracy", "region_aopc", "pixel_flipping")
            if any(k in e for e in entries)]
    head = ["model", "LRP via"] + [f"{METRICS[k].label} {'↑' if METRICS[k].higher_is_better else '↓'}"
                                   for k in keys]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in entries:
        cells = []
        for k in keys:
            v = e.get(k)
            if v is None:
                cells.append("–")
            elif "plain_error" in e:
                cells.append(f"plain fails → {v['canonized']:.3f}")
            else:
                cells.append(f"{v['plain']:.3f} → {v['canonized']:.3f} {'✓' if v['better'] else '✗'}")
        lines.append("| " + " | ".join([e["model"], e["host"], *cells]) + " |")
    return "\n".join(lines)


def plot(rows: Sequence[dict[str, Any]], metrics: Sequence[str], path: Path) -> Path:
    """Grouped bar charts, one panel per metric, bars = methods, groups = models."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    good = [r for r in rows if "error" not in r]
    models = list(dict.fromkeys(r["model"] for r in good))
    methods = list(dict.fromkeys(r["method"] for r in good))
    labels = {r["method"]: r["label"] for r in good}
    cols = min(3, len(metrics))
    rws = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(rws, cols, figsize=(5.2 * cols, 3.2 * rws), squeeze=False)
    width = 0.8 / max(len(methods), 1)
    colours = plt.get_cmap("tab10")
    for ax, key in zip(axes.flat, metrics):
        for j, method in enumerate(methods):
            xs, ys, es = [], [], []
            for i, model in enumerate(models):
                row = next((r for r in good if r["model"] == model and r["method"] == method), None)
                if row and key in row and row[key]["n"]:
                    xs.append(i + (j - (len(methods) - 1) / 2) * width)
                    ys.append(row[key]["mean"])
                    es.append(0.0 if math.isnan(row[key]["sem"]) else row[key]["sem"])
            ax.bar(xs, ys, width, yerr=es, color=colours(j % 10), label=labels[method])
        ax.set_xticks(range(len(models)), models)
        ax.set_title(f"{METRICS[key].label} {'↑' if METRICS[key].higher_is_better else '↓'}", fontsize=9)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(4, len(names)), fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(rows: Sequence[dict[str, Any]], settings: EvalSettings, out_dir: Path) -> dict[str, Path]:
    """Write ``results.json``, ``results.md`` and ``results.png`` into ``out_dir``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = headline(rows)
    payload = {"settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items()},
               "rows": list(rows), "headline": entries}
    paths = {"json": out_dir / "results.json", "markdown": out_dir / "results.md", "plot": out_dir / "results.png"}
    paths["json"].write_text(json.dumps(payload, indent=2, default=list) + "\n")
    dataset = DATASETS[settings.dataset].__name__
    text = [f"# Evaluation on {settings.images} {dataset} test images (seed {settings.seed})", ""]
    if entries:
        text += ["## Canonized vs plain LRP on the BatchNorm models", "", headline_markdown(entries), ""]
    text += ["## All methods", "", markdown_table(rows, settings.metrics), ""]
    if settings.skipped:
        text += ["Skipped: " + "; ".join(settings.skipped), ""]
    paths["markdown"].write_text("\n".join(text))
    plot(rows, settings.metrics, paths["plot"])
    return paths
