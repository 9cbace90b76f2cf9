"""Explain a user's own model and image: ``xai-plugins explain --model torchvision:resnet50 --weights FILE
--image FILE --method NAME --target N -o out.png``.

``--model`` is one of

- ``torchvision:NAME`` or ``timm:NAME`` (built without pretrained weights),
- ``registry:NAME`` (a model builder registered by any plugin, ``xai-plugins list --kind model``),
- ``checkpoint:RECIPE`` (a benchmark checkpoint shipped in the package),
- ``package.module:builder`` (a user's own callable returning an ``nn.Module``),
- the path of a TorchScript file (``torch.jit.save``; it holds its own weights).

``--method`` is ``lrp`` (a Zennit composite with this model's canonizers unless ``--no-canonize``),
``captum-lrp``, ``gradient``, ``input_x_gradient`` or the name of any registered attributor (``xai-plugins list
--kind attributor``).

Every input is checked before the model is built, and every problem raises :class:`ExplainUsageError` (exit
code 2) with one line naming the flag and the fix; a non-finite attribution raises :class:`ExplainError`.
Models whose registered metadata declares an ``input_encoding`` (the B-cos family's ``[x, 1 - x]``) get their
input encoded through that function.
"""

from __future__ import annotations

import importlib
import importlib.util
import pickle
import re
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn

from xai_plugins.cli import UsageError
from xai_plugins.errors import XaiPluginsError
from xai_plugins.model_state import explaining

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
COMPOSITES = ("epsilon_gamma_box", "epsilon_plus_flat", "epsilon_plus", "epsilon_alpha2_beta1_flat", "grouped")
BUILTIN_METHODS = ("lrp", "captum-lrp", "gradient", "input_x_gradient")
MODEL_FORMS = ("torchvision:NAME", "timm:NAME", "registry:NAME", "checkpoint:RECIPE", "package.module:builder",
               "a TorchScript file")
_RESERVED = ("torchvision", "timm", "registry", "checkpoint")
_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


class ExplainUsageError(UsageError):
    """A flag of ``explain`` has a value that cannot work; the message names the flag and the fix (exit 2)."""


class ExplainError(XaiPluginsError):
    """The explanation itself failed (for example a non-finite attribution); exit code 1."""


@dataclass
class Explanation:
    """The image as shown (``(1, 3, H, W)`` in [0, 1]), the attribution (the model input's shape), the
    explained class and the model's prediction."""

    image: Tensor
    attribution: Tensor
    target: int
    predicted: int


@dataclass(frozen=True)
class ModelSpec:
    """A parsed ``--model`` value: ``form`` is one of torchvision, timm, registry, checkpoint, callable,
    torchscript; ``name`` is the rest."""

    form: str
    name: str

    @property
    def holds_weights(self) -> bool:
        """Whether the model comes with its own weights (so ``--weights`` is neither needed nor allowed)."""
        return self.form in ("checkpoint", "torchscript")


def parse_model_spec(spec: str) -> ModelSpec:
    """Parse ``--model`` without importing or building anything; raises :class:`ExplainUsageError`."""
    if Path(spec).is_file():
        return ModelSpec("torchscript", spec)
    kind, sep, name = spec.partition(":")
    if sep and name and kind in _RESERVED:
        return ModelSpec(kind, name)
    if sep and name and _DOTTED.match(kind) and _DOTTED.match(name):
        return ModelSpec("callable", spec)
    if not sep and spec.endswith((".pt", ".pth", ".ts", ".jit")):
        raise ExplainUsageError(f"--model {spec!r}: no such TorchScript file; check the path")
    raise ExplainUsageError(f"--model {spec!r} must be one of {', '.join(MODEL_FORMS)} "
                            "(e.g. --model torchvision:resnet50)")


def check_method(method: str) -> None:
    """Raise :class:`ExplainUsageError` unless ``method`` is built in or a registered attributor."""
    if method in BUILTIN_METHODS:
        return
    import xai_plugins

    names = [c.name for c in xai_plugins.list_components("attributor")]
    if method not in names:
        raise ExplainUsageError(f"--method {method!r} is unknown; use one of {', '.join(BUILTIN_METHODS)} or a "
                                f"registered attributor: {', '.join(names) or 'none registered'}")


def check_dependencies(spec: ModelSpec, weights: Path | None) -> None:
    """Name a missing optional dependency (and what installs it) before any work starts."""
    needed = [("PIL", "pillow", "--image"), ("matplotlib", "matplotlib", "the figure"),
              ("torchvision", "torchvision", "image loading")]
    if spec.form == "timm":
        needed.append(("timm", "timm", "--model timm:NAME"))
    if weights is not None and Path(weights).suffix == ".safetensors":
        needed.append(("safetensors", "safetensors", "--weights *.safetensors"))
    for module, package, needed_for in needed:
        if importlib.util.find_spec(module) is None:
            raise ExplainUsageError(f"{needed_for} needs {module}, which is not installed; pip install {package} "
                                    "(or pip install \"xai-plugins[workbench]\")")


def load_weights(path: Path) -> dict[str, Tensor]:
    """A state dict from ``path`` (``.safetensors``, or a torch file read with ``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise ExplainUsageError(f"--weights {path}: no such file; pass the path of a saved state dict")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ExplainUsageError(f"--weights {path} is not a readable safetensors file ({_first_line(exc)}); "
                                    "save it with safetensors.torch.save_file(model.state_dict(), ...)") from exc
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = _pickled_globals(path)
        if found:
            raise ExplainUsageError(
                f"--weights {path} holds pickled Python objects ({found[0]}{', ...' if len(found) > 1 else ''}: a "
                "whole model?), which are not loaded because unpickling runs code; save the weights with "
                "torch.save(model.state_dict(), path)") from exc
        raise _not_weights(path, exc) from exc
    except (EOFError, RuntimeError, ValueError, OSError, zipfile.BadZipFile) as exc:
        raise _not_weights(path, exc) from exc
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, Tensor) for v in state.values()):
        raise ExplainUsageError(f"--weights {path} holds a {type(state).__name__}, not a state dict of tensors; "
                                "save the weights with torch.save(model.state_dict(), path)")
    return dict(state)


def _pickled_globals(path: Path) -> list[str]:
    """The Python classes and functions a torch file would unpickle (empty when it is not a readable zip)."""
    try:
        found = list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except (RuntimeError, ValueError, OSError, zipfile.BadZipFile, pickle.UnpicklingError):
        return []
    return sorted(found, key=lambda name: (name.startswith("torch.nn."), name))


def _not_weights(path: Path, exc: BaseException) -> ExplainUsageError:
    return ExplainUsageError(f"--weights {path} is not a torch or safetensors weights file ({_first_line(exc)}); "
                             "pass a file written by torch.save(model.state_dict(), path) or safetensors")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    if isinstance(exc, pickle.UnpicklingError):
        return "not a torch pickle"
    return f"{type(exc).__name__}: {text[0][:160]}" if text else type(exc).__name__


def classes_from_state(state: Mapping[str, Tensor]) -> int | None:
    """The output size of the last 2-D weight in the state dict (the classifier), if any."""
    for value in reversed(list(state.values())):
        if value.dim() == 2:
            return int(value.shape[0])
    return None


def build_model(spec: str | ModelSpec, state: Mapping[str, Tensor] | None = None,
                num_classes: int | None = None) -> nn.Module:
    """The model of ``--model`` in eval mode, with ``state`` (a loaded ``--weights``) in it.

    ``num_classes`` defaults to the classifier size read from ``state``. Raises :class:`ExplainUsageError`
    for a model that cannot be built and for weights that do not fit it.
    """
    spec = parse_model_spec(spec) if isinstance(spec, str) else spec
    if spec.holds_weights and state is not None:
        raise ExplainUsageError(f"--weights is not used with --model {spec.name} (it holds its own weights); "
                                "drop --weights")
    if num_classes is None and state is not None:
        num_classes = classes_from_state(state)
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    model = _build(spec, kwargs)
    if not isinstance(model, nn.Module):
        raise ExplainUsageError(f"--model {spec.name} returned a {type(model).__name__}, not a torch.nn.Module; "
                                "pass a builder that returns the model")
    if state is not None:
        _load_state(model, state, spec)
    return model.eval()


def _build(spec: ModelSpec, kwargs: dict[str, int]) -> nn.Module:
    if spec.form == "torchscript":
        try:
            return torch.jit.load(spec.name, map_location="cpu")
        except (RuntimeError, ValueError) as exc:
            raise ExplainUsageError(f"--model {spec.name} is not a TorchScript file ({_first_line(exc)}); save one "
                                    "with torch.jit.save(torch.jit.script(model), path)") from exc
    if spec.form == "checkpoint":
        from xai_plugins.evaluation.training import RECIPES, load_checkpoint

        if spec.name not in RECIPES:
            raise ExplainUsageError(f"--model checkpoint:{spec.name}: no such recipe; choose from "
                                    f"{', '.join(RECIPES)}")
        try:
            return load_checkpoint(spec.name)
        except FileNotFoundError as exc:
            raise ExplainUsageError(f"--model checkpoint:{spec.name}: {exc}") from exc
    if spec.form == "torchvision":
        import torchvision

        if spec.name not in torchvision.models.list_models():
            raise ExplainUsageError(f"--model torchvision:{spec.name}: torchvision has no such model; see "
                                    "torchvision.models.list_models()")
        return torchvision.models.get_model(spec.name, weights=None, **kwargs)
    if spec.form == "timm":
        timm = _optional("timm", "timm", "--model timm:NAME")
        if not timm.is_model(spec.name):
            raise ExplainUsageError(f"--model timm:{spec.name}: timm has no such model; see timm.list_models()")
        return timm.create_model(spec.name, pretrained=False, **kwargs)
    if spec.form == "registry":
        import xai_plugins

        names = [c.name for c in xai_plugins.list_components("model")]
        if spec.name not in names:
            raise ExplainUsageError(f"--model registry:{spec.name}: no model of that name is registered; "
                                    f"registered: {', '.join(names) or 'none'}")
        return xai_plugins.get("model", spec.name)(**kwargs)
    module_name, _, attr = spec.name.partition(":")
    try:
        builder: object = importlib.import_module(module_name)
        for part in attr.split("."):
            builder = getattr(builder, part)
    except (ImportError, AttributeError) as exc:
        raise ExplainUsageError(f"--model {spec.name}: cannot import it ({_first_line(exc)}); pass "
                                "package.module:builder of an importable module") from exc
    if not callable(builder):
        raise ExplainUsageError(f"--model {spec.name} is a {type(builder).__name__}, not a callable builder")
    return builder(**kwargs)


def _load_state(model: nn.Module, state: Mapping[str, Tensor], spec: ModelSpec) -> None:
    """Load strictly, or raise one line that counts the mismatches and shows the first of each kind."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if shapes:
            k = shapes[0]
            parts.append(f"{len(shapes)} of another shape (e.g. {k}: {tuple(state[k].shape)} in the file, "
                         f"{tuple(own[k].shape)} in the model)")
        hint = (" The file's keys start with 'module.' (saved from DataParallel): save model.module.state_dict()."
                if unexpected and all(k.startswith("module.") for k in unexpected) else "")
        raise ExplainUsageError(f"--weights do not fit --model {spec.name}: {'; '.join(parts)}; pass the weights "
                                f"of this architecture, or the --model they were saved from.{hint}")
    model.load_state_dict(state)


def _optional(module: str, extra: str, needed_for: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ExplainUsageError(f"{needed_for} needs {module}, which is not installed; pip install {extra}") from exc


def load_image(path: Path, size: int | None) -> Tensor:
    """The image as ``(1, 3, H, W)`` in [0, 1], resized so its short side is ``size`` and centre-cropped to
    ``size x size`` (``size`` 0 or None keeps it as it is), with torchvision's transforms."""
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms import v2

    path = Path(path)
    if not path.is_file():
        raise ExplainUsageError(f"--image {path}: no such file; pass an image file (PNG, JPEG, ...)")
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise ExplainUsageError(f"--image {path} is not an image Pillow can read ({_first_line(exc)})") from exc
    steps: list[Callable[..., object]] = [v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True)]
    if size:
        steps = [v2.Resize(size, antialias=True), v2.CenterCrop(size), *steps]
    x = v2.Compose(steps)(img)
    assert isinstance(x, Tensor)
    return x[None]


def input_encoding(model: nn.Module, spec: ModelSpec | None = None) -> Callable[[Tensor], Tensor] | None:
    """The ``input_encoding`` a registered component declares for this model, or None.

    Looked up in the metadata of the registered model ``registry:NAME``, of the checkpoint recipe, and of every
    registered component whose ``model_types`` name one of the model's classes (so a B-cos network built any
    other way is found through the B-cos attributor's declaration).
    """
    import xai_plugins

    if spec is not None and spec.form == "checkpoint":
        from xai_plugins.evaluation.training import RECIPES

        prepare = RECIPES[spec.name].prepare
        return _resolve(prepare) if prepare else None
    if spec is not None and spec.form == "registry":
        target = xai_plugins.describe("model", spec.name).extra.get("input_encoding")
        if target:
            return _resolve(target)
    classes = {f"{c.__module__}.{c.__qualname__}" for c in type(model).__mro__}
    for comp in xai_plugins.list_components():
        target = comp.extra.get("input_encoding")
        if target and classes.intersection(comp.model_types):
            return _resolve(target)
    return None


def _resolve(target: str | Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    if callable(target):
        return target
    module_name, _, attr = target.partition(":")
    fn = getattr(importlib.import_module(module_name), attr)
    assert callable(fn)
    return fn


def prepare_inputs(image: Tensor, normalize: str, encoding: Callable[[Tensor], Tensor] | None
                   ) -> tuple[Tensor, Tensor | float, Tensor | float]:
    """The model input for ``image`` and the box bounds ``low``, ``high`` of that input space.

    ``normalize`` is ``auto`` (ImageNet statistics unless the model has an input encoding), ``imagenet`` or
    ``none``; an input encoding is applied to the un-normalised image, as the encoding expects [0, 1].
    """
    if normalize not in ("auto", "imagenet", "none"):
        raise ExplainUsageError(f"--normalize must be auto, imagenet or none, got {normalize!r}")
    if encoding is not None:
        if normalize == "imagenet":
            raise ExplainUsageError("--normalize imagenet does not apply: this model encodes its [0, 1] input "
                                    "itself; use --normalize auto or none")
        return encoding(image), 0.0, 1.0
    if normalize == "none":
        return image, 0.0, 1.0
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    if image.shape[1] != 3:
        raise ExplainUsageError("--normalize imagenet needs an RGB image; use --normalize none")
    return (image - mean) / std, ((0 - mean) / std).expand_as(image), ((1 - mean) / std).expand_as(image)


def attribute(model: nn.Module, inputs: Tensor, target: int, method: str, *, composite: str = "epsilon_gamma_box",
              canonize: bool = True, low: Tensor | float = 0.0, high: Tensor | float = 1.0) -> Tensor:
    """Attribution of ``target`` for ``inputs`` by ``method`` (see the module docstring); raises
    :class:`ExplainError` when it is not finite or not of the inputs' shape."""
    t = torch.tensor([target])
    if method in ("gradient", "input_x_gradient"):
        from xai_plugins_workbench import methods

        result = getattr(methods, method)(model, inputs, t)
    elif method == "captum-lrp":
        from xai_plugins_workbench.lrp import captum_lrp

        result = captum_lrp(model, inputs, t, canonize=canonize)
    elif method == "lrp":
        result = _zennit(model, inputs, t, composite, canonize, low, high)
    else:
        check_method(method)
        import xai_plugins

        result = xai_plugins.get("attributor", method)(model, inputs, t)
    if not isinstance(result, Tensor) or result.shape != inputs.shape:
        shape = tuple(result.shape) if isinstance(result, Tensor) else type(result).__name__
        raise ExplainError(f"--method {method} returned {shape}, not the input's shape {tuple(inputs.shape)}")
    bad = int((~torch.isfinite(result)).sum())
    if bad:
        raise ExplainError(f"--method {method} gave {bad} non-finite values (NaN or inf) of {result.numel()}; "
                           "the picture would be blank. Check the model's output is finite, or try another "
                           "--method or --composite")
    return result.detach()


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
        raise ExplainUsageError(f"--composite {composite!r} is unknown; choose from {', '.join(COMPOSITES)}")
    try:
        canonizers = canonizers_for(model) if canonize else []
    except ValueError as exc:
        raise ExplainUsageError(f"--method lrp: no canonizer is known for {type(model).__name__}; pass "
                                "--no-canonize for LRP without canonizers, or another --method") from exc
    if composite == "epsilon_gamma_box":
        comp = zc.EpsilonGammaBox(low=torch.as_tensor(low).expand_as(inputs),
                                  high=torch.as_tensor(high).expand_as(inputs), canonizers=canonizers)
    else:
        comp = zc.COMPOSITES[composite](canonizers=canonizers)
    with explaining(model, warn=False, freeze=False), Gradient(model=model, composite=comp) as attributor:
        _, relevance = attributor(inputs.detach(), lambda out: torch.zeros_like(out).scatter(1, t[:, None], 1.0) * out)
    return relevance.detach()


def explain_image(model: nn.Module, image: Tensor, inputs: Tensor, target: int | None, method: str,
                  **kwargs: Any) -> Explanation:
    """Explain ``target`` (the predicted class when None) for one image; raises :class:`ExplainUsageError`
    for a target outside the model's classes."""
    with torch.no_grad():
        out = model(inputs)
    if not isinstance(out, Tensor) or out.dim() != 2:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ExplainError(f"--model gives output {shape}; explain needs class scores of shape (1, classes)")
    classes = out.shape[1]
    if target is not None and not 0 <= target < classes:
        raise ExplainUsageError(f"--target {target} is out of range: the model has {classes} classes "
                                f"(0 to {classes - 1}); pass one of those, or omit --target for the predicted class")
    predicted = int(out.argmax(1))
    target = predicted if target is None else target
    return Explanation(image, attribute(model, inputs, target, method, **kwargs), target, predicted)
