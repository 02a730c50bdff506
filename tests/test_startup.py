"""Services migrate on startup: once, under a lock, atomically, or not at all.

The scoring_engine app stands for all four (they share shared_db.web's lifespan).
"""

import logging
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest import mock

import psycopg
import pytest
from db_devtools.provisioning.ports import free_port
from helpers import BROKEN_REVISION as BROKEN
from helpers import (
    Repo,
    assert_migrated_on_startup,
    config_for,
    execute,
    head,
    raw,
    service_client,
    sql,
)
from scoring_engine.settings import ScoringEngineSettings
from shared_db import commands, locking, runner
from shared_db.config import PACKAGED_MIGRATIONS, DbConfig
from shared_db.connections import connect_autocommit
from shared_db.errors import ConfigurationError, DatabaseError, MigrationError
from shared_db.history import read_history
from shared_db.web.app import StartupFailed, start
from shared_db.web.hints import one_line
from sqlalchemy.engine import URL

SERVICE = "scoring_engine"
HEAD = head(SERVICE)
REVISIONS = len(read_history(DbConfig(), SERVICE).revisions)
# BROKEN_REVISION is 0011 on top of 0010: the code's head must still be 0010.
LAST_GOOD = "0010"


def columns_of_scores(url: URL) -> list[str]:
    rows = sql(
        url, "SELECT column_name FROM information_schema.columns WHERE table_name = 'scores'"
    )
    return [name for (name,) in rows]


def test_startup_migrates_an_empty_database_to_head(
    empty_database: URL, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "signalmarket")
    with service_client(SERVICE, empty_database) as client:
        assert_migrated_on_startup(client, empty_database, SERVICE)
    assert f"{SERVICE}: migrated base -> {HEAD[0]}" in caplog.messages
    # One progress line per revision, in order, with its message and duration; a summary.
    history = read_history(DbConfig(), SERVICE)
    progress = [m for m in caplog.messages if re.search(r"\(\d+/\d+\) \d+\.\d\d s$", m)]
    assert len(progress) == REVISIONS
    assert progress[0].startswith(f"{SERVICE}: 0001 {history.revisions['0001'].message} (1/")
    assert progress[-1].startswith(f"{SERVICE}: {HEAD[0]} ")
    assert f"({REVISIONS}/{REVISIONS})" in progress[-1]
    assert any(
        re.fullmatch(rf"{SERVICE}: applied {REVISIONS} revision\(s\) in \d+\.\d\d s: "
                     rf"base -> {HEAD[0]}", m)
        for m in caplog.messages
    )  # fmt: skip


@pytest.mark.parametrize("value", ["1", "true", "YES"])
def test_skip_migrations_waits_for_the_migrate_step_and_then_serves(
    empty_database: URL, caplog: pytest.LogCaptureFixture, value: str
) -> None:
    """With SKIP_MIGRATIONS the service does not migrate: it waits, bounded and saying
    so, until a migrate step elsewhere (here, a thread) has brought the database to head.
    The step runs once the service has said that it waits (it found the database empty)."""
    caplog.set_level(logging.INFO, "signalmarket")

    def migrate_step() -> None:
        deadline = time.monotonic() + 60
        while not any("(SKIP_MIGRATIONS): waiting up to" in m for m in caplog.messages):
            assert time.monotonic() < deadline, "the service never said that it waits"
            time.sleep(0.01)
        runner.upgrade(config_for(empty_database, caller="job"), SERVICE)

    with ThreadPoolExecutor(max_workers=1) as pool:
        step = pool.submit(migrate_step)
        with service_client(SERVICE, empty_database, SKIP_MIGRATIONS=value) as client:
            ready = client.get("/ready")
            assert ready.status_code == 200, ready.text
            assert ready.json()["state"] == "at head"
        step.result()
    waiting = [m for m in caplog.messages if "not migrating (SKIP_MIGRATIONS): waiting up to" in m]
    assert len(waiting) == 1 and "it is empty; head" in waiting[0]
    assert f"{SERVICE}: not migrating (SKIP_MIGRATIONS): the database is at head" in caplog.messages


def test_skip_migrations_gives_up_when_no_migrate_step_comes(
    empty_database: URL, caplog: pytest.LogCaptureFixture
) -> None:
    environ = {"DATABASE_URL": raw(empty_database), "SKIP_MIGRATIONS": "1"}
    environ["MIGRATION_WAIT_TIMEOUT"] = "0.2"
    with mock.patch.dict(os.environ, environ), pytest.raises(StartupFailed) as failed:
        start(ScoringEngineSettings)
    assert failed.value.code == 1
    assert str(failed.value) == (
        f"{SERVICE}: the database did not reach a revision this code can serve on within 0.2 s "
        f"(it is empty; head {HEAD[0]}); run the migrate step: "
        f"invoke migrate.upgrade --service {SERVICE}"
    )
    tables = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    assert sql(empty_database, tables) == [], "nothing was migrated"


def test_database_at_head_starts_without_lock_or_migration(
    empty_database: URL, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    commands.upgrade(config_for(empty_database), SERVICE)

    def no_lock(*args: object) -> bool:
        raise AssertionError("a database at head must not take the migration lock")

    monkeypatch.setattr(locking, "_try_lock", no_lock)
    # One connection: the one that answers the wait for the database reads its state.
    with mock.patch.object(psycopg, "connect", wraps=psycopg.connect) as connecting:
        assert runner.migrate_to_head(config_for(empty_database), SERVICE).action == "none"
    assert connecting.call_count == 1
    caplog.clear()
    caplog.set_level(logging.INFO)
    with service_client(SERVICE, empty_database) as client:
        assert client.get("/ready").status_code == 200
    assert f"{SERVICE}: database at head {HEAD[0]}, no migration needed" in caplog.messages
    assert not [m for m in caplog.messages if re.search(r"\(\d+/\d+\) \d+\.\d\d s$", m)]
    assert "Running upgrade" not in caplog.text


def test_a_database_migrated_by_newer_code_is_refused(
    empty_database: URL, caplog: pytest.LogCaptureFixture
) -> None:
    config = config_for(empty_database)
    commands.upgrade(config, SERVICE)
    execute(empty_database, "UPDATE alembic_version_scoring_engine SET version_num = '0099'")
    with pytest.raises(MigrationError, match="0099, which this code does not know") as error:
        runner.migrate_to_head(config, SERVICE)
    assert error.value.kind == "unknown_revision"
    # The service refuses to start, with one line saying what to do.
    with pytest.raises(StartupFailed) as failed, service_client(SERVICE, empty_database):
        pytest.fail("the service started on a database migrated by newer code")
    assert str(failed.value) == (
        f"{SERVICE}: {error.value.message}; "
        "deploy the newer version, or downgrade with the code that wrote it"
    )
    assert [r.message for r in caplog.records if r.levelno >= logging.ERROR] == [
        f"{SERVICE}: startup failed: {error.value.message}; "
        "deploy the newer version, or downgrade with the code that wrote it"
    ]
    assert commands.current(config, SERVICE) == ("0099",)


def test_lock_wait_is_bounded(empty_database: URL) -> None:
    config = config_for(empty_database, lock_wait_s=0.2)
    with connect_autocommit(empty_database) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (runner.lock_key(SERVICE),))
        with pytest.raises(MigrationError, match=r"waited 0\.2 s for the migration lock") as error:
            runner.migrate_to_head(config, SERVICE)
        assert error.value.kind == "lock_timeout"
    assert commands.current(config, SERVICE) == ()


# A refused port, and a name that does not resolve (a stopped container on a compose
# network): both are waited for, since the server may come back.
@pytest.mark.parametrize("host", ["127.0.0.1", "no-such-host.invalid"])
def test_waiting_for_an_unreachable_database_is_bounded(host: str) -> None:
    url = URL.create("postgresql+psycopg", "app", "s3cret", host, 1, "app")
    config = config_for(url, database_wait_s=0.3)
    with pytest.raises(DatabaseError, match=r"gave up after 0\.3 s") as error:
        runner.state_once_reachable(config, SERVICE)
    assert error.value.kind == "database_unreachable"
    assert f"{host}:1/app" in str(error.value)
    assert "s3cret" not in str(error.value)


@pytest.mark.parametrize("container", [False, True])
def test_a_service_without_a_database_url_refuses_to_start(
    caplog: pytest.LogCaptureFixture, container: bool
) -> None:
    """One line: the fact, and the hint of where the service runs (a container has no
    ``invoke``), even though the settings themselves could not be read."""
    environ = {k: v for k, v in os.environ.items() if not k.endswith("DATABASE_URL")}
    environ["SIGNALMARKET_CONTAINER"] = "1" if container else ""
    with mock.patch.dict(os.environ, environ, clear=True), pytest.raises(StartupFailed) as failed:
        start(ScoringEngineSettings)
    fact = "no database URL: set SCORING_ENGINE_DATABASE_URL or DATABASE_URL"
    error = ConfigurationError(fact, kind="no_database_url", service=SERVICE)
    expected = one_line(error, in_container=container)
    assert expected.startswith(f"{SERVICE}: {fact}; ")
    assert ("invoke" in expected) is not container
    if not container:
        assert expected.endswith(
            f"; in development, get one with: invoke db.url --service {SERVICE}"
        )
    assert str(failed.value) == expected
    assert [r.message for r in caplog.records if r.levelno >= logging.ERROR] == [
        f"{SERVICE}: startup failed: {expected.removeprefix(f'{SERVICE}: ')}"
    ]


def test_a_broken_revision_is_rolled_back_and_the_hint_fits_where_the_service_runs(
    empty_database: URL, tmp_path: Path
) -> None:
    """In-process twin of the subprocess test below: the same error, with the hint of a
    developer's machine and of a container."""
    assert HEAD == (LAST_GOOD,)
    migrations = tmp_path / "migrations"
    shutil.copytree(PACKAGED_MIGRATIONS, migrations, ignore=shutil.ignore_patterns("__pycache__"))
    (migrations / SERVICE / "versions" / "0011_broken.py").write_text(BROKEN)
    config = config_for(empty_database, migrations_dir=migrations)
    with pytest.raises(MigrationError) as error:
        runner.migrate_to_head(config, SERVICE)
    failure = error.value
    assert (failure.kind, failure.revision) == ("revision_failed", "0011")
    assert failure.cause and "no_such_table" in failure.cause
    fact = f"{SERVICE}: revision 0011 failed: {failure.cause}; the database stays at {LAST_GOOD}"
    assert str(failure) == fact
    assert one_line(failure, in_container=True) == f"{fact}; fix that revision and deploy again"
    assert one_line(failure, in_container=False) == (
        f"{fact}; fix that revision, then run: invoke migrate.upgrade --service {SERVICE}"
    )
    assert commands.current(config, SERVICE) == (LAST_GOOD,)
    assert "half_done" not in columns_of_scores(empty_database)


def test_eight_concurrent_startups_in_threads_migrate_exactly_once(empty_database: URL) -> None:
    """Eight startup runners at once (each its own connections). The same race between
    real processes: test_startup_imports.py starts three replicas on an empty database."""
    config = config_for(empty_database, caller="startup")
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: runner.migrate_to_head(config, SERVICE), range(8)))
    actions = sorted(result.action for result in results)
    assert actions.count("upgraded") == 1, actions
    assert set(actions) <= {"upgraded", "migrated elsewhere", "none"}
    [winner] = [result for result in results if result.action == "upgraded"]
    assert len(winner.steps) == REVISIONS
    assert all(result.after == HEAD for result in results)


# -- real processes ---------------------------------------------------------------


def _environment(database: URL, **extra: str) -> dict[str, str]:
    """This process's environment and ``extra``, with ``database`` as the only URL."""
    unwanted = ("SKIP_MIGRATIONS", "SIGNALMARKET_CONTAINER")
    env = {
        k: v
        for k, v in {**os.environ, **extra}.items()
        if not k.endswith("DATABASE_URL") and k not in unwanted
    }
    return {**env, "DATABASE_URL": raw(database)}


def _start(port: int, env: dict[str, str], cwd: Path | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", SERVICE, "--port", str(port)],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_a_broken_migration_stops_the_service_at_the_last_good_revision(
    repo: Repo, empty_database: URL
) -> None:
    """A real process running the copy's code (its history has the broken revision):
    exit code 1, one log line saying what failed, where the database stays, what next."""
    assert HEAD == (LAST_GOOD,)
    (repo.versions / "0011_broken.py").write_text(BROKEN)
    process = _start(free_port(), _environment(empty_database, **repo.process_env), cwd=repo.path)
    try:
        output, _ = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 1, output
    assert "Traceback" not in output, output
    failure = [line for line in output.splitlines() if "startup failed" in line]
    assert len(failure) == 1, output
    assert re.search(
        rf"ERROR signalmarket\.startup: {SERVICE}: startup failed: revision 0011 failed: "
        rf"[^;]*no_such_table[^;]*; the database stays at {LAST_GOOD}; "
        rf"fix that revision, then run: invoke migrate\.upgrade --service {SERVICE}$",
        failure[0],
    ), failure[0]
    assert commands.current(config_for(empty_database), SERVICE) == (LAST_GOOD,)
    assert "half_done" not in columns_of_scores(empty_database), "the failing DDL was rolled back"
