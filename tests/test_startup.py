"""Services migrate on startup: once, under a lock, atomically, or not at all.

The scoring_engine app stands for all four (they share shared_db.web's lifespan).
"""

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from conftest import VERSIONS, Repo
from dev_tasks.bench.measure import until_ready
from fastapi.testclient import TestClient
from helpers import BROKEN_REVISION as BROKEN
from helpers import free_port, raw
from shared_db import commands, settings, startup
from shared_db.databases import connect_autocommit
from shared_db.errors import MigrationError, PostgresError
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import URL

HEAD = commands.heads("scoring_engine")


@pytest.fixture
def service_env(monkeypatch: pytest.MonkeyPatch, empty_database: URL) -> URL:
    monkeypatch.setenv("DATABASE_URL", raw(empty_database))
    monkeypatch.delenv("SKIP_MIGRATIONS", raising=False)
    settings.reset()
    return empty_database


@pytest.fixture
def client() -> Iterator[TestClient]:
    from scoring_engine.app import app

    with TestClient(app) as test_client:
        yield test_client


def test_startup_migrates_an_empty_database_to_head(
    service_env: URL, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "signalmarket")
    from scoring_engine.app import app

    with TestClient(app) as client:
        assert commands.current("scoring_engine", service_env) == HEAD
        ready = client.get("/ready")
        assert ready.status_code == 200
        assert ready.json()["database_revision"] == list(HEAD)
        assert client.get("/health").json() == {"status": "ok", "service": "scoring_engine"}
    assert f"scoring_engine: migrated base -> {HEAD[0]}" in caplog.text


@pytest.mark.parametrize("value", ["1", "true", "YES"])
def test_skip_migrations_leaves_the_database_untouched(
    service_env: URL, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, value: str
) -> None:
    monkeypatch.setenv("SKIP_MIGRATIONS", value)
    from scoring_engine.app import app

    with TestClient(app) as client:
        ready = client.get("/ready")
        assert ready.status_code == 503
        body = ready.json()
        assert body["database_revision"] == [] and body["head"] == list(HEAD)
        assert body["state"] == "empty"
        assert client.get("/health").status_code == 200
    assert inspect(create_engine(service_env)).get_table_names() == []
    assert "SKIP_MIGRATIONS is set" in caplog.text
    assert "/ready answers 503" in caplog.text


def test_database_at_head_starts_without_lock_or_migration(
    service_env: URL, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    commands.upgrade("scoring_engine", url=service_env)

    def no_lock(*args: object) -> bool:
        raise AssertionError("a database at head must not take the migration lock")

    monkeypatch.setattr(startup, "_try_lock", no_lock)
    caplog.clear()
    caplog.set_level(logging.INFO)
    from scoring_engine.app import app

    with TestClient(app) as client:
        assert client.get("/ready").status_code == 200
    assert "Running upgrade" not in caplog.text
    assert f"database at head {HEAD[0]}, no migration needed" in caplog.text


def test_a_database_migrated_by_newer_code_is_refused(service_env: URL) -> None:
    commands.upgrade("scoring_engine", url=service_env)
    with create_engine(service_env).begin() as conn:
        conn.execute(text("UPDATE alembic_version_scoring_engine SET version_num = '0099'"))
    with pytest.raises(MigrationError, match="0099, which this code does not know"):
        startup.migrate_to_head("scoring_engine", service_env)
    assert commands.current("scoring_engine", service_env) == ("0099",)


def test_lock_wait_is_bounded(empty_database: URL) -> None:
    with connect_autocommit(empty_database) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (startup.lock_key("scoring_engine"),))
        started = time.monotonic()
        with pytest.raises(MigrationError, match=r"waited 0\.5 s for the migration lock"):
            startup.migrate_to_head("scoring_engine", empty_database, lock_timeout_s=0.5)
        assert time.monotonic() - started < 10
    assert commands.current("scoring_engine", empty_database) == ()


def test_waiting_for_an_unreachable_database_is_bounded() -> None:
    url = URL.create("postgresql+psycopg", "app", "s3cret", "127.0.0.1", 1, "app")
    with pytest.raises(PostgresError, match=r"gave up after 0\.6 s") as error:
        startup.wait_for_database(url, timeout_s=0.6)
    assert "s3cret" not in str(error.value)


# -- real processes ---------------------------------------------------------------


def _start(port: int, env: dict[str, str], cwd: Path | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "scoring_engine", "--port", str(port)],
        env={**os.environ, **env},
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_eight_replicas_on_an_empty_database_migrate_exactly_once(empty_database: URL) -> None:
    env = {"DATABASE_URL": raw(empty_database)}
    ports = [free_port() for _ in range(8)]
    processes = [_start(port, env) for port in ports]
    try:
        until_ready(list(zip(processes, ports, strict=True)), "/ready", timeout=120)
    finally:
        for process in processes:
            process.terminate()
        outputs = [process.communicate(timeout=30)[0] for process in processes]
    upgraded = [out for out in outputs if "scoring_engine: migrated base -> " in out]
    assert len(upgraded) == 1, "\n---\n".join(outputs)
    others = [out for out in outputs if out not in upgraded]
    assert all("another process migrated" in out or "no migration needed" in out for out in others)
    assert sum(out.count("Running upgrade  -> 0001") for out in outputs) == 1
    assert commands.current("scoring_engine", empty_database) == HEAD


def test_a_broken_migration_stops_the_service_at_the_last_good_revision(
    repo: Repo, empty_database: URL
) -> None:
    (repo.path / VERSIONS / "0011_broken.py").write_text(BROKEN)
    env = {"PYTHONPATH": repo.env["PYTHONPATH"], "DATABASE_URL": raw(empty_database)}
    process = _start(free_port(), env, cwd=repo.path)
    try:
        output, _ = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode != 0, output
    failure = [line for line in output.splitlines() if "startup failed" in line]
    assert len(failure) == 1, output
    assert "failed in revision 0011" in failure[0] and "no_such_table" in failure[0]
    assert "the database stays at 0010" in failure[0]
    assert commands.current("scoring_engine", empty_database) == ("0010",)
    with psycopg.connect(raw(empty_database.set(drivername="postgresql"))) as conn:
        columns = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'scores'"
        ).fetchall()
    assert ("half_done",) not in columns, "the failing revision's DDL was rolled back"
