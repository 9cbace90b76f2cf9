"""Helpers shared by the test packages (imported by the tests that use them, never from ``conftest.py``)."""
