"""The implementation-invariance report: worst relative attribution difference per attributor per pair of
functionally equivalent models (the pairs of :mod:`xai_plugins.conformance.invariance`).

Rows: every registered model-agnostic attributor of xai-plugins, Captum's ``Saliency``, ``InputXGradient``,
``IntegratedGradients`` and ``LRP`` (plain and inside ``xai_plugins_captum.canonized``), and Zennit's
``EpsilonPlusFlat`` (plain and with our canonizers). A method is implementation invariant on a pair when the
difference is at float rounding level (at most :data:`TOLERANCE`); an error is reported as such.
"""

from __future__ import annotations

import datetime
import importlib.metadata as metadata
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from xai_plugins.conformance.invariance import PAIRS, ModelPair, pair_difference, pair_function_gap

TOLERANCE = 1e-4
BUILTIN_DISTRIBUTION = "xai-plugins"
Attribute = Callable[[nn.Module, torch.Tensor, Any], torch.Tensor]


@dataclass
class Method:
    """One row of the report: a name, where it comes from, and ``attribute(model, inputs, targets)``."""

    name: str
    source: str
    attribute: Attribute
    note: str = ""


@dataclass
class Report:
    """Results by method and pair: a float (worst relative difference) or an error message."""

    seeds: int
    pairs: list[ModelPair]
    gaps: dict[str, float]
    methods: list[Method]
    results: dict[str, dict[str, float | str]] = field(default_factory=dict)


def _targets(targets: Any) -> torch.Tensor:
    return torch.as_tensor(targets, dtype=torch.long)


def _captum(cls_name: str, **kwargs: Any) -> Attribute:
    def attribute(model: nn.Module, x: torch.Tensor, targets: Any) -> torch.Tensor:
        from captum import attr

        return getattr(attr, cls_name)(model).attribute(x, target=_targets(targets), **kwargs)

    return attribute


def our_canonizers(model: nn.Module) -> list[Any]:
    """Our canonizers for ``model``: ``canonizers_for`` for a supported architecture, otherwise the
    model-agnostic ``MergeBatchNorm`` (the pairs are small generic CNNs)."""
    from xai_plugins.canonizers import MergeBatchNorm, canonizers_for

    try:
        return canonizers_for(model)
    except ValueError:
        return [MergeBatchNorm()]


def _captum_lrp_canonized(model: nn.Module, x: torch.Tensor, targets: Any) -> torch.Tensor:
    from captum.attr import LRP

    from xai_plugins_captum import canonized

    with canonized(model, canonizers=our_canonizers(model)):
        return LRP(model).attribute(x, target=_targets(targets))


def _zennit(with_canonizers: bool) -> Attribute:
    def attribute(model: nn.Module, x: torch.Tensor, targets: Any) -> torch.Tensor:
        from zennit.attribution import Gradient
        from zennit.composites import EpsilonPlusFlat

        canonizers: list[Any] = []
        if with_canonizers:
            try:
                from xai_plugins_zennit import canonizers_for

                canonizers = canonizers_for(model)
            except ValueError:
                canonizers = our_canonizers(model)
        t = _targets(targets)
        composite = EpsilonPlusFlat(canonizers=canonizers)
        with Gradient(model=model, composite=composite) as attributor:
            _, relevance = attributor(x, lambda out: nn.functional.one_hot(t, out.shape[1]).to(out) * out)
        return relevance

    return attribute


def _ours(component: Any, kwargs: dict[str, Any]) -> Attribute:
    def attribute(model: nn.Module, x: torch.Tensor, targets: Any) -> torch.Tensor:
        return component.load()(model, x, targets, **kwargs)

    return attribute


def methods(include_ours: bool = True, kwargs: dict[str, dict[str, Any]] | None = None) -> list[Method]:
    """The rows of the report, ours (built-in, model-agnostic) first. Our attributors are called with
    ``kwargs[name]`` if given, else with their ``example_kwargs`` metadata (what the conformance suite uses)."""
    kwargs = kwargs or {}
    rows: list[Method] = []
    if include_ours:
        import xai_plugins

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            registered = xai_plugins.list_components("attributor")
        for comp in registered:
            if comp.distribution == BUILTIN_DISTRIBUTION and not comp.model_types and "example_model" not in comp.extra:
                chosen = dict(kwargs.get(comp.name, comp.extra.get("example_kwargs", {})))
                note = ", ".join(f"{k}={v!r}" for k, v in chosen.items())
                rows.append(Method(comp.name, f"xai-plugins ({comp.plugin})", _ours(comp, chosen), note))
    rows += [
        Method("Saliency", "Captum", _captum("Saliency", abs=False), "abs=False"),
        Method("InputXGradient", "Captum", _captum("InputXGradient")),
        Method("IntegratedGradients", "Captum", _captum("IntegratedGradients", n_steps=32), "n_steps=32"),
        Method("LRP", "Captum", _captum("LRP"), "default rules"),
        Method("LRP + canonized", "Captum + xai-plugins", _captum_lrp_canonized,
               "inside xai_plugins_captum.canonized(model), else with MergeBatchNorm"),
        Method("EpsilonPlusFlat", "Zennit", _zennit(False), "relevance started at the target logit"),
        Method("EpsilonPlusFlat + canonizers", "Zennit + xai-plugins", _zennit(True),
               "canonizers_for(model), else MergeBatchNorm"),
    ]
    return rows


def _short_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:160]}"


def run(rows: Sequence[Method] | None = None, seeds: int = 3, progress: bool = True) -> Report:
    """Run every method over every pair for ``seeds`` seeds; keep the worst difference (or the first error)."""
    rows = list(methods() if rows is None else rows)
    report = Report(seeds, list(PAIRS), {p.name: max(pair_function_gap(p, s) for s in range(seeds)) for p in PAIRS},
                    rows)
    jobs = [(m, p) for m in rows for p in PAIRS]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc="invariance", unit="cell")
    for method, pair in jobs:
        cell: float | str
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cell = max(pair_difference(method.attribute, pair, seed) for seed in range(seeds))
        except Exception as exc:  # noqa: BLE001 - a failing method is a result of the report
            cell = _short_error(exc)
        report.results.setdefault(method.name, {})[pair.name] = cell
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    return report


def _versions() -> dict[str, str]:
    out = {}
    for dist in ("torch", "captum", "zennit", "xai-plugins"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def as_json(report: Report) -> dict[str, Any]:
    """The report as plain data."""
    return {
        "generated": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
        "versions": _versions(),
        "tolerance": TOLERANCE,
        "seeds": report.seeds,
        "pairs": [{"name": p.name, "description": p.description, "function_gap": report.gaps[p.name]}
                  for p in report.pairs],
        "methods": [{"name": m.name, "source": m.source, "note": m.note,
                     "results": {k: (v if isinstance(v, float) else {"error": v})
                                 for k, v in report.results.get(m.name, {}).items()}}
                    for m in report.methods],
    }


def _cell(value: float | str, errors: list[str]) -> str:
    if isinstance(value, str):
        if value not in errors:
            errors.append(value)
        return f"error [{errors.index(value) + 1}]"
    text = f"{value:.1e}"
    return text if value <= TOLERANCE else f"**{text}**"


def as_markdown(report: Report, command: str = "xai-plugins invariance --output-dir docs") -> str:
    """The report as the markdown page ``docs/invariance.md``; ``command`` is how it was generated."""
    data = as_json(report)
    errors: list[str] = []
    lines = [
        "# Implementation invariance",
        "",
        "Two models that compute the same function should get the same attributions (Sundararajan, Taly and Yan,",
        "*Axiomatic Attribution for Deep Networks*, ICML 2017). Each column is a pair of functionally equivalent",
        "models from `xai_plugins.conformance.invariance.PAIRS` (small CNNs, random weights with randomised",
        "BatchNorm statistics, eval mode, input 2x3x12x12, one target per sample); each cell is the worst relative",
        f"difference `max |A - B| / max |A|` of the two attributions over {report.seeds} seed(s). Values at float",
        f"rounding level (at most {TOLERANCE:g}) mean invariant; **bold** values are not invariant.",
        "",
        f"Generated by `{command}` on {data['generated']} with "
        + ", ".join(f"{k} {v}" for k, v in data["versions"].items()) + ".",
        "",
        "## Model pairs",
        "",
        "| pair | what differs | output difference |",
        "| --- | --- | --- |",
    ]
    lines += [f"| `{p['name']}` | {p['description']} | {p['function_gap']:.1e} |" for p in data["pairs"]]
    lines += ["", "## Worst relative attribution difference", ""]
    names = [p.name for p in report.pairs]
    lines.append("| method | source | " + " | ".join(f"`{n}`" for n in names) + " |")
    lines.append("| --- | --- | " + " | ".join("---:" for _ in names) + " |")
    for m in report.methods:
        cells = [_cell(report.results[m.name][n], errors) for n in names]
        label = f"{m.name} ({m.note})" if m.note else m.name
        lines.append(f"| {label} | {m.source} | " + " | ".join(cells) + " |")
    if errors:
        lines += ["", "Errors:", ""]
        lines += [f"{i}. `{e}`" for i, e in enumerate(errors, 1)]
    lines += [
        "",
        "## Reading the table",
        "",
        "- Gradient-based methods (Saliency, InputXGradient, IntegratedGradients and gradient-based attributors",
        "  of xai-plugins) only see the function, so they are invariant on every pair.",
        "- Rule-based methods (LRP) see the structure: BatchNorm is a layer of its own, a reused module gets",
        "  one rule for several places, an identity or a split linear layer adds a layer a rule acts on, and a",
        "  functional call in `forward` gets no rule at all. Canonization rewrites the model into one canonical",
        "  structure first, which removes the differences it covers.",
        "- The JSON next to this page (`invariance.json`) holds the same numbers for tools.",
        "",
    ]
    return "\n".join(lines)
