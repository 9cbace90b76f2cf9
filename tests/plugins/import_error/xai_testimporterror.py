"""A plugin whose import fails."""

import xai_plugins_no_such_dependency  # noqa: F401
