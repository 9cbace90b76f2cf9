"""The xai-plugins workbench: evaluation with ground truth, LRP hyperparameter search, the
implementation-invariance report and the demo. It uses Captum and Zennit through the adapters, which is why
it lives outside the core package."""

__version__ = "0.1.0"
