"""Unit tests of src/stackcheck: fast, no Docker; pytester runs the plugin in a subprocess."""

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Load pytester for the plugin tests.

    Not `pytest_plugins = ["pytester"]`: pytest refuses that in a conftest below the rootdir
    when the conftest is loaded during collection, as in `pytest tests` (what `./run test`
    runs). Registering it here works both for `pytest tests/unit` and for `pytest tests`.
    """
    if not config.pluginmanager.has_plugin("pytester"):
        config.pluginmanager.import_plugin("pytester")
