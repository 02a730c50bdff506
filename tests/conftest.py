"""Fixtures: one real Postgres per test run, and fresh empty databases per test.

The server comes from ``db_devtools.provisioning.resolve.test_server``: ``DATABASE_URL``'s
server when set, the compose Postgres with ``SIGNALMARKET_POSTGRES=docker``, else a
throwaway local server that dies with the test process (also when Docker answers).
Shared helpers live in ``helpers.py``.
"""

import gc
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.config import Config
from db_devtools.config import DevConfig
from db_devtools.provisioning.databases import scratch_database
from db_devtools.provisioning.resolve import test_server
from helpers import Repo, config_for, copy_project
from shared_db.alembic_config import alembic_config as make_alembic_config
from shared_db.pytest_plugin import AdminConnection
from shared_db.services import SERVICES
from sqlalchemy import create_engine
from sqlalchemy.engine import URL, Engine

pytest_plugins = ["pytester"]  # tests/test_templates.py runs a service suite's own tests


def pytest_collection_finish(session: pytest.Session) -> None:
    """What imports and collection made lives until the end: moved out of the garbage
    collector's reach, so its full passes during the run (and pytest's five at exit)
    scan only what the tests make."""
    gc.collect()
    gc.freeze()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[URL]:
    """The superuser URL of this run's Postgres server."""
    with test_server(DevConfig.from_environ(os.environ, caller="test")) as url:
        yield url


@pytest.fixture(scope="session")
def database_server_url(pg_server: URL) -> URL:
    """The server of shared_db's pytest plugin (``migrated_database``): this run's own."""
    return pg_server


@pytest.fixture
def empty_database(pg_server: URL, database_admin: AdminConnection) -> Iterator[URL]:
    """A database created empty for this test and dropped after it (over the session's
    one admin connection: shared_db's pytest plugin)."""
    with scratch_database(pg_server, "test", database_admin) as url:
        yield url


# pytest-alembic's built-in tests run once per service: its two fixtures are parametrized.
@pytest.fixture(params=SERVICES)
def service(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def alembic_config(service: str, empty_database: URL) -> Config:
    return make_alembic_config(config_for(empty_database), service)


@pytest.fixture
def alembic_engine(empty_database: URL) -> Iterator[Engine]:
    engine = create_engine(empty_database)  # pooled: pytest-alembic connects for each step
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def committed_project(tmp_path_factory: pytest.TempPathFactory, pg_server: URL) -> Path:
    """The project's files (tracked and untracked) committed in a new git repository,
    made once per test process; each ``repo`` is a copy of it."""
    folder = tmp_path_factory.mktemp("committed")
    checkout = folder / "checkout"
    copy_project(checkout)
    repository = Repo(checkout, pg_server.set(database="postgres"), folder / "cache")
    repository.git("init", "-q", "-b", "main")
    repository.git("add", "-A")
    repository.git("commit", "-q", "-m", "project")
    return checkout


@pytest.fixture
def repo(tmp_path: Path, pg_server: URL, committed_project: Path) -> Repo:
    """A git repository holding a copy of the project, committed on ``main``. A copy of
    ``committed_project`` (one ``cp -a``: 0.03 s of CPU, where copying the files and
    committing them again took 0.14 s)."""
    checkout = tmp_path / "checkout"
    subprocess.run(["cp", "-a", str(committed_project), str(checkout)], check=True)
    return Repo(checkout, pg_server.set(database="postgres"), tmp_path / "cache")
