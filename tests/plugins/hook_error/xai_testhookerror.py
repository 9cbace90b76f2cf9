"""A plugin whose hook raises after registering one component (which must not stay registered)."""

import xai_plugins


@xai_plugins.hookimpl
def xai_register_attributors(register):
    register("half_registered", lambda model, inputs, target: inputs, summary="never kept", paper="none")
    raise RuntimeError("hook exploded on purpose")
