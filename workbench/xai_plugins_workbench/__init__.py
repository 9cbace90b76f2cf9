"""The xai-plugins workbench: evaluation with ground truth, LRP hyperparameter search, the
implementation-invariance report and the demo. It uses Captum and Zennit through the adapters, which is why
it lives outside the core package."""

from xai_plugins._version import distribution_version

__version__ = distribution_version("xai-plugins-workbench")
