"""An example xai-plugins plugin: an attributor, a canonizer, a model and an initializer, registered through the
entry point ``example`` in the group ``xai_plugins`` (see ``plugin.py``)."""

__version__ = "0.1.0"
