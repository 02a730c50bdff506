"""Safety of the workflow: destructive changes, tamper check, atomicity, least privilege,
masked secrets. (Lint is in test_lint.py, bad input in test_bad_input.py.)"""

import secrets
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from conftest import MODELS, VERSIONS, Repo
from helpers import BROKEN_REVISION as BROKEN
from helpers import free_port, raw, sql
from shared_db import checksums, commands
from shared_db.authoring import _widens
from shared_db.commands import connect
from shared_db.databases import drop_database, ensure_service_database
from sqlalchemy import BigInteger, Integer, Numeric, SmallInteger, String, Text
from sqlalchemy.engine import URL

# -- destructive changes -------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "widens"),
    [
        (String(16), String(64), True),
        (String(64), String(16), False),
        (String(16), Text(), True),
        (Text(), String(16), False),
        (Integer(), BigInteger(), True),
        (BigInteger(), Integer(), False),
        (SmallInteger(), Integer(), True),
        (Numeric(6, 5), Numeric(8, 5), True),
        (Numeric(6, 5), Numeric(6, 2), False),
        (Integer(), String(10), False),
    ],
)
def test_type_changes_that_lose_data_are_narrowing(old: object, new: object, widens: bool) -> None:
    assert _widens(old, new) is widens


def test_dropping_a_column_needs_allow_destructive(repo: Repo) -> None:
    models = repo.path / MODELS
    source = models.read_text()
    comment = "    comment: Mapped[str | None] = mapped_column(Text)\n"
    assert comment in source
    models.write_text(source.replace(comment, ""))
    before = repo.revisions()
    refused = repo.invoke("migrate.revision", "--service", "scoring_engine", "-m", "drop comment")
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        "error: autogenerate proposes changes that lose data in scoring_engine: "
        "remove column score_feedback.comment; nothing written; if intended, run again "
        "with --allow-destructive"
    )
    assert repo.revisions() == before
    allowed = repo.invoke(
        "migrate.revision", "--service", "scoring_engine", "-m", "drop comment",
        "--allow-destructive",
    )  # fmt: skip
    assert allowed.returncode == 0, allowed.stderr
    written = repo.path / VERSIONS / "0011_drop_comment.py"
    assert 'op.drop_column("score_feedback", "comment")' in written.read_text()


# -- tamper check ----------------------------------------------------------------------


def test_each_applied_revision_records_its_checksum(empty_database: URL) -> None:
    commands.upgrade("scoring_engine", "0002", url=empty_database)
    rows = dict(
        sql(empty_database, "SELECT revision, checksum FROM alembic_checksums_scoring_engine")
    )
    assert set(rows) == {"0001", "0002"}
    from shared_db.history import read_history

    history = read_history("scoring_engine")
    assert rows["0002"] == checksums.file_checksum(history.revisions["0002"].path)
    commands.downgrade("scoring_engine", "0001", url=empty_database)
    assert [
        r[0] for r in sql(empty_database, "SELECT revision FROM alembic_checksums_scoring_engine")
    ] == ["0001"]


def test_a_changed_file_is_reported_by_validate_and_ready(
    repo: Repo, empty_database: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = {"DATABASE_URL": raw(empty_database)}
    assert (
        repo.invoke("migrate.upgrade", "--service", "scoring_engine", env=database).returncode == 0
    )
    edited = repo.path / VERSIONS / "0002_add_status_column.py"
    edited.write_text(edited.read_text().replace("'pending'", "'queued'"))
    result = repo.invoke(
        "migrate.validate", "--service", "scoring_engine", "--no-lint", env=database
    )
    assert result.returncode == 1
    assert (
        "scoring_engine: revision 0002 was applied to scoring_engine's database and its file "
        "0002_add_status_column.py has changed since" in result.stdout
    )
    # The installed code sees the same database as tampered once its checksum differs.
    with connect("scoring_engine", empty_database) as conn:
        assert checksums.modified_revisions("scoring_engine", conn) == []
    sql_update = (
        "UPDATE alembic_checksums_scoring_engine SET checksum = repeat('0', 64) "
        "WHERE revision = '0004'"
    )
    target = raw(empty_database.set(drivername="postgresql"))
    with psycopg.connect(target, autocommit=True) as conn:
        conn.execute(sql_update)
    monkeypatch.setenv("DATABASE_URL", raw(empty_database))
    from helpers import service_client

    with service_client("scoring_engine", empty_database, monkeypatch) as client:
        ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["modified_since_applied"] == ["0004"]


# -- atomicity (the CLI path; the startup path is in test_startup.py) --------------------


def test_a_failing_revision_leaves_the_last_good_one(repo: Repo, empty_database: URL) -> None:
    (repo.path / VERSIONS / "0011_broken.py").write_text(BROKEN)
    database = {"DATABASE_URL": raw(empty_database)}
    result = repo.invoke("migrate.upgrade", "--service", "scoring_engine", env=database)
    assert result.returncode == 1
    line = result.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert "failed in revision 0011" in line and "the database stays at 0010" in line
    assert commands.current("scoring_engine", empty_database) == ("0010",)
    columns = sql(
        empty_database,
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'scores'",
    )
    assert ("half_done",) not in columns
    recorded = sql(
        empty_database,
        "SELECT revision FROM alembic_checksums_scoring_engine WHERE revision = '0011'",
    )
    assert recorded == []


# -- least privilege ---------------------------------------------------------------------


def test_each_service_role_owns_its_database_and_cannot_open_another(pg_server: URL) -> None:
    suffix = secrets.token_hex(3)
    names = (f"lp_scoring_{suffix}", f"lp_gateway_{suffix}")
    urls = {name: ensure_service_database(pg_server, name, f"pw-{name}") for name in names}
    try:
        scoring, gateway = urls[names[0]], urls[names[1]]
        # The scoring role runs its own migrations: it may create schemas and tables.
        assert commands.upgrade("scoring_engine", url=scoring) == ("0010",)
        owners = sql(
            scoring,
            "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname IN ('public', 'mockups')",
        )
        assert owners == [(names[0],)]
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            psycopg.connect(raw(gateway.set(database=names[0], drivername="postgresql")))
        # Running the same provisioning again changes nothing (idempotent).
        assert ensure_service_database(pg_server, names[0], f"pw-{names[0]}") == scoring
    finally:
        for name in names:
            drop_database(pg_server.set(database=name))
            with psycopg.connect(
                raw(pg_server.set(drivername="postgresql")), autocommit=True
            ) as conn:
                conn.execute(f'DROP ROLE IF EXISTS "{name}"')


# -- secrets ---------------------------------------------------------------------------


def test_startup_failure_log_masks_the_password(pg_server: URL) -> None:
    wrong = pg_server.set(username="postgres", password="hunter2-secret", database="postgres")
    process = subprocess.run(
        [sys.executable, "-m", "scoring_engine", "--port", str(free_port())],
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": raw(wrong), "DATABASE_WAIT_TIMEOUT": "0.5"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parent,
    )
    assert process.returncode == 1
    output = process.stdout + process.stderr
    assert "hunter2-secret" not in output
    assert "startup failed" in output and "***" in output
