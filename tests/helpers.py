"""Helpers shared by the tests (imported by tests and conftest.py, never from conftest)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

from alembic.script import ScriptDirectory
from db_devtools.config import DevConfig
from shared_db.alembic_config import alembic_config
from shared_db.config import DbConfig
from shared_db.connections import engine
from shared_db.history import History, read_history, sort_ids
from shared_db.services import version_table
from sqlalchemy import text
from sqlalchemy.engine import URL
from task_runs import run_task

if TYPE_CHECKING:  # fastapi is imported where a test asks for a client: pytest's
    # controller process, which runs no test, starts without it (~0.6 s sooner)
    from fastapi.testclient import TestClient
    from httpx import Response

ROOT = Path(__file__).resolve().parents[1]
MIGRATIONS = Path("packages/shared_db/src/shared_db/migrations")
VERSIONS = MIGRATIONS / "scoring_engine" / "versions"
MODELS = Path("packages/shared_db/src/shared_db/models/scoring_engine.py")
TASK_RUNS = Path(__file__).with_name("task_runs.py")


def raw(url: URL) -> str:
    """The URL with its password, as an environment variable needs it."""
    return url.render_as_string(hide_password=False)


def config_for(url: URL | None = None, **changes: Any) -> DbConfig:
    """The runtime configuration of a test: every service on ``url``'s database."""
    return DbConfig(database_url=raw(url) if url else None, **{"caller": "test", **changes})


def head(service: str) -> tuple[str, ...]:
    """The code's head of ``service``, as the history's files say (never hard-coded)."""
    return read_history(DbConfig(), service).heads


@contextlib.contextmanager
def querying(url: URL) -> Iterator[Callable[..., list[tuple[Any, ...]]]]:
    """A function giving the rows of a query on ``url``'s database, all over one
    connection (each new one costs a server process and a password exchange)."""
    with engine(url).connect() as connection:

        def rows(query: str, **params: Any) -> list[tuple[Any, ...]]:
            return [tuple(row) for row in connection.execute(text(query), params)]

        yield rows


def sql(url: URL, query: str, **params: Any) -> list[tuple[Any, ...]]:
    """Rows of one query on ``url``'s database."""
    with querying(url) as rows:
        return rows(query, **params)


def shows_password(output: str, url: URL) -> bool:
    """Whether ``output`` shows ``url``'s password. One equal to the user or database
    name (the development default postgres/postgres) is legitimately there as that name:
    then only its ``:password@`` form counts."""
    password = url.password
    if not isinstance(password, str) or not password:
        return False
    if password in (url.username, url.database, url.host):
        return f":{password}@" in output
    return password in output


def execute(url: URL, statement: str) -> None:
    """One statement on ``url``'s database, committed."""
    with engine(url).begin() as connection:
        connection.execute(text(statement))


# -- the Invoke tasks, in-process --------------------------------------------------------


@dataclass(frozen=True)
class TaskResult:
    code: int
    out: str
    err: str

    @property
    def output(self) -> str:
        return self.out + self.err

    def one_line_error(self) -> str:
        """The single stderr line of a failed task; no traceback anywhere."""
        assert self.code != 0, self.output
        assert "Traceback" not in self.output, self.output
        lines = self.err.strip().splitlines()
        assert len(lines) == 1, self.err
        return lines[0]


def invoke(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, clean: bool = False
) -> TaskResult:
    """Run ``invoke ARGS`` in this process, as a user would type it: the environment is
    ``os.environ`` updated with ``env`` (``clean``: without any *DATABASE_URL), in ``cwd``."""
    base = {k: v for k, v in os.environ.items() if not (clean and k.endswith("DATABASE_URL"))}
    with (
        mock.patch.dict(os.environ, {**base, **(env or {})}, clear=True),
        contextlib.chdir(cwd or ROOT),
    ):
        return TaskResult(*run_task(args))


def invoke_process(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, clean: bool = False
) -> subprocess.CompletedProcess[str]:
    """``python -m invoke ARGS`` as a real process: for the exit-code contract (``clean``:
    without any *DATABASE_URL of this environment, as ``invoke``)."""
    base = {k: v for k, v in os.environ.items() if not (clean and k.endswith("DATABASE_URL"))}
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=cwd or ROOT,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


# -- services ------------------------------------------------------------------------------


def assert_problem(response: Response, status: int) -> dict[str, Any]:
    """The response is an RFC 9457 problem with this status; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    return body


@contextlib.contextmanager
def service_client(service: str, database: URL, **env: str) -> Iterator[TestClient]:
    """A client of ``service``'s app on ``database``; entering it runs the startup migration."""
    from fastapi.testclient import TestClient

    app = import_module(f"{service}.app").app
    variables = {"DATABASE_URL": raw(database), **env}
    clean = {k: v for k, v in os.environ.items() if not k.endswith("DATABASE_URL")}
    with mock.patch.dict(os.environ, {**clean, **variables}, clear=True), TestClient(app) as client:
        yield client


def assert_migrated_on_startup(client: TestClient, database: URL, service: str) -> None:
    """``/ready`` is 200 and the version table holds the code's head."""
    heads = head(service)
    ready = client.get("/ready")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "ready" and body["service"] == service
    assert sorted(body["database_revision"]) == sorted(body["head"]) == sorted(heads)
    assert sql(database, f"SELECT version_num FROM {version_table(service)}") == [
        (h,) for h in heads
    ]
    assert client.get("/health").json() == {"status": "ok", "service": service}


# -- a copy of the project in a git repository ---------------------------------------------


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


class Repo:
    """A git checkout of the project. In-process tasks use its histories through the
    environment (``SIGNALMARKET_ROOT``, ``SIGNALMARKET_MIGRATIONS_DIR``); subprocesses
    run its code (``PYTHONPATH``)."""

    def __init__(self, path: Path, database: URL, cache: Path) -> None:
        self.path = path
        self.git_env = {
            "GIT_AUTHOR_NAME": "dev",
            "GIT_AUTHOR_EMAIL": "dev@example.invalid",
            "GIT_COMMITTER_NAME": "dev",
            "GIT_COMMITTER_EMAIL": "dev@example.invalid",
        }
        self.env = {
            **self.git_env,
            "DATABASE_URL": raw(database),
            "SIGNALMARKET_ROOT": str(path),
            "SIGNALMARKET_MIGRATIONS_DIR": str(path / MIGRATIONS),
            "XDG_CACHE_HOME": str(cache),
        }
        sources = [str(p) for p in sorted((path / "packages").glob("*/src"))]
        self.process_env = {**self.env, "PYTHONPATH": os.pathsep.join(sources)}
        self.process_env.pop("SIGNALMARKET_MIGRATIONS_DIR")

    @property
    def versions(self) -> Path:
        return self.path / VERSIONS

    def config(self, url: URL | None = None) -> DevConfig:
        """The development configuration of this copy (its histories, its root)."""
        return DevConfig.from_environ(
            {**self.env, **({"DATABASE_URL": raw(url)} if url else {})}, caller="test"
        )

    def git(self, *args: str) -> str:
        result = subprocess.run(
            ["git", *args],
            cwd=self.path,
            env={**os.environ, **self.git_env},
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, f"git {args}: {result.stderr}"
        return result.stdout

    def try_git(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A git command that may fail (a merge or rebase that stops on a conflict)."""
        return subprocess.run(
            ["git", *args],
            cwd=self.path,
            env={**os.environ, **self.git_env, "GIT_EDITOR": "true"},
            capture_output=True,
            text=True,
        )

    def invoke(self, *args: str, env: dict[str, str] | None = None) -> TaskResult:
        """A task on this copy's histories, in this process."""
        return invoke(*args, env={**self.env, **(env or {})}, cwd=self.path)

    def invoke_process(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """A task run by this copy's own code, in a subprocess (e.g. after a model change)."""
        return invoke_process(*args, env={**self.process_env, **(env or {})}, cwd=self.path)

    def invoke_process_runs(self, *runs: Sequence[str]) -> list[TaskResult]:
        """Tasks run one after another by this copy's own code, in one subprocess: what
        ``invoke_process`` does for each, with one interpreter start and one set of imports
        for all (``task_runs.py``). Nothing may be printed besides the tasks' own output."""
        results = self.path.parent / "task-runs.json"
        process = subprocess.run(
            [sys.executable, str(TASK_RUNS), str(results), json.dumps(runs)],
            cwd=self.path,
            env={**os.environ, **self.process_env},
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        assert (process.returncode, process.stdout, process.stderr) == (0, "", ""), process
        return [TaskResult(*run) for run in json.loads(results.read_text())]

    def add_model_column(self, class_anchor: str, column: str) -> None:
        models = self.path / MODELS
        source = models.read_text()
        assert class_anchor in source
        models.write_text(source.replace(class_anchor, class_anchor + column, 1))

    def revisions(self) -> list[str]:
        return sorted(p.name for p in self.versions.glob("*.py"))


# A revision that changes the schema, then fails: proves one transaction per revision.
BROKEN_REVISION = '''"""Add a column, then fail (a broken migration).

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("scores", sa.Column("half_done", sa.Text(), nullable=True))
    op.execute("UPDATE no_such_table SET x = 1")


def downgrade() -> None:
    op.drop_column("scores", "half_done")
'''


def alembic_shape(script: ScriptDirectory) -> dict[str, object]:
    """The graph facts Alembic itself computes, to compare with ``reader_shape``."""
    revisions = list(script.walk_revisions())
    return {
        "heads": sort_ids(script.get_heads()),
        "bases": sort_ids(script.get_bases()),
        "branch_points": sort_ids(r.revision for r in revisions if r.is_branch_point),
        "merge_points": sort_ids(r.revision for r in revisions if r.is_merge_point),
        "down": {r.revision: sorted(_tuple(r.down_revision)) for r in revisions},
        # Alembic propagates a label along its branch; compare the declared ones.
        "labels": {r.revision: sorted(_declared_labels(r)) for r in revisions},
    }


def _tuple(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)  # type: ignore[attr-defined]


def _declared_labels(script: Any) -> tuple[str, ...]:
    """The labels written in the file (Alembic's ``branch_labels`` adds inherited ones)."""
    return _tuple(getattr(script.module, "branch_labels", None))


def reader_shape(history: History) -> dict[str, object]:
    """The same facts from our file reader."""
    return {
        "heads": list(history.heads),
        "bases": list(history.bases),
        "branch_points": list(history.branch_points()),
        "merge_points": list(history.merge_points()),
        "down": {rev: sorted(r.down) for rev, r in history.revisions.items()},
        "labels": {rev: sorted(r.branch_labels) for rev, r in history.revisions.items()},
    }


def alembic_script(config: DbConfig, service: str) -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config(config, service))


# -- a Docker engine's ping ----------------------------------------------------------------

PING_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK"


@contextlib.contextmanager
def ping_answerer(listener: socket.socket, replies: list[bytes]) -> Iterator[None]:
    """Answer every connection to ``listener`` (bound) with ``replies[0]``, as dockerd
    answers ``/_ping``; change ``replies[0]`` to change the answer."""
    listener.listen()
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(1024)
                conn.sendall(replies[0])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        listener.close()
