"""Hyperparameter search for LRP composites (Pahde et al., CVPRW 2023): a gamma per layer group and
canonization on or off, scored by a chosen metric on the ground-truth dataset.

``search(...)`` runs the grid locally by default. With ``backend="ray"`` (extra ``distributed``) the same
objective runs as a Ray Tune grid search: on a local Ray instance, or on a cluster when Ray is already
initialised with an address, without changing anything else.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from xai_plugins.evaluation.training import RECIPES, load_checkpoint, make_dataset
from xai_plugins_workbench.lrp import GROUPS, LrpConfig, zennit_lrp

OBJECTIVES = ("mass_accuracy", "rank_accuracy", "pointing_game", "region_aopc")


@dataclass(frozen=True)
class Trial:
    """One evaluated configuration and its objective value (higher is better)."""

    config: dict[str, Any]
    score: float


@dataclass(frozen=True)
class SearchResult:
    """Every trial, best first, and the objective that ranked them."""

    objective: str
    trials: list[Trial]

    @property
    def best(self) -> Trial:
        """The trial with the highest score."""
        return self.trials[0]

    def markdown(self) -> str:
        """The trials as a markdown table, best first."""
        lines = [f"| canonize | {' | '.join(f'gamma {g}' for g in GROUPS)} | {self.objective} |",
                 "|---|" + "---|" * (len(GROUPS) + 1)]
        for t in self.trials:
            gam = " | ".join(f"{t.config[f'gamma_{g}']:g}" for g in GROUPS)
            lines.append(f"| {t.config['canonize']} | {gam} | {t.score:.4f} |")
        return "\n".join(lines)


def grid(gammas: Sequence[float] = (0.0, 0.1, 0.25, 1.0), canonize: Sequence[bool] = (True, False)
         ) -> list[dict[str, Any]]:
    """The full grid: every gamma for every layer group, with and without canonization."""
    return [{"canonize": c, **{f"gamma_{g}": v for g, v in zip(GROUPS, combo)}}
            for c in canonize for combo in itertools.product(gammas, repeat=len(GROUPS))]


def objective(config: dict[str, Any], *, model_name: str, metric: str, images: int = 32, seed: int = 0,
              checkpoint_dir: str | None = None) -> float:
    """Mean ``metric`` of LRP with ``config`` on ``images`` test images of the checkpoint ``model_name``, drawn
    from the dataset its recipe was trained on (digits or textured) at its image size."""
    from xai_plugins.evaluation import metrics as M

    if metric not in OBJECTIVES:
        raise ValueError(f"unknown objective {metric!r}; choose from {', '.join(OBJECTIVES)}")
    model = load_checkpoint(model_name, Path(checkpoint_dir) if checkpoint_dir else None)
    recipe = RECIPES[model_name]
    x, y, masks = make_dataset(recipe.dataset, images, split="test", seed=seed + 2000,
                               size=recipe.image_size).tensors()
    lrp = LrpConfig(gammas={g: float(config[f"gamma_{g}"]) for g in GROUPS}, canonize=bool(config["canonize"]))
    relevance = zennit_lrp(model, x, y, lrp)
    if metric == "mass_accuracy":
        scores = M.relevance_mass_accuracy(relevance, masks)
    elif metric == "rank_accuracy":
        scores = M.relevance_rank_accuracy(relevance, masks)
    elif metric == "pointing_game":
        scores = M.pointing_game(relevance, masks)
    else:
        scores = M.region_perturbation(model, x, y, relevance, patch_size=4, regions=16).mean(1)
    scores = scores[~torch.isnan(scores)]
    return float(scores.mean()) if scores.numel() else float("nan")


def search(model_name: str, configs: Sequence[dict[str, Any]], *, metric: str = "mass_accuracy",
           images: int = 32, seed: int = 0, backend: str = "local", checkpoint_dir: str | None = None,
           progress: bool = True, ray_storage: str | None = None) -> SearchResult:
    """Score every configuration with :func:`objective` and rank them (best first).

    ``backend="local"`` loops in this process; ``backend="ray"`` runs a Ray Tune grid search (``ray[tune]``,
    extra ``distributed``), starting a local Ray instance unless one is initialised already.
    """
    kwargs: dict[str, Any] = {"model_name": model_name, "metric": metric, "images": images, "seed": seed,
              "checkpoint_dir": checkpoint_dir}
    if not configs:
        raise ValueError("the search grid is empty; pass at least one configuration")
    if backend == "local":
        trials = []
        iterator = configs
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(configs, desc=f"search {model_name}", unit="config")
        for config in iterator:
            trials.append(Trial(dict(config), objective(config, **kwargs)))
    elif backend == "ray":
        trials = _ray_search(configs, kwargs, ray_storage)
    else:
        raise ValueError(f"backend must be 'local' or 'ray', got {backend!r}")
    trials.sort(key=lambda t: -math.inf if math.isnan(t.score) else t.score, reverse=True)
    return SearchResult(metric, trials)


def _ray_trainable(config: dict[str, Any], **kwargs: Any) -> dict[str, float]:
    torch.set_num_threads(1)
    return {"score": objective(config, **kwargs)}


def _ray_search(configs: Sequence[dict[str, Any]], kwargs: dict[str, Any],
                storage: str | None) -> list[Trial]:
    try:
        import ray
        from ray import tune
    except ImportError as exc:
        raise ImportError("backend='ray' needs Ray Tune: pip install 'xai-plugins-workbench[distributed]'") from exc
    started = False
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        started = True
    try:
        keys = sorted(configs[0])
        space = {"point": tune.grid_search([tuple(c[k] for k in keys) for c in configs])}

        def trainable(cfg: dict[str, Any]) -> dict[str, float]:
            return _ray_trainable(dict(zip(keys, cfg["point"])), **kwargs)

        run_config = tune.RunConfig(storage_path=storage, verbose=0) if storage else tune.RunConfig(verbose=0)
        tuner = tune.Tuner(tune.with_resources(trainable, {"cpu": 1}), param_space=space,
                           tune_config=tune.TuneConfig(metric="score", mode="max"), run_config=run_config)
        results = tuner.fit()
        trials = []
        for index in range(len(results)):
            result = results[index]
            if result.error or result.config is None or result.metrics is None:
                raise RuntimeError(f"a Ray Tune trial failed: {result.error or 'it reported no score'}")
            trials.append(Trial(dict(zip(keys, result.config["point"])), float(result.metrics["score"])))
        return trials
    finally:
        if started:
            ray.shutdown()
