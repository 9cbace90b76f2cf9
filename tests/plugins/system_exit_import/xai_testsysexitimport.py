"""A plugin that calls exit while it is imported."""

import sys

sys.exit(3)
