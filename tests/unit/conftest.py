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


@pytest.fixture(autouse=True)
def _not_an_xdist_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under `pytest -n N` the pytest runs these tests start (pytester) would inherit the
    worker's PYTEST_XDIST_* variables and believe they are xdist workers themselves
    (pytest-benchmark then switches itself off)."""
    for var in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(var, raising=False)
