"""A small CLEVR-style Relation Network (Santoro et al., NeurIPS 2017) and its canonizer.

The model follows the CLEVR-from-pixels architecture at a size that runs on a CPU: a convolutional encoder
with BatchNorm turns the image into a grid of objects, each object is tagged with its (x, y) coordinates,
every ordered pair of objects (plus an optional question vector) goes through the pairwise MLP ``g``, the
pair features are summed, and the MLP ``f`` maps the sum to class scores.

Two things break rule-based attribution on this model: the BatchNorms of the encoder, and the sum over pairs,
which is a functional call in ``forward`` so that no rule can be attached to it (the gradient copies the full
relevance to every pair). :class:`RelationNetworkCanonizer` merges the BatchNorms into their convolutions and
routes the pair sum through an explicit :class:`PairSum` module, as in Pahde et al. (CVPRW 2023).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from xai_plugins.canonizers.base import Canonizer
from xai_plugins.canonizers.batchnorm import is_batchnorm, merge_preceding, sequential_pairs
from xai_plugins.canonizers.modules import Sum

__all__ = ["RelationNetwork", "RelationNetworkCanonizer", "relation_network"]


class RelationNetwork(nn.Module):
    """Relation Network for CLEVR-style visual question answering (or plain image classification).

    ``forward(image)`` when ``question_dim == 0``, else ``forward(image, question)`` with ``question`` of shape
    ``(batch, question_dim)`` (an encoded question, appended to every object pair). Any image size works: each
    cell of the encoder's output grid is one object (64x64 images give 16 objects, 256 pairs).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        question_dim: int = 0,
        channels: int = 24,
        conv_layers: int = 4,
        g_width: int = 256,
        g_layers: int = 4,
        f_width: int = 256,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if conv_layers < 1 or g_layers < 1:
            raise ValueError(f"conv_layers={conv_layers} and g_layers={g_layers} must both be >= 1")
        if question_dim < 0:
            raise ValueError(f"question_dim={question_dim} must be >= 0 (0 means no question input)")
        self.in_channels = in_channels
        self.question_dim = question_dim

        encoder: list[nn.Module] = []
        width = in_channels
        for _ in range(conv_layers):
            encoder += [
                nn.Conv2d(width, channels, kernel_size=3, stride=2, padding=1),
                nn.BatchNorm2d(channels),
                nn.ReLU(),
            ]
            width = channels
        self.encoder = nn.Sequential(*encoder)

        pair_width = 2 * (channels + 2) + question_dim
        g: list[nn.Module] = []
        for _ in range(g_layers):
            g += [nn.Linear(pair_width, g_width), nn.ReLU()]
            pair_width = g_width
        self.g = nn.Sequential(*g)
        self.f = nn.Sequential(
            nn.Linear(g_width, f_width),
            nn.ReLU(),
            nn.Linear(f_width, f_width),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(f_width, num_classes),
        )

    @staticmethod
    def object_coordinates(features: torch.Tensor) -> torch.Tensor:
        """(x, y) in [-1, 1] of every cell of the feature grid, row by row: ``(height*width, 2)``."""
        height, width = features.shape[-2:]
        options = {"dtype": features.dtype, "device": features.device}
        ys, xs = torch.meshgrid(torch.linspace(-1.0, 1.0, height, **options),
                                torch.linspace(-1.0, 1.0, width, **options), indexing="ij")
        return torch.stack([xs.flatten(), ys.flatten()], dim=-1)

    def objects(self, image: torch.Tensor) -> torch.Tensor:
        """Encoder features as objects tagged with coordinates: ``(batch, cells, channels + 2)``, one object per
        cell of the encoder's output grid (4x4 for 64x64 images with the default four stride-2 layers)."""
        features = self.encoder(image)
        objects = features.flatten(2).transpose(1, 2)
        coordinates = self.object_coordinates(features).expand(objects.shape[0], -1, -1)
        return torch.cat([objects, coordinates], dim=-1)

    def pairs(self, objects: torch.Tensor, question: torch.Tensor | None) -> torch.Tensor:
        """All ordered object pairs (with the question appended): ``(batch, objects**2, pair_width)``."""
        batch, count, width = objects.shape
        first = objects.unsqueeze(2).expand(batch, count, count, width)
        second = objects.unsqueeze(1).expand(batch, count, count, width)
        parts = [first, second]
        if question is not None:
            parts.append(question[:, None, None, :].expand(batch, count, count, question.shape[-1]))
        return torch.cat(parts, dim=-1).flatten(1, 2)

    def relations(self, image: torch.Tensor, question: torch.Tensor | None = None) -> torch.Tensor:
        """Output of ``g`` for every object pair: ``(batch, objects**2, g_width)``."""
        question = self._checked_inputs(image, question)
        return self.g(self.pairs(self.objects(image), question))

    def forward(self, image: torch.Tensor, question: torch.Tensor | None = None) -> torch.Tensor:
        return self.f(self.relations(image, question).sum(dim=1))

    def _checked_inputs(self, image: torch.Tensor, question: torch.Tensor | None) -> torch.Tensor | None:
        if image.dim() != 4 or image.shape[1] != self.in_channels:
            raise ValueError(
                f"image must have shape (batch, {self.in_channels}, height, width), got {tuple(image.shape)}; "
                f"this RelationNetwork was built with in_channels={self.in_channels}"
            )
        if self.question_dim == 0:
            if question is not None:
                raise ValueError("this RelationNetwork was built with question_dim=0; call it as model(image)")
            return None
        if question is None or question.shape != (image.shape[0], self.question_dim):
            got = None if question is None else tuple(question.shape)
            raise ValueError(
                f"question must have shape (batch, {self.question_dim}) = ({image.shape[0]}, {self.question_dim}),"
                f" got {got}; call the model as model(image, question)"
            )
        return question


def _canonical_forward(self: RelationNetwork, image: torch.Tensor, question: torch.Tensor | None = None
                       ) -> torch.Tensor:
    return self.f(self.xai_pair_sum(*self.relations(image, question).unbind(dim=1)))


class RelationNetworkCanonizer(Canonizer):
    """Canonizer for :class:`RelationNetwork` (Pahde et al., CVPRW 2023).

    Merges every BatchNorm of the encoder exactly into the convolution before it, and routes the sum over
    object pairs through an explicit :class:`~xai_plugins.canonizers.modules.Sum` module (one input per
    pair), so that it gets the proportional LRP rule instead of the gradient, which would hand every pair the
    full relevance of the sum.
    """

    def canonize(self, model: nn.Module) -> None:
        if not isinstance(model, RelationNetwork):
            raise TypeError(
                f"RelationNetworkCanonizer canonizes xai_plugins RelationNetwork models, got {type(model).__name__};"
                " use xai_plugins.canonizers.canonizers_for(model) to pick the right canonizer"
            )
        for layer_slot, bn_slot in sequential_pairs(model.encoder):
            merge_preceding(self, layer_slot, bn_slot)
        for name, module in model.named_modules():
            if is_batchnorm(module) and not self.owns(module):
                raise ValueError(
                    f"RelationNetworkCanonizer: BatchNorm {name!r} does not follow a convolution in the encoder; "
                    "the model was changed after it was built. Try MergeBatchNorm() instead"
                )
        self.set_child(model, "xai_pair_sum", Sum())
        self.override_forward(model, _canonical_forward)


def relation_network(**kwargs: Any) -> RelationNetwork:
    """Build a :class:`RelationNetwork` with random weights (``num_classes``, ``in_channels``, ``question_dim``,
    ``channels``, ``conv_layers``, ``g_width``, ``g_layers``, ``f_width``, ``dropout``); it takes images of any
    size, and the encoder's output grid gives the objects."""
    return RelationNetwork(**kwargs)
