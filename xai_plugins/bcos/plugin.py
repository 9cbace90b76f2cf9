"""The built-in B-cos plugin: registers the B-cos model builders and the contribution explanation.

Components are registered as import strings so that discovery imports nothing but this module.
"""

from __future__ import annotations

from xai_plugins.hookspecs import Register, hookimpl

PAPER = "Böhle, Fritz and Schiele, B-cos Networks: Alignment is All We Need for Interpretability, CVPR 2022"
PAPER_V2 = ("Böhle, Singh, Fritz and Schiele, B-cos Alignment for Inherently Interpretable CNNs and Vision "
            "Transformers, TPAMI 2024")

_MODELS: dict[str, tuple[str, str]] = {
    "bcos_resnet18": ("xai_plugins.bcos.resnet:bcos_resnet18", "B-cos ResNet-18 on 6-channel [x, 1-x] inputs"),
    "bcos_resnet34": ("xai_plugins.bcos.resnet:bcos_resnet34", "B-cos ResNet-34 on 6-channel [x, 1-x] inputs"),
    "bcos_resnet50": ("xai_plugins.bcos.resnet:bcos_resnet50", "B-cos ResNet-50 on 6-channel [x, 1-x] inputs"),
    "bcos_vgg11": ("xai_plugins.bcos.vgg:bcos_vgg11", "B-cos VGG-11 on 6-channel [x, 1-x] inputs"),
    "bcos_densenet121": ("xai_plugins.bcos.densenet:bcos_densenet121",
                         "B-cos DenseNet-121 on 6-channel [x, 1-x] inputs"),
    "bcos_simple_cnn": ("xai_plugins.bcos.simple_cnn:bcos_simple_cnn",
                        "small B-cos CNN for small images (digits, CIFAR-sized) on 6-channel inputs"),
}

_MODEL_TYPES = (
    "xai_plugins.bcos.resnet.BcosResNet",
    "xai_plugins.bcos.vgg.BcosVGG",
    "xai_plugins.bcos.densenet.BcosDenseNet",
    "xai_plugins.bcos.simple_cnn.BcosSimpleCNN",
    "xai_plugins.bcos.convert.Bcosified",
)


@hookimpl
def xai_register_models(register: Register) -> None:
    for name, (target, summary) in _MODELS.items():
        extra = {"example_model_kwargs": {"classifier_width": 512}} if name == "bcos_vgg11" else {}
        register(name, target, summary=summary, paper=PAPER_V2, input_channels=6,
                 input_encoding="xai_plugins.bcos:encode_input",
                 explanation_mode="xai_plugins.bcos.mode:explanation_mode",
                 logit_bias="xai_plugins.bcos.explain:logit_bias", **extra)


@hookimpl
def xai_register_attributors(register: Register) -> None:
    register("bcos_contributions", "xai_plugins.bcos.explain:bcos_contributions",
             summary="B-cos contributions x * W(x): sum to the target logit minus the logit bias",
             paper=PAPER, model_types=_MODEL_TYPES, input_channels=6,
             input_encoding="xai_plugins.bcos:encode_input", example_model="model:bcos_simple_cnn",
             attribution_kind="gradient", multiplies_by_inputs=True, has_convergence_delta=True)
