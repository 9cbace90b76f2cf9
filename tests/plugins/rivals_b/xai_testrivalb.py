"""The other rival plugin: a canonizer for ``xai_testrivala.Tiny`` (another distribution's model type) and one for
torchvision's ResNet, which a built-in canonizer already covers."""

from torch import nn

import xai_plugins
from xai_plugins.canonizers import Canonizer


class RivalBCanonizer(Canonizer):
    def canonize(self, model: nn.Module) -> None:
        self.claim(model)


@xai_plugins.hookimpl
def xai_register_canonizers(register):
    register("tiny_y", "xai_testrivalb:RivalBCanonizer", summary="canonizer of plugin b", paper="none",
             model_types=("xai_testrivala.Tiny",))
    register("my_resnet", "xai_testrivalb:RivalBCanonizer", summary="a second ResNet canonizer", paper="none",
             model_types=("torchvision.models.ResNet",))
