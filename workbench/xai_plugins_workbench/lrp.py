"""LRP through Zennit and through Captum, canonized or plain, with a gamma per layer group.

The composite follows the paper's search space (Pahde et al., CVPRW 2023): the first convolution gets the
ZBox rule over the input's value range, the remaining convolutions are split into consecutive layer groups
(``low``, ``mid``, ``high``) that each get their own Gamma rule, and linear layers get Epsilon. Canonization
uses :func:`xai_plugins_zennit.canonizers_for` (Zennit) or :func:`xai_plugins_captum.canonized` (Captum).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from xai_plugins.model_state import explaining

GROUPS = ("low", "mid", "high")


@dataclass(frozen=True)
class LrpConfig:
    """One point of the LRP search space: gamma per layer group, epsilon of the dense layers, canonization
    (``untangled``: a DenseNet canonized with :class:`~xai_plugins.canonizers.DenseNetUntangledCanonizer`
    instead of the default threshold-ReLU :class:`~xai_plugins.canonizers.DenseNetCanonizer`)."""

    gammas: Mapping[str, float] = field(default_factory=lambda: {"low": 0.5, "mid": 0.25, "high": 0.1})
    epsilon: float = 1e-6
    canonize: bool = True
    untangled: bool = False
    low: float = 0.0
    high: float = 1.0

    def label(self) -> str:
        """Short human-readable name, e.g. ``canonized g=0.5/0.25/0.1``."""
        gam = "/".join(f"{self.gammas.get(g, 0.25):g}" for g in GROUPS)
        kind = ("untangled" if self.untangled else "canonized") if self.canonize else "plain"
        return f"{kind} g={gam}"


def _targets(target: int | Sequence[int] | Tensor, n: int) -> Tensor:
    t = torch.as_tensor(target, dtype=torch.long)
    return t.expand(n).clone() if t.dim() == 0 else t.reshape(n)


def conv_groups(model: nn.Module, groups: Sequence[str] = GROUPS) -> tuple[str | None, dict[str, str]]:
    """The name of the first convolution and a map from every other convolution's name to its layer group
    (consecutive, equally sized thirds in module order)."""
    convs = [name for name, m in model.named_modules() if isinstance(m, nn.modules.conv._ConvNd)]
    if not convs:
        return None, {}
    first, rest = convs[0], convs[1:]
    size = max(1, -(-len(rest) // len(groups)))
    return first, {name: groups[min(i // size, len(groups) - 1)] for i, name in enumerate(rest)}


def zennit_composite(model: nn.Module, config: LrpConfig, inputs_shape: Sequence[int]):
    """A Zennit composite for ``config`` on ``model`` (with the model's canonizers if ``config.canonize``)."""
    from zennit.composites import layer_map_base
    from zennit.core import Composite
    from zennit.rules import Epsilon, Gamma, ZBox

    from xai_plugins_zennit import canonizers_for

    first, grouped = conv_groups(model)
    base = layer_map_base()
    low = torch.full(tuple(inputs_shape), config.low)
    high = torch.full(tuple(inputs_shape), config.high)
    first_rule = ZBox(low=low, high=high)
    gamma_rules = {g: Gamma(gamma=float(config.gammas.get(g, 0.25))) for g in GROUPS}
    dense_rule = Epsilon(epsilon=config.epsilon)

    def module_map(ctx: dict, name: str, module: nn.Module):
        if name == first:
            return first_rule
        if name in grouped:
            return gamma_rules[grouped[name]]
        if grouped and isinstance(module, nn.modules.conv._ConvNd):
            # a convolution the canonizer added (the untangled DenseNet's copies of a producing conv, e.g.
            # ``...denselayer1.xai_conv2.0`` for ``...denselayer1.conv2``): the group of the original convolution
            # with the longest common name prefix
            return gamma_rules[grouped[max(grouped, key=lambda known: len(os.path.commonprefix([known, name])))]]
        if isinstance(module, nn.Linear):
            return dense_rule
        return next((rule for types, rule in base if isinstance(module, types)), None)

    if not config.canonize:
        canonizers = []
    elif config.untangled:
        from xai_plugins.canonizers import DenseNetUntangledCanonizer
        from xai_plugins_zennit.canonizers import for_zennit

        canonizers = [for_zennit(DenseNetUntangledCanonizer())]
    else:
        canonizers = canonizers_for(model)
    return Composite(module_map=module_map, canonizers=canonizers)


def zennit_lrp(model: nn.Module, inputs: Tensor, target: int | Sequence[int] | Tensor,
               config: LrpConfig | None = None) -> Tensor:
    """LRP relevance of ``target``, started at the target logit (so it sums to the logit when conserving)."""
    from zennit.attribution import Gradient

    config = config or LrpConfig()
    t = _targets(target, inputs.shape[0])
    composite = zennit_composite(model, config, inputs.shape)
    with explaining(model, warn=False, freeze=False), Gradient(model=model, composite=composite) as attributor:
        _, relevance = attributor(inputs.detach(), lambda out: torch.zeros_like(out).scatter(1, t[:, None], 1.0) * out)
    return relevance.detach()


def captum_lrp(model: nn.Module, inputs: Tensor, target: int | Sequence[int] | Tensor, *,
               canonize: bool = True, untangled: bool = False) -> Tensor:
    """Captum's ``LRP`` (its default epsilon rules), inside :func:`xai_plugins_captum.canonized` if asked
    (``untangled``: with :class:`~xai_plugins.canonizers.DenseNetUntangledCanonizer`, for a DenseNet).

    The plain variant runs Captum as a user would on the stock model; Captum leaves an ``activations``
    attribute on leaves, which is removed again so the model is left as it was.
    """
    from captum.attr import LRP

    t = _targets(target, inputs.shape[0])
    x = inputs.detach().clone().requires_grad_(True)
    if canonize:
        from xai_plugins_captum import canonized

        chosen = None
        if untangled:
            from xai_plugins.canonizers import DenseNetUntangledCanonizer

            chosen = [DenseNetUntangledCanonizer()]
        with explaining(model, warn=False, freeze=False), canonized(model, canonizers=chosen):
            return LRP(model).attribute(x, target=t).detach()
    with explaining(model, warn=False, freeze=False), captum_attributes_removed(model):
        return LRP(model).attribute(x, target=t).detach()


@contextlib.contextmanager
def captum_attributes_removed(model: nn.Module) -> Iterator[nn.Module]:
    """Delete, on exit, the ``rule`` and ``activations`` attributes Captum's ``LRP`` leaves on modules that did
    not have them before the block (plain Captum LRP would otherwise leave the model changed)."""
    before = {m: {a for a in ("rule", "activations") if hasattr(m, a)} for m in model.modules()}
    try:
        yield model
    finally:
        for m, had in before.items():
            for attr in ("rule", "activations"):
                if attr not in had and hasattr(m, attr):
                    delattr(m, attr)
