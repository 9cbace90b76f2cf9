"""Any registered attributor as a native Zennit attributor.

``attributor(name)`` returns a ``zennit.attribution.Attributor`` subclass, used like Zennit's own::

    GradientXInput = attributor("example_gxi")
    with GradientXInput(model, composite=None) as attribute:
        output, relevance = attribute(images, torch.eye(num_classes)[targets])

``attr_output`` selects one class per sample: each row has exactly one non-zero entry (a one-hot row, as
``torch.eye(n)[targets]``), and the relevance is that class's attribution times the entry. Without it the
predicted class (argmax of the output) is explained. A composite is registered while the attributor runs, as
for every Zennit attributor. Results are checked (shape, finiteness) like those of the Captum bridge.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from zennit.attribution import Attributor

from xai_plugins.host_bridge import attribute_inputs, attributor_component, attributor_metadata, describe_source
from xai_plugins.registry import Component

__all__ = ["RegisteredAttributor", "attributor", "predicted_class"]


def predicted_class(output: torch.Tensor) -> torch.Tensor:
    """One-hot rows of each sample's argmax: the default ``attr_output`` of the bridge."""
    flat = output.reshape(output.shape[0], -1)
    return torch.nn.functional.one_hot(flat.argmax(dim=1), flat.shape[1]).to(output.dtype).reshape(output.shape)


class RegisteredAttributor(Attributor):
    """The Zennit side of one registered attributor; keywords go to the attributor on every call.

    A named host class subclasses it and sets ``registered_name``, the attributor it bridges (looked up in the
    registry when an instance is made), as ``xai_plugins_zennit.ExtremalPerturbation`` does: the built-ins reach
    Zennit the way third-party attributors do.
    """

    component: ClassVar[Component]
    registered_name: ClassVar[str | None] = None

    def __init__(self, model: torch.nn.Module, composite: Any = None, attr_output: Any = None,
                 **kwargs: Any) -> None:
        if self.registered_name is not None:
            self.component = attributor_component(self.registered_name)  # type: ignore[misc]
            attributor_metadata(self.component)
        super().__init__(model=model, composite=composite,
                         attr_output=predicted_class if attr_output is None else attr_output)
        self.kwargs = kwargs

    def _selected(self, selection: Any, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(selection, torch.Tensor) or selection.shape != output.shape:
            raise ValueError(f"{describe_source(self.component)}: attr_output must have the output's shape "
                             f"{tuple(output.shape)} (e.g. torch.eye(num_classes)[targets]); got "
                             f"{tuple(getattr(selection, 'shape', ())) or type(selection).__name__}")
        flat = selection.reshape(selection.shape[0], -1)
        counts = (flat != 0).sum(dim=1)
        if output.dim() != 2 or (counts != 1).any():
            raise ValueError(f"{describe_source(self.component)} explains one class per sample: attr_output must "
                             "have exactly one non-zero entry per row of a (batch, classes) output, e.g. "
                             f"torch.eye(num_classes)[targets]; got {counts.tolist()} non-zero entries per row")
        target = flat.abs().argmax(dim=1)
        return target, flat.gather(1, target[:, None]).squeeze(1)

    def forward(self, input: torch.Tensor, attr_output_fn: Callable[[torch.Tensor], torch.Tensor]
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """The model output on ``input`` and the relevance of the selected class, shaped like ``input``."""
        with torch.no_grad():
            output = self.model(input)
        target, weight = self._selected(attr_output_fn(output.detach()), output)
        (relevance,) = attribute_inputs(self.component, self.model, (input,), target, **self.kwargs)
        return output, relevance * weight.to(relevance.dtype).reshape(-1, *([1] * (relevance.dim() - 1)))


_CLASSES: dict[tuple[str, int], type[Attributor]] = {}


def attributor(name: str) -> type[Attributor]:
    """The Zennit attributor class of the registered attributor ``name`` (an unknown name lists the registered
    attributors; malformed bridge metadata names the component, its plugin and the key)."""
    component = attributor_component(name)
    key = (name, id(component))
    if key not in _CLASSES:
        attributor_metadata(component)
        class_name = "".join(part.capitalize() for part in name.replace("-", "_").split("_")) or name
        _CLASSES[key] = type(class_name, (RegisteredAttributor,), {
            "__module__": __name__,
            "__doc__": f"{component.summary} ({describe_source(component)}, as a Zennit attributor).",
            "component": component,
        })
    return _CLASSES[key]
