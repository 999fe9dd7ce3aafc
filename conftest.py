"""Root conftest: the stackcheck plugin itself is registered through the `pytest11` entry point
(pyproject.toml), so an installed package and this checkout behave alike. Shared test helpers live
in tests/conftest.py."""
