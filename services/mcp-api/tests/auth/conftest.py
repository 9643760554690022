from integration.conftest import pytest_runtest_makereport, server_factory  # noqa: F401 - re-exported fixtures
