"""Bad input to the ``invoke`` tasks: one clear line, a non-zero exit, nothing changed.

One table-driven test. Each case runs ``python -m invoke ...`` as a subprocess, either
in the project root or in a temporary copy of the project (a git repository, or not)
prepared with the files the case needs (two heads, a broken revision file, ...). Every
case gets a fresh database, possibly migrated to a known state first, and asserts:

- the exit code is not 0;
- stderr is exactly one line, and no "Traceback" appears anywhere;
- that line holds the case's fragments (what is wrong and what to type next);
- no password appears (neither ``hunter2`` nor the test server's own);
- no file was written: the four histories' folders are as before (and, in a git copy,
  ``git status`` is unchanged);
- no database was touched: its tables, columns, row counts and version rows are as before.

The same cases, with the messages, are listed in docs/migrations.md ("Bad input").
"""

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, VERSIONS, Repo, copy_project
from helpers import raw, sql
from shared_db import commands
from shared_db.services import SERVICES
from sqlalchemy import create_engine, pool, text
from sqlalchemy.engine import URL

PASSWORD = "hunter2"
HISTORIES = [Path("packages/shared_db/src/shared_db/migrations") / s / "versions" for s in SERVICES]
VALID = "use one of: api_gateway, scoring_engine, marketplace_publisher, signal_ingestion"


def _revision_source(revision: str, down_revision: str) -> str:
    return (
        f'"""hand-made {revision}"""\n\n'
        f'revision = "{revision}"\n'
        f'down_revision = "{down_revision}"\n'
        "branch_labels = None\n"
        "depends_on = None\n\n\n"
        "def upgrade() -> None:\n    pass\n\n\n"
        "def downgrade() -> None:\n    pass\n"
    )


# Kinds of project a case runs in: "root" is the project itself; every other kind is a
# copy of it with these extra files in scoring_engine's versions folder.
COPIES: dict[str, dict[str, str]] = {
    "git": {},
    "no_git": {},
    "two_heads": {
        "0011_left.py": _revision_source("0011", "0010"),
        "0012_right.py": _revision_source("0012", "0010"),
    },
    "shared_prefix": {
        "0011a_left.py": _revision_source("0011a", "0010"),
        "0011b_right.py": _revision_source("0011b", "0010"),
    },
    "broken_file": {"0011_broken.py": "def (:\n    garbage\n"},
    "empty_file": {"0011_empty.py": ""},
}


@dataclass(frozen=True)
class Project:
    """Where a case runs, with the environment that makes its code the one run."""

    path: Path
    env: dict[str, str] = field(repr=False)
    repo: Repo | None = field(default=None, repr=False)

    def files(self) -> dict[str, tuple[int, int]]:
        """Every file of the four histories (name, size, mtime), caches aside."""
        found: dict[str, tuple[int, int]] = {}
        for history in HISTORIES:
            for path in sorted((self.path / history).rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts:
                    stat = path.stat()
                    found[str(path.relative_to(self.path))] = (stat.st_size, stat.st_mtime_ns)
        return found

    def git_status(self) -> str:
        if self.repo is None:
            return ""
        return self.repo.git("status", "--porcelain", "--untracked-files=all")


def _without_database_urls(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if not k.endswith("DATABASE_URL")}


def _copy_project(target: Path, server: URL, kind: str) -> Project:
    """A copy of the project's tracked and untracked files, like conftest's ``repo``."""
    copy_project(target)
    for name, content in COPIES[kind].items():
        (target / VERSIONS / name).write_text(content)
    repo = Repo(target, server)
    env = _without_database_urls(repo.env)
    if kind == "no_git":
        return Project(target, env)
    repo.git("init", "-q", "-b", "main")
    repo.git("add", "-A")
    repo.git("commit", "-q", "-m", "project")
    return Project(target, env, repo)


class Projects:
    """The project root and copies of it, each made once per module when first needed."""

    def __init__(self, base: Path, server: URL) -> None:
        self.base, self.server = base, server
        root = Project(ROOT, _without_database_urls(dict(os.environ)))
        self.made: dict[str, Project] = {"root": root}

    def get(self, kind: str) -> Project:
        if kind not in self.made:
            self.made[kind] = _copy_project(self.base / kind, self.server, kind)
        return self.made[kind]


@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory, pg_server: URL) -> Iterator[Projects]:
    yield Projects(tmp_path_factory.mktemp("bad_input"), pg_server)


# -- the database a case is given --------------------------------------------------------


def _execute(url: URL, statement: str) -> None:
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.begin() as connection:
            connection.execute(text(statement))
    finally:
        engine.dispose()


def _api_gateway_at_head(url: URL) -> None:
    assert commands.upgrade("api_gateway", "head", url=url) == ("0003",)


def _scoring_engine_migrated_by_newer_code(url: URL) -> None:
    commands.upgrade("scoring_engine", "head", url=url)
    _execute(url, "UPDATE alembic_version_scoring_engine SET version_num = '0099'")


DATABASES: dict[str, Callable[[URL], None]] = {
    "empty": lambda url: None,
    "api_gateway_at_head": _api_gateway_at_head,
    "scoring_engine_at_0099": _scoring_engine_migrated_by_newer_code,
}


def snapshot(url: URL) -> dict[str, Any]:
    """What a command could change: tables, columns, row counts, version rows."""
    tables = sql(
        url,
        "SELECT schemaname, tablename FROM pg_tables "
        "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2",
    )
    columns = sql(
        url,
        "SELECT table_schema, table_name, column_name, data_type "
        "FROM information_schema.columns "
        "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2, 3",
    )
    counts = {
        f"{schema}.{table}": sql(url, f'SELECT count(*) FROM "{schema}"."{table}"')[0][0]
        for schema, table in tables
    }
    versions = {
        table: sql(url, f'SELECT version_num FROM "{schema}"."{table}" ORDER BY 1')
        for schema, table in tables
        if str(table).startswith("alembic_version_")
    }
    return {"tables": tables, "columns": columns, "counts": counts, "versions": versions}


# -- the cases ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One bad input: what is typed, where, on which database, and what the line says.

    In ``expected``, ``{root}`` stands for the project's folder, ``{versions}`` for
    scoring_engine's versions folder in it and ``{server}`` for the test server's
    host:port. ``url`` replaces ``DATABASE_URL`` (same placeholders, and ``{password}``).
    """

    id: str
    args: tuple[str, ...]
    expected: tuple[str, ...]
    project: str = "root"
    database: str = "empty"
    url: str | None = None
    bug: str | None = None


CASES = [
    Case(
        "unknown-service-current",
        ("migrate.current", "--service", "billing"),
        ("error: unknown service 'billing'", VALID, "(e.g. --service scoring_engine)"),
    ),
    Case(
        "unknown-service-upgrade",
        ("migrate.upgrade", "--service", "billing"),
        ("error: unknown service 'billing'", VALID),
    ),
    Case(
        "unknown-service-revision",
        ("migrate.revision", "--service", "billing", "-m", "x"),
        ("error: unknown service 'billing'", VALID),
    ),
    Case(
        "unknown-service-db-url",
        ("db.url", "--service", "billing"),
        ("error: unknown service 'billing'", VALID),
    ),
    Case(
        "revision-without-service",
        ("migrate.revision", "-m", "x"),
        ("'migrate.revision' did not receive required positional arguments: 'service'",),
    ),
    Case(
        "revision-without-message",
        ("migrate.revision", "--service", "scoring_engine"),
        (
            "error: a revision needs a message saying what it changes",
            "add one: -m 'add status to listings'",
        ),
    ),
    Case(
        "revision-blank-message",
        ("migrate.revision", "--service", "scoring_engine", "-m", "   "),
        (
            "error: a revision needs a message saying what it changes",
            "add one: -m 'add status to listings'",
        ),
    ),
    Case(
        "merge-single-head",
        ("migrate.merge", "--service", "scoring_engine"),
        ("error: scoring_engine has a single head (0010): nothing to merge, no file written",),
    ),
    Case(
        "revision-on-two-heads",
        ("migrate.revision", "--service", "scoring_engine", "-m", "x", "--empty"),
        (
            "error: cannot create a revision: scoring_engine has 2 heads (0011, 0012)",
            "run: invoke migrate.merge --service scoring_engine",
        ),
        project="two_heads",
    ),
    Case(
        "upgrade-unknown-target",
        ("migrate.upgrade", "--service", "scoring_engine", "--target", "zzzz"),
        (
            "error: scoring_engine: upgrade to zzzz failed",
            "Can't locate revision identified by 'zzzz'",
            "see the revisions: invoke migrate.history --service scoring_engine",
        ),
    ),
    Case(
        "upgrade-head-with-two-heads",
        ("migrate.upgrade", "--service", "scoring_engine", "--target", "head"),
        (
            "error: scoring_engine: upgrade to head failed",
            "Multiple head revisions are present for given argument 'head'",
            "'heads' for all heads",
            "invoke migrate.history --service scoring_engine",
        ),
        project="two_heads",
    ),
    Case(
        "upgrade-ambiguous-prefix",
        ("migrate.upgrade", "--service", "scoring_engine", "--target", "0011"),
        ("error: scoring_engine: upgrade to 0011 failed", "0011a", "0011b"),
        project="shared_prefix",
    ),
    Case(
        "sql-unknown-revision",
        ("migrate.sql", "--service", "scoring_engine", "--range", "0001:9999"),
        (
            "error: unknown revision '9999' in scoring_engine",
            "see: invoke migrate.history --service scoring_engine",
        ),
    ),
    Case(
        "downgrade-below-base",
        ("migrate.downgrade", "--service", "api_gateway", "--target", "-99"),
        (
            "error: api_gateway: downgrade to -99 failed",
            "Relative revision -99 didn't produce 99 migrations",
            "invoke migrate.history --service api_gateway",
        ),
        database="api_gateway_at_head",
    ),
    Case(
        "downgrade-empty-database",
        ("migrate.downgrade", "--service", "api_gateway"),
        (
            "error: api_gateway: downgrade to -1 failed",
            "Relative revision -1 didn't produce 1 migrations",
            "invoke migrate.history --service api_gateway",
        ),
    ),
    Case(
        "downgrade-unknown-target",
        ("migrate.downgrade", "--service", "api_gateway", "--target", "zzzz"),
        (
            "error: api_gateway: downgrade to zzzz failed",
            "Can't locate revision identified by 'zzzz'",
            "invoke migrate.history --service api_gateway",
        ),
        database="api_gateway_at_head",
    ),
    Case(
        "database-unreachable",
        ("migrate.current", "--service", "api_gateway"),
        (
            "error: api_gateway: database error at 127.0.0.1:1",
            "(postgresql+psycopg://app:***@127.0.0.1:1/app)",
            "Connection refused",
            "is Postgres up? (invoke db.up), see: invoke db.url --service api_gateway",
        ),
        url="postgresql://app:{password}@127.0.0.1:1/app",
    ),
    Case(
        "database-unreachable-upgrade",
        ("migrate.upgrade", "--service", "scoring_engine"),
        (
            "error: scoring_engine: database error at 127.0.0.1:1",
            "app:***@127.0.0.1:1/app",
            "is Postgres up? (invoke db.up)",
        ),
        url="postgresql://app:{password}@127.0.0.1:1/app",
    ),
    Case(
        "wrong-credentials",
        ("migrate.current", "--service", "api_gateway"),
        (
            "error: api_gateway: database error at {server}",
            "(postgresql+psycopg://app:***@{server}/postgres)",
            'password authentication failed for user "app"',
            "check the URL, see: invoke db.url --service api_gateway",
        ),
        url="postgresql://app:{password}@{server}/postgres",
    ),
    Case(
        "database-migrated-by-newer-code",
        ("migrate.upgrade", "--service", "scoring_engine"),
        (
            "error: scoring_engine: the database is at revision 0099, which this code does "
            "not know (it was migrated by a newer version); refusing to migrate",
            "deploy the newer version, or downgrade with the code that wrote it",
        ),
        database="scoring_engine_at_0099",
    ),
    Case(
        "corrupted-revision-file",
        ("migrate.upgrade", "--service", "scoring_engine"),
        (
            "error: scoring_engine: 0011_broken.py is not a valid revision file "
            "(syntax error on line 1: invalid syntax)",
            "run: git checkout -- {versions}/0011_broken.py (or delete it), "
            "then: invoke migrate.validate",
        ),
        project="broken_file",
    ),
    Case(
        "empty-revision-file",
        ("migrate.revision", "--service", "scoring_engine", "-m", "x", "--empty"),
        (
            "error: cannot create a revision: scoring_engine: 0011_empty.py is not a valid "
            "revision file (the file is empty)",
            "run: git checkout -- {versions}/0011_empty.py",
        ),
        project="empty_file",
    ),
    Case(
        "history-outside-git",
        ("migrate.validate", "--offline", "--against", "main"),
        (
            "error: {root}/packages/shared_db/src/shared_db/migrations/api_gateway/versions "
            "is not inside a git repository",
            "run it in a git checkout (or validate without --against)",
        ),
        project="no_git",
    ),
    Case(
        "unknown-git-ref",
        ("migrate.validate", "--offline", "--against", "no-such-branch"),
        (
            "error: unknown git ref 'no-such-branch'",
            "run: git fetch, or name an existing branch (git branch -a)",
        ),
        project="git",
    ),
    Case(
        "renumber-not-a-revision-file",
        ("migrate.renumber", "--service", "scoring_engine", "--file", "/etc/passwd"),
        (
            "error: /etc/passwd is not a revision file of scoring_engine",
            "name one in {versions} (invoke migrate.history --service scoring_engine)",
        ),
    ),
    Case(
        "lint-range-without-colon",
        ("migrate.lint", "--range", "0001"),
        ("error: --range takes A:B (e.g. 0004:head), not '0001'",),
    ),
]


def _param(case: Case) -> Any:
    marks = [pytest.mark.xfail(strict=True, reason=case.bug)] if case.bug else []
    return pytest.param(case, id=case.id, marks=marks)


def _fill(template: str, project: Project, server: URL) -> str:
    return (
        template.replace("{root}", str(project.path))
        .replace("{versions}", str(project.path / VERSIONS))
        .replace("{server}", f"{server.host}:{server.port or 5432}")
        .replace("{password}", PASSWORD)
    )


@pytest.mark.parametrize("case", [_param(case) for case in CASES])
def test_bad_input(case: Case, projects: Projects, empty_database: URL, pg_server: URL) -> None:
    project = projects.get(case.project)
    DATABASES[case.database](empty_database)
    database_url = _fill(case.url, project, pg_server) if case.url else raw(empty_database)
    env = {**project.env, "PYTHONDONTWRITEBYTECODE": "1", "DATABASE_URL": database_url}
    files, status, database = project.files(), project.git_status(), snapshot(empty_database)

    result = subprocess.run(
        [sys.executable, "-m", "invoke", *case.args],
        cwd=project.path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    line = lines[0]
    assert PASSWORD not in output
    if pg_server.password:
        assert pg_server.password not in output
    assert project.files() == files, "a file was written or changed"
    assert project.git_status() == status, "the copy's git status changed"
    assert snapshot(empty_database) == database, "the database was touched"
    missing = [f for f in (_fill(e, project, pg_server) for e in case.expected) if f not in line]
    assert not missing, f"{line}\nlacks: {missing}"
