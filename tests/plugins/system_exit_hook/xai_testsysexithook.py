"""A plugin whose hook registers one attributor and then calls exit (the attributor must not stay registered)."""

import sys

import xai_plugins


@xai_plugins.hookimpl
def xai_register_attributors(register):
    register("exit_half_registered", lambda model, inputs, target: inputs, summary="never kept", paper="none")
    sys.exit(4)
