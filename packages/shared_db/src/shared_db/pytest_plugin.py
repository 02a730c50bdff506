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

``database_admin()`` is the session's one autocommit connection to that server, which
the fixtures create and drop their databases with (a suite may too).

``migrated_database`` copies a template built once per history version (see
``shared_db.templates``); ``database_transaction`` shares one copy per test session
and wraps each test in a transaction that is rolled back, for tests that only read
and write rows (not for code that commits, or changes the schema).
"""

import os
from collections.abc import Callable, Iterator

import psycopg
import pytest
from sqlalchemy.engine import URL, Connection

from shared_db import templates
from shared_db.config import DbConfig
from shared_db.connections import connect_autocommit, engine
from shared_db.sessions import Conn
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


class AdminConnection:
    """One autocommit connection to the server for the session's CREATE and DROP
    DATABASE: two connections fewer for each test that asks for a database. Opened
    again when a test ended it (a test may terminate backends)."""

    def __init__(self, server: URL, config: DbConfig) -> None:
        self.server, self.config = server, config
        self.conn: Conn | None = None

    def __call__(self) -> Conn:
        if self.conn is not None:
            try:
                self.conn.execute("SELECT 1")
                return self.conn
            except psycopg.Error:
                self.conn.close()
        self.conn = connect_autocommit(
            self.server, "postgres", timeout_s=self.config.connect_timeout_s
        )
        return self.conn


@pytest.fixture(scope="session")
def database_admin(
    database_server_url: URL, database_config: DbConfig
) -> Iterator[AdminConnection]:
    """``database_admin()``: the session's autocommit connection to the server (to
    create or drop databases of a suite's own)."""
    admin = AdminConnection(database_server_url, database_config)
    yield admin
    if admin.conn is not None:
        admin.conn.close()


@pytest.fixture
def migrated_database(
    database_server_url: URL, database_config: DbConfig, database_admin: AdminConnection
) -> Iterator[Factory]:
    """``migrated_database(service)``: a new database at ``service``'s head, dropped after."""
    made: list[URL] = []

    def make(service: str) -> URL:
        url = templates.database_at_head(
            database_config, database_server_url, service, admin=database_admin()
        )
        made.append(url)
        return url

    yield make
    for url in made:
        templates.drop(url, database_admin())


@pytest.fixture(scope="session")
def _shared_databases(
    database_server_url: URL, database_config: DbConfig, database_admin: AdminConnection
) -> Iterator[Factory]:
    made: dict[str, URL] = {}

    def get(service: str) -> URL:
        if service not in made:
            made[service] = templates.database_at_head(
                database_config, database_server_url, service, "shared", database_admin()
            )
        return made[service]

    yield get
    for url in made.values():
        templates.drop(url, database_admin())


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
