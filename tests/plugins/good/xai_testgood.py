"""A well-behaved third-party plugin used by the core's tests."""

import torch

import xai_plugins


def gradient_x_input(model, inputs, target, **kwargs):
    """Gradient times input for the target logits."""
    inputs = inputs.detach().requires_grad_(True)
    out = model(inputs)
    target = torch.as_tensor(target).reshape(-1).expand(out.shape[0])
    (grad,) = torch.autograd.grad(out.gather(1, target[:, None]).sum(), inputs)
    return (grad * inputs).detach()


@xai_plugins.hookimpl
def xai_register_attributors(register):
    register("test_gxi", gradient_x_input, summary="Gradient times input (test plugin)",
             paper="Shrikumar et al., Not Just a Black Box, 2016", model_types=(), attribution_kind="gradient",
             multiplies_by_inputs=True)
