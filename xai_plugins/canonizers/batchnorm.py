"""Merging BatchNorm into the neighbouring linear layer, exactly, in both directions.

An eval-mode BatchNorm is a per-channel affine map ``x -> a*x + b`` with ``a = gamma / sqrt(var + eps)`` and
``b = beta - mean * a``. Rule-based attribution treats it badly (it is not a layer LRP rules are defined for),
so it is folded into a linear neighbour and itself turned into an exact identity (its forward returns its
input; Zennit 0.5.1 instead sets neutral statistics but keeps ``eps``, which leaves a ``1/sqrt(1+eps)`` scaling
behind).

- **Preceding** (``conv/linear → BN``): ``W' = a*W`` per output channel, ``b' = a*b_old + b``.
- **Following** (``BN [→ ReLU] → conv/linear``), used where BN comes first as in DenseNet: the layer's
  input ``relu(a*x + b)`` equals ``a*y + d`` with ``y = ThresholdReLU(t=-b/a, flip=a<0)(x)`` and ``d = b``
  (``d = relu(b)`` where ``a == 0``), so ``W' = W*a`` per input channel and the constant ``d`` becomes a bias.
  Through zero padding that bias is position-dependent; it is kept exact with
  :class:`~xai_plugins.canonizers.modules.PositionalBiasConv2d`.
- A layer with a BatchNorm on each side (``BN → ReLU → 1x1 conv → BN``, every dense layer of a DenseNet)
  takes the following merge, then the preceding one.

Pairs are found by following the real data flow: :class:`MergeBatchNormPreceding` and
:class:`MergeBatchNormFollowing` trace the model with ``torch.fx`` (or take explicit module names), the
architecture canonizers name their pairs explicitly. Everything is computed in the parameters' own dtype
(one rounding per merged weight, as the BatchNorm itself rounds). Every ``torch.nn`` BatchNorm with running
statistics and torchvision's ``FrozenBatchNorm2d`` (``torchvision.ops.misc``) are merged.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence

import torch
import torch.fx
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from xai_plugins.canonizers.base import Canonizer
from xai_plugins.canonizers.modules import ExplicitModule, PositionalBiasConv2d, ThresholdReLU

__all__ = [
    "MergeBatchNorm",
    "MergeBatchNormFollowing",
    "MergeBatchNormPreceding",
    "batchnorm_affine",
    "batchnorm_channels",
    "is_batchnorm",
    "merge_following",
    "merge_preceding",
    "neutralize_batchnorm",
    "relu_terms",
    "sequential_pairs",
]

Slot = tuple[nn.Module, str]
"""Where a module lives: ``(parent, attribute name)``, so that the current occupant is always used."""

_PASSTHROUGH = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.Flatten, nn.Identity,
                nn.Dropout)

_CANONIZER_MODULES = (ExplicitModule, PositionalBiasConv2d)


def _is_linear(module: nn.Module) -> bool:
    return isinstance(module, (nn.Linear, _ConvNd))


def _frozen_batchnorm() -> type | None:
    """torchvision's ``FrozenBatchNorm2d`` if torchvision is loaded (a model using it has loaded it)."""
    return getattr(sys.modules.get("torchvision.ops.misc"), "FrozenBatchNorm2d", None)


def is_batchnorm(module: object) -> bool:
    """Whether ``module`` is a BatchNorm this module can merge: a ``torch.nn`` BatchNorm or torchvision's
    ``FrozenBatchNorm2d`` (whose statistics and affine weights are buffers)."""
    if isinstance(module, _BatchNorm):
        return True
    frozen = _frozen_batchnorm()
    return frozen is not None and isinstance(module, frozen)


def batchnorm_channels(bn: nn.Module) -> int:
    """The channel count of a BatchNorm (``FrozenBatchNorm2d`` has no ``num_features``)."""
    return bn.num_features if isinstance(bn, _BatchNorm) else bn.running_mean.numel()


def batchnorm_affine(bn: nn.Module) -> tuple[Tensor, Tensor]:
    """Per-channel ``(a, b)`` such that eval-mode ``bn(x) == a*x + b`` (channels on dim 1), in BN's dtype."""
    if not is_batchnorm(bn):
        raise TypeError(f"expected a BatchNorm module, got {type(bn).__name__}")
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(f"{type(bn).__name__}({batchnorm_channels(bn)}) has no running statistics "
                         "(track_running_stats=False), so it normalises with batch statistics and cannot be "
                         "merged; build it with track_running_stats=True")
    a = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        a = a * bn.weight
    b = -bn.running_mean * a
    if bn.bias is not None:
        b = b + bn.bias
    return a, b


def relu_terms(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(threshold, d, flip)`` with ``relu(a*x + b) == a*ThresholdReLU(threshold, flip)(x) + d`` per channel
    (where ``a == 0`` the ReLU's output is the constant ``relu(b)``: threshold 0 and ``d = relu(b)``)."""
    zero = a == 0
    threshold = torch.where(zero, torch.zeros_like(a), -b / torch.where(zero, torch.ones_like(a), a))
    return threshold, torch.where(zero, b.clamp(min=0), b), a < 0


def _identity_forward(self: nn.Module, input: Tensor) -> Tensor:
    return input.clone()


def neutralize_batchnorm(editor: Canonizer, bn: nn.Module) -> None:
    """Make ``bn`` an exact identity (its affine map now lives in a neighbour) by overriding its forward.

    The module stays in place (hosts keep recognising it, its parameters stay untouched); it returns a copy of
    its input, as BatchNorm returns a new tensor, so in-place activations after it behave as before.
    """
    editor.override_forward(bn, _identity_forward)


def _out_axis(layer: nn.Module) -> int:
    if isinstance(layer, _ConvNd) and layer.transposed:
        if layer.groups != 1:
            raise ValueError("merging BatchNorm into a grouped transposed convolution is not supported")
        return 1
    return 0


def _channels_out(layer: nn.Module) -> int:
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels


def merge_preceding(editor: Canonizer, layer_slot: Slot, bn_slot: Slot) -> None:
    """Fold the BatchNorm at ``bn_slot`` into the conv/linear layer at ``layer_slot`` that feeds it:
    ``W' = a*W`` per output channel, ``b' = a*b + b_bn`` (a layer without bias gets one)."""
    layer, bn = layer_slot[0]._modules[layer_slot[1]], bn_slot[0]._modules[bn_slot[1]]
    if not _is_linear(layer):
        raise TypeError(f"BatchNorm can only be merged into a Linear or convolution, got {type(layer).__name__}")
    channels = batchnorm_channels(bn)
    if channels != _channels_out(layer):
        raise ValueError(f"cannot merge {type(bn).__name__}({channels}) into {type(layer).__name__} with "
                         f"{_channels_out(layer)} output channels: channel counts differ")
    a, b = batchnorm_affine(bn)
    weight = layer.weight
    if a.dtype != weight.dtype:
        a, b = a.to(weight.dtype), b.to(weight.dtype)
    shape = [1] * weight.dim()
    shape[_out_axis(layer)] = -1
    bias = b if layer.bias is None else torch.addcmul(b, layer.bias, a)
    editor.swap_parameter(layer, "weight", weight * a.view(shape))
    editor.swap_parameter(layer, "bias", bias)
    if isinstance(layer, PositionalBiasConv2d):
        editor.swap_buffer(layer, "bias_kernel", layer.bias_kernel * a.view(-1, 1, 1, 1))
    neutralize_batchnorm(editor, bn)


def _per_input(layer: nn.Module, values: Tensor) -> Tensor:
    """Per-input-channel ``values`` shaped to broadcast against ``layer.weight`` (handles grouped convs)."""
    weight = layer.weight
    if isinstance(layer, nn.Linear):
        return values.view(1, -1)
    if layer.transposed:
        raise ValueError("merging BatchNorm into a following transposed convolution is not supported")
    groups, spatial = layer.groups, [1] * (weight.dim() - 2)
    if groups == 1:
        return values.view(1, -1, *spatial)
    per_group = values.view(groups, 1, -1).expand(groups, layer.out_channels // groups, -1)
    return per_group.reshape(layer.out_channels, -1, *spatial)


def _zero_padded(conv: _ConvNd) -> bool:
    if conv.padding_mode != "zeros":
        return False
    if isinstance(conv.padding, str):
        return conv.padding == "same"
    return any(conv.padding)


def merge_following(editor: Canonizer, bn_slot: Slot, act_slot: Slot | None, layer_slot: Slot,
                    between: Sequence[nn.Module] = ()) -> None:
    """Fold the BatchNorm at ``bn_slot`` into the conv/linear layer at ``layer_slot`` that it feeds.

    ``act_slot`` is the ReLU between them (replaced by a :class:`ThresholdReLU`) or ``None`` if the BN feeds
    the layer directly. ``between`` lists modules between activation and layer that act per channel and keep
    constants constant (global average pooling, flatten), which a Linear layer may sit behind.
    """
    bn, layer = bn_slot[0]._modules[bn_slot[1]], layer_slot[0]._modules[layer_slot[1]]
    linear = isinstance(layer, nn.Linear)
    if not linear and not isinstance(layer, _ConvNd):
        raise TypeError(f"BatchNorm can only be merged into a Linear or convolution, got {type(layer).__name__}")
    for module in between:
        if not isinstance(module, _PASSTHROUGH):
            raise TypeError(f"cannot merge BatchNorm through {type(module).__name__}; only global average "
                            "pooling, flatten, dropout and identity may sit between BN and the layer")
    in_channels = layer.in_features if linear else layer.in_channels
    channels = batchnorm_channels(bn)
    if channels != in_channels:
        raise ValueError(f"cannot merge {type(bn).__name__}({channels}) into the following "
                         f"{type(layer).__name__} with {in_channels} input channels: channel counts differ")
    a, b = batchnorm_affine(bn)
    if act_slot is None:
        d = b
    else:
        act = act_slot[0]._modules[act_slot[1]]
        if type(act) is not nn.ReLU:
            raise TypeError(f"only ReLU can sit between a BatchNorm and the layer it is merged into, got "
                            f"{type(act).__name__}")
        threshold, d, flip = relu_terms(a, b)
        editor.set_child(*act_slot, ThresholdReLU(threshold, flip=flip, copy=False))
    weight = layer.weight
    if a.dtype != weight.dtype:
        a, d = a.to(weight.dtype), d.to(weight.dtype)
    new_weight = weight * _per_input(layer, a)
    bias_kernel = None
    if linear:
        shift = torch.mv(weight, d)
    elif layer.groups == 1 and not _zero_padded(layer) and not isinstance(layer, PositionalBiasConv2d):
        # every tap of an unpadded convolution sees the constant: sum the taps (a 1x1 kernel has one)
        outputs, inputs = weight.shape[:2]
        taps = weight.reshape(outputs, inputs) if weight.numel() == outputs * inputs else \
            weight.reshape(outputs, inputs, -1).sum(2)
        shift = torch.mv(taps, d)
    else:
        shift = None
    if shift is not None:
        bias = shift if layer.bias is None else layer.bias + shift
    else:
        bias = layer.bias if layer.bias is not None else weight.new_zeros(_channels_out(layer))
        taps = (weight * _per_input(layer, d)).sum(1, keepdim=True)
        if isinstance(layer, PositionalBiasConv2d):
            taps = taps + layer.bias_kernel
        if _zero_padded(layer):
            if not isinstance(layer, nn.Conv2d):
                raise ValueError("merging BatchNorm into a following zero-padded convolution is only "
                                 f"supported for Conv2d, got {type(layer).__name__}")
            bias_kernel = taps
        else:
            bias = bias + taps.flatten(1).sum(1)
    if bias_kernel is not None and not isinstance(layer, PositionalBiasConv2d):
        replacement = PositionalBiasConv2d.like(layer)
        replacement.weight.requires_grad_(layer.weight.requires_grad)
        replacement.bias.requires_grad_(layer.weight.requires_grad)
        editor.set_child(*layer_slot, replacement)
        layer = replacement
    editor.swap_parameter(layer, "weight", new_weight)
    editor.swap_parameter(layer, "bias", bias)
    if bias_kernel is not None:
        editor.swap_buffer(layer, "bias_kernel", bias_kernel)
    neutralize_batchnorm(editor, bn)


def sequential_pairs(root: nn.Module | Iterable[nn.Module]) -> list[tuple[Slot, Slot]]:
    """``(layer, bn)`` slots of every conv/linear directly followed by a BatchNorm inside an ``nn.Sequential``
    that keeps Sequential's own ``forward`` (so the order of children is the data flow). ``root`` is a model
    or an already collected list of its modules."""
    pairs = []
    for module in (root.modules() if isinstance(root, nn.Module) else root):
        if not isinstance(module, nn.Sequential) or type(module).forward is not nn.Sequential.forward:
            continue
        names = list(module._modules)
        for first, second in zip(names, names[1:]):
            if _is_linear(module._modules[first]) and is_batchnorm(module._modules[second]):
                pairs.append(((module, first), (module, second)))
    return pairs


def _slot(model: nn.Module, qualified: str) -> Slot:
    parent_name, _, name = qualified.rpartition(".")
    try:
        parent = model.get_submodule(parent_name)
        parent._modules[name]
    except (AttributeError, KeyError):
        raise ValueError(f"model {type(model).__name__} has no submodule {qualified!r}") from None
    return parent, name


class _Tracer(torch.fx.Tracer):
    """Default fx tracer that also keeps the canonizer modules as leaves (they may be in the model already)."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, _CANONIZER_MODULES) or super().is_leaf_module(m, module_qualified_name)


def _trace(model: nn.Module, canonizer: str) -> torch.fx.Graph:
    try:
        return _Tracer().trace(model)
    except Exception as exc:  # noqa: BLE001 - any tracing failure gets the same advice
        raise RuntimeError(
            f"{canonizer} could not trace {type(model).__name__} with torch.fx ({type(exc).__name__}: {exc}); "
            "use the architecture canonizer from xai_plugins.canonizers.canonizers_for(model), or name the "
            f"modules explicitly, e.g. {canonizer}(pairs=[('features.0', 'features.1')])") from exc


def _called_once(graph: torch.fx.Graph) -> set[str]:
    counts: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            counts[node.target] = counts.get(node.target, 0) + 1
    return {target for target, count in counts.items() if count == 1}


class MergeBatchNormPreceding(Canonizer):
    """Merge every BatchNorm into the conv/linear layer whose output it normalises (``layer → BN``).

    Without arguments, pairs are found by tracing the data flow with ``torch.fx``: a BN is merged when its
    input is the output of a conv/linear module used nowhere else. ``pairs`` names them explicitly instead,
    as ``(layer_name, bn_name)`` qualified module names.
    """

    def __init__(self, pairs: Iterable[tuple[str, str]] | None = None) -> None:
        super().__init__()
        self.pairs = None if pairs is None else [tuple(pair) for pair in pairs]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({'' if self.pairs is None else f'pairs={self.pairs!r}'})"

    def copy(self) -> MergeBatchNormPreceding:
        return type(self)(self.pairs)

    def find_pairs(self, model: nn.Module) -> list[tuple[str, str]]:
        """Qualified names ``(layer, bn)`` of the mergeable pairs in ``model`` (traced with torch.fx)."""
        graph = _trace(model, type(self).__name__)
        once = _called_once(graph)
        modules = dict(model.named_modules())
        found = []
        for node in graph.nodes:
            if node.op != "call_module" or not is_batchnorm(modules[node.target]):
                continue
            source = node.args[0] if node.args else None
            if (isinstance(source, torch.fx.Node) and source.op == "call_module" and len(source.users) == 1
                    and _is_linear(modules[source.target]) and {source.target, node.target} <= once):
                found.append((source.target, node.target))
        return found

    def canonize(self, model: nn.Module) -> None:
        pairs = self.find_pairs(model) if self.pairs is None else self.pairs
        for layer_name, bn_name in pairs:
            merge_preceding(self, _slot(model, layer_name), _slot(model, bn_name))


# the suite's default example has BN only after convolutions; the following merge needs BN → ReLU → conv
class MergeBatchNormFollowing(Canonizer):
    """Merge every BatchNorm into the conv/linear layer it feeds (``BN → [ReLU →] layer``), exactly.

    The ReLU becomes a :class:`ThresholdReLU` (Pahde et al. 2023); zero-padded convolutions get a
    position-dependent bias. Without arguments, triples are found with ``torch.fx`` (BN, ReLU module and layer
    each used once, each output feeding only the next); ``triples`` names them as ``(bn, relu_or_None, layer)``.
    """

    def __init__(self, triples: Iterable[tuple[str, str | None, str]] | None = None) -> None:
        super().__init__()
        self.triples = None if triples is None else [tuple(triple) for triple in triples]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({'' if self.triples is None else f'triples={self.triples!r}'})"

    def copy(self) -> MergeBatchNormFollowing:
        return type(self)(self.triples)

    def find_triples(self, model: nn.Module) -> list[tuple[str, str | None, str]]:
        """Qualified names ``(bn, relu or None, layer)`` of the mergeable chains (traced with torch.fx)."""
        graph = _trace(model, type(self).__name__)
        once = _called_once(graph)
        modules = dict(model.named_modules())

        def only_user(node: torch.fx.Node) -> torch.fx.Node | None:
            users = list(node.users)
            if len(users) == 1 and users[0].op == "call_module" and users[0].target in once:
                return users[0]
            return None

        found = []
        for node in graph.nodes:
            if node.op != "call_module" or not is_batchnorm(modules[node.target]):
                continue
            if node.target not in once:
                continue
            nxt = only_user(node)
            relu = None
            if nxt is not None and type(modules[nxt.target]) is nn.ReLU:
                relu, nxt = nxt.target, only_user(nxt)
            if nxt is not None and isinstance(modules[nxt.target], _ConvNd) and not modules[nxt.target].transposed:
                found.append((node.target, relu, nxt.target))
        return found

    def canonize(self, model: nn.Module) -> None:
        triples = self.find_triples(model) if self.triples is None else self.triples
        for bn_name, relu_name, layer_name in triples:
            relu_slot = None if relu_name is None else _slot(model, relu_name)
            merge_following(self, _slot(model, bn_name), relu_slot, _slot(model, layer_name))


class MergeBatchNorm(Canonizer):
    """Merge every BatchNorm it can find with ``torch.fx``: into the preceding layer where one feeds it alone,
    otherwise into the following layer (through a ReLU, see :class:`MergeBatchNormFollowing`).

    A generic choice for models without an architecture canonizer; BatchNorms that fit neither pattern are
    left as they are.
    """

    def canonize(self, model: nn.Module) -> None:
        pairs = MergeBatchNormPreceding().find_pairs(model)
        merged = {bn for _, bn in pairs}
        triples = [t for t in MergeBatchNormFollowing().find_triples(model) if t[0] not in merged]
        for bn_name, relu_name, layer_name in triples:
            relu_slot = None if relu_name is None else _slot(model, relu_name)
            merge_following(self, _slot(model, bn_name), relu_slot, _slot(model, layer_name))
        for layer_name, bn_name in pairs:
            merge_preceding(self, _slot(model, layer_name), _slot(model, bn_name))
