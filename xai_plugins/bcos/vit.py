"""B-cos Simple ViT and ViT-C (B-cos v2, Böhle et al., TPAMI 2024; Beyer et al. 2022; Xiao et al. 2021).

Patches (or the output of a B-cos convolution stem) are embedded by a B-cos linear map, a fixed 2-D sine-cosine
positional embedding is added, and encoder blocks of B-cos attention and a B-cos MLP (no activation: the
alignment scaling is the non-linearity) follow; tokens are averaged and classified by a B-cos linear map, then
the logit layer. The attention's queries and keys are a plain linear map (as in the authors' code); in
explanation mode they are detached, so the attention matrix is a constant and the block is linear in the
values. Norms are centered and bias-free (only the std is detached).

Completeness: the positional embedding is a constant added to the tokens, so ``Σ contributions`` equals the
logit minus the logit bias minus the embedding's own contribution ``W(x) · pe``; use
:func:`positional_contribution` for that term. Module names are the authors' (their models are
``BcosSequential(SimpleViT, LogitLayer)``, hence the ``0.`` / ``1.`` prefix), so their checkpoints load.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from xai_plugins.bcos.layers import BcosConv2d, BcosLinear, LogitLayer, check_input_channels
from xai_plugins.bcos.mode import Detachable
from xai_plugins.bcos.norms import LayerNorm2d, TokenLayerNorm

VIT_SIZES: dict[str, tuple[int, int, int, int, tuple[int, ...]]] = {
    # name: (dim, depth, heads, mlp_dim, conv stem widths of the ViT-C variant)
    "ti": (192, 12, 3, 768, (24, 48, 96, 192)),
    "s": (384, 12, 6, 1536, (48, 96, 192, 384)),
    "b": (768, 12, 12, 3072, (64, 128, 128, 256, 256, 512)),
    "l": (1024, 14, 16, 4096, (64, 128, 128, 256, 256, 512)),
}
"""Simple ViT sizes; the ViT-C variants have one encoder block less (the stem replaces it)."""


def sincos_embedding(h: int, w: int, dim: int, dtype: torch.dtype, device: torch.device,
                     temperature: float = 10_000.0) -> Tensor:
    """The fixed 2-D sine-cosine positional embedding ``(h·w, dim)`` of Simple ViT."""
    if dim % 4:
        raise ValueError(f"the token dimension must be a multiple of 4 for the sine-cosine embedding, got {dim}")
    y, x = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    omega = 1.0 / temperature ** (torch.arange(dim // 4, device=device) / (dim // 4 - 1))
    y = y.flatten()[:, None] * omega[None, :]
    x = x.flatten()[:, None] * omega[None, :]
    return torch.cat((x.sin(), x.cos(), y.sin(), y.cos()), dim=1).to(dtype)


class PatchesToTokens(nn.Module):
    """``(N, C, H·p, W·p)`` → ``(N, H, W, p·p·C)``: each patch flattened in (row, column, channel) order."""

    def __init__(self, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size

    def forward(self, x: Tensor) -> Tensor:
        n, c, hp, wp = x.shape
        p = self.patch_size
        if hp % p or wp % p:
            raise ValueError(f"image size {hp}x{wp} is not divisible by the patch size {p}")
        x = x.view(n, c, hp // p, p, wp // p, p)
        return x.permute(0, 2, 4, 3, 5, 1).reshape(n, hp // p, wp // p, p * p * c)


class Attention(Detachable, nn.Module):
    """Multi-head self-attention: norm, plain linear queries/keys/values, softmax, B-cos output map; queries and
    keys are detached in explanation mode (the attention matrix is then a constant)."""

    def __init__(self, dim: int, heads: int, dim_head: int, b: float, max_out: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = dim_head ** -0.5
        self.norm = TokenLayerNorm(dim)
        self.to_qkv = nn.Linear(dim, 3 * heads * dim_head, bias=False)
        self.to_out = BcosLinear(heads * dim_head, dim, b=b, max_out=max_out)

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm(x)
        n, tokens, _ = x.shape
        q, k, v = (t.view(n, tokens, self.heads, -1).transpose(1, 2) for t in self.to_qkv(x).chunk(3, dim=-1))
        if self.explanation:
            q, k = q.detach(), k.detach()
        attention = torch.softmax(q @ k.transpose(-1, -2) * self.scale, dim=-1)
        return self.to_out((attention @ v).transpose(1, 2).reshape(n, tokens, -1))


class FeedForward(nn.Module):
    """Norm and two B-cos linear maps (``act`` is the identity: no GELU in B-cos ViTs)."""

    def __init__(self, dim: int, hidden: int, b: float, max_out: int) -> None:
        super().__init__()
        self.net = nn.Sequential()
        self.net.add_module("norm", TokenLayerNorm(dim))
        self.net.add_module("linear1", BcosLinear(dim, hidden, b=b, max_out=max_out))
        self.net.add_module("act", nn.Identity())
        self.net.add_module("linear2", BcosLinear(hidden, dim, b=b, max_out=max_out))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class Encoder(nn.Module):
    """Attention and feed-forward, each with a residual sum."""

    def __init__(self, dim: int, heads: int, dim_head: int, mlp_dim: int, b: float, max_out: int) -> None:
        super().__init__()
        self.attn = Attention(dim, heads, dim_head, b, max_out)
        self.ff = FeedForward(dim, mlp_dim, b, max_out)

    def forward(self, x: Tensor) -> Tensor:
        x = self.attn(x) + x
        return self.ff(x) + x


class SimpleViT(nn.Module):
    """The B-cos Simple ViT body (without the logit layer); ``conv_stem`` widths give the ViT-C variant."""

    def __init__(self, patch_size: int, dim: int, depth: int, heads: int, mlp_dim: int, num_classes: int,
                 in_channels: int = 6, conv_stem: tuple[int, ...] | None = None, b: float = 2.0,
                 max_out: int = 1) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.to_patch_embedding = nn.Sequential()
        channels = in_channels
        if conv_stem:
            stem: list[nn.Module] = []
            for width in conv_stem:
                stem += [BcosConv2d(channels, width, 3, 2 if width > channels else 1, 1, b=b, max_out=max_out),
                         LayerNorm2d(width), nn.Identity()]
                channels = width
            self.to_patch_embedding.add_module("conv_stem", nn.Sequential(*stem))
        self.to_patch_embedding.add_module("rearrage", PatchesToTokens(patch_size))
        self.to_patch_embedding.add_module("linear", BcosLinear(channels * patch_size ** 2, dim, b=b,
                                                                max_out=max_out))
        self.transformer = nn.Sequential()
        for i in range(depth):
            self.transformer.add_module(f"encoder_{i}", Encoder(dim, heads, dim // heads, mlp_dim, b, max_out))
        self.linear_head = nn.Sequential()
        self.linear_head.add_module("norm", TokenLayerNorm(dim))
        self.linear_head.add_module("linear", BcosLinear(dim, num_classes, b=b, max_out=max_out))

    def tokens(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The embedded patches ``(N, tokens, dim)`` and the positional embedding added to them."""
        check_input_channels(x, self.in_channels, "the B-cos ViT")
        patches = self.to_patch_embedding(x)
        n, h, w, dim = patches.shape
        return patches.reshape(n, h * w, dim), sincos_embedding(h, w, dim, patches.dtype, patches.device)

    def forward(self, x: Tensor) -> Tensor:
        tokens, embedding = self.tokens(x)
        return self.linear_head(self.transformer(tokens + embedding).mean(dim=1))


class BcosViT(nn.Sequential):
    """``SimpleViT`` followed by the logit layer (the authors' ``BcosSequential`` layout: ``0.…``, ``1``)."""

    def __init__(self, size: str = "ti", patch_size: int = 16, conv_stem: bool = False, num_classes: int = 1000,
                 in_channels: int = 6, b: float = 2.0, max_out: int = 1, dim: int | None = None,
                 depth: int | None = None, heads: int | None = None, mlp_dim: int | None = None,
                 stem: tuple[int, ...] | None = None, logit_bias: float | None = None,
                 logit_temperature: float = 1.0) -> None:
        if size not in VIT_SIZES:
            raise ValueError(f"unknown ViT size {size!r}; use one of: {', '.join(VIT_SIZES)}")
        d, n, h, m, widths = VIT_SIZES[size]
        depth = (n - 1 if conv_stem else n) if depth is None else depth
        body = SimpleViT(patch_size, dim or d, depth, heads or h, mlp_dim or m, num_classes, in_channels,
                         (stem or widths) if conv_stem else None, b, max_out)
        super().__init__(body, LogitLayer.for_classes(num_classes, logit_temperature, logit_bias))
        self.num_classes = num_classes
        self.in_channels = in_channels


def positional_contribution(model: BcosViT, inputs: Tensor, target: Tensor) -> Tensor:
    """``W(x)[target] · pe`` per sample: what the constant positional embedding adds to the target logit (the
    part of ``logit - logit bias`` the input contributions do not explain)."""
    body = model[0]
    if not isinstance(body, SimpleViT):
        raise TypeError(f"positional_contribution needs a BcosViT (SimpleViT body), got {type(body).__name__}")
    from xai_plugins.bcos.mode import explanation_mode

    with explanation_mode(model), torch.enable_grad():
        tokens, embedding = body.tokens(inputs.detach())
        pe = embedding.expand_as(tokens).detach().requires_grad_(True)
        logits = model[1](body.linear_head(body.transformer(tokens.detach() + pe).mean(dim=1)))
        (weights,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), pe)
    return (weights * pe.detach()).flatten(1).sum(1)


def _vit(size: str, patch_size: int, conv_stem: bool, kwargs: dict[str, Any]) -> BcosViT:
    settings: dict[str, Any] = {"size": size, "patch_size": patch_size, "conv_stem": conv_stem, **kwargs}
    return BcosViT(**settings)


def bcos_simple_vit_ti_patch16_224(**kwargs: object) -> BcosViT:
    """B-cos Simple ViT-Ti/16 (dim 192, 12 blocks, 3 heads)."""
    return _vit("ti", 16, False, kwargs)


def bcos_simple_vit_s_patch16_224(**kwargs: object) -> BcosViT:
    """B-cos Simple ViT-S/16 (dim 384, 12 blocks, 6 heads)."""
    return _vit("s", 16, False, kwargs)


def bcos_simple_vit_b_patch16_224(**kwargs: object) -> BcosViT:
    """B-cos Simple ViT-B/16 (dim 768, 12 blocks, 12 heads)."""
    return _vit("b", 16, False, kwargs)


def bcos_simple_vit_l_patch16_224(**kwargs: object) -> BcosViT:
    """B-cos Simple ViT-L/16 (dim 1024, 14 blocks, 16 heads)."""
    return _vit("l", 16, False, kwargs)


def bcos_vitc_ti_patch1_14(**kwargs: object) -> BcosViT:
    """B-cos ViT-C-Ti: a B-cos convolution stem (stride 16) and 11 blocks on 1×1 patches."""
    return _vit("ti", 1, True, kwargs)


def bcos_vitc_s_patch1_14(**kwargs: object) -> BcosViT:
    """B-cos ViT-C-S: a B-cos convolution stem (stride 16) and 11 blocks on 1×1 patches."""
    return _vit("s", 1, True, kwargs)


def bcos_vitc_b_patch1_14(**kwargs: object) -> BcosViT:
    """B-cos ViT-C-B: a B-cos convolution stem (stride 16) and 11 blocks on 1×1 patches."""
    return _vit("b", 1, True, kwargs)


def bcos_vitc_l_patch1_14(**kwargs: object) -> BcosViT:
    """B-cos ViT-C-L: a B-cos convolution stem (stride 16) and 13 blocks on 1×1 patches."""
    return _vit("l", 1, True, kwargs)
