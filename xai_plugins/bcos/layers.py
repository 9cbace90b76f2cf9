"""B-cos layers: the B-cos transform for convolutions and linear maps, and the logit layer.

The B-cos transform (Böhle et al., CVPR 2022; v2: TPAMI 2024) of an input patch ``x`` with a unit-norm
weight ``ŵ`` is ``|cos(x, ŵ)|^(B-1) · ŵᵀx``: a linear map scaled by how well input and weight align. With
``B = 1`` it is a plain (bias-free) linear map; larger ``B`` pushes the weights to align with the inputs,
which is what makes the induced linear map ``W(x)`` of a whole network interpretable.

``cos(x, ŵ) = ŵᵀx / ‖x‖`` needs the norm of every input patch. It is computed here from the channel-summed
(per group) squared input with a ones-kernel convolution of the layer's size, honouring stride, padding,
dilation and groups — as a sum pooling when there is no dilation and a strided slice for 1×1 kernels, which
are the same sums without the convolution's setup cost — instead of unfolding the patches.
"""

from __future__ import annotations

import math
import weakref

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

from xai_plugins.bcos.mode import Detachable

IntOrPair = int | tuple[int, int]

PATCH_NORM_EPS = 1e-6
"""Added to the squared patch norm before the square root, so all-zero patches do not divide by zero."""

COS_EPS = 1e-6
"""Added to |cos| before it is raised to B - 1: for B < 2 the power has an infinite slope at 0."""


def check_b(b: float) -> float:
    """Validate the alignment exponent: B-cos needs ``b >= 1`` (``b = 1`` is linear)."""
    if isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b) or b < 1:
        raise ValueError(
            f"the B-cos exponent b must be a finite number >= 1 (b = 1 is a plain linear layer, the papers use "
            f"b = 2), got b = {b!r}")
    return float(b)


def check_input_channels(x: Tensor, expected: int, layer: str) -> None:
    """Raise a clear error when an input has the wrong channel count (typically RGB instead of [x, 1 - x])."""
    if x.dim() < 2 or x.shape[1] != expected:
        got = x.shape[1] if x.dim() >= 2 else None
        hint = ""
        if got is not None and 2 * got == expected:
            hint = (f"; B-cos models take the {expected}-channel encoding [x, 1 - x] of a {got}-channel image: "
                    "call xai_plugins.bcos.encode_input(x) first")
        raise ValueError(f"{layer} expects {expected} input channels, got input of shape {tuple(x.shape)}{hint}")


def patch_norms(x: Tensor, kernel_size: IntOrPair, stride: IntOrPair = 1, padding: IntOrPair | str = 0,
                dilation: IntOrPair = 1, groups: int = 1, eps: float = PATCH_NORM_EPS) -> Tensor:
    """Euclidean norm of every input patch a convolution with these settings sees.

    Returns shape ``(N, groups, H_out, W_out)``: the norm of the patch of group ``g`` at each output position,
    ``sqrt(Σ x² + eps)`` over the patch's channels and kernel window (zero padding counts as zeros).
    """
    kernel, stride, dilation = _pair(kernel_size), _pair(stride), _pair(dilation)
    pad = None if isinstance(padding, str) else _pair(padding)
    pointwise = kernel == (1, 1) and (pad == (0, 0) or padding in ("valid", "same"))
    if pointwise:
        x = x[:, :, ::stride[0], ::stride[1]]
    n, c = x.shape[:2]
    squares = x.square()
    squares = squares.sum(1, keepdim=True) if groups == 1 else squares.view(n, groups, c // groups, *x.shape[2:]).sum(2)
    if pointwise:
        summed = squares
    elif dilation == (1, 1) and pad is not None and all(2 * p <= k for p, k in zip(pad, kernel)):
        # a sum pooling is the ones-kernel convolution without its per-call setup cost
        summed = F.avg_pool2d(squares, kernel, stride, pad, count_include_pad=True, divisor_override=1)
    else:
        ones = torch.ones(groups, 1, *kernel, dtype=x.dtype, device=x.device)
        summed = F.conv2d(squares, ones, None, stride, padding, dilation, groups)
    return (summed + eps).sqrt()


_UNIT_WEIGHTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""Cached unit-norm weights per layer, with the identity and version of the weight they were computed from.
Kept outside the modules so that caching never changes a module's state."""


class _BcosTransform(Detachable, nn.Module):
    """Shared parts of the B-cos layers: the unit-norm weight and the explanation-mode switch.

    When no gradient has to reach the weights through the normalisation (inference, frozen weights, or
    explanation mode, where every scaling counts as a constant and explanations differentiate with respect to
    the input only), the normalised weight is cached until the weight changes (in place, by reassignment, or by
    a dtype/device move), so explanations do not renormalise every weight on every call.
    """

    weight: nn.Parameter
    normalize_weights: bool
    _norm_dims: tuple[int, ...]

    def effective_weight(self) -> Tensor:
        """The weight the layer applies: unit norm per output unit unless ``normalize_weights`` is off."""
        w = self.weight
        if not self.normalize_weights:
            return w
        if torch.is_grad_enabled() and w.requires_grad and not self.explanation:
            return w / torch.linalg.vector_norm(w, dim=self._norm_dims, keepdim=True)
        key = (w._version, w.data_ptr(), w.dtype, w.device, w.shape, torch.is_inference_mode_enabled())
        cache = _UNIT_WEIGHTS.get(self)
        if cache is None or cache[0] != key:
            with torch.no_grad():
                cache = (key, w / torch.linalg.vector_norm(w, dim=self._norm_dims, keepdim=True))
            _UNIT_WEIGHTS[self] = cache
        return cache[1]


class BcosConv2d(_BcosTransform):
    """2-D convolution with the B-cos transform: unit-norm weights, |cos|^(B-1) scaling, no bias.

    Parameters follow :class:`torch.nn.Conv2d`, plus ``b`` (alignment exponent, >= 1; default 2),
    ``max_out`` (number of MaxOut units per output channel; 1 means none). ``normalize_weights=False`` and
    ``bias=True`` exist only for B-cosified standard models (see :func:`xai_plugins.bcos.to_bcos`): with them
    and ``b = 1`` the layer is exactly :class:`torch.nn.Conv2d`; a bias breaks the completeness
    ``Σ W(x) x = output``, so fine-tuning removes it.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntOrPair = 1, stride: IntOrPair = 1,
                 padding: IntOrPair | str = 0, dilation: IntOrPair = 1, groups: int = 1,
                 padding_mode: str = "zeros", b: float = 2.0, max_out: int = 1, *, normalize_weights: bool = True,
                 bias: bool = False, device: torch.device | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"in_channels ({in_channels}) and out_channels ({out_channels}) must be divisible by "
                             f"groups ({groups})")
        if int(max_out) != max_out or max_out < 1:
            raise ValueError(f"max_out must be a positive integer (1 means no MaxOut), got {max_out!r}")
        if padding_mode not in ("zeros", "reflect", "replicate", "circular"):
            raise ValueError(f"padding_mode must be 'zeros', 'reflect', 'replicate' or 'circular', got "
                             f"{padding_mode!r}")
        if isinstance(padding, str) and padding_mode != "zeros":
            raise ValueError(f"padding={padding!r} needs padding_mode='zeros'; give the padding as numbers to use "
                             f"padding_mode={padding_mode!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = padding if isinstance(padding, str) else _pair(padding)
        self.dilation = _pair(dilation)
        self.groups = groups
        self.padding_mode = padding_mode
        self.b = check_b(b)
        self.max_out = int(max_out)
        self.normalize_weights = normalize_weights
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(out_channels * self.max_out, in_channels // groups,
                                               *self.kernel_size, **factory))
        self.bias = nn.Parameter(torch.zeros(out_channels * self.max_out, **factory)) if bias else None
        self._norm_dims = (1, 2, 3)
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")

    def _pad(self, x: Tensor) -> tuple[Tensor, IntOrPair | str]:
        if self.padding_mode == "zeros" or isinstance(self.padding, str):
            return x, self.padding
        ph, pw = self.padding
        return F.pad(x, (pw, pw, ph, ph), mode=self.padding_mode), 0

    def forward(self, x: Tensor) -> Tensor:
        check_input_channels(x, self.in_channels, type(self).__name__)
        x, padding = self._pad(x)
        out = F.conv2d(x, self.effective_weight(), self.bias, self.stride, padding, self.dilation, self.groups)
        if self.max_out > 1:
            out = out.unflatten(1, (self.out_channels, self.max_out)).amax(2)
        if self.b == 1:
            return out
        detach = self.explanation or not torch.is_grad_enabled()
        norms = patch_norms(x.detach() if detach else x, self.kernel_size, self.stride, padding, self.dilation,
                            self.groups)
        if self.groups == 1:
            return alignment_scale(out, norms, self.b, detach)
        return alignment_scale(self._grouped(out), norms.unsqueeze(2), self.b, detach).view(out.shape)

    def _grouped(self, t: Tensor) -> Tensor:
        """View ``(N, O, H, W)`` as ``(N, groups, O / groups, H, W)`` to broadcast per-group patch norms."""
        n, o, h, w = t.shape
        return t.view(n, self.groups, o // self.groups, h, w)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
             f"padding={self.padding}, b={self.b:g}")
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.max_out > 1:
            s += f", max_out={self.max_out}"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode!r}"
        if not self.normalize_weights:
            s += ", normalize_weights=False"
        if self.bias is not None:
            s += ", bias=True"
        return s


class BcosLinear(_BcosTransform):
    """Linear layer with the B-cos transform: unit-norm weight rows, |cos|^(B-1) scaling, no bias.

    ``b``, ``max_out``, ``normalize_weights`` and ``bias`` mean what they mean for :class:`BcosConv2d`.
    """

    def __init__(self, in_features: int, out_features: int, b: float = 2.0, max_out: int = 1, *,
                 normalize_weights: bool = True, bias: bool = False, device: torch.device | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if int(max_out) != max_out or max_out < 1:
            raise ValueError(f"max_out must be a positive integer (1 means no MaxOut), got {max_out!r}")
        self.in_features = in_features
        self.out_features = out_features
        self.b = check_b(b)
        self.max_out = int(max_out)
        self.normalize_weights = normalize_weights
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(out_features * self.max_out, in_features, **factory))
        self.bias = nn.Parameter(torch.zeros(out_features * self.max_out, **factory)) if bias else None
        self._norm_dims = (1,)
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"{type(self).__name__} expects {self.in_features} input features in the last "
                             f"dimension, got input of shape {tuple(x.shape)}")
        out = F.linear(x, self.effective_weight(), self.bias)
        if self.max_out > 1:
            out = out.unflatten(-1, (self.out_features, self.max_out)).amax(-1)
        if self.b == 1:
            return out
        detach = self.explanation or not torch.is_grad_enabled()
        source = x.detach() if detach else x
        norms = (source.square().sum(-1, keepdim=True) + PATCH_NORM_EPS).sqrt()
        return alignment_scale(out, norms, self.b, detach)

    def extra_repr(self) -> str:
        s = f"{self.in_features}, {self.out_features}, b={self.b:g}"
        if self.max_out > 1:
            s += f", max_out={self.max_out}"
        if not self.normalize_weights:
            s += ", normalize_weights=False"
        if self.bias is not None:
            s += ", bias=True"
        return s


def alignment_scale(out: Tensor, norms: Tensor, b: float, detach: bool) -> Tensor:
    """``|cos|^(B-1) · out`` with ``cos = out / norm``; with ``detach`` the scaling is a constant."""
    if detach:
        with torch.no_grad():
            scale = out.abs().div_(norms)
            if b != 2:
                scale.add_(COS_EPS).pow_(b - 1)
        return out * scale
    cos = out.abs() / norms
    return out * (cos if b == 2 else (cos + COS_EPS).pow(b - 1))


class LogitLayer(nn.Module):
    """Final affine map of the logits: ``logits / temperature + bias`` (scalars, not learned).

    B-cos models are trained with a fixed negative logit bias (``-log(num_classes - 1)`` makes the initial
    sigmoid outputs uniform) because their dynamic-linear body has no biases. The bias is what the
    contributions do not explain: ``Σ contributions = logit - bias``.
    """

    def __init__(self, temperature: float = 1.0, bias: float = 0.0) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"the logit temperature must be positive, got {temperature!r}")
        self.temperature = float(temperature)
        self.bias = float(bias)

    @classmethod
    def for_classes(cls, num_classes: int, temperature: float = 1.0, bias: float | None = None) -> LogitLayer:
        """The logit layer of a model with ``num_classes`` outputs: ``bias`` defaults to
        :func:`default_logit_bias`."""
        return cls(temperature, default_logit_bias(num_classes) if bias is None else bias)

    def forward(self, x: Tensor) -> Tensor:
        if self.temperature != 1.0:
            x = x / self.temperature
        if self.bias != 0.0:
            x = x + self.bias
        return x

    def extra_repr(self) -> str:
        return f"temperature={self.temperature:g}, bias={self.bias:g}"


def default_logit_bias(num_classes: int) -> float:
    """``-log(num_classes - 1)``: with it a freshly initialised model predicts 1/num_classes per class."""
    return -math.log(num_classes - 1) if num_classes > 2 else 0.0
