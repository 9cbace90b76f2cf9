"""A careless canonizer plugin: identity canonizers declared for container types (``torch.nn.Module``,
``nn.Sequential``, ``nn.ModuleList``), which would capture ``canonizers_for`` for every model or wrapper, and one
declared for a specific subclass of ``nn.Sequential`` (``Stack``), which must still be matched."""

from torch import nn

import xai_plugins
from xai_plugins.canonizers import Canonizer

PAPER = "none (test plugin)"

GENERIC = {
    "greedy_module": "torch.nn.Module",
    "greedy_module_path": "torch.nn.modules.module.Module",
    "greedy_sequential": "torch.nn.Sequential",
    "greedy_modulelist": "torch.nn.ModuleList",
}
"""Component name -> the container type it declares."""


class Stack(nn.Sequential):
    """A model class of this plugin's own: a subclass of a container, specific enough to be declared."""


class IdentityCanonizer(Canonizer):
    """Claims the model and changes nothing (what a ViT would get if a generic declaration matched)."""

    def canonize(self, model: nn.Module) -> None:
        self.claim(model)


@xai_plugins.hookimpl
def xai_register_canonizers(register):
    for name, declared in GENERIC.items():
        register(name, "xai_testgreedy:IdentityCanonizer", summary=f"declares {declared}", paper=PAPER,
                 model_types=(declared,))
    register("stack", "xai_testgreedy:IdentityCanonizer", summary="declares its own Stack", paper=PAPER,
             model_types=("xai_testgreedy.Stack",))
