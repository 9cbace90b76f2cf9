"""DenseNet canonized by *untangling* (Pahde et al., CVPRW 2023, the paper's second DenseNet variant).

In a torchvision DenseNet every dense layer and every transition starts with ``BN → ReLU → conv``, and the BN
normalises a concatenation: channel slice ``s`` of ``layer_j.norm1`` (of a transition's ``norm``, of the final
``norm5``) normalises the feature map that one earlier producer wrote into the concatenation. The same
feature map is read by every later layer of the block and by the block's successor, each through its own
BN slice. :class:`~xai_plugins.canonizers.torchvision_models.DenseNetCanonizer` merges each BN into the
*following* conv through a thresholded ReLU. Untangling instead gives every consumer its own copy of the
producing convolution and merges the consumer's BN slice into that copy as a *preceding* merge (BN after
conv, exact, no threshold): ``relu(a*(W*h) + b) == relu((a*W)*h + b)``.

- **Dense layer ``k`` of a block with ``n`` layers** produces ``conv2(relu2(norm2(conv1(...))))``; it is read
  by layers ``k+1 … n`` and by the block's successor. ``conv2`` becomes the copy for the first of these
  consumers, ``layer.xai_conv2`` holds the copies for the others, each followed by its own ``nn.ReLU``
  (``layer.xai_relu_out``). ``norm2`` is merged into ``conv1`` as before.
- **Transition** ``t`` produces ``pool(conv(relu(norm(...))))``, read by every layer of the next block and by
  that block's successor. A BN acts per channel and commutes with the 2×2 average pooling (both are affine
  per channel, and pooling keeps constants), so each consumer's slice is merged into a copy of the
  transition conv *before* the pooling: ``conv`` plus ``transition.xai_conv``. The copies' outputs are
  concatenated (``transition.xai_concat_out``), pooled once by the transition's own ``nn.AvgPool2d`` and
  split into one piece per consumer; the consumer applies the ReLU (a dense layer its ``relu1``, a transition
  its ``relu``, the last block ``block.xai_relu``).
- **Stem**: the first block's input is ``pool0(relu0(norm0(conv0(x))))``; ``norm0`` is merged into ``conv0``.
  The slices of the later BNs that normalise it have no linear producer right before them (max pooling,
  which does not commute with a negative scale), so, as in the paper's code, each such slice is merged into
  its consumer's convolution (``conv1`` of the layer, every copy of the first transition's conv; the
  classifier for a DenseNet with a single block) through a per-consumer
  :class:`~xai_plugins.canonizers.modules.ThresholdReLU` (``relu1`` / ``relu`` / ``block.xai_relu``).

Concatenations are :class:`~xai_plugins.canonizers.modules.Concat` modules, activations ``nn.ReLU`` modules,
the head ``nn.AdaptiveAvgPool2d`` and ``nn.Flatten`` (the features already end in a ReLU, so the model's
functional ReLU is dropped: ``relu(relu(x)) == relu(x)``). No module is called twice; every BatchNorm is
merged (its forward an exact identity; ``norm1``, transition ``norm`` and ``norm2`` are no longer called).

Cost: a block with ``n`` layers has ``n*(n+1)/2`` conv2 copies instead of ``n`` convs, a transition feeding a
block of ``m`` layers ``m+1`` copies; DenseNet-121 gets 529 new convolutions holding about 29.6 M parameters
(3.7 times the model). The canonized model computes the eval-mode function (dropout is not applied).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils.rnn import pad_sequence

from xai_plugins.canonizers.base import Canonizer
from xai_plugins.canonizers.batchnorm import (
    batchnorm_affine,
    merge_preceding,
    neutralize_batchnorm,
    relu_terms,
)
from xai_plugins.canonizers.modules import Concat, ThresholdReLU

__all__ = ["DenseNetUntangledCanonizer"]

_DENSENET = "torchvision.models.densenet"


# -- canonical forwards (bound to the instances as instance attributes) -----------------------------------------

def _layer_forward(self: nn.Module, pieces: Sequence[Tensor]) -> list[Tensor]:
    """``pieces``: the block-input piece for this layer (before its ReLU) and the outputs of the earlier
    layers' copies meant for it (after their ReLU). Returns one output per later consumer."""
    hidden = self.relu2(self.conv1(self.xai_concat(self.relu1(pieces[0]), *pieces[1:])))
    convs = (self.conv2, *self._modules.get("xai_conv2", ()))  # the last layer has no extra copies
    return [relu(conv(hidden)) for conv, relu in zip(convs, self.xai_relu_out)]


def _block_forward(names: list[str], last: bool) -> Callable[[nn.Module, Tensor | list[Tensor]], object]:
    def forward(self: nn.Module, inputs: Tensor | list[Tensor]) -> Tensor | list[Tensor]:
        if isinstance(inputs, Tensor):  # the first block: every consumer reads the stem's output
            inputs = [inputs] * (len(names) + 1)
        pieces = [[piece] for piece in inputs]
        for k, name in enumerate(names):
            for j, out in enumerate(self._modules[name](pieces[k]), k + 1):
                pieces[j].append(out)
        own = pieces[-1]
        if not last:
            return own  # the transition applies its ReLU to the first piece and concatenates
        return self.xai_concat(self.xai_relu(own[0]), *own[1:])
    return forward


def _transition_forward(self: nn.Module, pieces: Sequence[Tensor]) -> list[Tensor]:
    x = self.xai_concat_in(self.relu(pieces[0]), *pieces[1:])
    pooled = self.pool(self.xai_concat_out(self.conv(x), *(conv(x) for conv in self.xai_conv)))
    return list(pooled.split(self.conv.out_channels, 1))


def _head_forward(self: nn.Module, x: Tensor) -> Tensor:
    return self.classifier(self.xai_flatten(self.xai_pool(self.features(x))))


# -- helpers ----------------------------------------------------------------------------------------------------

def _conv_copy(conv: nn.Conv2d, weight: Tensor, bias: Tensor, requires_grad: bool) -> nn.Conv2d:
    """A new ``nn.Conv2d`` with the geometry of ``conv`` holding ``weight`` and ``bias`` (built on the meta
    device, so that no parameters are initialised only to be replaced)."""
    copy = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                     padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=True,
                     padding_mode=conv.padding_mode, device="meta")
    copy.weight = nn.Parameter(weight, requires_grad=requires_grad)
    copy.bias = nn.Parameter(bias, requires_grad=requires_grad)
    return copy


def _out_of_place(editor: Canonizer, relu: nn.ReLU) -> None:
    """torchvision's ReLUs are in-place; one that now reads a view of a split tensor must not be (autograd
    refuses in-place writes into outputs of ``split``)."""
    if relu.inplace:
        editor.set_attribute(relu, "inplace", False)


def _check_conv(conv: object, where: str, pointwise: bool = False) -> nn.Conv2d:
    if type(conv) is not nn.Conv2d or conv.groups != 1 or conv.padding_mode != "zeros":
        raise ValueError(f"DenseNetUntangledCanonizer: {where} is {type(conv).__name__}, expected the torchvision "
                         "DenseNet's nn.Conv2d (groups=1, zero padding); the model differs from the torchvision "
                         "architecture")
    if pointwise and (conv.kernel_size != (1, 1) or conv.padding != (0, 0) or conv.stride != (1, 1)):
        raise ValueError(f"DenseNetUntangledCanonizer: {where} must be a 1x1 convolution without padding as in "
                         f"torchvision's DenseNet, got {conv}")
    return conv


def _check_type(module: object, expected: type, where: str) -> None:
    if type(module) is not expected and not (expected is _BatchNorm and isinstance(module, _BatchNorm)):
        raise ValueError(f"DenseNetUntangledCanonizer: {where} is {type(module).__name__}, expected "
                         f"{expected.__name__}; the model differs from the torchvision DenseNet architecture")


class DenseNetUntangledCanonizer(Canonizer):
    """torchvision DenseNet-121/161/169/201 canonized by untangling (Pahde et al. 2023): every BatchNorm
    slice is merged into its own copy of the convolution that produced its input (threshold-ReLU merges only
    for the stem's slices), concatenations as :class:`Concat`, activations and the head as modules.

    Computes the same (eval-mode) function; ``remove()`` restores the model bitwise. Not the default DenseNet
    canonizer (:func:`~xai_plugins.canonizers.canonizers_for` picks ``DenseNetCanonizer``, which is cheaper);
    use it explicitly, with Zennit through ``xai_plugins_zennit.canonizers.for_zennit(DenseNetUntangledCanonizer())``.
    """

    def canonize(self, model: nn.Module) -> None:
        module = sys.modules.get(_DENSENET)
        densenet = getattr(module, "DenseNet", None)
        if densenet is None or not isinstance(model, densenet):
            raise TypeError(f"DenseNetUntangledCanonizer canonizes torchvision DenseNet models, got "
                            f"{type(model).__name__}; use xai_plugins.canonizers.canonizers_for(model) to pick the "
                            "right canonizer")
        self.claim(model)  # refuses a model another canonizer already changed before anything is inspected
        stem, stages, norm5 = self._structure(model, module)
        conv0, norm0 = stem

        def affine(bn: _BatchNorm, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
            a, b = batchnorm_affine(bn)
            return a.to(dtype), b.to(dtype)

        features = model.features
        merge_preceding(self, (features, "conv0"), (features, "norm0"))
        for index, (block, transition) in enumerate(stages):
            first, last = index == 0, transition is None
            successor_bn = norm5 if last else transition.norm
            names = list(block._modules)
            layers = [block._modules[name] for name in names]
            # per consumer (layers 1..n, then the successor): its BN's scale and shift over all its channels
            consumer_bns = [layer.norm1 for layer in layers] + [successor_bn]
            dtype = layers[0].conv2.weight.dtype
            scales, shifts = zip(*(affine(bn, dtype) for bn in consumer_bns))
            scale_rows, shift_rows = pad_sequence(list(scales), batch_first=True), \
                pad_sequence(list(shifts), batch_first=True)
            width = layers[0].norm1.num_features  # channels of the block's input
            for k, layer in enumerate(layers):
                self._untangle_layer(k, layer, scale_rows, shift_rows, width, first)
            if last:
                self.set_child(block, "xai_concat", Concat(1))
                if first:  # a single-block DenseNet: norm5's stem slice goes into the classifier
                    self.set_child(block, "xai_relu", self._stem_merge(model, "classifier", successor_bn, width))
                else:
                    self.set_child(block, "xai_relu", nn.ReLU())
            else:
                next_block, after = stages[index + 1]
                self._untangle_transition(transition, next_block, norm5 if after is None else after.norm, first,
                                          width, affine)
            self.override_forward(block, _block_forward(names, last))
        neutralize_batchnorm(self, norm5)
        self.set_child(model, "xai_pool", nn.AdaptiveAvgPool2d((1, 1)))
        self.set_child(model, "xai_flatten", nn.Flatten(1))
        self.override_forward(model, _head_forward)

    # -- pieces ---------------------------------------------------------------------------------------------------

    def _untangle_layer(self, k: int, layer: nn.Module, scale_rows: Tensor, shift_rows: Tensor, width: int,
                        first: bool) -> None:
        """Copies of ``conv2`` for the layers after layer ``k`` (0-based) and the block's successor, each with
        that consumer's BN slice; row ``j`` of ``scale_rows``/``shift_rows`` is consumer ``j``'s BN map."""
        conv2 = layer.conv2
        growth = conv2.out_channels
        start = layer.norm1.num_features  # where this layer's output sits in every later concatenation
        scale = scale_rows[k + 1:, start:start + growth]   # one row per consumer of this layer's output
        shift = shift_rows[k + 1:, start:start + growth]
        weight = conv2.weight
        weights = weight.unsqueeze(0) * scale.view(*scale.shape, *([1] * (weight.dim() - 1)))
        biases = shift if conv2.bias is None else torch.addcmul(shift, conv2.bias.unsqueeze(0), scale)
        weights, biases = weights.unbind(0), biases.unbind(0)
        self.swap_parameter(conv2, "weight", weights[0])
        self.swap_parameter(conv2, "bias", biases[0])
        requires_grad = weight.requires_grad
        copies = [_conv_copy(conv2, w, b, requires_grad) for w, b in zip(weights[1:], biases[1:])]
        if copies:  # (an empty ModuleList would be a leaf without a rule for the hosts)
            self.set_child(layer, "xai_conv2", nn.ModuleList(copies))
        self.set_child(layer, "xai_relu_out", nn.ModuleList([nn.ReLU() for _ in weights]))
        self.set_child(layer, "xai_concat", Concat(1))
        if first:  # the stem's slice of norm1: threshold ReLU merged into conv1's first input channels
            self.set_child(layer, "relu1", self._stem_merge(layer, "conv1", layer.norm1, width))
        else:  # relu1 now acts on a view of the transition's pooled output: must not write into it
            _out_of_place(self, layer.relu1)
        merge_preceding(self, (layer, "conv1"), (layer, "norm2"))
        neutralize_batchnorm(self, layer.norm1)
        self.override_forward(layer, _layer_forward)

    def _stem_merge(self, parent: nn.Module, name: str, bn: _BatchNorm, width: int) -> ThresholdReLU:
        """Fold ``bn``'s slice over the stem's ``width`` channels into the first input channels of the 1x1 conv
        (or Linear) ``parent.<name>`` that reads it; returns the consumer's :class:`ThresholdReLU`."""
        layer = parent._modules[name]
        weight = layer.weight
        a, b = batchnorm_affine(bn)
        threshold, d, flip = relu_terms(a[:width], b[:width])
        a, d = a[:width].to(weight.dtype), d.to(weight.dtype)
        stem = weight[:, :width]
        scaled = stem * a.view(1, -1, *([1] * (weight.dim() - 2)))
        shift = stem.flatten(1) @ d if weight.dim() == 2 else stem.sum((2, 3)) @ d
        self.swap_parameter(layer, "weight", torch.cat((scaled, weight[:, width:]), 1))
        self.swap_parameter(layer, "bias", shift if layer.bias is None else layer.bias + shift)
        return ThresholdReLU(threshold, flip=flip)

    def _untangle_transition(self, transition: nn.Module, block: nn.Module, successor_bn: _BatchNorm, first: bool,
                             stem_width: int, affine: Callable[[_BatchNorm, torch.dtype], tuple[Tensor, Tensor]]
                             ) -> None:
        """Copies of the transition conv for every layer of ``block`` and its successor, each with that
        consumer's BN slice over the transition's channels (merged before the pooling, with which BN commutes)."""
        if first:  # the stem's slice of the transition's norm: into the conv before it is copied
            self.set_child(transition, "relu", self._stem_merge(transition, "conv", transition.norm, stem_width))
        else:
            _out_of_place(self, transition.relu)
        conv = transition.conv
        weight, bias = conv.weight, conv.bias
        width = conv.out_channels
        consumers = [block._modules[name].norm1 for name in block._modules] + [successor_bn]
        scales, shifts = zip(*(affine(bn, weight.dtype) for bn in consumers))
        scale = torch.stack([s[:width] for s in scales])
        shift = torch.stack([s[:width] for s in shifts])
        weights = (weight.unsqueeze(0) * scale.view(*scale.shape, 1, 1, 1)).unbind(0)
        biases = (shift if bias is None else torch.addcmul(shift, bias.unsqueeze(0), scale)).unbind(0)
        requires_grad = weight.requires_grad
        self.swap_parameter(conv, "weight", weights[0])
        self.swap_parameter(conv, "bias", biases[0])
        copies = [_conv_copy(conv, w, b, requires_grad) for w, b in zip(weights[1:], biases[1:])]
        self.set_child(transition, "xai_conv", nn.ModuleList(copies))
        self.set_child(transition, "xai_concat_in", Concat(1))
        self.set_child(transition, "xai_concat_out", Concat(1))
        neutralize_batchnorm(self, transition.norm)
        self.override_forward(transition, _transition_forward)

    # -- structure ------------------------------------------------------------------------------------------------

    @staticmethod
    def _structure(model: nn.Module, module) -> tuple[tuple[nn.Conv2d, _BatchNorm],
                                                      list[tuple[nn.Module, nn.Module | None]], _BatchNorm]:
        """``(conv0, norm0)``, ``[(block, transition or None), ...]`` and ``norm5``, checked against the
        torchvision DenseNet layout (the canonizer rewrites each block's data flow, so it must be exact)."""
        features = getattr(model, "features", None)
        if type(features) is not nn.Sequential or "forward" in features.__dict__:
            raise ValueError("DenseNetUntangledCanonizer: model.features must be torchvision's nn.Sequential")
        children = list(features._modules.items())
        names = [name for name, _ in children]
        if names[:4] != ["conv0", "norm0", "relu0", "pool0"] or names[-1] != "norm5":
            raise ValueError(f"DenseNetUntangledCanonizer: model.features has children {names}; expected conv0, "
                             "norm0, relu0, pool0, dense blocks and transitions, norm5 as torchvision builds them")
        conv0, norm0, norm5 = features.conv0, features.norm0, features.norm5
        _check_conv(conv0, "features.conv0")
        _check_type(norm0, _BatchNorm, "features.norm0")
        _check_type(norm5, _BatchNorm, "features.norm5")
        _check_type(features.relu0, nn.ReLU, "features.relu0")
        _check_type(features.pool0, nn.MaxPool2d, "features.pool0")
        if type(getattr(model, "classifier", None)) is not nn.Linear:
            raise ValueError("DenseNetUntangledCanonizer: model.classifier must be an nn.Linear as in torchvision")
        middle = children[4:-1]
        stages: list[tuple[nn.Module, nn.Module | None]] = []
        for position, (name, child) in enumerate(middle):
            want = module._DenseBlock if position % 2 == 0 else module._Transition
            if type(child) is not want:
                raise ValueError(f"DenseNetUntangledCanonizer: features.{name} is {type(child).__name__}, expected "
                                 f"{want.__name__}: dense blocks and transitions must alternate, starting and ending "
                                 "with a dense block")
            if position % 2 == 0:
                stages.append((child, None))
            else:
                stages[-1] = (stages[-1][0], child)
        if not stages or stages[-1][1] is not None:
            raise ValueError("DenseNetUntangledCanonizer: model.features must end with a dense block before norm5")
        channels = features.conv0.out_channels
        if norm0.num_features != channels:
            raise ValueError("DenseNetUntangledCanonizer: features.norm0 does not match conv0's channels")
        for block, transition in stages:
            where = next(n for n, m in features.named_children() if m is block)
            layers = list(block._modules.items())
            if not layers:
                raise ValueError(f"DenseNetUntangledCanonizer: features.{where} has no layers")
            for name, layer in layers:
                at = f"features.{where}.{name}"
                _check_type(layer, module._DenseLayer, at)
                if "forward" in layer.__dict__:
                    raise ValueError(f"DenseNetUntangledCanonizer: {at} has an instance-level forward override; "
                                     "another tool patched this model")
                for part, kind in (("norm1", _BatchNorm), ("relu1", nn.ReLU), ("norm2", _BatchNorm),
                                   ("relu2", nn.ReLU)):
                    _check_type(layer._modules.get(part), kind, f"{at}.{part}")
                conv1 = _check_conv(layer._modules.get("conv1"), f"{at}.conv1", pointwise=True)
                conv2 = _check_conv(layer._modules.get("conv2"), f"{at}.conv2")
                if not (layer.norm1.num_features == conv1.in_channels == channels
                        and layer.norm2.num_features == conv1.out_channels == conv2.in_channels):
                    raise ValueError(f"DenseNetUntangledCanonizer: channel counts of {at} do not chain "
                                     f"(input {channels}, norm1 {layer.norm1.num_features}, conv1 "
                                     f"{conv1.in_channels}->{conv1.out_channels}, norm2 {layer.norm2.num_features}, "
                                     f"conv2 {conv2.in_channels}->{conv2.out_channels})")
                channels += conv2.out_channels
            if transition is None:
                continue
            at = next(f"features.{n}" for n, m in features.named_children() if m is transition)
            if "forward" in transition.__dict__:
                raise ValueError(f"DenseNetUntangledCanonizer: {at} has an instance-level forward override")
            _check_type(transition._modules.get("norm"), _BatchNorm, f"{at}.norm")
            _check_type(transition._modules.get("relu"), nn.ReLU, f"{at}.relu")
            pool = transition._modules.get("pool")
            _check_type(pool, nn.AvgPool2d, f"{at}.pool")
            if pool.padding not in (0, (0, 0)):
                raise ValueError(f"DenseNetUntangledCanonizer: {at}.pool must not pad (BatchNorm commutes with "
                                 "average pooling only without padding)")
            conv = _check_conv(transition._modules.get("conv"), f"{at}.conv", pointwise=True)
            if not transition.norm.num_features == conv.in_channels == channels:
                raise ValueError(f"DenseNetUntangledCanonizer: {at} expects {conv.in_channels} channels, the block "
                                 f"before it produces {channels}")
            channels = conv.out_channels
        if norm5.num_features != channels or model.classifier.in_features != channels:
            raise ValueError(f"DenseNetUntangledCanonizer: features.norm5 ({norm5.num_features}) and the classifier "
                             f"({model.classifier.in_features}) must match the last block's {channels} channels")
        return (conv0, norm0), stages, norm5
