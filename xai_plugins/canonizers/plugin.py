"""The built-in canonizer plugin: registers every canonizer and the reference Relation Network model.

Components are registered as import strings so that discovery imports nothing but this module (in
particular not torchvision).
"""

from __future__ import annotations

from xai_plugins.hookspecs import Register, hookimpl

PAPER = ("Pahde, Yolcu, Binder, Samek and Lapuschkin, Optimizing Explanations by Network Canonization and "
         "Hyperparameter Search, CVPRW 2023")
RELATION_NETWORK_PAPER = "Santoro et al., A simple neural network module for relational reasoning, NeurIPS 2017"

_TV = "xai_plugins.canonizers.torchvision_models"
_RN = "xai_plugins.canonizers.relation_network"

_ARCHITECTURES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "vgg": (f"{_TV}:VGGCanonizer", "torchvision VGG with or without BatchNorm: BN merged into the preceding conv",
            ("torchvision.models.VGG",)),
    "resnet": (f"{_TV}:ResNetCanonizer",
               "torchvision ResNet/ResNeXt/Wide ResNet: BN merged, residual sums as explicit Sum modules",
               ("torchvision.models.ResNet",)),
    "densenet": (f"{_TV}:DenseNetCanonizer",
                 "torchvision DenseNet: BN merged into preceding or following layers (threshold ReLU), concats "
                 "explicit", ("torchvision.models.DenseNet",)),
    "efficientnet": (f"{_TV}:EfficientNetCanonizer",
                     "torchvision EfficientNet B0-B7 and V2: BN merged, residual sums and SE gates explicit",
                     ("torchvision.models.EfficientNet",)),
    "mobilenet_v2": (f"{_TV}:MobileNetV2Canonizer",
                     "torchvision MobileNetV2: BN merged, residual sums and functional pooling explicit",
                     ("torchvision.models.MobileNetV2",)),
    "mobilenet_v3": (f"{_TV}:MobileNetV3Canonizer",
                     "torchvision MobileNetV3: BN merged, residual sums and SE gates explicit",
                     ("torchvision.models.MobileNetV3",)),
    "regnet": (f"{_TV}:RegNetCanonizer", "torchvision RegNet X/Y: BN merged, residual sums and SE gates explicit",
               ("torchvision.models.RegNet",)),
    "relation_network": (f"{_RN}:RelationNetworkCanonizer",
                         "Relation Network: encoder BN merged, sum over object pairs explicit",
                         (f"{_RN}.RelationNetwork",)),
}

_GENERIC: dict[str, tuple[str, str]] = {
    "merge_batchnorm": ("xai_plugins.canonizers.batchnorm:MergeBatchNorm",
                        "any traceable model: every BatchNorm merged into the preceding layer, else the following"),
    "merge_batchnorm_preceding": ("xai_plugins.canonizers.batchnorm:MergeBatchNormPreceding",
                                  "any traceable model: BatchNorm merged into the conv/linear that feeds it "
                                  "(data flow from torch.fx)"),
    "merge_batchnorm_following": ("xai_plugins.canonizers.batchnorm:MergeBatchNormFollowing",
                                  "any traceable model: BN [-> ReLU] -> conv merged exactly (threshold ReLU, "
                                  "position-dependent bias at padded borders)"),
}


@hookimpl
def xai_register_canonizers(register: Register) -> None:
    for name, (target, summary, model_types) in _ARCHITECTURES.items():
        examples = {"example_model": "model:relation_network"} if name == "relation_network" else {}
        register(name, target, summary=summary, paper=PAPER, model_types=model_types, family="canonizers",
                 architecture=name, zennit="xai_plugins_zennit.canonizers_for",
                 captum="xai_plugins_captum.canonized", **examples)
    register("densenet_untangled", "xai_plugins.canonizers.densenet_untangled:DenseNetUntangledCanonizer",
             summary="torchvision DenseNet, the paper's untangling variant: each BN slice merged into its own conv "
                     "copy",
             paper=PAPER, model_types=("torchvision.models.DenseNet",), family="canonizers", architecture="densenet",
             variant="untangled", zennit="xai_plugins_zennit.canonizers.for_zennit",
             captum="xai_plugins_captum.canonized")
    for name, (target, summary) in _GENERIC.items():
        # the suite's default example has BN only after convolutions; the following merge needs BN → ReLU → conv
        examples = {"example_model": "xai_plugins.conformance.examples:preactivation_net"} \
            if name == "merge_batchnorm_following" else {}
        register(name, target, summary=summary, paper=PAPER, family="canonizers", architecture="generic",
                 **examples)


@hookimpl
def xai_register_models(register: Register) -> None:
    register("relation_network", f"{_RN}:relation_network",
             summary="small CLEVR-style Relation Network (conv encoder with BN, pairwise g-MLP, sum, f-MLP)",
             paper=RELATION_NETWORK_PAPER, model_types=(f"{_RN}.RelationNetwork",), family="canonizers")
