"""The models of the graph-canonizer sweep: torchvision builders and the smallest model of each timm family.

``TORCHVISION_CI`` / ``TIMM_CI`` run in the test suite (the smallest variant per family); the full lists run
with ``XAI_PLUGINS_FULL_SWEEP=1`` and in ``benchmarks/graph_coverage.py``, which writes the coverage table of
``docs/canonizers.md``.
"""

from __future__ import annotations

import torch
from torch import nn

ATTENTION = ("vit_", "swin", "maxvit", "convnext")
"""torchvision builders with LayerNorm or attention: the graph canonizer refuses them with a clear error."""

TORCHVISION_CI = ("alexnet", "resnet18", "densenet121", "squeezenet1_1",
                  "googlenet", "inception_v3", "mnasnet0_5", "shufflenet_v2_x0_5", "mobilenet_v2",
                  "mobilenet_v3_small", "efficientnet_b0", "regnet_x_400mf", "regnet_y_400mf")

TIMM_CI = ("resnet18", "resnetv2_18", "seresnet18", "resnext26ts", "efficientnet_b0", "tf_efficientnet_b0",
           "mobilenetv3_small_050", "densenet121", "regnetx_002", "regnety_002", "rexnet_100", "mixnet_s",
           "cspresnet50", "cspdarknet53", "dla46_c", "dpn48b", "ghostnet_050", "hrnet_w18_small")
"""One model per timm family the issue names (resnet, resnetv2, seresnet, resnext, efficientnet,
tf_efficientnet, mobilenetv3, densenet, regnetx, regnety, rexnet, mixnet, cspresnet, cspdarknet, dla, dpn,
ghostnet, hrnet)."""


def torchvision_cnns() -> list[str]:
    """Every torchvision classification builder without LayerNorm or attention."""
    import torchvision

    return [name for name in torchvision.models.list_models(module=torchvision.models)
            if not name.startswith(ATTENTION)]


def build(spec: str, num_classes: int = 10) -> nn.Module:
    """``torchvision:NAME`` or ``timm:NAME`` with random weights (seeded), eval mode."""
    torch.manual_seed(0)
    source, _, name = spec.partition(":")
    if source == "timm":
        import timm

        return timm.create_model(name, pretrained=False, num_classes=num_classes).eval()
    import torchvision

    kwargs = {"aux_logits": False, "init_weights": False} if name in ("googlenet", "inception_v3") else {}
    return torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs).eval()


def input_size(spec: str) -> int:
    """The smallest input size the model runs at in the sweep (Inception v3 needs 75 pixels)."""
    return 96 if spec.endswith("inception_v3") else 64
