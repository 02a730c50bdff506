"""pytest fixtures for the services' own test suites: a database at head in constant time.

Loaded automatically by pytest wherever ``signalmarket-shared-db`` is installed (entry
point ``pytest11``). A suite provides the server once, by overriding one fixture::

    @pytest.fixture(scope="session")
    def database_server_url() -> URL:
        return make_url("postgresql://postgres:secret@127.0.0.1:5432/postgres")

(or sets ``TEST_DATABASE_SERVER_URL``), then asks for databases::

    def test_scores(migrated_database):
        url = migrated_database("scoring_engine")   # a fresh database at head, dropped after

    def test_fast(database_transaction):
        conn = database_transaction("scoring_engine")  # rolled back after the test

``migrated_database`` copies a template built once per history version (see
``shared_db.templates``); ``database_transaction`` shares one copy per test session
and wraps each test in a transaction that is rolled back, for tests that only read
and write rows (not for code that commits, or changes the schema).
"""

import os
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy.engine import URL, Connection

from shared_db import templates
from shared_db.config import DbConfig
from shared_db.connections import engine
from shared_db.urls import normalize

Factory = Callable[[str], URL]


@pytest.fixture(scope="session")
def database_server_url() -> URL:
    """The Postgres server the tests may create databases on (override this fixture)."""
    # A pytest plugin is a front end: it may read its own setting from the environment.
    configured = os.environ.get("TEST_DATABASE_SERVER_URL")
    if not configured:
        raise pytest.UsageError(
            "no test database server: override the database_server_url fixture, "
            "or set TEST_DATABASE_SERVER_URL=postgresql://user:password@host:port/postgres"
        )
    return normalize(configured).set(database="postgres")


@pytest.fixture(scope="session")
def database_config() -> DbConfig:
    """The runtime configuration the templates are built with (override to point
    ``migrations_dir`` at another history)."""
    return DbConfig(caller="test")


@pytest.fixture
def migrated_database(database_server_url: URL, database_config: DbConfig) -> Iterator[Factory]:
    """``migrated_database(service)``: a new database at ``service``'s head, dropped after."""
    made: list[URL] = []

    def make(service: str) -> URL:
        url = templates.database_at_head(database_config, database_server_url, service)
        made.append(url)
        return url

    yield make
    for url in made:
        templates.drop(url)


@pytest.fixture(scope="session")
def _shared_databases(database_server_url: URL, database_config: DbConfig) -> Iterator[Factory]:
    made: dict[str, URL] = {}

    def get(service: str) -> URL:
        if service not in made:
            made[service] = templates.database_at_head(
                database_config, database_server_url, service, prefix="shared"
            )
        return made[service]

    yield get
    for url in made.values():
        templates.drop(url)


@pytest.fixture
def database_transaction(_shared_databases: Factory) -> Iterator[Callable[[str], Connection]]:
    """``database_transaction(service)``: a connection to a database at head inside a
    transaction that is rolled back after the test."""
    opened: list[tuple[Connection, object]] = []

    def connect(service: str) -> Connection:
        connection = engine(_shared_databases(service)).connect()
        opened.append((connection, connection.begin()))
        return connection

    yield connect
    for connection, _transaction in opened:
        connection.rollback()
        connection.close()
        connection.engine.dispose()
