"""Fixtures: one real Postgres per test run, and fresh empty databases per test.

The server comes from ``shared_db.provision.test_server``: ``DATABASE_URL``'s server
when set, the compose Postgres when Docker answers, else a throwaway local server
that dies with the test process.
"""

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

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


# -- a copy of the project in a git repository, whose code the subprocesses run ------

ROOT = Path(__file__).resolve().parents[1]
VERSIONS = Path("packages/shared_db/src/shared_db/migrations/scoring_engine/versions")
MODELS = Path("packages/shared_db/src/shared_db/models/scoring_engine.py")


class Repo:
    """A git checkout of the project whose code (not the installed one) the tasks run."""

    def __init__(self, path: Path, database: URL) -> None:
        self.path = path
        sources = [str(p) for p in sorted((path / "packages").glob("*/src"))]
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(sources),
            "DATABASE_URL": database.render_as_string(hide_password=False),
            "GIT_AUTHOR_NAME": "dev",
            "GIT_AUTHOR_EMAIL": "dev@example.invalid",
            "GIT_COMMITTER_NAME": "dev",
            "GIT_COMMITTER_EMAIL": "dev@example.invalid",
        }

    def git(self, *args: str) -> str:
        result = subprocess.run(
            ["git", *args], cwd=self.path, env=self.env, capture_output=True, text=True
        )
        assert result.returncode == 0, f"git {args}: {result.stderr}"
        return result.stdout

    def invoke(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "invoke", *args],
            cwd=self.path,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
        )

    def add_model_column(self, class_anchor: str, column: str) -> None:
        models = self.path / MODELS
        source = models.read_text()
        assert class_anchor in source
        models.write_text(source.replace(class_anchor, class_anchor + column, 1))

    def revisions(self) -> list[str]:
        return sorted(p.name for p in (self.path / VERSIONS).glob("*.py"))


def copy_project(target: Path) -> None:
    """Copy the project's tracked and untracked (not ignored) files to ``target``."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            destination = target / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)


@pytest.fixture
def repo(tmp_path: Path, pg_server: URL) -> Repo:
    """A git repository holding a copy of the project (tracked and untracked files)."""
    checkout = tmp_path / "checkout"
    copy_project(checkout)
    repository = Repo(checkout, pg_server.set(database="postgres"))
    repository.git("init", "-q", "-b", "main")
    repository.git("add", "-A")
    repository.git("commit", "-q", "-m", "project")
    return repository
