"""Every workspace package installs and imports, and depends on shared_db only."""

import importlib
import importlib.metadata

import pytest

SERVICES = ("api_gateway", "scoring_engine", "marketplace_publisher", "signal_ingestion")


@pytest.mark.parametrize("service", SERVICES)
def test_service_package_imports_and_depends_on_shared_db(service: str) -> None:
    module = importlib.import_module(service)
    assert service == module.SERVICE_NAME
    distribution = f"signalmarket-{service.replace('_', '-')}"
    requires = importlib.metadata.requires(distribution) or []
    assert any(req.startswith("signalmarket-shared-db") for req in requires)
    assert not any(req.startswith("signalmarket-") and "shared-db" not in req for req in requires)


def test_migrations_ship_inside_the_shared_db_package() -> None:
    from shared_db.config import script_location

    for service in SERVICES:
        location = script_location(service)
        assert (location / "env.py").is_file()
        assert (location / "script.py.mako").is_file()
        assert any((location / "versions").glob("0001_*.py"))
