"""A plugin that prints while it is imported, while it registers and while it adds its command."""

import torch

import xai_plugins

print("testprinting: imported")


def identity_attribution(model, inputs, target, **kwargs):
    """The input itself."""
    return inputs.detach().clone()


@xai_plugins.hookimpl
def xai_register_attributors(register):
    print("testprinting: registering {not json")
    register("test_printing", identity_attribution, summary="prints", paper="none")


@xai_plugins.hookimpl
def xai_register_commands(commands):
    print("testprinting: adding a command")
    commands.add_parser("printing-noop", help="does nothing").set_defaults(func=lambda args: 0)


assert torch
