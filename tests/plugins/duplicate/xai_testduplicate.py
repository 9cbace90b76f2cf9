"""A plugin that registers a name the good test plugin already has."""

import xai_plugins


@xai_plugins.hookimpl
def xai_register_attributors(register):
    register("test_gxi", lambda model, inputs, target: inputs, summary="clashes", paper="none")
