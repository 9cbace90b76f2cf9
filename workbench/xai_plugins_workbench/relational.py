"""The relational benchmark: LRP on the trained Relation Network, with and without its canonizer, scored against
the ground-truth masks of Sort-of-CLEVR questions (Pahde et al., CVPRW 2023, evaluate the canonizer on CLEVR-XAI).

Each method explains the model's answer to the question as a function of the image (the question held fixed,
:func:`~xai_plugins.evaluation.relational.bound_to_question`). Scores per question group (non-relational,
relational): relevance mass and rank accuracy, and the relevance sum over the logit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from xai_plugins.evaluation import metrics as M
from xai_plugins.evaluation.controls import input_attribution, random_attribution
from xai_plugins.evaluation.relational import RECIPE, RelationalRecipe, bound_to_question, dataset

Explain = Callable[[nn.Module, Tensor, Tensor, Tensor], Tensor]


def _one_hot_logit(target: Tensor) -> Callable[[Tensor], Tensor]:
    return lambda out: torch.zeros_like(out).scatter(1, target[:, None], 1.0) * out


def zennit_lrp(model: nn.Module, images: Tensor, questions: Tensor, target: Tensor, *, canonize: bool) -> Tensor:
    """Zennit ``EpsilonPlusFlat`` relevance of the target logit w.r.t. the image; canonized by applying the
    Relation Network canonizer (with the adapter's rules) to the network inside the question binding."""
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonPlusFlat

    from xai_plugins.canonizers.relation_network import RelationNetworkCanonizer
    from xai_plugins_zennit.canonizers import for_zennit

    bound = bound_to_question(model, questions)
    canonizer = for_zennit(RelationNetworkCanonizer()) if canonize else None
    if canonizer is not None:
        canonizer.apply(model)
    try:
        with Gradient(model=bound, composite=EpsilonPlusFlat()) as attributor:
            _, relevance = attributor(images.detach(), _one_hot_logit(target))
    finally:
        if canonizer is not None:
            canonizer.remove()
    return relevance.detach()


def captum_lrp(model: nn.Module, images: Tensor, questions: Tensor, target: Tensor, *, canonize: bool) -> Tensor:
    """Captum ``LRP`` w.r.t. the image, inside :func:`xai_plugins_captum.canonized` on the network if asked."""
    import contextlib

    from captum.attr import LRP

    from xai_plugins_captum import canonized
    from xai_plugins_workbench.lrp import captum_attributes_removed

    bound = bound_to_question(model, questions)
    context = canonized(model) if canonize else contextlib.nullcontext()
    with captum_attributes_removed(bound), context:
        return LRP(bound).attribute(images.detach().clone().requires_grad_(True), target=target).detach()


def gradient(model: nn.Module, images: Tensor, questions: Tensor, target: Tensor) -> Tensor:
    """Input x gradient of the target logit w.r.t. the image."""
    x = images.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(model(x, questions).gather(1, target[:, None]).sum(), x)
    return (x * grad).detach()


METHODS: dict[str, Explain] = {
    "lrp_zennit_plain": lambda m, x, q, t: zennit_lrp(m, x, q, t, canonize=False),
    "lrp_zennit_canonized": lambda m, x, q, t: zennit_lrp(m, x, q, t, canonize=True),
    "lrp_captum_plain": lambda m, x, q, t: captum_lrp(m, x, q, t, canonize=False),
    "lrp_captum_canonized": lambda m, x, q, t: captum_lrp(m, x, q, t, canonize=True),
    "input_x_gradient": gradient,
    "control_input": lambda m, x, q, t: input_attribution(m, x),
    "control_random": lambda m, x, q, t: random_attribution(m, x),
}
"""The compared methods on the Relation Network: ``fn(model, images, questions, target) -> relevance``."""


def evaluate_relational(model: nn.Module, *, images: int = 200, seed: int = 0, batch_size: int = 50,
                        recipe: RelationalRecipe = RECIPE, methods: tuple[str, ...] = tuple(METHODS)
                        ) -> list[dict[str, Any]]:
    """One row per (method, question group) with the mean and standard error of each score on ``images`` test
    scenes drawn as ``recipe`` (the one the model was trained with) draws them; the target is the model's own
    answer (explanations of the prediction, as in CLEVR-XAI), ``correct`` its accuracy."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    model.eval()
    data = dataset(recipe, images, split="test", seed=seed + 5000)
    x, q, answers, masks = data.tensors()
    with torch.no_grad():
        logits = model(x, q)
    target = logits.argmax(1)
    relational = q[:, 7] > 0
    rows = []
    for name in methods:
        parts = [METHODS[name](model, x[s], q[s], target[s]) for s in
                 (slice(i, i + batch_size) for i in range(0, images, batch_size))]
        relevance = torch.cat(parts)
        scores = {"mass_accuracy": M.relevance_mass_accuracy(relevance, masks),
                  "rank_accuracy": M.relevance_rank_accuracy(relevance, masks),
                  "relevance_over_logit": relevance.flatten(1).sum(1) / logits.gather(1, target[:, None])[:, 0],
                  "mask_share": masks.flatten(1).mean(1)}
        for group, select in (("non_relational", ~relational), ("relational", relational)):
            row: dict[str, Any] = {"method": name, "questions": group, "n": int(select.sum()),
                                   "correct": float((target[select] == answers[select]).float().mean())}
            for key, values in scores.items():
                v = values[select].float()
                v = v[~torch.isnan(v)]
                row[key] = {"mean": float(v.mean()) if v.numel() else math.nan,
                            "sem": float(v.std() / math.sqrt(v.numel())) if v.numel() > 1 else math.nan}
            rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """The rows as a markdown table (mean ± standard error); ``mask_share`` is the share of the canvas the
    ground-truth objects cover, what a map spread evenly scores on mass accuracy."""
    keys = ("mass_accuracy", "rank_accuracy", "mask_share", "relevance_over_logit")
    lines = ["| method | questions | n | model accuracy | " + " | ".join(keys) + " |",
             "|---|---|---|---|" + "---|" * len(keys)]
    for r in rows:
        cells = [f"{r[k]['mean']:.3f} ± {r[k]['sem']:.3f}" for k in keys]
        lines.append(f"| {r['method']} | {r['questions']} | {r['n']} | {r['correct']:.3f} | " + " | ".join(cells)
                     + " |")
    return "\n".join(lines)
