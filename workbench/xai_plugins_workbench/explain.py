"""Explain a user's own model and image: ``xai-plugins explain --model torchvision:resnet50 --weights FILE
--image FILE --method NAME --target N -o out.png``.

``--model`` is ``torchvision:<builder>`` (built with ``weights=None``), ``registry:<name>`` (a registered
model builder) or ``checkpoint:<recipe>`` (a shipped benchmark checkpoint). ``--method`` is ``lrp`` (a Zennit
composite with this model's canonizers unless ``--no-canonize``), ``captum-lrp``, ``gradient`` or the name of
any registered attributor (``xai-plugins list --kind attributor``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
COMPOSITES = ("epsilon_gamma_box", "epsilon_plus_flat", "epsilon_plus", "epsilon_alpha2_beta1_flat", "grouped")


@dataclass
class Explanation:
    """The image as the model saw it, the attribution, the explained class and the model's prediction."""

    image: Tensor
    attribution: Tensor
    target: int
    predicted: int


def build_model(spec: str, weights: Path | None = None, num_classes: int | None = None) -> nn.Module:
    """A model from ``torchvision:NAME``, ``registry:NAME`` or ``checkpoint:RECIPE``, with ``weights`` loaded."""
    kind, sep, name = spec.partition(":")
    if not sep or kind not in ("torchvision", "registry", "checkpoint"):
        raise ValueError(f"--model {spec!r} must be torchvision:NAME, registry:NAME or checkpoint:RECIPE "
                         "(e.g. torchvision:resnet50)")
    if kind == "checkpoint":
        from xai_plugins.evaluation.training import load_checkpoint

        return load_checkpoint(name)
    state = _load_state(weights) if weights else None
    if num_classes is None and state is not None:
        num_classes = _classes_from_state(state)
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    if kind == "torchvision":
        import torchvision

        try:
            model = torchvision.models.get_model(name, weights=None, **kwargs)
        except ValueError as exc:
            raise ValueError(f"torchvision has no model {name!r}; see torchvision.models.list_models()") from exc
    else:
        import xai_plugins

        model = xai_plugins.get("model", name)(**kwargs)
    if state is not None:
        model.load_state_dict(state)
    return model.eval()


def _load_state(path: Path) -> dict[str, Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict")
    return state


def _classes_from_state(state: dict[str, Tensor]) -> int | None:
    """The output size of the last 2-D weight in the state dict (the classifier), if any."""
    for value in reversed(list(state.values())):
        if value.dim() == 2:
            return int(value.shape[0])
    return None


def load_image(path: Path, size: int | None, normalize: str) -> tuple[Tensor, Tensor]:
    """The image as ``(1, 3, H, W)`` in [0, 1] (resized so the short side is ``size``, centre-cropped) and as
    the model input (ImageNet-normalised when ``normalize == "imagenet"``)."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file {path} does not exist")
    img = Image.open(path).convert("RGB")
    if size:
        scale = size / min(img.size)
        img = img.resize((max(size, round(img.width * scale)), max(size, round(img.height * scale))),
                         Image.BILINEAR)
        left, top = (img.width - size) // 2, (img.height - size) // 2
        img = img.crop((left, top, left + size, top + size))
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    if normalize == "imagenet":
        mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        return x, (x - mean) / std
    if normalize != "none":
        raise ValueError(f"--normalize must be 'imagenet' or 'none', got {normalize!r}")
    return x, x


def attribute(model: nn.Module, inputs: Tensor, target: int, method: str, *, composite: str = "epsilon_gamma_box",
              canonize: bool = True, low: Tensor | float = 0.0, high: Tensor | float = 1.0) -> Tensor:
    """Attribution of ``target`` for ``inputs`` by ``method`` (see the module docstring)."""
    t = torch.tensor([target])
    if method == "gradient":
        from xai_plugins_workbench.methods import gradient

        return gradient(model, inputs, t)
    if method == "captum-lrp":
        from xai_plugins_workbench.lrp import captum_lrp

        return captum_lrp(model, inputs, t, canonize=canonize)
    if method == "lrp":
        return _zennit(model, inputs, t, composite, canonize, low, high)
    import xai_plugins

    names = [c.name for c in xai_plugins.list_components("attributor")]
    if method not in names:
        raise ValueError(f"unknown method {method!r}; use lrp, captum-lrp, gradient or a registered attributor: "
                         f"{', '.join(names) or 'none registered'}")
    return xai_plugins.get("attributor", method)(model, inputs, t).detach()


def _zennit(model: nn.Module, inputs: Tensor, t: Tensor, composite: str, canonize: bool,
            low: Tensor | float, high: Tensor | float) -> Tensor:
    from zennit import composites as zc
    from zennit.attribution import Gradient

    from xai_plugins_workbench.lrp import LrpConfig, zennit_lrp
    from xai_plugins_zennit import canonizers_for

    if composite == "grouped":
        lo = float(low) if not isinstance(low, Tensor) else float(low.min())
        hi = float(high) if not isinstance(high, Tensor) else float(high.max())
        return zennit_lrp(model, inputs, t, LrpConfig(canonize=canonize, low=lo, high=hi))
    if composite not in COMPOSITES:
        raise ValueError(f"unknown composite {composite!r}; choose from {', '.join(COMPOSITES)}")
    canonizers = canonizers_for(model) if canonize else []
    if composite == "epsilon_gamma_box":
        comp = zc.EpsilonGammaBox(low=torch.as_tensor(low).expand_as(inputs),
                                  high=torch.as_tensor(high).expand_as(inputs), canonizers=canonizers)
    else:
        comp = zc.COMPOSITES[composite](canonizers=canonizers)
    model.eval()
    with Gradient(model=model, composite=comp) as attributor:
        _, relevance = attributor(inputs.detach(),
                                  lambda out: torch.zeros_like(out).scatter(1, t[:, None], 1.0) * out)
    return relevance.detach()


def explain_image(model: nn.Module, image: Tensor, inputs: Tensor, target: int | None, method: str,
                  **kwargs: object) -> Explanation:
    """Explain ``target`` (the predicted class when None) for one image."""
    with torch.no_grad():
        predicted = int(model(inputs).argmax(1))
    target = predicted if target is None else target
    return Explanation(image, attribute(model, inputs, target, method, **kwargs), target, predicted)


def save_figure(explanation: Explanation, path: Path, title: str) -> Path:
    """Input and heat map side by side (red positive, blue negative, symmetric 99.5th-percentile scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heat = explanation.attribution[0].sum(0).numpy()
    lim = max(float(np.percentile(np.abs(heat), 99.5)), 1e-12)
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.2))
    axes[0].imshow(explanation.image[0].permute(1, 2, 0).numpy())
    axes[0].set_title(f"input (predicted {explanation.predicted})", fontsize=9)
    axes[1].imshow(heat, cmap="bwr", vmin=-lim, vmax=lim)
    axes[1].set_title(f"{title}, class {explanation.target}", fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
