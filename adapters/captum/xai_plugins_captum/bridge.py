"""Any registered attributor as a native Captum attribution.

``attribution(name)`` returns a subclass of ``captum.attr.GradientAttribution`` or
``captum.attr.PerturbationAttribution`` (as the component's ``attribution_kind`` declares) whose
``attribute(inputs, target=..., additional_forward_args=..., return_convergence_delta=False, **kwargs)``
follows Captum's conventions: a tensor or a tuple of tensors with the batch first, int / list / tensor
targets, extra forward arguments. ``has_convergence_delta()`` and ``multiplies_by_inputs`` come from the
metadata, so the class works inside ``NoiseTunnel`` and with ``sensitivity_max`` and ``infidelity``::

    GradientXInput = attribution("example_gxi")
    attributions = NoiseTunnel(GradientXInput(model)).attribute(x, nt_type="smoothgrad", target=3)

Every result is checked (shape, finiteness); a broken one is a ``ComponentContractError`` naming the
component and its plugin.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from captum.attr import Attribution, GradientAttribution, PerturbationAttribution
from captum.log import log_usage

from xai_plugins.errors import HostMetadataError
from xai_plugins.host_bridge import (
    AttributorMetadata,
    as_input_tuple,
    attribute_inputs,
    attributor_component,
    attributor_metadata,
    check_target,
    describe_source,
    extra_args,
)
from xai_plugins.registry import Component

Inputs = torch.Tensor | tuple[torch.Tensor, ...]

__all__ = ["RegisteredAttribution", "attribution"]


class RegisteredAttribution:
    """The Captum side of one registered attributor; :func:`attribution` adds the Captum base class.

    A named host class subclasses it together with its Captum base class and sets ``registered_name`` (the
    attributor it bridges, looked up in the registry when an instance is made) and ``host_name`` (how its errors
    name it), as ``xai_plugins_captum.ExtremalPerturbation`` does: the built-ins reach Captum the way third-party
    attributors do.
    """

    component: ClassVar[Component]
    metadata: ClassVar[AttributorMetadata]
    registered_name: ClassVar[str | None] = None
    host_name: ClassVar[str | None] = None
    forward_func: Any  # set by the Captum base class
    compute_convergence_delta: Any  # GradientAttribution's, for gradient-based components

    def __init__(self, forward_func: Any, *args: Any, **kwargs: Any) -> None:
        if self.registered_name is not None:
            component = attributor_component(self.registered_name)
            metadata = attributor_metadata(component, "captum")
            base = GradientAttribution if metadata.attribution_kind == "gradient" else PerturbationAttribution
            if not isinstance(self, base):
                raise HostMetadataError(f"{describe_source(component)} declares attribution_kind="
                                        f"{metadata.attribution_kind!r}, but {type(self).__name__} is not a Captum "
                                        f"{base.__name__}")
            self.component, self.metadata = component, metadata
        super().__init__(forward_func, *args, **kwargs)  # type: ignore[call-arg]  # the Captum base class's

    @property
    def who(self) -> str:
        """How errors name this attribution: its host class, or the component and its plugin."""
        return self.host_name or describe_source(self.component)

    @log_usage(part_of_slo=False)
    def attribute(self, inputs: Inputs, target: Any = None, additional_forward_args: Any = None,
                  return_convergence_delta: bool = False, **kwargs: Any) -> Any:
        """Attributions shaped like ``inputs`` (a tuple for tuple inputs); with ``return_convergence_delta``
        also the per-sample delta ``sum(attributions) - (F(inputs) - F(baselines))``, ``baselines`` being the
        keyword of that name or zeros. Other keywords go to the attributor."""
        tensors, is_tuple = as_input_tuple(inputs)
        if return_convergence_delta and not self.metadata.has_convergence_delta:
            raise HostMetadataError(
                f"{describe_source(self.component)} has no convergence delta: it does not declare "
                "has_convergence_delta=True; call attribute() without return_convergence_delta")
        attributions = attribute_inputs(self.component, self.forward_func, tensors, check_target(target, self.who),
                                        extra_args(additional_forward_args), **kwargs)
        formatted = attributions if is_tuple else attributions[0]
        if not return_convergence_delta:
            return formatted
        baselines = kwargs.get("baselines")
        if baselines is None:
            start = tuple(torch.zeros_like(t) for t in tensors)
        else:
            start = as_input_tuple(baselines)[0] if not isinstance(baselines, (int, float)) else tuple(
                torch.full_like(t, float(baselines)) for t in tensors)
        delta = self.compute_convergence_delta(attributions, start, tensors, target, additional_forward_args)
        return formatted, delta

    def has_convergence_delta(self) -> bool:
        """From the component's ``has_convergence_delta`` metadata."""
        return self.metadata.has_convergence_delta

    @property
    def multiplies_by_inputs(self) -> bool:
        """From the component's ``multiplies_by_inputs`` metadata."""
        return self.metadata.multiplies_by_inputs


_CLASSES: dict[tuple[str, int], type[Attribution]] = {}


def attribution(name: str) -> type[Attribution]:
    """The Captum attribution class of the registered attributor ``name``.

    An unknown name is a ``ComponentNotFoundError`` listing the registered attributors; a component without
    ``attribution_kind`` (or with metadata Captum cannot honour) a ``HostMetadataError`` naming the component,
    its plugin and the metadata.
    """
    component = attributor_component(name)
    key = (name, id(component))
    if key not in _CLASSES:
        metadata = attributor_metadata(component, "captum")
        base = GradientAttribution if metadata.attribution_kind == "gradient" else PerturbationAttribution
        class_name = "".join(part.capitalize() for part in name.replace("-", "_").split("_")) or name
        _CLASSES[key] = type(class_name, (RegisteredAttribution, base), {
            "__module__": __name__,
            "__doc__": f"{component.summary} ({describe_source(component)}, as a Captum attribution).",
            "component": component,
            "metadata": metadata,
        })
    return _CLASSES[key]
