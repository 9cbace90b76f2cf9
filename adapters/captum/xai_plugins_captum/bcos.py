"""B-cos contributions as a native Captum attribution.

:class:`BcosAttribution` is the registered attributor ``bcos_contributions`` (plugin ``bcos``) through the generic
Captum bridge (:class:`~xai_plugins_captum.bridge.RegisteredAttribution`): Input × Gradient computed in explanation
mode, where the input gradient of a B-cos network is its dynamic linear weight W(x), so the attributions are the
contributions ``x ⊙ W(x)[target]``. Captum's own ``InputXGradient`` inside ``xai_plugins.bcos.explanation_mode(model)``
gives the same numbers.
"""

from __future__ import annotations

from typing import Any

from captum.attr import GradientAttribution
from captum.log import log_usage
from torch import Tensor, nn

from xai_plugins.bcos.encoding import encode_input
from xai_plugins.bcos.explain import fold_encoded, needs_encoding, require_bcos_model
from xai_plugins.host_bridge import as_input_tuple
from xai_plugins_captum.bridge import Inputs, RegisteredAttribution


class BcosAttribution(RegisteredAttribution, GradientAttribution):
    """Contribution maps of a B-cos model: ``inputs × W(inputs)`` for the target logit.

    Args:
        model: a B-cos network (``xai_plugins.bcos.create_model`` or ``to_bcos``); a model without B-cos layers
            raises ``TypeError`` here, since its input × gradient carries none of the B-cos guarantees.

    The inputs are encoded images (``xai_plugins.bcos.encode_input``) or the images themselves in [0, 1]: when
    the model reads the 6-channel encoding and gets 3 channels, they are encoded here and the contributions of
    ``x`` and ``1 - x`` are added per channel, so the attributions are shaped like the inputs and keep their
    sum. Completeness: for each sample the attributions sum to the target logit minus the logit bias;
    ``return_convergence_delta=True`` returns that difference, computed the Captum way as
    ``Σ attributions - (F(inputs) - F(0))`` on what the model reads (a B-cos model maps a zero input to its
    logit bias).

    Cost: one forward and one backward pass of the model over the batch.

    Needs the built-in plugin ``bcos`` loaded (not blocked by ``XAI_PLUGINS_BLOCK``, autoload not disabled).

    Example::

        attr, delta = BcosAttribution(model).attribute(images, target=3, return_convergence_delta=True)
    """

    registered_name = "bcos_contributions"
    host_name = "BcosAttribution"

    def __init__(self, model: nn.Module) -> None:
        require_bcos_model(model, "BcosAttribution")
        super().__init__(model)
        self.model = model

    @log_usage(part_of_slo=False)
    def attribute(self, inputs: Inputs, target: Any = None, additional_forward_args: Any = None,
                  return_convergence_delta: bool = False) -> Inputs | tuple[Inputs, Tensor]:
        """Contributions shaped like ``inputs`` (a tuple for tuple inputs); with ``return_convergence_delta`` also
        the per-sample delta, a tensor of shape (N,).

        Args:
            inputs: the encoded images (N, 2C, H, W), or images (N, C, H, W) in [0, 1] of a model that reads the
                encoding, or a 1-tuple of either.
            target: the class to explain: an int for all samples, a list of N ints or a tensor of shape (N,).
            additional_forward_args: extra arguments of the model, if it takes any.
            return_convergence_delta: also return ``Σ attributions - (F(inputs) - F(0))`` per sample.
        """
        tensors, is_tuple = as_input_tuple(inputs)
        if len(tensors) != 1 or not needs_encoding(self.model, tensors[0]):
            return super().attribute(inputs, target=target, additional_forward_args=additional_forward_args,
                                     return_convergence_delta=return_convergence_delta)
        result = super().attribute(encode_input(tensors[0].detach()), target=target,
                                   additional_forward_args=additional_forward_args,
                                   return_convergence_delta=return_convergence_delta)
        if not return_convergence_delta:
            return (fold_encoded(result),) if is_tuple else fold_encoded(result)
        attributions, delta = result
        return ((fold_encoded(attributions),) if is_tuple else fold_encoded(attributions)), delta
