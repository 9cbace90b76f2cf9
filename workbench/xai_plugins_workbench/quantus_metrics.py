"""The evaluation metrics that Quantus has, computed through Quantus 0.6 (optional extra ``eval``).

Each function takes ``(sample, attributions)`` like the torch metrics in :mod:`xai_plugins_workbench.evaluate`
and returns one score per image. The Quantus settings are those that ``tests/evaluation/test_metrics.py``
shows to agree with :mod:`xai_plugins.evaluation.metrics` (no ``abs``, no normalisation, zero baseline), so
the ``quantus`` and ``torch`` backends of ``xai-plugins evaluate`` give the same numbers.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from xai_plugins.evaluation import metrics as M

if TYPE_CHECKING:
    from xai_plugins_workbench.evaluate import Sample


def _quantus() -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import quantus
    except ImportError as exc:
        raise ImportError("the quantus metrics backend needs Quantus: pip install 'xai-plugins[eval]', "
                          "or pass --metrics-backend torch") from exc
    return quantus


def _run(cls_name: str, init: dict[str, Any], **call: Any) -> Tensor:
    """Build the Quantus metric ``cls_name`` with ``init`` and call it; scores as a float tensor per image."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metric = getattr(_quantus(), cls_name)(**{"abs": False, "normalise": False, "disable_warnings": True,
                                                  **init})
        scores = metric(**call)
    return torch.as_tensor(np.asarray(scores, dtype=np.float64)).float()


def _np(t: Tensor) -> np.ndarray:
    return t.detach().cpu().float().numpy().copy()


def _pixel_map(a: Tensor) -> np.ndarray:
    """Relevance per pixel as ``(N, 1, H, W)`` (channels, including the B-cos encoding's, summed)."""
    return _np(M.pixel_relevance(a)[:, None])


def _localisation(cls_name: str, s: Sample, a: np.ndarray) -> Tensor:
    return _run(cls_name, {}, model=None, x_batch=np.zeros_like(a), y_batch=_np(s.target).astype(int),
                a_batch=a, s_batch=_np(s.masks))


def mass_accuracy(s: Sample, a: Tensor) -> Tensor:
    """Relevance mass accuracy on positive relevance (the paper's definition, as the torch backend)."""
    return _localisation("RelevanceMassAccuracy", s, np.clip(_pixel_map(a), 0, None))


def rank_accuracy(s: Sample, a: Tensor) -> Tensor:
    return _localisation("RelevanceRankAccuracy", s, _pixel_map(a))


def pointing_game(s: Sample, a: Tensor) -> Tensor:
    return _localisation("PointingGame", s, _pixel_map(a))


def _faithfulness(cls_name: str, init: dict[str, Any], s: Sample, a: np.ndarray, softmax: bool) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metric = getattr(_quantus(), cls_name)(abs=False, normalise=False, disable_warnings=True,
                                               perturb_baseline=0.0, **init)
        curves = metric(model=s.model, x_batch=_np(s.inputs), y_batch=_np(s.target).astype(int),
                        a_batch=a, device="cpu", softmax=softmax)
    return np.asarray(curves, dtype=np.float64)


def region_aopc(s: Sample, a: Tensor) -> Tensor:
    """AOPC over 16 MoRF regions of 4x4 pixels on the target logit."""
    curves = _faithfulness("RegionPerturbation", {"patch_size": 4, "regions_evaluation": 16, "order": "morf"},
                           s, _pixel_map(a), softmax=False)
    return torch.as_tensor(curves.mean(1)).float()


def pixel_flipping(s: Sample, a: Tensor) -> Tensor:
    """Mean softmax probability of the target over 32 flipping steps to an all-black input.

    Quantus ranks and flips single channel values, so the pixel map is repeated over the C channels and its
    curve, C times finer, is read after every C-th step: there all channels of the same pixels are flipped.
    """
    _, channels, side, _ = s.inputs.shape
    a_channels = np.repeat(_pixel_map(a), channels, axis=1)
    curves = _faithfulness("PixelFlipping", {"features_in_step": side * side // 32}, s, a_channels, softmax=True)
    return torch.as_tensor(curves[:, channels - 1::channels].mean(1)).float()


def max_sensitivity(s: Sample, a: Tensor) -> Tensor:
    """Max sensitivity with radius 0.05 and 2 draws, the noise drawn from the sample's generator as in torch."""

    def perturb(arr: np.ndarray, **_: Any) -> np.ndarray:
        noise = torch.rand(arr.shape, generator=s.generator, dtype=s.inputs.dtype) * 2 - 1
        return arr + 0.05 * noise.numpy()

    def explain(model: Any, inputs: np.ndarray, targets: np.ndarray, **_: Any) -> np.ndarray:
        return _np(s.method.fn(s.model, torch.as_tensor(inputs), torch.as_tensor(targets)))

    return _run("MaxSensitivity", {"nr_samples": 2, "perturb_func": perturb,
                                   "return_nan_when_prediction_changes": False},
                model=s.model, x_batch=_np(s.inputs), y_batch=_np(s.target).astype(int), a_batch=_np(a),
                device="cpu", explain_func=explain, softmax=False)


def randomisation(s: Sample, a: Tensor) -> Tensor:
    """Quantus' model parameter randomisation test (MPRT, Adebayo et al. 2018) on the fully randomised model:
    Spearman correlation of the absolute pixel maps before and after (lower is better)."""

    def explain(model: Any, inputs: np.ndarray, targets: np.ndarray, **_: Any) -> np.ndarray:
        result = s.method.fn(model, torch.as_tensor(inputs), torch.as_tensor(targets))
        return _np(M.pixel_relevance(result)[:, None])

    correlations = _run("MPRT", {"abs": True, "skip_layers": True, "return_last_correlation": True,
                                 "seed": int(s.generator.initial_seed())},
                        model=s.model, x_batch=_np(s.inputs), y_batch=_np(s.target).astype(int),
                        a_batch=_pixel_map(a), device="cpu", explain_func=explain, softmax=False)
    return correlations.reshape(-1)


def sparseness(s: Sample, a: Tensor) -> Tensor:
    return _run("Sparseness", {"abs": True}, model=None, x_batch=np.zeros_like(_pixel_map(a)),
                y_batch=_np(s.target).astype(int), a_batch=np.abs(_pixel_map(a)))


def complexity(s: Sample, a: Tensor) -> Tensor:
    return _run("Complexity", {"abs": True}, model=None, x_batch=np.zeros_like(_pixel_map(a)),
                y_batch=_np(s.target).astype(int), a_batch=np.abs(_pixel_map(a)))


QUANTUS_METRICS: dict[str, Callable[[Sample, Tensor], Tensor]] = {
    "mass_accuracy": mass_accuracy,
    "rank_accuracy": rank_accuracy,
    "pointing_game": pointing_game,
    "region_aopc": region_aopc,
    "pixel_flipping": pixel_flipping,
    "max_sensitivity": max_sensitivity,
    "randomisation": randomisation,
    "sparseness": sparseness,
    "complexity": complexity,
}
