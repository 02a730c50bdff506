"""Rolling deploys: old and new code on one schema (expand/contract), probes that never
hang, progress and timing, a migrate-only mode, and a plan before migrating.

"Old code" is the installed scoring_engine (its history ends at HEAD); "newer code" is a
copy of the histories with revisions on top, applied by the runner as a newer
release's replica would.
"""

import logging
import os
import re
import runpy
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import pytest
from db_devtools.config import DevConfig
from db_devtools.provisioning.databases import ensure_database
from db_devtools.provisioning.ports import free_port
from db_devtools.provisioning.resolve import local_server
from dev_tasks.readiness import Target, wait_ready
from helpers import config_for, head, invoke, raw, service_client, sql
from scoring_engine.settings import ScoringEngineSettings
from shared_db import runner
from shared_db.config import PACKAGED_MIGRATIONS, DbConfig
from shared_db.errors import MigrationError
from shared_db.history import read_history
from shared_db.web.app import StartupFailed, start
from sqlalchemy.engine import URL

SERVICE = "scoring_engine"
HEAD = head(SERVICE)[0]
REVISIONS = len(read_history(DbConfig(), SERVICE).revisions)
NOTE, INDEX, DROP = (f"{int(HEAD) + n:04d}" for n in (1, 2, 3))

NEWER = {
    NOTE: ("expand", HEAD, 'op.add_column("scores", sa.Column("note", sa.Text(), nullable=True))'),
    INDEX: ("expand", NOTE, 'op.create_index("ix_scores_note", "scores", ["note"])'),
    DROP: ("contract", INDEX, 'op.drop_column("scores", "model_version")'),
}


def newer_history(tmp_path: Path, *revisions: str) -> Path:
    """A copy of the histories with ``revisions`` (of NEWER) on top of scoring_engine's."""
    migrations = tmp_path / "newer"
    shutil.copytree(PACKAGED_MIGRATIONS, migrations, ignore=shutil.ignore_patterns("__pycache__"))
    for rev in revisions:
        phase, down, body = NEWER[rev]
        (migrations / SERVICE / "versions" / f"{rev}_newer.py").write_text(
            f'"""Newer revision {rev}."""\n\nimport sqlalchemy as sa\nfrom alembic import op\n\n'
            f'revision = "{rev}"\ndown_revision = "{down}"\nbranch_labels = None\n'
            f'depends_on = None\nphase = "{phase}"\n\n\ndef upgrade() -> None:\n    {body}\n\n\n'
            "def downgrade() -> None:\n    pass\n"
        )
    return migrations


def migrate_with_newer_code(url: URL, tmp_path: Path, *revisions: str) -> None:
    runner.upgrade(config_for(url, migrations_dir=newer_history(tmp_path, *revisions)), SERVICE)


# -- expand / contract ----------------------------------------------------------------


def test_old_code_serves_on_a_database_ahead_by_expand_revisions(
    migrated_database: Callable[[str], URL], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    database = migrated_database(SERVICE)
    migrate_with_newer_code(database, tmp_path, NOTE, INDEX)
    caplog.set_level("INFO", "signalmarket")
    with service_client(SERVICE, database) as client:
        ready = client.get("/ready")
        assert ready.status_code == 200, ready.text
        body = ready.json()
        assert body["status"] == "ready" and body["compatible"] is True
        assert body["ahead"] == [NOTE, INDEX]
        assert body["state"] == f"database ahead, compatible ({NOTE}, {INDEX}: expand)"
        assert body["database_revision"] == [INDEX] and body["head"] == [HEAD]
        assert body["modified_since_applied"] == [], "newer revisions are not 'gone'"
        created = client.post(
            "/scores",
            json={"signal_id": "6f1c0b5e-8a51-4d0c-9a7e-2f4d7d1f9a11", "value": "0.5"},
        )
        assert created.status_code == 201, created.text
    assert any(
        f"the database is ahead of this code, compatible ({NOTE}, {INDEX}: expand)" in m
        for m in caplog.messages
    )
    # The CLI of the old code does not touch it either, and says why.
    env = {"DATABASE_URL": raw(database)}
    upgraded = invoke("migrate.upgrade", "--service", SERVICE, env=env, clean=True)
    assert upgraded.code == 0, upgraded.output
    assert upgraded.out.strip() == (
        f"{SERVICE}: at {INDEX}: the database is ahead of this code (compatible)"
    )


def test_old_code_refuses_a_database_ahead_by_a_contract_revision(
    migrated_database: Callable[[str], URL], tmp_path: Path
) -> None:
    database = migrated_database(SERVICE)
    migrate_with_newer_code(database, tmp_path, NOTE, INDEX, DROP)
    with pytest.raises(StartupFailed) as refused:
        start_on(database)
    assert str(refused.value) == (
        f"{SERVICE}: the database is ahead of this code ({NOTE}, {INDEX}, {DROP}): {DROP} is a "
        "contract revision: this code cannot run on that schema; deploy the newer version, "
        "or downgrade with the code that wrote it"
    )
    with pytest.raises(MigrationError) as cli:
        runner.upgrade(config_for(database), SERVICE)
    assert cli.value.kind == "incompatible_database" and cli.value.revision == DROP


def start_on(database: URL, **env: str) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.endswith("DATABASE_URL")}
    with mock.patch.dict(os.environ, {**environ, "DATABASE_URL": raw(database), **env}, clear=True):
        start(ScoringEngineSettings)


def test_a_running_old_replica_turns_not_ready_at_the_first_contract_revision(
    migrated_database: Callable[[str], URL], tmp_path: Path
) -> None:
    database = migrated_database(SERVICE)
    with service_client(SERVICE, database) as old:
        assert old.get("/ready").status_code == 200
        migrate_with_newer_code(database, tmp_path / "a", NOTE)
        assert old.get("/ready").status_code == 200, "expand: the old fleet stays in rotation"
        migrate_with_newer_code(database, tmp_path / "b", NOTE, INDEX, DROP)
        ready = old.get("/ready")
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "not ready" and body["compatible"] is False
    assert body["state"] == f"database ahead: {DROP} is a contract revision (incompatible)"


def test_the_runner_records_phase_and_duration_for_older_code_to_read(
    empty_database: URL, tmp_path: Path
) -> None:
    migrate_with_newer_code(empty_database, tmp_path, NOTE, INDEX, DROP)
    rows = sql(
        empty_database,
        "SELECT revision, phase, duration_ms IS NOT NULL FROM alembic_revisions_scoring_engine "
        "WHERE revision IN (:a, :b, :c) ORDER BY revision",
        a=NOTE,
        b=INDEX,
        c=DROP,
    )
    assert rows == [(NOTE, "expand", True), (INDEX, "expand", True), (DROP, "contract", True)]


# -- probes ----------------------------------------------------------------------------


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[URL]:
    """A Postgres of this test's own (it gets SIGSTOPped), from the project's template."""
    server = local_server(DevConfig.from_environ(os.environ)).throwaway()
    try:
        yield server.url()
    finally:
        os.kill(server.info.pid, signal.SIGCONT)  # whatever happened
        server.stop()


def _serve(url: URL, *extra: str, env: dict[str, str] | None = None) -> tuple[Any, int]:
    """``python -m scoring_engine`` on ``url``; its output goes to a file (a pipe nobody
    reads while it runs would fill up and block the service)."""
    port = free_port()
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"serve-{port}.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", SERVICE, "--port", str(port), *extra],
            env={**os.environ, "DATABASE_URL": raw(url), **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    process.log = log  # type: ignore[attr-defined]
    return process, port


def _output(process: Any, timeout: float = 60) -> str:
    process.wait(timeout=timeout)
    text: str = process.log.read_text()
    process.log.unlink(missing_ok=True)
    return text


def test_probes_never_hang_on_a_stalled_database_and_log_nothing(own_server: URL) -> None:
    database = own_server.set(database="probes")
    ensure_database(database)
    process, port = _serve(database)
    base = f"http://127.0.0.1:{port}"
    pid = _postmaster_pid(own_server)
    # One client for every request, shared by the probing threads (httpx allows that):
    # a client per probe cost ~50 ms of CPU each, most of this test's own CPU.
    http = httpx.Client(timeout=20)
    try:
        wait_ready([Target(SERVICE, f"{base}/ready", lambda: None)], 60)
        for _ in range(10):
            assert http.get(f"{base}/ready").status_code == 200
        os.kill(pid, signal.SIGSTOP)  # the postmaster stops answering new connections

        def probe(path: str) -> tuple[str, int, float]:
            started = time.monotonic()
            status = http.get(f"{base}{path}").status_code
            return path, status, time.monotonic() - started

        try:
            with ThreadPoolExecutor(max_workers=30) as pool:
                answers = list(pool.map(probe, ["/ready", "/health", "/scores"] * 20))
        finally:
            os.kill(pid, signal.SIGCONT)
        health = [a for a in answers if a[0] == "/health"]
        ready = [a for a in answers if a[0] == "/ready"]
        # Every probe was answered while the postmaster was stopped (SIGCONT comes after
        # the pool is done): one that waited on the database would have hung there until
        # the client's 20 s timeout. The bounds below are that, with room for a busy
        # machine, not speed goals.
        assert all(status == 200 for _, status, _ in health)
        assert max(took for _, _, took in health) < 10, "liveness never waits on the database"
        assert all(status in (200, 503) for _, status, _ in ready)
        assert max(took for _, _, took in ready) < 12, "readiness answers within its timeout"
        scores = [a for a in answers if a[0] == "/scores"]
        assert max(took for _, _, took in scores) < 15, "a request gives up within its timeout"
        assert {status for _, status, _ in scores} <= {200, 503}, "a stalled database is a 503"
        wait_ready([Target(SERVICE, f"{base}/ready", lambda: None)], 30)
        assert http.get(f"{base}/health").status_code == 200
    finally:
        http.close()
        process.terminate()
        output = _output(process, 30)
    probe_lines = [line for line in output.splitlines() if "/ready" in line or "/health" in line]
    assert probe_lines == [], "probes log nothing at INFO"
    assert "Traceback" not in output, "a stalled database logs one line per request, no traceback"


def _postmaster_pid(server: URL) -> int:
    [(data_dir,)] = sql(server, "SELECT current_setting('data_directory')")
    return int(Path(str(data_dir), "postmaster.pid").read_text().split()[0])


# -- migrate-only mode -----------------------------------------------------------------


def _migrate_in_process(database: URL | str, **env: str) -> int:
    """``python -m scoring_engine migrate`` in this process: its ``__main__`` module run
    with that command line and ``database`` as the only URL; the code it exits with."""
    environ = {k: v for k, v in os.environ.items() if not k.endswith("DATABASE_URL")}
    url = database if isinstance(database, str) else raw(database)
    alembic = logging.getLogger("alembic")
    level = alembic.level
    try:
        with (
            mock.patch.dict(os.environ, {**environ, "DATABASE_URL": url, **env}, clear=True),
            mock.patch.object(sys, "argv", [SERVICE, "migrate"]),
            pytest.raises(SystemExit) as exited,
        ):
            runpy.run_module(SERVICE, run_name="__main__")
    finally:
        alembic.setLevel(level)  # the entry point quiets Alembic for its process
    code = exited.value.code
    assert isinstance(code, int), code
    return code


def test_migrate_only_mode_migrates_and_exits(
    empty_database: URL, caplog: pytest.LogCaptureFixture
) -> None:
    """A real process migrates and exits 0; run again (in this process, as a second
    process would), the database is at head: nothing to do, exit 0 again."""
    process, _port = _serve(empty_database, "migrate")
    output = _output(process, 120)
    assert process.returncode == 0, output
    assert f"{SERVICE}: migrated base -> {HEAD}" in output
    assert len(re.findall(rf"\({REVISIONS}/{REVISIONS}\) \d+\.\d\d s", output)) == 1
    assert "Uvicorn running" not in output, "it does not serve"
    caplog.set_level(logging.INFO, "signalmarket")
    assert _migrate_in_process(empty_database) == 0, caplog.text
    assert f"{SERVICE}: database at head {HEAD}, no migration needed" in caplog.messages
    assert sql(empty_database, "SELECT version_num FROM alembic_version_scoring_engine") == [
        (HEAD,)
    ]


def test_migrate_only_mode_exit_code_says_what_went_wrong(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The entry point run in this process (test_migrate_only_mode_migrates_and_exits
    runs it as a real process): the code it exits with, and its one ERROR line."""
    url = URL.create("postgresql", "app", "pw", "127.0.0.1", 1, "app")
    code = _migrate_in_process(url, DATABASE_WAIT_TIMEOUT="0.2")
    assert code == 4, caplog.text  # the database could not be reached
    [line] = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert f"{SERVICE}: migration failed: gave up after 0.2 s: cannot use the database" in line


# -- progress, timing and the plan -------------------------------------------------------


def test_history_shows_when_and_how_long(empty_database: URL) -> None:
    env = {"DATABASE_URL": raw(empty_database)}
    assert invoke("migrate.upgrade", "--service", SERVICE, "--target", "0002", env=env).code == 0
    shown = invoke("migrate.history", "--service", SERVICE, "--applied", env=env, clean=True)
    assert shown.code == 0, shown.output
    lines = {
        line.split(" -> ")[1].split()[0].rstrip(","): line for line in shown.out.splitlines()[1:]
    }
    assert re.search(r"\(applied \d{4}-\d\d-\d\d \d\d:\d\d:\d\d, \d+\.\d\d s\)$", lines["0002"])
    assert lines["0001"].endswith(" s)") and "[expand]" in lines["0001"]
    assert lines[HEAD].endswith("(not applied)")


def test_plan_lists_revisions_phases_statements_locks_and_earlier_timings(
    migrated_database: Callable[[str], URL], pg_server: URL, tmp_path: Path
) -> None:
    migrations = newer_history(tmp_path, NOTE, INDEX, DROP)
    target = migrated_database(SERVICE)  # at HEAD: the three newer revisions are pending
    staging = migrated_database(SERVICE)
    runner.upgrade(config_for(staging, migrations_dir=migrations), SERVICE)  # ran them before
    env = {"DATABASE_URL": raw(target), "SIGNALMARKET_MIGRATIONS_DIR": str(migrations)}
    text = invoke("migrate.plan", "--service", SERVICE, "--timings-from", raw(staging), env=env,
                  clean=True)  # fmt: skip
    assert text.code == 0, text.output
    lines = text.out.splitlines()
    assert lines[0] == (
        f"{SERVICE} ({target.host}:{target.port}/{target.database}): at {HEAD}, head {DROP}"
    )
    assert re.fullmatch(r"  3 revision\(s\), expected \d+\.\d\d s", lines[1])
    assert re.fullmatch(
        rf"  {NOTE} Newer revision {NOTE}\. \[expand\] \(earlier: \d+\.\d\d s\)", lines[2]
    )
    assert lines[3] == "      ALTER TABLE scores ADD COLUMN note TEXT"
    assert lines[4] == "        lock: ACCESS EXCLUSIVE (blocks reads and writes)"
    assert "      CREATE INDEX ix_scores_note ON scores (note)" in lines
    assert "        lock: SHARE (blocks writes)" in lines
    assert any(f"{DROP} Newer revision {DROP}. [contract]" in line for line in lines)
    markdown = invoke("migrate.plan", "--service", SERVICE, "--markdown", env=env, clean=True)
    assert markdown.code == 0, markdown.output
    assert markdown.out.startswith("## Migration plan\n\n### scoring_engine\n")
    assert "| revision | phase | statement | lock | earlier run |" in markdown.out
    assert (
        f"| {DROP} Newer revision {DROP}. | contract | `ALTER TABLE scores DROP COLUMN "
        "model_version` | ACCESS EXCLUSIVE (blocks reads and writes) | unknown |"
    ) in markdown.out
    nothing = invoke("migrate.plan", "--service", SERVICE, env={"DATABASE_URL": raw(target)},
                     clean=True)  # fmt: skip
    assert nothing.out.splitlines()[1] == "  nothing to plan: at head"


# -- the compatibility rules, on records alone -------------------------------------------


def _records(*rows: tuple[str, str, str | None]) -> dict[str, Any]:
    from datetime import UTC, datetime

    from shared_db.records import Applied

    return {
        rev: Applied(rev, (down,), "0" * 64, phase, "", datetime.now(UTC), 0.01)
        for rev, down, phase in rows
    }


def test_compatibility_is_read_from_the_records_of_newer_revisions() -> None:
    from shared_db.status import status_of

    history = read_history(DbConfig(), SERVICE)
    known = _records(*((rev, "", "expand") for rev in history.revisions))
    expand = status_of(SERVICE, history, (INDEX,), {**known, **_records(
        (NOTE, HEAD, "expand"), (INDEX, NOTE, "expand"))})  # fmt: skip
    assert (expand.ahead, expand.blocking, expand.compatible) == ((NOTE, INDEX), None, True)
    contract = status_of(SERVICE, history, (DROP,), {**known, **_records(
        (NOTE, HEAD, "expand"), (INDEX, NOTE, None), (DROP, INDEX, "contract"))})  # fmt: skip
    assert contract.blocking == INDEX, "a revision without a phase counts as contract"
    assert not contract.compatible
    # A revision this code does not know, with no record saying it descends from its
    # head, is not "newer": it is unknown (another history, or records lost).
    stray = status_of(SERVICE, history, ("9999",), known)
    assert stray.unknown == ("9999",) and not stray.compatible
    assert stray.state == "unknown revision 9999 (migrated by newer code?)"


def test_a_checksum_ignores_the_phase_line(tmp_path: Path) -> None:
    from shared_db.records import file_checksum

    body = 'revision = "0001"\ndown_revision = None\n\n\ndef upgrade() -> None:\n    pass\n'
    plain, phased = tmp_path / "a.py", tmp_path / "b.py"
    plain.write_text(body)
    phased.write_text(body.replace("None\n", 'None\nphase: str = "expand"\n', 1))
    assert file_checksum(plain) == file_checksum(phased)
    phased.write_text(phased.read_text().replace("pass", "op.drop_table('t')"))
    assert file_checksum(plain) != file_checksum(phased)


def test_startup_in_the_expand_phase_leaves_contract_revisions_to_the_migrate_step(
    migrated_database: Callable[[str], URL], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """MIGRATION_PHASES=expand: the new release's replicas apply its expand revisions and
    serve; the contract revision waits for the migrate step after the rollout, so the old
    replicas stay ready meanwhile."""
    caplog.set_level("INFO", "signalmarket")
    database = migrated_database(SERVICE)
    config = config_for(database, migrations_dir=newer_history(tmp_path, NOTE, INDEX, DROP))
    result = runner.migrate_to_head(config, SERVICE, phases="expand")
    assert (result.action, result.steps) == ("upgraded", (NOTE, INDEX))
    assert any(f"1 contract revision(s) from {DROP} left for the migrate step" in m
               for m in caplog.messages)  # fmt: skip
    from shared_db.status import status

    state = status(config, SERVICE)
    assert state.pending == 1 and state.only_contract_pending
    assert state.serves("expand") and not state.serves("all")
    assert runner.wait_until_compatible(config, SERVICE, 0.1, "expand") == state
    assert runner.migrate_to_head(config, SERVICE, phases="expand").action == "none"
    with service_client(SERVICE, database) as old:  # the previous release: ahead, compatible
        assert old.get("/ready").status_code == 200
    assert runner.upgrade(config, SERVICE).steps == (DROP,)  # the migrate step, after rollout
