"""The migration runner's guarantees, each tried on a real Postgres: two paths at once,
lock contention, a killed migrator, a killed index build, a history Alembic rejects,
SIGTERM. (Startup itself: test_startup.py.)

The history used here is a copy of the real one with three revisions more on top of
scoring_engine's head: one that needs an ACCESS EXCLUSIVE lock on ``scores``, one that
sleeps while a ``probe_sleep`` table says so (a long statement to kill), and one that
builds an index in an autocommit block (``CREATE INDEX CONCURRENTLY``).
"""

import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from db_devtools.provisioning.databases import scratch_database
from db_devtools.provisioning.ports import free_port
from helpers import MIGRATIONS, Repo, config_for, execute, head, invoke, raw, sql
from shared_db import connections, runner
from shared_db.config import PACKAGED_MIGRATIONS, DbConfig
from shared_db.errors import MigrationError
from shared_db.exit_codes import exit_code
from shared_db.history import read_history
from shared_db.locking import lock_key
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError

SERVICE = "scoring_engine"
BASE_HEAD = head(SERVICE)[0]
REVISIONS = len(read_history(DbConfig(), SERVICE).revisions)
ALTER, SLEEP, INDEX = (f"{int(BASE_HEAD) + n:04d}" for n in (1, 2, 3))
INDEX_NAME = "ix_scores_probe_model_version"

HEADER = '''"""{message}"""

import sqlalchemy as sa
from alembic import op

revision = "{rev}"
down_revision = "{down}"
branch_labels = None
depends_on = None
'''
PROBES = {
    ALTER: HEADER.format(message="Needs an ACCESS EXCLUSIVE lock on scores.", rev=ALTER,
                         down=BASE_HEAD) + '''

def upgrade() -> None:
    op.add_column("scores", sa.Column("reviewer", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("scores", "reviewer")
''',
    SLEEP: HEADER.format(message="Sleeps while probe_sleep says so.", rev=SLEEP, down=ALTER) + '''

def upgrade() -> None:
    op.execute(
        "DO $$ BEGIN IF to_regclass('probe_sleep') IS NOT NULL THEN "
        "PERFORM pg_sleep((SELECT seconds FROM probe_sleep LIMIT 1)); END IF; END $$"
    )


def downgrade() -> None:
    pass
''',
    INDEX: HEADER.format(message="Builds an index concurrently.", rev=INDEX, down=SLEEP) + f'''

def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute("CREATE INDEX CONCURRENTLY {INDEX_NAME} ON scores (model_version)")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS {INDEX_NAME}")
''',
}  # fmt: skip


def write_probes(migrations: Path) -> None:
    for rev, source in PROBES.items():
        (migrations / SERVICE / "versions" / f"{rev}_probe.py").write_text(source)


@pytest.fixture
def probe_history(tmp_path: Path) -> Path:
    migrations = tmp_path / "migrations"
    shutil.copytree(PACKAGED_MIGRATIONS, migrations, ignore=shutil.ignore_patterns("__pycache__"))
    write_probes(migrations)
    return migrations


def probe_config(url: URL, migrations: Path, **changes: Any) -> DbConfig:
    return config_for(url, migrations_dir=migrations, **changes)


@contextmanager
def session(url: URL, name: str) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    """Another client of the database, named ``name`` (a report job, a migrator...)."""
    with psycopg.connect(raw(url.set(drivername="postgresql")), application_name=name) as conn:
        yield conn


def wait_until(check: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def backends(url: URL, pattern: str) -> list[tuple[int, str, str, str]]:
    """(pid, application_name, state, query) of the sessions whose name matches."""
    rows = sql(
        url,
        "SELECT pid, application_name, coalesce(state, ''), coalesce(query, '') "
        "FROM pg_stat_activity WHERE application_name LIKE :p AND pid <> pg_backend_pid()",
        p=pattern,
    )
    return [(int(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows]


# -- two paths at once ---------------------------------------------------------------


def test_a_cli_upgrade_and_a_replica_started_together_never_interleave(pg_server: URL) -> None:
    """Ten times: `migrate.upgrade` and a replica's startup on one empty database (the
    gateway's short history: the race is in the lock, not in the revisions)."""
    service = "api_gateway"
    revisions = sorted(read_history(DbConfig(), service).revisions)
    for _ in range(10):
        with scratch_database(pg_server, "race") as url:
            cli = config_for(url, caller="cli")
            startup = config_for(url, caller="startup")
            with ThreadPoolExecutor(max_workers=2) as pool:
                runs = [
                    pool.submit(runner.upgrade, cli, service),
                    pool.submit(runner.migrate_to_head, startup, service),
                ]
                results = [run.result() for run in runs]  # neither raised
            applied = [rev for result in results for rev in result.steps]
            assert sorted(applied) == revisions, "each revision was applied exactly once"
            assert all(result.after == head(service) for result in results)


def test_a_front_ends_failing_report_is_its_own_error_not_the_next_revisions(
    empty_database: URL,
) -> None:
    """The report runs between two revisions (the first one committed): its error comes
    out as it is, and the database stays at the revision it was reporting."""

    def report(progress: runner.Progress) -> None:
        raise RuntimeError(f"the terminal went away after {progress.revision}")

    with pytest.raises(RuntimeError, match="the terminal went away after 0001"):
        runner.upgrade(config_for(empty_database), SERVICE, report=report)
    assert runner_heads(empty_database) == ("0001",)


def test_every_migration_connection_names_service_path_host_and_pid(
    empty_database: URL, probe_history: Path
) -> None:
    config = probe_config(empty_database, probe_history, caller="cli")
    runner.upgrade(config, SERVICE, BASE_HEAD)
    execute(
        empty_database,
        "CREATE TABLE probe_sleep (seconds float); INSERT INTO probe_sleep VALUES (0.5)",
    )
    with ThreadPoolExecutor(max_workers=1) as pool:
        run = pool.submit(runner.upgrade, config, SERVICE, SLEEP)
        wait_until(
            lambda: any("pg_sleep" in b[3] for b in backends(empty_database, "migrate:%")),
            what="the sleeping revision",
        )
        names = {b[1] for b in backends(empty_database, "migrate%")}
        run.result()
    where = f"{socket.gethostname()}:{os.getpid()}"
    assert names == {f"migrate:{SERVICE}:cli@{where}", f"migrate-lock:{SERVICE}:cli@{where}"}


# -- the lock-wait guard ---------------------------------------------------------------


def test_a_long_reader_makes_the_revision_retry_without_stalling_other_queries(
    empty_database: URL, probe_history: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A report holds ACCESS SHARE on scores for 1.5 s. The ALTER needs ACCESS EXCLUSIVE:
    while it waits, every new query on scores queues behind it, so it may wait 0.3 s at
    most, then rolls back, pauses, and tries again, until the report is done."""
    caplog.set_level(logging.WARNING, "signalmarket.migrate")
    timeout = 0.3
    config = probe_config(empty_database, probe_history, table_lock_timeout_s=timeout)
    runner.upgrade(config, SERVICE, BASE_HEAD)
    held = 1.5
    reader_in = threading.Event()
    stop_probes = threading.Event()
    waits: list[float] = []

    def report() -> None:
        with session(empty_database, "report-job") as conn:
            conn.execute("SELECT count(*) FROM scores")  # ACCESS SHARE until commit
            reader_in.set()
            time.sleep(held)

    def probe() -> None:  # the service's own reads of scores, meanwhile
        with session(empty_database, "service-traffic") as conn:
            conn.autocommit = True
            while not stop_probes.is_set():
                started = time.monotonic()
                conn.execute("SELECT count(*) FROM scores")
                waits.append(time.monotonic() - started)
                time.sleep(0.02)

    with ThreadPoolExecutor(max_workers=2) as pool:
        reading = pool.submit(report)
        reader_in.wait(10)
        probing = pool.submit(probe)
        started = time.monotonic()
        result = runner.upgrade(config, SERVICE, ALTER)
        took = time.monotonic() - started
        stop_probes.set()
        reading.result(), probing.result()
    assert result.steps == (ALTER,)
    assert took >= held - 0.5, "the revision waited for the report to finish"
    retries = [m for m in caplog.messages if f"applying {ALTER}: no table lock within" in m]
    assert len(retries) >= 2, caplog.messages
    assert "report-job" in retries[0], "the blocking session is named"
    # No query on scores waited much longer than one lock_timeout.
    assert waits and max(waits) < timeout + 1.0, sorted(waits)[-5:]


def test_a_holder_that_never_lets_go_is_named_and_the_exit_code_says_contention(
    empty_database: URL, probe_history: Path
) -> None:
    config = probe_config(
        empty_database, probe_history, table_lock_timeout_s=0.2, lock_retries=2, retry_budget_s=10
    )
    runner.upgrade(config, SERVICE, BASE_HEAD)
    with session(empty_database, "report-job") as holder:
        holder.execute("SELECT * FROM scores")
        holder_pid = holder.info.backend_pid
        with pytest.raises(MigrationError) as failure:
            runner.upgrade(config, SERVICE, ALTER)
    error = failure.value
    assert error.kind == "lock_contention" and exit_code(error) == 3
    assert error.revision == ALTER
    message = str(error)
    assert f"revision {ALTER} was not granted a table lock within 200ms in 2 attempt(s)" in message
    assert f"pid {holder_pid} (report-job, idle in transaction for" in message
    assert "SELECT * FROM scores" in message
    assert "the revision itself is not at fault" in message
    assert f"the database stays at {BASE_HEAD}" in message
    assert runner_heads(empty_database) == (BASE_HEAD,)


def runner_heads(url: URL) -> tuple[str, ...]:
    return tuple(r[0] for r in sql(url, "SELECT version_num FROM alembic_version_scoring_engine"))


def test_contention_through_the_cli_is_one_line_and_exit_code_3(
    empty_database: URL, probe_history: Path
) -> None:
    runner.upgrade(probe_config(empty_database, probe_history), SERVICE, BASE_HEAD)
    env = {
        "DATABASE_URL": raw(empty_database),
        "SIGNALMARKET_MIGRATIONS_DIR": str(probe_history),
        "MIGRATION_TABLE_LOCK_TIMEOUT": "0.2",
        "MIGRATION_LOCK_RETRIES": "2",
    }
    with session(empty_database, "report-job") as holder:
        holder.execute("SELECT * FROM scores")
        result = invoke("migrate.upgrade", "--service", SERVICE, env=env, clean=True)
    line = result.one_line_error()
    assert result.code == 3
    assert line.startswith(f"error: {SERVICE}: lock contention: revision {ALTER} ")
    assert line.endswith("retry when those sessions are done, or end them (pg_terminate_backend)")


def test_waiting_for_the_migration_lock_names_its_holder(
    empty_database: URL, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "signalmarket.migrate")
    with session(empty_database, "another-migrator") as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (lock_key(SERVICE),))
        with pytest.raises(MigrationError) as failure:
            runner.upgrade(config_for(empty_database, lock_wait_s=1.2), SERVICE)
    assert failure.value.kind == "lock_timeout" and exit_code(failure.value) == 3
    assert "waited 1.2 s for the migration lock, held by pid" in str(failure.value)
    assert "(another-migrator, " in str(failure.value)
    waiting = [m for m in caplog.messages if "waiting 1 s for the migration lock, held by" in m]
    assert waiting and "another-migrator" in waiting[0]


def test_a_waiter_waits_on_the_server_and_migrates_once_the_holder_lets_go(
    empty_database: URL,
) -> None:
    """No polling: the waiting migrator sits in a lock wait on the server, so the lock
    passes to it the moment the holder lets go."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        with session(empty_database, "another-migrator") as holder:
            holder.execute("SELECT pg_advisory_lock(%s)", (lock_key(SERVICE),))
            holder.commit()
            config = config_for(empty_database, caller="cli")
            upgrading = pool.submit(runner.upgrade, config, SERVICE)
            wait_until(
                lambda: bool(
                    sql(
                        empty_database,
                        "SELECT 1 FROM pg_stat_activity WHERE application_name LIKE "
                        "'migrate-lock:%' AND wait_event_type = 'Lock' "
                        "AND wait_event = 'advisory'",
                    )
                ),
                what="the migrator waiting on the server for the advisory lock",
            )
            assert not upgrading.done()
        result = upgrading.result(timeout=60)  # the holder's session ended: lock released
    assert result.action == "upgraded" and result.after == (BASE_HEAD,)


# -- no orphaned work ------------------------------------------------------------------

CHILD = """
import sys
from pathlib import Path
from shared_db import runner
from shared_db.config import DbConfig
config = DbConfig(database_url=sys.argv[1], migrations_dir=Path(sys.argv[2]), caller="cli")
runner.upgrade(config, "scoring_engine", sys.argv[3])
"""


def test_a_killed_migrator_leaves_no_backend_behind_and_the_next_run_completes(
    empty_database: URL, probe_history: Path
) -> None:
    config = probe_config(empty_database, probe_history)
    runner.upgrade(config, SERVICE, ALTER)
    execute(
        empty_database,
        "CREATE TABLE probe_sleep (seconds float); INSERT INTO probe_sleep VALUES (60)",
    )
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, raw(empty_database), str(probe_history), SLEEP],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        mine = f"migrate:{SERVICE}:cli@{socket.gethostname()}:{child.pid}"
        wait_until(
            lambda: any("pg_sleep" in b[3] for b in backends(empty_database, mine)),
            what="the child's sleeping revision",
        )
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        # client_connection_check_interval: the server itself cancels the orphan.
        wait_until(lambda: not backends(empty_database, mine), timeout=10, what="the orphan to go")
    finally:
        if child.poll() is None:
            child.kill()
    assert runner_heads(empty_database) == (ALTER,), "the killed revision was rolled back"
    execute(empty_database, "DROP TABLE probe_sleep")
    assert runner.upgrade(config, SERVICE, SLEEP).steps == (SLEEP,)


def test_a_busy_backend_of_a_dead_migrator_is_terminated_before_applying(
    empty_database: URL, probe_history: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A backend named as an earlier migrator's whose process is gone, still holding a
    lock on scores (as after a crash on a server that cannot check its clients)."""
    caplog.set_level(logging.WARNING, "signalmarket.migrate")
    config = probe_config(empty_database, probe_history, leftover_wait_s=0.5)
    runner.upgrade(config, SERVICE, BASE_HEAD)
    dead = f"migrate:{SERVICE}:cli@{socket.gethostname()}:{2**22 + 12345}"
    with session(empty_database, dead) as orphan:
        orphan.execute("LOCK TABLE scores IN ACCESS EXCLUSIVE MODE")
        pid = orphan.info.backend_pid
        result = runner.upgrade(config, SERVICE, ALTER)
        with pytest.raises(psycopg.OperationalError):
            orphan.execute("SELECT 1")
    assert result.steps == (ALTER,)
    assert any(
        "a backend left by an earlier migrator (whose process is gone) is still busy" in m
        for m in caplog.messages
    )
    assert f"terminated backend pid {pid} left by an earlier migrator" in caplog.text


@pytest.mark.parametrize("kind", ["migrate-read", "migrate"])
def test_a_live_migrators_read_before_the_lock_is_never_taken_for_a_leftover(
    empty_database: URL, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    """A replica reads the database's state before it takes the lock (and ``/ready`` and
    status commands read it any time). Such a read, slow on a busy machine and still in
    its transaction, once counted as a backend left by an earlier migrator: the holder
    waited ``leftover_wait_s`` for it, then terminated it, and the replica's startup
    failed. A read names itself ``migrate-read``; only ``migrate`` backends (the control)
    are cleared."""
    caplog.set_level(logging.WARNING, "signalmarket.migrate")
    config = config_for(empty_database, caller="startup")
    with connections.connect(config, SERVICE, kind=kind) as reading:
        reading.exec_driver_sql("SELECT 1")  # idle in transaction, as a slow check is
        name = reading.exec_driver_sql("SHOW application_name").scalar()
        assert name == config.application_name(SERVICE, kind)
        migrator = config_for(empty_database, caller="cli", leftover_wait_s=0.2)
        result = runner.upgrade(migrator, SERVICE)
        if kind == "migrate-read":
            assert reading.exec_driver_sql("SELECT 2").scalar() == 2, "not terminated"
        else:
            with pytest.raises(OperationalError):
                reading.exec_driver_sql("SELECT 2")
    assert result.after == head(SERVICE)
    cleared = "left by an earlier migrator" in caplog.text
    assert cleared == (kind == "migrate"), caplog.text


def test_an_invalid_index_left_by_a_killed_concurrent_build_is_dropped_and_rebuilt(
    empty_database: URL, probe_history: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "signalmarket.migrate")
    config = probe_config(empty_database, probe_history)
    runner.upgrade(config, SERVICE, SLEEP)
    # A concurrent build that fails halfway leaves an INVALID index under its name.
    execute(
        empty_database,
        "INSERT INTO scores (signal_id, value, model_version) VALUES "
        "(gen_random_uuid(), 0.1, 'v1'), (gen_random_uuid(), 0.2, 'v1')",
    )
    with session(empty_database, "a-killed-build") as conn:
        conn.autocommit = True
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(f"CREATE UNIQUE INDEX CONCURRENTLY {INDEX_NAME} ON scores (model_version)")
    valid = f"SELECT indisvalid FROM pg_index WHERE indexrelid = '{INDEX_NAME}'::regclass"
    assert sql(empty_database, valid) == [(False,)]
    assert runner.upgrade(config, SERVICE, INDEX).steps == (INDEX,)
    assert sql(empty_database, valid) == [(True,)]
    assert f"dropped the invalid index public.{INDEX_NAME} on scores" in caplog.text


def test_an_index_built_by_a_killed_run_but_not_recorded_is_refused_with_the_fix(
    empty_database: URL, probe_history: Path
) -> None:
    config = probe_config(empty_database, probe_history)
    runner.upgrade(config, SERVICE, SLEEP)
    execute(empty_database, f"CREATE INDEX {INDEX_NAME} ON scores (model_version)")
    with pytest.raises(MigrationError) as failure:
        runner.upgrade(config, SERVICE, INDEX)
    error = failure.value
    assert error.kind == "leftover_object" and error.revision == INDEX
    assert f"{INDEX_NAME} already exists although revision {INDEX} is not recorded" in str(error)
    assert f"stamp {INDEX}" in str(error) and f"DROP INDEX CONCURRENTLY {INDEX_NAME}" in str(error)
    assert runner_heads(empty_database) == (SLEEP,)


# -- a history Alembic rejects -----------------------------------------------------------

BROKEN_HISTORIES: dict[str, dict[str, str | None]] = {
    "duplicate-id": {f"{ALTER}_again.py": PROBES[ALTER].replace("Needs", "Also needs")},
    "cycle": {
        "0001_create_scores.py": None,  # replaced below: 0001 points at the head
    },
    "syntax-error-in-body": {
        f"{ALTER}_probe.py": PROBES[ALTER].replace(
            "def downgrade() -> None:", "def downgrade( -> None:"
        )
    },
}


def break_history(migrations: Path, kind: str) -> None:
    versions = migrations / SERVICE / "versions"
    for name, source in BROKEN_HISTORIES[kind].items():
        if source is None:  # the cycle: the base revision now comes after the head
            path = versions / name
            text = re.sub(
                r"down_revision(: [^=]+)? = None", f'down_revision = "{INDEX}"', path.read_text()
            )
            path.write_text(text)
        else:
            (versions / name).write_text(source)


@pytest.mark.parametrize("kind", list(BROKEN_HISTORIES))
def test_a_history_alembic_rejects_is_refused_at_startup_and_by_validate(
    pg_server: URL, tmp_path: Path, kind: str
) -> None:
    migrations = tmp_path / "migrations"
    shutil.copytree(PACKAGED_MIGRATIONS, migrations, ignore=shutil.ignore_patterns("__pycache__"))
    write_probes(migrations)
    with scratch_database(pg_server, "broken") as url:
        config = probe_config(url, migrations)
        runner.upgrade(config, SERVICE)  # at head of the sound history
        break_history(migrations, kind)
        with pytest.raises(MigrationError) as refused:
            runner.migrate_to_head(config, SERVICE)  # a replica starting: it is at head
        assert refused.value.kind == "unsound_history"
        assert str(refused.value).startswith(f"{SERVICE}: the history cannot be used: ")
    validated = invoke(
        "migrate.validate", "--offline", "--no-lint", "--service", SERVICE,
        env={"SIGNALMARKET_MIGRATIONS_DIR": str(migrations)},
    )  # fmt: skip
    assert validated.code == 1, validated.output
    expected = {
        "duplicate-id": f"revision ID {ALTER} is declared by 2 files",
        "cycle": "cannot be reached from the base",
        "syntax-error-in-body": f"{ALTER}_probe.py is not a valid revision file (syntax error",
    }[kind]
    assert expected in validated.out


# -- SIGTERM -----------------------------------------------------------------------------


def test_sigterm_during_a_migration_rolls_back_releases_the_lock_and_says_so(
    repo: Repo, empty_database: URL
) -> None:
    """``python -m scoring_engine`` (the copy's code and history) is stopped during the
    sleeping revision: exit code 143, one line, the lock released, the revision undone."""
    write_probes(repo.path / MIGRATIONS)
    runner.upgrade(probe_config(empty_database, repo.path / MIGRATIONS), SERVICE, ALTER)
    execute(
        empty_database,
        "CREATE TABLE probe_sleep (seconds float); INSERT INTO probe_sleep VALUES (60)",
    )
    env = {**os.environ, **repo.process_env, "DATABASE_URL": raw(empty_database)}
    process = subprocess.Popen(
        [sys.executable, "-m", SERVICE, "--port", str(free_port())],
        env=env,
        cwd=repo.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        mine = f"migrate:{SERVICE}:startup@{socket.gethostname()}:{process.pid}"
        wait_until(
            lambda: any("pg_sleep" in b[3] for b in backends(empty_database, mine)),
            timeout=60,
            what="the service's sleeping revision",
        )
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143, output
    errors = [line for line in output.splitlines() if " ERROR " in line]
    assert len(errors) == 1, output
    assert (
        f"{SERVICE}: startup failed: stopped by SIGTERM: the revision being applied was rolled "
        f"back; the database stays at {ALTER}"
    ) in errors[0]
    assert "Traceback" not in output
    assert runner_heads(empty_database) == (ALTER,)
    assert not backends(empty_database, f"migrate%:{process.pid}"), "no backend left"
    held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
    assert sql(empty_database, held) == [(0,)], "the migration lock was released"


def test_validate_reports_an_invalid_index_in_the_services_database(
    empty_database: URL, probe_history: Path
) -> None:
    from db_devtools.config import DevConfig
    from db_devtools.workflow.validate import leftover_problems
    from dev_tasks.hints import for_problem

    runner.upgrade(probe_config(empty_database, probe_history), SERVICE, SLEEP)
    assert leftover_problems(DevConfig(database_url=raw(empty_database)), SERVICE) == []
    execute(
        empty_database,
        "INSERT INTO scores (signal_id, value, model_version) VALUES "
        "(gen_random_uuid(), 0.1, 'v1'), (gen_random_uuid(), 0.2, 'v1')",
    )
    with session(empty_database, "a-failed-build") as conn:
        conn.autocommit = True
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(f"CREATE UNIQUE INDEX CONCURRENTLY {INDEX_NAME} ON scores (model_version)")
    [problem] = leftover_problems(DevConfig(database_url=raw(empty_database)), SERVICE)
    assert problem.kind == "invalid_index"
    assert for_problem(problem) == (
        f"{SERVICE}: the index public.{INDEX_NAME} on scores in {SERVICE}'s database is "
        "invalid (a CREATE INDEX CONCURRENTLY was killed or failed); the next upgrade drops "
        f"it (the runner does), or drop it now: DROP INDEX CONCURRENTLY public.{INDEX_NAME}"
    )


def test_where_the_fast_reader_cannot_tell_alembic_decides(
    empty_database: URL, probe_history: Path
) -> None:
    """A computed ``down_revision`` is no literal: the reader cannot read it, Alembic can."""
    probe = probe_history / SERVICE / "versions" / f"{ALTER}_probe.py"
    computed = f'down_revision = "{BASE_HEAD[:2]}" + "{BASE_HEAD[2:]}"'
    probe.write_text(probe.read_text().replace(f'down_revision = "{BASE_HEAD}"', computed))
    config = probe_config(empty_database, probe_history)
    assert runner.upgrade(config, SERVICE, ALTER).after == (ALTER,)
    # And where Alembic cannot load it either, nothing migrates.
    probe.write_text(probe.read_text().replace(computed, "down_revision = undefined_name"))
    with pytest.raises(MigrationError) as refused:
        runner.upgrade(config, SERVICE)
    assert refused.value.kind == "unsound_history"
    assert "Alembic cannot load it" in str(refused.value)


def test_alembics_own_command_line_takes_the_same_lock(empty_database: URL) -> None:
    """`alembic upgrade head` never interleaves with the runner either."""
    from helpers import ROOT

    ini = ROOT / "packages" / "shared_db" / f"alembic_{SERVICE}.ini"
    env = {**os.environ, "DATABASE_URL": raw(empty_database), "MIGRATION_LOCK_TIMEOUT": "0.5"}
    with session(empty_database, "another-migrator") as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (lock_key(SERVICE),))
        result = subprocess.run(
            [sys.executable, "-m", "alembic", "-c", str(ini), "upgrade", "head"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode != 0
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: {SERVICE}: waited 0.5 s for the migration lock, held by pid ")
    ), result.stderr
    assert "another-migrator" in result.stderr
    assert runner_heads_or_none(empty_database) == ()


def runner_heads_or_none(url: URL) -> tuple[str, ...]:
    exists = sql(url, "SELECT to_regclass('alembic_version_scoring_engine') IS NOT NULL")
    return runner_heads(url) if exists == [(True,)] else ()


def test_the_guard_is_configured_alike_for_services_and_the_cli() -> None:
    from unittest import mock

    from scoring_engine.settings import ScoringEngineSettings
    from shared_db.errors import ConfigurationError

    env = {
        "SCORING_ENGINE_DATABASE_URL": "postgresql://u:p@db.example:5432/scoring_engine",
        "MIGRATION_TABLE_LOCK_TIMEOUT": "0.5",
        "MIGRATION_LOCK_RETRIES": "4",
        "MIGRATION_RETRY_BUDGET": "9",
        "MIGRATION_LOCK_TIMEOUT": "7",
    }
    with mock.patch.dict(os.environ, env):
        service = ScoringEngineSettings.load().db_config()
    cli = DbConfig.from_environ(env)
    for config, caller in ((service, "startup"), (cli, "cli")):
        assert (config.table_lock_timeout_s, config.lock_retries, config.retry_budget_s) == (
            0.5,
            4,
            9.0,
        )
        assert (config.lock_wait_s, config.caller) == (7.0, caller)
    with pytest.raises(ConfigurationError, match="MIGRATION_LOCK_RETRIES='0' is not a positive"):
        DbConfig.from_environ({**env, "MIGRATION_LOCK_RETRIES": "0"})


@pytest.mark.parametrize(("setting", "refused"), [('"300ms"', False), ('"soon"', True)])
def test_a_revision_sets_its_own_lock_timeout(
    empty_database: URL, probe_history: Path, setting: str, refused: bool
) -> None:
    probe = probe_history / SERVICE / "versions" / f"{ALTER}_probe.py"
    probe.write_text(probe.read_text() + f"\nlock_timeout = {setting}\n")
    config = probe_config(
        empty_database, probe_history, table_lock_timeout_s=5, lock_retries=1, retry_budget_s=5
    )
    runner.upgrade(config, SERVICE, BASE_HEAD)
    with session(empty_database, "report-job") as holder:
        holder.execute("SELECT * FROM scores")
        with pytest.raises(MigrationError) as failure:
            runner.upgrade(config, SERVICE, ALTER)
    if refused:
        assert failure.value.kind == "bad_revision_setting"
        assert f"revision {ALTER} sets lock_timeout = 'soon'" in str(failure.value)
    else:
        assert failure.value.kind == "lock_contention"
        assert "a table lock within 300ms in 1 attempt(s)" in str(failure.value)
