"""One of two plugins that declare a canonizer for the same model type (``Tiny``, defined here). Its component
name sorts after the other plugin's, its plugin name before it."""

from torch import nn

import xai_plugins
from xai_plugins.canonizers import Canonizer


class Tiny(nn.Module):
    """The model type both rival plugins declare."""

    def forward(self, x):
        return x


class RivalACanonizer(Canonizer):
    def canonize(self, model: nn.Module) -> None:
        self.claim(model)


@xai_plugins.hookimpl
def xai_register_canonizers(register):
    register("tiny_z", "xai_testrivala:RivalACanonizer", summary="canonizer of plugin a", paper="none",
             model_types=("xai_testrivala.Tiny",))
