"""An example xai-plugins plugin: one attributor and one canonizer, registered through the entry point
``example`` in the group ``xai_plugins`` (see ``plugin.py``)."""

__version__ = "0.1.0"
