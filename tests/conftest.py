"""Fixtures: one real Postgres per test run, and fresh empty databases per test.

The server comes from ``shared_db.provision.test_server``: ``DATABASE_URL``'s server
when set, the compose Postgres when Docker answers, else a throwaway local server
that dies with the test process.
"""

from collections.abc import Iterator

import pytest
from alembic.config import Config
from shared_db import settings
from shared_db.config import alembic_config as make_alembic_config
from shared_db.databases import scratch_database
from shared_db.provision import test_server
from shared_db.services import SERVICES
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import URL, Engine


@pytest.fixture(scope="session")
def pg_server() -> Iterator[URL]:
    """The superuser URL of this run's Postgres server."""
    with test_server() as url:
        yield url


@pytest.fixture
def empty_database(pg_server: URL) -> Iterator[URL]:
    """A database created empty for this test and dropped after it."""
    with scratch_database(pg_server, "test") as url:
        yield url


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    settings.reset()
    yield
    settings.reset()


# pytest-alembic's built-in tests run once per service: its two fixtures are parametrized.
@pytest.fixture(params=SERVICES)
def service(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def alembic_config(service: str) -> Config:
    return make_alembic_config(service)


@pytest.fixture
def alembic_engine(empty_database: URL) -> Iterator[Engine]:
    engine = create_engine(empty_database, poolclass=pool.NullPool)
    yield engine
    engine.dispose()
