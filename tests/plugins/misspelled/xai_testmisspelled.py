"""A plugin with a misspelled hook name (singular 'canonizer')."""

import xai_plugins


@xai_plugins.hookimpl
def xai_register_canonizer(register):
    raise AssertionError("a misspelled hook must never be called")
