"""The plugin module the entry point names: it only registers, so discovery stays cheap.

Components are given as import strings, so their modules are imported only when a component is used. The
``extra`` keywords tell the conformance suite what to check them on (see xai-plugins' docs/conformance.md).
"""

from __future__ import annotations

import xai_plugins

PAPER_GXI = "Shrikumar, Greenside, Shcherbina and Kundaje, Not Just a Black Box, arXiv 2016"
PAPER_CANONIZATION = ("Pahde, Yolcu, Binder, Samek and Lapuschkin, Optimizing Explanations by Network "
                      "Canonization and Hyperparameter Search, CVPRW 2023")
PAPER_EXPLAINFIX = ("Gaudio, Faloutsos, Smailagic, Costa, Campilho, ExplainFix: Explainable Spatially Fixed Deep "
                    "Networks, WIREs Data Mining and Knowledge Discovery 2023")


@xai_plugins.hookimpl
def xai_register_attributors(register) -> None:
    """Register the gradient x input attributor (any model, so the suite uses its own reference models); the
    bridge metadata makes it a Captum GradientAttribution that multiplies by the inputs."""
    register("example_gxi", "xai_plugins_example.attributors:gradient_x_input",
             summary="Gradient times input of the target logit (example plugin)",
             paper=PAPER_GXI, tolerance=1e-5, attribution_kind="gradient", multiplies_by_inputs=True)


@xai_plugins.hookimpl
def xai_register_canonizers(register) -> None:
    """Register the canonizer with the small model it is meant for, so the suite can build one."""
    register("example_sequential_bn", "xai_plugins_example.canonizers:SequentialMergeBatchNorm",
             summary="Merge BatchNorm into the preceding conv inside nn.Sequential (example plugin)",
             paper=PAPER_CANONIZATION, model_types=("xai_plugins_example.models.TinyConvNet",),
             example_model="xai_plugins_example.models:tiny_convnet",
             example_model_kwargs={"num_classes": 4}, example_input_shape=(2, 3, 16, 16))


@xai_plugins.hookimpl
def xai_register_models(register) -> None:
    """Register the small model, buildable with ``xai_plugins.create_model("example_tiny_convnet")``."""
    register("example_tiny_convnet", "xai_plugins_example.models:tiny_convnet",
             summary="conv-BN-ReLU x2, pooling, linear: a small CNN on 3-channel images (example plugin)",
             paper=PAPER_CANONIZATION, example_input_shape=(2, 3, 16, 16))


@xai_plugins.hookimpl
def xai_register_initializers(register) -> None:
    """Register the Gaussian initializer, usable with ``fix_spatial_filters(model, "example_gaussian")``."""
    register("example_gaussian", "xai_plugins_example.initializers:gaussian_filters",
             summary="random-width Gaussian blobs with random sign, unit norm (example plugin)",
             paper=PAPER_EXPLAINFIX, model_types=("torch.nn.Conv1d", "torch.nn.Conv2d", "torch.nn.Conv3d"))
