"""``xai-plugins demo``: every family on the shipped checkpoints, in one figure and an HTML report.

It loads the benchmark checkpoints, explains a few test images of the ground-truth dataset with canonized
and plain LRP (through Zennit and through Captum) on the BatchNorm models, extremal perturbation masks, B-cos
colour explanations and the ExplainSteer spectra of the ExplainFix model, and scores the LRP variants against
the ground-truth masks. A panel whose family or checkpoint is missing says so instead of failing the demo.

The dataset is TexturedCanvas by default (``dataset="digits"`` for DigitsOnCanvas): there canonized and plain
LRP differ most clearly (docs/evaluation.md). Each family uses its recipe trained on the demo's dataset
(:func:`demo_models`, read from :data:`~xai_plugins.evaluation.training.RECIPES`); a family without one (B-cos
and ExplainFix have no textured recipe) is shown on DigitsOnCanvas test images of the same digits, and its
panel and metric rows say so.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from xai_plugins.evaluation.training import (
    DATASETS,
    RECIPES,
    available_checkpoints,
    checkpoint_record,
    load_checkpoint,
    make_dataset,
)

DEMO_METRICS = ("mass_accuracy", "rank_accuracy", "pointing_game", "region_aopc", "conservation")
DEMO_METHODS = ("lrp_zennit_plain", "lrp_zennit_canonized", "lrp_zennit_untangled", "lrp_captum_plain",
                "lrp_captum_canonized", "lrp_captum_untangled", "bcos")
FAMILIES = {"resnet": "ResNet", "densenet": "DenseNet", "efficientnet": "EfficientNet", "bcos": "B-cos",
            "explainfix": "ExplainFix"}
"""The families the demo shows, by the name of their recipe on DigitsOnCanvas, with their display names."""
DEMO_DATASETS = ("textured", "digits")
DEFAULT_DATASET = "textured"
"""The demo's default dataset: on TexturedCanvas canonized and plain LRP differ more clearly than on the dark
canvas (docs/evaluation.md, "Results on TexturedCanvas" against "Canonized vs plain LRP")."""
FALLBACK_DATASET = "digits"


def demo_models(dataset: str = DEFAULT_DATASET) -> dict[str, str]:
    """Family -> recipe the demo uses on ``dataset``: the family's recipe trained on it (``<family>_<dataset>``
    in :data:`~xai_plugins.evaluation.training.RECIPES`), else its DigitsOnCanvas recipe."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose from {', '.join(DATASETS)}")
    chosen = {}
    for family in FAMILIES:
        own = family if dataset == FALLBACK_DATASET else f"{family}_{dataset}"
        chosen[family] = own if own in RECIPES and RECIPES[own].dataset == dataset else family
    return chosen


@dataclass
class Panel:
    """One column of the figure: a title and per-image pictures (signed heat maps, masks in [0, 1] or RGBA),
    or why it is missing; ``captions`` are shown under the pictures, one per image."""

    title: str
    model: str
    maps: np.ndarray | None = None
    rgba: np.ndarray | None = None
    error: str | None = None
    is_mask: bool = False
    captions: list[str] | None = None
    images: Tensor | None = None
    """The images this panel explains when they are not the figure's rows (a family shown on the fallback
    dataset), drawn under its RGBA pictures and masks."""


@dataclass
class DemoResult:
    """Where the demo wrote its outputs, and what it could not show."""

    figure: Path
    report: Path
    metrics: Path
    missing: list[str] = field(default_factory=list)
    seconds: float = 0.0
    dataset: str = DEFAULT_DATASET
    models: dict[str, str] = field(default_factory=dict)
    """Family -> recipe shown (:func:`demo_models`)."""
    panels: list[Panel] = field(default_factory=list)


def _heat(attributions: Tensor) -> np.ndarray:
    return attributions.detach().sum(1).numpy()


def _panels(models: dict[str, torch.nn.Module], chosen: dict[str, str], data: dict[str, tuple[Tensor, Tensor]],
            dataset: str, bar: Any) -> list[Panel]:
    """The figure's panels; ``chosen`` maps family -> recipe, ``data`` dataset -> (images, labels), the rows
    being ``data[dataset]``."""
    from xai_plugins_workbench.lrp import LrpConfig, captum_lrp, zennit_lrp

    jobs: list[tuple[str, str, Callable[[], Panel]]] = []

    def inputs(family: str) -> tuple[Tensor, Tensor]:
        return data[RECIPES[chosen[family]].dataset]

    def own_images(family: str) -> Tensor | None:
        return None if RECIPES[chosen[family]].dataset == dataset else inputs(family)[0]

    def heat_job(title: str, family: str, fn: Callable[[torch.nn.Module, Tensor, Tensor], Tensor]) -> None:
        title = _titled(title, chosen[family], dataset)

        def run() -> Panel:
            return Panel(title, chosen[family], maps=_heat(fn(models[chosen[family]], *inputs(family))),
                         images=own_images(family))
        jobs.append((title, chosen[family], run))

    for family in ("resnet", "densenet", "efficientnet"):
        pretty = FAMILIES[family]
        heat_job(f"{pretty}\nLRP Zennit plain", family, lambda m, x, y: zennit_lrp(m, x, y, LrpConfig(canonize=False)))
        heat_job(f"{pretty}\nLRP Zennit canonized", family,
                 lambda m, x, y: zennit_lrp(m, x, y, LrpConfig(canonize=True)))
        if family == "densenet":
            heat_job(f"{pretty}\nLRP Zennit untangled", family,
                     lambda m, x, y: zennit_lrp(m, x, y, LrpConfig(canonize=True, untangled=True)))
        if family == "resnet":
            heat_job(f"{pretty}\nLRP Captum plain", family, lambda m, x, y: captum_lrp(m, x, y, canonize=False))
            heat_job(f"{pretty}\nLRP Captum canonized", family, lambda m, x, y: captum_lrp(m, x, y, canonize=True))

    def extremal() -> Panel:
        panel = extremal_panel(models[chosen["resnet"]], *inputs("resnet"))
        panel.title, panel.model, panel.images = _titled(panel.title, chosen["resnet"], dataset), chosen["resnet"], \
            own_images("resnet")
        return panel
    jobs.append(("extremal", chosen["resnet"], extremal))

    def bcos() -> Panel:
        from xai_plugins.bcos import contributions, encode_input
        from xai_plugins.bcos.visualize import explanation_image

        images, labels = inputs("bcos")
        x6 = encode_input(images)
        result = contributions(models[chosen["bcos"]], x6, labels)
        return Panel(_titled("B-cos\ncolour explanation", chosen["bcos"], dataset), chosen["bcos"],
                     rgba=explanation_image(result.dynamic_weights, x6), images=own_images("bcos"))
    jobs.append(("bcos", chosen["bcos"], bcos))

    panels = []
    for title, model_name, run in jobs:
        if model_name not in models:
            panels.append(Panel(title if "\n" in title else model_name, model_name,
                                error=f"no {model_name} checkpoint"))
        else:
            try:
                panels.append(run())
            except Exception as exc:  # noqa: BLE001 - show the failure in the panel, keep the demo going
                panels.append(Panel(title if "\n" in title else model_name, model_name,
                                    error=f"{type(exc).__name__}: {exc}"))
        bar.update(1)
    return panels


def _titled(title: str, recipe: str, dataset: str) -> str:
    """``title``, marked when ``recipe`` is trained on another dataset than the demo's rows."""
    other = RECIPES[recipe].dataset
    return title if other == dataset else f"{title}\n(on {DATASETS[other].__name__}:\nno {dataset} model)"


def extremal_panel(model: torch.nn.Module, images: Tensor, labels: Tensor, area: float = 0.1) -> Panel:
    """The extremal preservation masks of ``area`` with, under each, its preserve score: the logit of the true
    class when only the masked region is kept and the rest is blurred (:func:`preserve_caption`)."""
    from xai_plugins_workbench.methods import extremal_result

    result = extremal_result(model, images, labels, area=area)
    return Panel(f"ResNet\nextremal mask ({area:.0%})", "resnet", maps=result.masks[:, 0, 0].numpy(), is_mask=True,
                 captions=[preserve_caption(float(r)) for r in result.rewards[:, 0]])


def preserve_caption(reward: float) -> str:
    """The caption of an extremal mask: its preserve reward (target logit with the mask applied)."""
    return f"preserve {reward:.2f}"


def _spectra_png(models: dict[str, torch.nn.Module], name: str, images: Tensor, labels: Tensor,
                 path: Path) -> str | None:
    """ExplainSteer spectra of the ExplainFix model ``name`` (saliency-weighted on ``images``, which are of its
    own dataset); error text or None."""
    if name not in models:
        return f"no {name} checkpoint"
    try:
        from xai_plugins.explainfix import explain_steer, plot_spectra

        result = explain_steer(models[name], [(images, labels)])
        plot_spectra(result, path)
    except Exception as exc:  # noqa: BLE001 - reported in the figure and the report
        return f"{type(exc).__name__}: {exc}"
    return None


def _draw(images: Tensor, labels: Tensor, masks: Tensor, preds: dict[str, Tensor], panels: list[Panel],
          spectra: Path, spectra_error: str | None, path: Path, **kwargs: Any) -> None:
    import matplotlib.pyplot as plt

    fig = demo_figure(images, labels, masks, preds, panels, spectra, spectra_error, **kwargs)
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)


def demo_figure(images: Tensor, labels: Tensor, masks: Tensor, preds: dict[str, Tensor], panels: list[Panel],
                spectra: Path, spectra_error: str | None, *, dataset: str = DEFAULT_DATASET,
                resnet: str = "resnet", spectra_note: str = "") -> Any:
    """The demo's matplotlib figure: one row per image of ``dataset``, the input and then one column per panel,
    with the ExplainSteer spectra underneath; ``preds[resnet]`` labels the rows, ``spectra_note`` is added to the
    spectra's title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, cols = images.shape[0], len(panels) + 1
    fig = plt.figure(figsize=(1.45 * cols, 1.55 * n + 3.6))
    grid = fig.add_gridspec(n + 2, cols, height_ratios=[1] * n + [0.15, 2.3], hspace=0.08, wspace=0.05,
                            top=0.9, bottom=0.01)
    for i in range(n):
        ax = fig.add_subplot(grid[i, 0])
        ax.imshow(images[i].permute(1, 2, 0).numpy())
        ax.contour(masks[i, 0].numpy(), levels=[0.5], colors="white", linewidths=0.8)
        said = f"\nResNet says {int(preds[resnet][i])}" if resnet in preds else ""
        ax.set_ylabel(f"digit {int(labels[i])}{said}", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
        if i == 0:
            ax.set_title("input\n(mask outline)", fontsize=7)
        for j, panel in enumerate(panels, start=1):
            ax = fig.add_subplot(grid[i, j])
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(panel.title, fontsize=7)
            if panel.error:
                ax.set_facecolor("#eeeeee")
                if i == 0:
                    ax.text(0.5, 0.5, _wrap(panel.error), ha="center", va="center", fontsize=5, wrap=True,
                            transform=ax.transAxes)
                continue
            under = (panel.images if panel.images is not None else images)[i].permute(1, 2, 0).numpy()
            if panel.rgba is not None:
                ax.imshow(under * 0.25)
                ax.imshow(panel.rgba[i])
                continue
            if panel.captions is not None:
                ax.set_xlabel(panel.captions[i], fontsize=6, labelpad=1)
            if panel.maps is None:
                raise ValueError(f"panel {panel.title!r} has neither an error, an RGBA image nor maps")
            heat = panel.maps[i]
            if panel.is_mask:
                ax.imshow(under * 0.5)
                ax.imshow(heat, cmap="magma", alpha=0.75, vmin=0, vmax=max(float(heat.max()), 1e-12))
            else:
                lim = max(float(np.percentile(np.abs(heat), 99.5)), 1e-12)
                ax.imshow(heat, cmap="bwr", vmin=-lim, vmax=lim)
    ax = fig.add_subplot(grid[n + 1, :])
    ax.axis("off")
    if spectra_error is None and spectra.is_file():
        ax.imshow(plt.imread(spectra))
        ax.set_title("ExplainFix model: ExplainSteer spectra of its fixed spatial filters (saliency-weighted)"
                     + spectra_note, fontsize=8)
    else:
        ax.text(0.5, 0.5, f"ExplainSteer spectra unavailable: {spectra_error}", ha="center", fontsize=8)
    fig.suptitle(f"xai-plugins demo on {DATASETS[dataset].__name__} test images: relevance of the true digit "
                 "(LRP: red positive, blue negative; white outline = ground-truth box)", fontsize=9, y=0.97)
    return fig


def _wrap(text: str, width: int = 28) -> str:
    words, lines, line = text.split(), [], ""
    for w in words:
        if len(line) + len(w) + 1 > width:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}".strip()
    lines.append(line)
    return "\n".join(lines[:8])


DESCRIPTIONS = {
    "textured": "Digits on textured backgrounds (TexturedCanvas: gratings, colour blobs and six distractors; "
                "scikit-learn digits; ground-truth mask = the digit's box)",
    "digits": "Digits on a cluttered dark canvas (DigitsOnCanvas: scikit-learn digits; ground-truth mask = the "
              "digit's box)",
}


def _html(rows: list[dict[str, Any]], metrics: tuple[str, ...], figure: Path, records: dict[str, Any],
          missing: list[str], images: int, dataset: str = DEFAULT_DATASET, notes: list[str] | None = None) -> str:
    from xai_plugins_workbench.evaluate import METRICS, _cell, headline, headline_markdown

    head = "".join(f"<th>{html.escape(METRICS[k].label)} {'↑' if METRICS[k].higher_is_better else '↓'}</th>"
                   for k in metrics)
    body = []
    for r in rows:
        cells = (f"<td colspan='{len(metrics)}'>failed: {html.escape(r['error'])}</td>" if "error" in r
                 else "".join(f"<td>{_cell(r.get(k))}</td>" for k in metrics))
        body.append(f"<tr><td>{r['model']}</td><td>{DATASETS[r.get('dataset', dataset)].__name__}</td>"
                    f"<td>{html.escape(r['label'])}</td>{cells}</tr>")
    acc = "".join(f"<tr><td>{k}</td><td>{html.escape(v['recipe']['summary'])}</td>"
                  f"<td>{v['test_accuracy']:.3f}</td><td>{v['parameters']:,}</td></tr>" for k, v in records.items())
    head_md = headline_markdown(headline(rows))
    head_rows = [line.strip("|").split("|") for line in head_md.splitlines() if not line.startswith("|-")]
    head_html = "".join("<tr>" + "".join(f"<{'th' if i == 0 else 'td'}>{html.escape(c.strip())}"
                                         f"</{'th' if i == 0 else 'td'}>" for c in row) + "</tr>"
                        for i, row in enumerate(head_rows))
    miss = "".join(f"<li>{html.escape(m)}</li>" for m in missing) or "<li>nothing</li>"
    note = "".join(f" {html.escape(n)}" for n in notes or [])
    described = DESCRIPTIONS.get(dataset, DATASETS[dataset].__name__)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>xai-plugins demo</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1500px}} table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}} .wrap{{display:flex;gap:2em;flex-wrap:wrap}}
img{{max-width:900px;border:1px solid #ddd}}</style></head><body>
<h1>xai-plugins demo</h1>
<p>{html.escape(described)}, explained for the true class by every family.{note} Scores: mean ±
standard error over {images} test images; ↑/↓ = better direction.</p>
<div class="wrap"><div><img src="{html.escape(figure.name)}" alt="demo figure"></div>
<div><h2>Canonized vs plain LRP</h2><table>{head_html}</table>
<h2>Metrics</h2><table><tr><th>model</th><th>dataset</th><th>method</th>{head}</tr>{''.join(body)}</table>
<h2>Models (shipped checkpoints)</h2><table><tr><th>name</th><th>model</th><th>test accuracy</th><th>parameters</th>
</tr>{acc}</table><h2>Not shown</h2><ul>{miss}</ul></div></div></body></html>
"""


def _matching(dataset: str, labels: Tensor, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """Test items of ``dataset`` showing the same digits as ``labels``, in order (the first unused item of
    each label from ``seed``), so that a family shown on another dataset explains the same digits."""
    data = make_dataset(dataset, 200 * max(len(labels), 1), split="test", seed=seed)
    picked: list[int] = []
    for label in (int(v) for v in labels):
        index = 0
        while index in picked or int(data[index][1]) != label:
            index += 1
        picked.append(index)
    return data.tensors(picked)


def run_demo(out_dir: Path = Path("out/demo"), *, images: int = 4, metric_images: int = 16, seed: int = 0,
             checkpoint_dir: Path | None = None, progress: bool = True,
             dataset: str = DEFAULT_DATASET) -> DemoResult:
    """Run the demo on ``dataset`` (``"textured"`` or ``"digits"``) and write ``demo.png``, ``report.html``
    and ``metrics.json`` into ``out_dir``."""
    from tqdm.auto import tqdm

    from xai_plugins.evaluation.training import prepare_input
    from xai_plugins_workbench.evaluate import EvalSettings, evaluate

    start = time.perf_counter()
    chosen = demo_models(dataset)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    present = set(available_checkpoints(checkpoint_dir))
    missing = [f"{n}: no checkpoint (python -m xai_plugins.evaluation.train_checkpoints {n})"
               for n in chosen.values() if n not in present]
    models, records = {}, {}
    for name in tqdm([n for n in chosen.values() if n in present], desc="load checkpoints", disable=not progress):
        try:
            models[name] = load_checkpoint(name, checkpoint_dir)
            records[name] = checkpoint_record(name, checkpoint_dir)
        except Exception as exc:  # noqa: BLE001 - e.g. the family of this checkpoint is not installed
            missing.append(f"{name}: {type(exc).__name__}: {exc}")
    x, y, masks = make_dataset(dataset, images, split="test", seed=seed + 3000).tensors()
    data = {dataset: (x, y)}
    others = sorted({RECIPES[n].dataset for n in chosen.values()} - {dataset})
    for other in others:
        data[other] = _matching(other, y, seed + 3000)[:2]
    with torch.no_grad():
        preds = {n: m(prepare_input(n, data[RECIPES[n].dataset][0])).argmax(1) for n, m in models.items()}
    panels_bar = tqdm(total=12, desc="explain", disable=not progress)
    panels = _panels(models, chosen, data, dataset, panels_bar)
    spectra = out_dir / "explainsteer.png"
    fix = chosen["explainfix"]
    spectra_error = _spectra_png(models, fix, *data[RECIPES[fix].dataset], spectra)
    panels_bar.update(1)
    panels_bar.close()
    missing += [f"{p.title.replace(chr(10), ' ')}: {p.error}" for p in panels if p.error]
    if spectra_error:
        missing.append(f"ExplainSteer spectra: {spectra_error}")
    notes = [f"{FAMILIES[f]} has no {dataset} recipe: shown on {DATASETS[RECIPES[n].dataset].__name__} test images "
             f"of the same digits (checkpoint {n})." for f, n in chosen.items() if RECIPES[n].dataset != dataset]
    spectra_note = "" if RECIPES[fix].dataset == dataset else f" on {DATASETS[RECIPES[fix].dataset].__name__} images"
    figure = out_dir / "demo.png"
    _draw(x, y, masks, preds, panels, spectra, spectra_error, figure, dataset=dataset, resnet=chosen["resnet"],
          spectra_note=spectra_note)
    rows = []
    for name_dataset in (dataset, *others):
        evaluated = [n for f, n in chosen.items() if RECIPES[n].dataset == name_dataset and n in models
                     and f != "explainfix"]
        if not evaluated:
            continue
        settings = EvalSettings(models=evaluated, dataset=name_dataset, methods=DEMO_METHODS, metrics=DEMO_METRICS,
                                images=metric_images, batch_size=16, seed=seed, checkpoint_dir=checkpoint_dir)
        rows += [{**row, "dataset": name_dataset} for row in evaluate(settings, progress=progress)]
    metrics_path = out_dir / "metrics.json"
    metrics_path.write_text(json.dumps({"dataset": dataset, "models": records, "rows": rows, "notes": notes},
                                       indent=2) + "\n")
    report = out_dir / "report.html"
    report.write_text(_html(rows, DEMO_METRICS, figure, records, missing, metric_images, dataset, notes))
    return DemoResult(figure, report, metrics_path, missing, time.perf_counter() - start, dataset, chosen, panels)
