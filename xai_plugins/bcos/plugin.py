"""The built-in B-cos plugin: registers the B-cos model builders and the contribution explanation.

Components are registered as import strings (from the one table, :mod:`xai_plugins.bcos.zoo`) so that
discovery imports nothing but these two modules.
"""

from __future__ import annotations

from xai_plugins.bcos.zoo import MODEL_TYPES, MODELS
from xai_plugins.hookspecs import Register, hookimpl

PAPER = "Böhle, Fritz and Schiele, B-cos Networks: Alignment is All We Need for Interpretability, CVPR 2022"
PAPER_V2 = ("Böhle, Singh, Fritz and Schiele, B-cos Alignment for Inherently Interpretable CNNs and Vision "
            "Transformers, TPAMI 2024")


@hookimpl
def xai_register_models(register: Register) -> None:
    for name, entry in MODELS.items():
        extra: dict[str, object] = {"example_model_kwargs": entry.example_kwargs} if entry.example_kwargs else {}
        if entry.complete:
            extra.update(explanation_mode="xai_plugins.bcos.mode:explanation_mode",
                         logit_bias="xai_plugins.bcos.explain:logit_bias")
        register(name, entry.target, summary=entry.summary, paper=PAPER_V2, input_channels=6,
                 input_encoding="xai_plugins.bcos:encode_input", **extra)


@hookimpl
def xai_register_attributors(register: Register) -> None:
    register("bcos_contributions", "xai_plugins.bcos.explain:bcos_contributions",
             summary="B-cos contributions x * W(x): sum to the target logit minus the logit bias",
             paper=PAPER, model_types=MODEL_TYPES, input_channels=6,
             input_encoding="xai_plugins.bcos:encode_input", example_model="model:bcos_simple_cnn",
             attribution_kind="gradient", multiplies_by_inputs=True, has_convergence_delta=True)
