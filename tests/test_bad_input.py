"""Bad input to the ``invoke`` tasks: one clear line, a non-zero exit, nothing changed.

One table-driven test. Each case runs ``invoke ...`` in this process (``helpers.invoke``),
either on the project itself or on a temporary copy of it (a git repository, or not)
prepared with the files the case needs (two heads, a broken revision file, ...): a copy's
histories are used through ``SIGNALMARKET_ROOT`` and ``SIGNALMARKET_MIGRATIONS_DIR``.
Every case gets a fresh database, possibly migrated to a known state first, and asserts:

- the exit code is not 0;
- stderr is exactly one line, and no "Traceback" appears anywhere;
- that line holds the case's fragments (what is wrong, why, and what to type next);
- no secret appears: neither ``hunter2``, nor the test server's password, nor the full
  database URL (errors name ``host:port/database`` only);
- no file was written: the four histories' folders are as before (and, in a git copy,
  ``git status`` is unchanged);
- no database was touched: its tables, columns, row counts and version rows are as before.

A few smoke tests at the end run ``python -m invoke`` as a real process, for the contract
of the command line itself: the exit code, and one line on stderr.

The same cases, with the messages, are listed in docs/migrations.md ("Bad input").
"""

import os
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from alembic.config import main as alembic_main
from helpers import (
    MIGRATIONS,
    ROOT,
    VERSIONS,
    Repo,
    config_for,
    copy_project,
    execute,
    head,
    invoke,
    invoke_process,
    querying,
    raw,
    shows_password,
)
from shared_db import commands
from shared_db.config import DbConfig
from shared_db.history import read_history
from shared_db.services import SERVICES
from sqlalchemy.engine import URL

PASSWORD = "hunter2"
HISTORIES = [MIGRATIONS / s / "versions" for s in SERVICES]
VALID = "use one of: api_gateway, scoring_engine, marketplace_publisher, signal_ingestion"

# scoring_engine's head, and the IDs of the revisions the copies add after it.
(HEAD,) = head("scoring_engine")
NEXT = f"{int(HEAD) + 1:04d}"
AFTER_NEXT = f"{int(HEAD) + 2:04d}"


def _revision_source(revision: str, *down_revisions: str) -> str:
    down = f'"{down_revisions[0]}"' if len(down_revisions) == 1 else repr(down_revisions)
    return (
        f'"""hand-made {revision}"""\n\n'
        f'revision = "{revision}"\n'
        f"down_revision = {down}\n"
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
        f"{NEXT}_left.py": _revision_source(NEXT, HEAD),
        f"{AFTER_NEXT}_right.py": _revision_source(AFTER_NEXT, HEAD),
    },
    # Two revisions whose IDs share a prefix, merged again (a sound history, one head).
    "shared_prefix": {
        f"{NEXT}a_left.py": _revision_source(f"{NEXT}a", HEAD),
        f"{NEXT}b_right.py": _revision_source(f"{NEXT}b", HEAD),
        f"{AFTER_NEXT}_merge.py": _revision_source(AFTER_NEXT, f"{NEXT}a", f"{NEXT}b"),
    },
    "broken_file": {f"{NEXT}_broken.py": "def (:\n    garbage\n"},
    "empty_file": {f"{NEXT}_empty.py": ""},
    # Two branches chose the same ID: the reader sees both files...
    "duplicate_id": {
        f"{NEXT}_one.py": _revision_source(NEXT, HEAD),
        f"{NEXT}_two.py": _revision_source(NEXT, HEAD),
    },
    # ... and where it cannot (a computed ID), Alembic's reading, which only warns.
    "duplicate_id_computed": {
        f"{NEXT}_one.py": _revision_source(NEXT, HEAD),
        f"{NEXT}_two.py": _revision_source(NEXT, HEAD).replace(
            f'revision = "{NEXT}"', f'revision = "{NEXT[:2]}" + "{NEXT[2:]}"'
        ),
    },
    # A revision file that compiles, but cannot be imported.
    "unimportable_file": {
        f"{NEXT}_imports.py": _revision_source(NEXT, HEAD)
        + "\nimport no_such_module_signalmarket\n"
    },
    # A git checkout with a new revision not yet committed (written after the commit).
    "git_uncommitted": {},
}
# Files a copy gets after its commit: uncommitted changes.
UNCOMMITTED: dict[str, dict[str, str]] = {
    "git_uncommitted": {f"{NEXT}_draft.py": _revision_source(NEXT, HEAD)},
}


@dataclass(frozen=True)
class Project:
    """Where a case runs, with the environment that makes its histories the ones used."""

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


def _copy_project(base: Path, server: URL, kind: str) -> Project:
    """A copy of the project's tracked and untracked files, like conftest's ``repo``;
    the "no_git" copy has the same environment, without a git repository."""
    target = base / kind
    copy_project(target)
    for name, content in COPIES[kind].items():
        (target / VERSIONS / name).write_text(content)
    repo = Repo(target, server, base / f"{kind}-cache")
    if kind == "no_git":
        return Project(target, dict(repo.env))
    repo.git("init", "-q", "-b", "main")
    repo.git("add", "-A")
    repo.git("commit", "-q", "-m", "project")
    for name, content in UNCOMMITTED.get(kind, {}).items():
        (target / VERSIONS / name).write_text(content)
    return Project(target, dict(repo.env), repo)


class Projects:
    """The project root and copies of it, each made once per module when first needed."""

    def __init__(self, base: Path, server: URL) -> None:
        self.base, self.server = base, server
        # The project itself: its packaged histories, a history cache of the test's own.
        root = Project(ROOT, {"XDG_CACHE_HOME": str(base / "root-cache")})
        self.made: dict[str, Project] = {"root": root}

    def get(self, kind: str) -> Project:
        if kind not in self.made:
            self.made[kind] = _copy_project(self.base, self.server, kind)
        return self.made[kind]


@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory, pg_server: URL) -> Iterator[Projects]:
    yield Projects(tmp_path_factory.mktemp("bad_input"), pg_server)


# -- the database a case is given --------------------------------------------------------


def _api_gateway_at_head(url: URL) -> None:
    result = commands.upgrade(config_for(url), "api_gateway")
    assert result.after == head("api_gateway")


def _scoring_engine_at_0004(url: URL) -> None:
    commands.upgrade(config_for(url), "scoring_engine", "0004")


def _scoring_engine_migrated_by_newer_code(url: URL) -> None:
    commands.upgrade(config_for(url), "scoring_engine")
    execute(url, "UPDATE alembic_version_scoring_engine SET version_num = '0099'")


DATABASES: dict[str, Callable[[URL], None]] = {
    "empty": lambda url: None,
    "api_gateway_at_head": _api_gateway_at_head,
    "scoring_engine_at_0099": _scoring_engine_migrated_by_newer_code,
    "scoring_engine_at_0004": _scoring_engine_at_0004,
}


def snapshot(url: URL) -> dict[str, Any]:
    """What a command could change: tables, columns, row counts, version rows."""
    with querying(url) as rows:
        tables = rows(
            "SELECT schemaname, tablename FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2",
        )
        columns = rows(
            "SELECT table_schema, table_name, column_name, data_type "
            "FROM information_schema.columns "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2, 3",
        )
        counts = {
            f"{schema}.{table}": rows(f'SELECT count(*) FROM "{schema}"."{table}"')[0][0]
            for schema, table in tables
        }
        versions = {
            table: rows(f'SELECT version_num FROM "{schema}"."{table}" ORDER BY 1')
            for schema, table in tables
            if str(table).startswith("alembic_version_")
        }
    return {"tables": tables, "columns": columns, "counts": counts, "versions": versions}


# -- the cases ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One bad input: what is typed, where, on which database, and what the line says.

    In ``expected``, ``{root}`` stands for the project's folder, ``{versions}`` for
    scoring_engine's versions folder in it, ``{server}`` for the test server's host:port,
    ``{head}`` for scoring_engine's head and ``{next}``/``{after_next}`` for the IDs of the
    revisions a copy adds after it. ``url`` replaces ``DATABASE_URL`` (same placeholders,
    and ``{password}``).
    """

    id: str
    args: tuple[str, ...]
    expected: tuple[str, ...]
    project: str = "root"
    database: str = "empty"
    url: str | None = None


UNREACHABLE = "postgresql://app:{password}@127.0.0.1:1/app"
# The libpq style: the password (and more) in the query.
UNREACHABLE_QUERY = (
    "postgresql://app@127.0.0.1:1/app?password={password}&sslmode=disable&connect_timeout=5"
    "&application_name=x"
)
EXPECTED_URL = "expected postgresql://user:password@host:port/database"
FIX_URL = "fix the URL, or unset it to use the project's Postgres (invoke db.up)"
GARBAGE_URL = (
    "error: api_gateway: DATABASE_URL: the database URL cannot be parsed: it has no scheme "
    f"(postgresql://); {EXPECTED_URL}",
    FIX_URL,
)
REVISION_EMPTY = ("migrate.revision", "--service", "scoring_engine", "--empty", "--phase", "expand")
NOT_TEXT = "error: the revision message contains characters that are not text"
PLAIN_TEXT = "type it again as plain text: -m 'add status to listings'"

CASES = [
    Case(
        "unknown-service-current",
        ("migrate.current", "--service", "billing"),
        (
            "error: unknown service 'billing': there is no migration history for it",
            VALID,
            "pass one of them with --service",
        ),
    ),
    Case(
        "unknown-service-upgrade",
        ("migrate.upgrade", "--service", "billing"),
        ("error: unknown service 'billing'", VALID, "pass one of them with --service"),
    ),
    Case(
        "unknown-service-revision",
        ("migrate.revision", "--service", "billing", "-m", "x"),
        ("error: unknown service 'billing'", VALID, "pass one of them with --service"),
    ),
    Case(
        "unknown-service-db-url",
        ("db.url", "--service", "billing"),
        ("error: unknown service 'billing'", VALID, "pass one of them with --service"),
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
        "revision-empty-without-phase",
        ("migrate.revision", "--service", "scoring_engine", "-m", "x", "--empty"),
        (
            "error: scoring_engine: a hand-written revision needs its phase: expand (the "
            "previous release's code keeps working) or contract",
            "add one: --phase expand, or --phase contract",
        ),
    ),
    Case(
        "revision-bad-phase",
        ("migrate.revision", "--service", "scoring_engine", "-m", "x", "--phase", "later"),
        (
            "error: phase must be one of expand, contract, not 'later'",
            "use --phase expand, or --phase contract",
        ),
    ),
    Case(
        "merge-single-head",
        ("migrate.merge", "--service", "scoring_engine"),
        ("error: scoring_engine has a single head ({head}): nothing to merge, no file written",),
    ),
    Case(
        "revision-on-two-heads",
        (
            "migrate.revision",
            "--service",
            "scoring_engine",
            "-m",
            "x",
            "--empty",
            "--phase",
            "expand",
        ),
        (
            "error: scoring_engine: cannot create a revision: "
            "the history has 2 heads ({next}, {after_next})",
            "run: invoke migrate.merge --service scoring_engine",
        ),
        project="two_heads",
    ),
    Case(
        "upgrade-unknown-target",
        ("migrate.upgrade", "--service", "scoring_engine", "--target", "zzzz"),
        (
            "error: scoring_engine: there is no revision 'zzzz'",
            "see the revisions: invoke migrate.history --service scoring_engine",
        ),
    ),
    Case(
        "upgrade-head-with-two-heads",
        ("migrate.upgrade", "--service", "scoring_engine", "--target", "head"),
        (
            "error: scoring_engine: the history cannot be used: "
            "the history has 2 heads ({next}, {after_next})",
            "run: invoke migrate.merge --service scoring_engine",
        ),
        project="two_heads",
    ),
    Case(
        "upgrade-ambiguous-prefix",
        ("migrate.upgrade", "--service", "scoring_engine", "--target", "{next}"),
        (
            "error: scoring_engine: the revision prefix '{next}' is ambiguous: {next}a, {next}b",
            "see the revisions: invoke migrate.history --service scoring_engine",
        ),
        project="shared_prefix",
    ),
    Case(
        "sql-unknown-revision",
        ("migrate.sql", "--service", "scoring_engine", "--range", "0001:9999"),
        (
            "error: scoring_engine: unknown revision '9999'",
            "see the revisions: invoke migrate.history --service scoring_engine",
        ),
    ),
    Case(
        "downgrade-below-base",
        ("migrate.downgrade", "--service", "api_gateway", "--target", "-99"),
        (
            "error: api_gateway: cannot go down 99 revisions: the database is at {api_head}, "
            "{api_count} revision(s) above base",
            "see the revisions: invoke migrate.history --service api_gateway",
        ),
        database="api_gateway_at_head",
    ),
    Case(
        "downgrade-empty-database",
        ("migrate.downgrade", "--service", "api_gateway"),
        ("error: api_gateway: the database is at base: there is nothing to downgrade",),
    ),
    Case(
        "downgrade-unknown-target",
        ("migrate.downgrade", "--service", "api_gateway", "--target", "zzzz"),
        (
            "error: api_gateway: there is no revision 'zzzz'",
            "see the revisions: invoke migrate.history --service api_gateway",
        ),
        database="api_gateway_at_head",
    ),
    Case(
        "database-unreachable",
        ("migrate.current", "--service", "api_gateway"),
        (
            "error: api_gateway: cannot use the database at 127.0.0.1:1/app: ",
            'connection failed: connection to server at "127.0.0.1", port 1 failed: '
            "Connection refused",
            "is Postgres up? run: invoke db.up (URL: invoke db.url --service api_gateway)",
        ),
        url=UNREACHABLE,
    ),
    Case(
        "database-unreachable-upgrade",
        ("migrate.upgrade", "--service", "scoring_engine"),
        (
            "error: scoring_engine: cannot use the database at 127.0.0.1:1/app: ",
            "Connection refused",
            "is Postgres up? run: invoke db.up (URL: invoke db.url --service scoring_engine)",
        ),
        url=UNREACHABLE,
    ),
    Case(
        "wrong-credentials",
        ("migrate.current", "--service", "api_gateway"),
        (
            "error: api_gateway: cannot use the database at {server}/postgres: ",
            'password authentication failed for user "app"',
            "check the URL in use: invoke db.url --service api_gateway",
        ),
        url="postgresql://app:{password}@{server}/postgres",
    ),
    Case(
        "garbage-url-not-a-url",
        ("migrate.current", "--service", "api_gateway"),
        GARBAGE_URL,
        url="not a url at all",
    ),
    Case(
        "garbage-url-http",
        ("migrate.current", "--service", "api_gateway"),
        (
            "error: api_gateway: DATABASE_URL: the database URL uses 'http', not PostgreSQL; "
            "expected postgresql://user:password@host:port/database",
            GARBAGE_URL[1],
        ),
        url="http://example.com/db",
    ),
    Case(
        "garbage-url-mysql",
        ("migrate.current", "--service", "api_gateway"),
        (
            "error: api_gateway: DATABASE_URL: the database URL uses 'mysql', not PostgreSQL; "
            "expected postgresql://user:password@host:port/database",
            GARBAGE_URL[1],
        ),
        url="mysql://u:{password}@h/db",
    ),
    Case(
        "garbage-url-ipv6",
        ("migrate.status", "--service", "scoring_engine"),
        (
            "error: scoring_engine: DATABASE_URL: the database URL cannot be parsed: an IPv6 "
            f"host needs its closing ']' (e.g. [::1]:5432); {EXPECTED_URL}",
            FIX_URL,
        ),
        url="postgresql://u:{password}@[::1/db",
    ),
    Case(
        "garbage-url-port",
        ("migrate.upgrade",),
        (
            "error: api_gateway: DATABASE_URL: the database URL cannot be parsed: its port is "
            f"not a number; {EXPECTED_URL}",
            FIX_URL,
        ),
        url="postgresql://u:{password}@host:notaport/db",
    ),
    Case(
        "garbage-url-at-in-password",
        ("migrate.current", "--service", "api_gateway"),
        (
            "error: api_gateway: DATABASE_URL: the database URL cannot be parsed: its host "
            f"contains '@' (an '@' in the password must be written %40); {EXPECTED_URL}",
            FIX_URL,
        ),
        url="postgresql://app:pass@{password}@127.0.0.1:1/app",
    ),
    Case(
        "empty-url",
        ("migrate.status", "--service", "scoring_engine"),
        (
            "error: scoring_engine: DATABASE_URL: the database URL is empty; " + EXPECTED_URL,
            FIX_URL,
        ),
        url="",
    ),
    Case(
        "blank-url",
        ("migrate.upgrade",),
        ("error: api_gateway: DATABASE_URL: the database URL is empty; " + EXPECTED_URL, FIX_URL),
        url="  \t ",
    ),
    Case(
        "unreachable-query-password",
        ("migrate.status", "--service", "scoring_engine"),
        (
            "error: scoring_engine: cannot use the database at 127.0.0.1:1/app: ",
            "Connection refused",
            "is Postgres up? run: invoke db.up (URL: invoke db.url --service scoring_engine)",
        ),
        url=UNREACHABLE_QUERY,
    ),
    Case(
        "wrong-query-password",
        ("migrate.current", "--service", "api_gateway"),
        (
            "error: api_gateway: cannot use the database at {server}/postgres: ",
            'password authentication failed for user "app"',
            "check the URL in use: invoke db.url --service api_gateway",
        ),
        url="postgresql://app@{server}/postgres?password={password}",
    ),
    Case(
        "sslmode-require-without-ssl",
        ("migrate.current", "--service", "api_gateway"),
        (
            "error: api_gateway: cannot use the database at {server}/postgres: ",
            "server does not support SSL, but SSL was required",
            "check the URL in use: invoke db.url --service api_gateway",
        ),
        url="postgresql://app@{server}/postgres?password={password}&sslmode=require",
    ),
    Case(
        "database-migrated-by-newer-code",
        ("migrate.upgrade", "--service", "scoring_engine"),
        (
            "error: scoring_engine: the database is at revision 0099, which this code does "
            "not know (it was migrated by a newer version); refusing to migrate it",
            "deploy the newer version, or downgrade with the code that wrote it",
        ),
        database="scoring_engine_at_0099",
    ),
    Case(
        "corrupted-revision-file",
        ("migrate.upgrade", "--service", "scoring_engine"),
        (
            "error: scoring_engine: the history cannot be used: {next}_broken.py is not a "
            "valid revision file (syntax error on line 1: invalid syntax)",
            f"run: git checkout -- {VERSIONS}/{{next}}_broken.py "
            "(or delete it if it is not a revision)",
        ),
        project="broken_file",
    ),
    Case(
        "empty-revision-file",
        (
            "migrate.revision",
            "--service",
            "scoring_engine",
            "-m",
            "x",
            "--empty",
            "--phase",
            "expand",
        ),
        (
            "error: scoring_engine: cannot create a revision: {next}_empty.py is not a valid "
            "revision file (the file is empty)",
            f"run: git checkout -- {VERSIONS}/{{next}}_empty.py (or delete it if it is not a "
            "revision)",
        ),
        project="empty_file",
    ),
    Case(
        "duplicate-id-upgrade",
        ("migrate.upgrade", "--service", "scoring_engine"),
        (
            "error: scoring_engine: the history cannot be used: revision ID {next} is declared "
            "by 2 files ({next}_one.py, {next}_two.py); two branches probably chose the same ID",
            "run: invoke migrate.renumber --service scoring_engine --file "
            f"{VERSIONS}/{{next}}_two.py",
        ),
        project="duplicate_id",
    ),
    Case(
        "duplicate-id-computed-upgrade",
        ("migrate.upgrade", "--service", "scoring_engine"),
        (
            "error: scoring_engine: the history cannot be used: revision ID {next} is declared "
            "by 2 files ({next}_one.py, {next}_two.py); two branches probably chose the same ID",
            "run: invoke migrate.renumber --service scoring_engine --file "
            f"{VERSIONS}/{{next}}_two.py",
        ),
        project="duplicate_id_computed",
    ),
    Case(
        "duplicate-id-sql",
        ("migrate.sql", "--service", "scoring_engine", "--range", "0001:head"),
        (
            "error: scoring_engine: the history cannot be used: revision ID {next} is declared "
            "by 2 files ({next}_one.py, {next}_two.py)",
            "run: invoke migrate.renumber --service scoring_engine --file ",
        ),
        project="duplicate_id",
    ),
    Case(
        "duplicate-id-lint",
        ("migrate.lint", "--service", "scoring_engine", "--range", "0001:head"),
        (
            "error: scoring_engine: the history cannot be used: revision ID {next} is declared "
            "by 2 files ({next}_one.py, {next}_two.py)",
            "run: invoke migrate.renumber --service scoring_engine --file ",
        ),
        project="duplicate_id_computed",
    ),
    Case(
        "revision-on-broken-history",
        (*REVISION_EMPTY, "-m", "x"),
        (
            "error: scoring_engine: cannot create a revision: {next}_broken.py is not a "
            "valid revision file (syntax error on line 1: invalid syntax)",
            f"run: git checkout -- {VERSIONS}/{{next}}_broken.py",
        ),
        project="broken_file",
    ),
    Case(
        "merge-on-broken-history",
        ("migrate.merge", "--service", "scoring_engine"),
        (
            "error: scoring_engine: cannot merge: {next}_broken.py is not a "
            "valid revision file (syntax error on line 1: invalid syntax)",
            f"run: git checkout -- {VERSIONS}/{{next}}_broken.py",
        ),
        project="broken_file",
    ),
    Case(
        "revision-on-unimportable-history",
        (*REVISION_EMPTY, "-m", "x"),
        (
            "error: scoring_engine: cannot create a revision: {next}_imports.py is not a valid "
            "revision file (it cannot be imported: ModuleNotFoundError: No module named "
            "'no_such_module_signalmarket'); nothing written",
            f"run: git checkout -- {VERSIONS}/{{next}}_imports.py",
        ),
        project="unimportable_file",
    ),
    Case(
        "upgrade-on-unimportable-history",
        ("migrate.upgrade", "--service", "scoring_engine"),
        (
            "error: scoring_engine: the history cannot be used: Alembic cannot load it: "
            "{next}_imports.py is not a valid revision file (it cannot be imported: "
            "ModuleNotFoundError: No module named "
            "'no_such_module_signalmarket')",
            f"run: git checkout -- {VERSIONS}/{{next}}_imports.py",
        ),
        project="unimportable_file",
    ),
    Case(
        "revision-message-with-escape",
        (*REVISION_EMPTY, "-m", "make it \x1b[31mred"),
        (f"{NOT_TEXT} (U+001B)", PLAIN_TEXT),
    ),
    Case(
        "revision-message-with-nul",
        (*REVISION_EMPTY, "-m", "nul \x00 here"),
        (f"{NOT_TEXT} (U+0000)", PLAIN_TEXT),
    ),
    Case(
        "merge-message-with-bidi-override",
        ("migrate.merge", "--service", "scoring_engine", "-m", "merge \u202eesrever"),
        (f"{NOT_TEXT} (U+202E)", PLAIN_TEXT),
        project="two_heads",
    ),
    Case(
        "stamp-unknown-revision",
        ("migrate.stamp", "--service", "scoring_engine", "--revision", "zzzz"),
        (
            "error: scoring_engine: there is no revision 'zzzz'",
            "see the revisions: invoke migrate.history --service scoring_engine",
        ),
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
            "error: scoring_engine: /etc/passwd is not a revision file of scoring_engine "
            "(they are in {versions})",
            "name a file listed by: invoke migrate.history --service scoring_engine",
        ),
    ),
    Case(
        "rebase-unknown-ref",
        ("migrate.rebase", "--service", "scoring_engine", "--onto", "no-such-branch"),
        (
            "error: unknown git ref 'no-such-branch'",
            "run: git fetch, or name an existing branch (git branch -a)",
        ),
        project="git",
    ),
    Case(
        "rebase-nothing-to-move",
        ("migrate.rebase", "--service", "scoring_engine"),
        (
            "error: scoring_engine: nothing to move: every scoring_engine revision of this "
            "checkout is on main, or on top of its head already",
            "to check the merge: invoke migrate.validate --offline --against main",
        ),
        project="git",
    ),
    Case(
        "rebase-outside-git",
        ("migrate.rebase", "--service", "scoring_engine"),
        (
            "error: {root}/packages/shared_db/src/shared_db/migrations/scoring_engine/versions "
            "is not inside a git repository",
            "run it in a git checkout of the project",
        ),
        project="no_git",
    ),
    Case(
        "rebase-uncommitted-history",
        ("migrate.rebase", "--service", "scoring_engine"),
        (
            "error: scoring_engine: cannot rebase: the history has uncommitted changes "
            "({next}_draft.py)",
            "commit or stash them first (git stash), then run it again",
        ),
        project="git_uncommitted",
    ),
    Case(
        "rebase-bad-local",
        ("migrate.rebase", "--local", "yes"),
        ("error: --local takes 'downgrade', not 'yes'", "use --local downgrade, or leave it out"),
        project="git",
    ),
    Case(
        "squash-without-to",
        ("migrate.squash", "--service", "scoring_engine"),
        (
            "error: which revision should the baseline end at? add --to, e.g. --to 0010",
            "(see: invoke migrate.history --service scoring_engine)",
        ),
    ),
    Case(
        "squash-unknown-revision",
        ("migrate.squash", "--service", "scoring_engine", "--to", "zzzz"),
        (
            "error: scoring_engine: there is no revision 'zzzz' to squash to",
            "see the revisions: invoke migrate.history --service scoring_engine",
        ),
    ),
    Case(
        "squash-not-on-the-main-line",
        ("migrate.squash", "--service", "scoring_engine", "--to", "0006"),
        (
            "error: scoring_engine: 0006 is not on the main line: 0007, 0009 are neither below "
            "nor above it, so a baseline at it would cut them off",
            "squash to a revision every path passes through: one of 0002, 0003, 0004, {head}",
        ),
    ),
    Case(
        "squash-nothing-to-squash",
        ("migrate.squash", "--service", "scoring_engine", "--to", "0001"),
        (
            "error: scoring_engine: nothing to squash: 0001 is the first revision of the history",
            "name a later revision: --to <revision> (invoke migrate.history --service "
            "scoring_engine)",
        ),
    ),
    Case(
        "squash-database-below",
        (
            "migrate.squash",
            "--service",
            "scoring_engine",
            "--to",
            "{head}",
            "--database-url",
            "{database}",
        ),
        (
            "error: scoring_engine: cannot squash to {head}: the database at {server}/",
            " is at 0004, below {head}: once 0004 is gone, no code can upgrade it",
            "upgrade that database to {head} first (DATABASE_URL=<its URL> invoke "
            "migrate.upgrade --service scoring_engine --target {head})",
        ),
        database="scoring_engine_at_0004",
    ),
    Case(
        "squash-garbage-database-url",
        (
            "migrate.squash",
            "--service",
            "scoring_engine",
            "--to",
            "{head}",
            "--database-url",
            "not a url",
        ),
        (
            "error: scoring_engine: --database-url: the database URL cannot be parsed: it has "
            "no scheme (postgresql://)",
            "pass a PostgreSQL URL: --database-url postgresql://user:password@host:5432/"
            "scoring_engine",
        ),
    ),
    Case(
        "squash-unreachable-database-url",
        (
            "migrate.squash",
            "--service",
            "scoring_engine",
            "--to",
            "{head}",
            "--database-url",
            "postgresql://app:{password}@127.0.0.1:1/app",
        ),
        (
            "error: scoring_engine: --database-url: cannot use the database at 127.0.0.1:1/app: ",
            "Connection refused",
            "check that URL: is that server reachable from here?",
        ),
    ),
    Case(
        "squash-uncommitted-history",
        ("migrate.squash", "--service", "scoring_engine", "--to", "{head}"),
        (
            "error: scoring_engine: cannot squash: the history has uncommitted changes "
            "({next}_draft.py)",
            "commit or stash them first (git stash), then run it again",
        ),
        project="git_uncommitted",
    ),
    Case(
        "lint-range-without-colon",
        ("migrate.lint", "--range", "0001"),
        ("error: a range is A:B, not '0001'; e.g. --range 0004:head",),
    ),
]


def _fill(template: str, project: Project, server: URL) -> str:
    filled = (
        template.replace("{root}", str(project.path))
        .replace("{versions}", str(project.path / VERSIONS))
        .replace("{server}", f"{server.host}:{server.port or 5432}")
        .replace("{password}", PASSWORD)
        .replace("{head}", HEAD)
        .replace("{next}", NEXT)
        .replace("{after_next}", AFTER_NEXT)
    )
    if "{api_" in filled:  # read the history only for the rows that name it
        revisions = read_history(DbConfig(), "api_gateway").revisions
        filled = filled.replace("{api_head}", ", ".join(head("api_gateway")))
        filled = filled.replace("{api_count}", str(len(revisions)))
    return filled


def test_the_cases_have_distinct_ids() -> None:
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", [pytest.param(case, id=case.id) for case in CASES])
def test_bad_input(case: Case, projects: Projects, empty_database: URL, pg_server: URL) -> None:
    project = projects.get(case.project)
    DATABASES[case.database](empty_database)
    database_url = (
        _fill(case.url, project, pg_server) if case.url is not None else raw(empty_database)
    )
    env = {**project.env, "DATABASE_URL": database_url}
    files, status, database = project.files(), project.git_status(), snapshot(empty_database)

    args = tuple(
        _fill(arg, project, pg_server).replace("{database}", raw(empty_database))
        for arg in case.args
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = invoke(*args, env=env, cwd=project.path, clean=True)

    line = result.one_line_error()
    # Nothing a user would see on stderr beside the line (e.g. Alembic's UserWarning).
    shown = [f"{w.category.__name__}: {w.message}" for w in caught if w.category is UserWarning]
    assert not shown, shown
    secrets = [PASSWORD, database_url, raw(empty_database), raw(pg_server)]
    leaked = [s for s in secrets if s.strip() and s in result.output]
    leaked += ["the server's password"] if shows_password(result.output, pg_server) else []
    assert not leaked, f"{result.output}\nshows: {leaked}"
    assert project.files() == files, "a file was written or changed"
    assert project.git_status() == status, "the copy's git status changed"
    assert snapshot(empty_database) == database, "the database was touched"
    missing = [f for f in (_fill(e, project, pg_server) for e in case.expected) if f not in line]
    assert not missing, f"{line}\nlacks: {missing}"


# -- the command line as a real process --------------------------------------------------


def _process(*args: str, database_url: str | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m invoke ARGS`` with only ``DATABASE_URL`` naming a database (a variable
    set empty counts as set: none of this environment's is passed on)."""
    env = {} if database_url is None else {"DATABASE_URL": database_url}
    return invoke_process(*args, env=env, clean=True)


def test_process_unknown_service_exits_1_with_one_line() -> None:
    result = _process("migrate.current", "--service", "billing")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: unknown service 'billing': there is no migration history for it; "
        f"{VALID}; pass one of them with --service"
    ]
    assert result.stdout == ""


def test_process_unreachable_database_exits_4_with_one_line() -> None:
    """Exit code 4: the database could not be reached (shared_db.exit_codes)."""
    url = UNREACHABLE.replace("{password}", PASSWORD)
    result = _process("migrate.current", "--service", "api_gateway", database_url=url)
    assert result.returncode == 4, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert "Traceback" not in output and PASSWORD not in output and url not in output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: api_gateway: cannot use the database at 127.0.0.1:1/app: ")
    assert line.endswith(
        "is Postgres up? run: invoke db.up (URL: invoke db.url --service api_gateway)"
    )


def test_process_success_exits_0_and_prints_to_stdout_only(empty_database: URL) -> None:
    result = _process("migrate.current", database_url=raw(empty_database))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines() == [f"{s}: (empty: no revision applied)" for s in SERVICES]


@pytest.mark.parametrize("kind", ["duplicate_id", "duplicate_id_computed"])
def test_process_alembic_on_a_duplicate_id_is_one_line(
    kind: str, projects: Projects, empty_database: URL
) -> None:
    """Alembic's own ``upgrade head`` on a history where two files declare one ID: not
    "Multiple head revisions" after a raw ``UserWarning``, but the duplicate, named."""
    project = projects.get(kind)
    env = {k: v for k, v in os.environ.items() if not k.endswith("DATABASE_URL")}
    ini = project.path / "packages/shared_db/alembic_scoring_engine.ini"
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(ini), "upgrade", "head"],
        cwd=project.path,
        env={**env, "DATABASE_URL": raw(empty_database)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"error: scoring_engine: the history cannot be used: revision ID {NEXT} is declared by "
        f"2 files ({NEXT}_one.py, {NEXT}_two.py); two branches probably chose the same ID; fix "
        "the history (in a checkout, see every problem: invoke migrate.validate --offline "
        "--service scoring_engine)"
    ]
    assert snapshot(empty_database)["tables"] == []


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("not a url at all", "the database URL cannot be parsed: it has no scheme (postgresql://)"),
        ("", "the database URL is empty"),
        (
            "postgresql://u:hunter2@[::1/db",
            "the database URL cannot be parsed: an IPv6 host needs its closing ']' "
            "(e.g. [::1]:5432)",
        ),
        (
            "postgresql://u:hunter2@host:notaport/db",
            "the database URL cannot be parsed: its port is not a number",
        ),
        ("mysql://u:hunter2@h/db", "the database URL uses 'mysql', not PostgreSQL"),
    ],
)
def test_alembic_command_line_refuses_a_garbage_url_in_one_line(url: str, why: str) -> None:
    """``alembic -c packages/shared_db/alembic_scoring_engine.ini current``, in this process
    (Alembic's ``main``; the line is what its process prints, with exit code 1)."""
    clean = {k: v for k, v in os.environ.items() if not k.endswith("DATABASE_URL")}
    with (
        mock.patch.dict(os.environ, {**clean, "DATABASE_URL": url}, clear=True),
        pytest.raises(SystemExit) as exited,
    ):
        alembic_main(["-c", str(ROOT / "packages/shared_db/alembic_scoring_engine.ini"), "current"])
    assert exited.value.code == (
        f"error: scoring_engine: DATABASE_URL: {why}; expected "
        "postgresql://user:password@host:port/database; fix that variable, or unset it (in a "
        "checkout, the project's Postgres is used then)"
    )
    assert PASSWORD not in str(exited.value.code)
