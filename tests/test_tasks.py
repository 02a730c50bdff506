"""The Invoke front end, run in-process: exit codes and one-line messages."""

import shutil
from pathlib import Path

import pytest
from dev_tasks import checks
from helpers import head, invoke, raw, shows_password
from shared_db.config import DbConfig
from shared_db.history import read_history
from shared_db.services import SERVICES
from sqlalchemy.engine import URL


def test_unknown_service_is_one_line_and_exit_1() -> None:
    result = invoke("migrate.current", "--service", "billing")
    assert result.code == 1
    line = result.one_line_error()
    assert line.startswith("error: unknown service 'billing'")
    assert all(service in line for service in SERVICES)
    assert line.endswith("; pass one of them with --service")
    assert result.out == ""


def test_upgrade_and_current_against_a_given_database(empty_database: URL) -> None:
    env = {"DATABASE_URL": raw(empty_database)}
    (scoring_head,) = head("scoring_engine")
    upgraded = invoke("migrate.upgrade", "--service", "scoring_engine", env=env, clean=True)
    assert upgraded.code == 0, upgraded.output
    *progress, summary = upgraded.out.splitlines()
    assert len(progress) == len(read_history(DbConfig(), "scoring_engine").revisions)
    assert summary.startswith("scoring_engine: applied ") and summary.endswith(
        f", at {scoring_head}"
    )
    current = invoke("migrate.current", env=env, clean=True)
    assert current.code == 0, current.output
    assert current.out.splitlines() == [
        f"{s}: {scoring_head}" if s == "scoring_engine" else f"{s}: (empty: no revision applied)"
        for s in SERVICES
    ]


def test_unreachable_database_is_reported_without_the_url() -> None:
    url = "postgresql://app:hunter2@127.0.0.1:1/app"
    result = invoke(
        "migrate.current", "--service", "api_gateway", env={"DATABASE_URL": url}, clean=True
    )
    assert result.code == 4, "an unreachable database has its own exit code"
    line = result.one_line_error()
    assert "cannot use the database at 127.0.0.1:1/app" in line
    assert "hunter2" not in result.output and url not in result.output
    assert "invoke db.up" in line


def test_db_url_masks_the_password_unless_asked(empty_database: URL) -> None:
    password = empty_database.password
    assert password, "the test server's databases have a password"
    env = {"DATABASE_URL": raw(empty_database)}
    masked = invoke("db.url", "--service", "scoring_engine", env=env, clean=True)
    assert masked.code == 0, masked.output
    assert masked.out.strip() == empty_database.set(
        drivername="postgresql+psycopg"
    ).render_as_string(hide_password=True)
    assert "***" in masked.out and not shows_password(masked.output, empty_database)
    shown = invoke("db.url", "--service", "scoring_engine", "--show-password", env=env, clean=True)
    assert shown.code == 0, shown.output
    assert str(password) in shown.out


def test_the_tests_temporary_files_go_to_memory_only_with_room_and_no_tmpdir_chosen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory = tmp_path / "shm"
    memory.mkdir()
    monkeypatch.setattr(checks, "MEMORY_TEMP", memory)
    monkeypatch.setattr(checks, "MEMORY_TEMP_MIN_FREE", 1)
    chosen = {"TMPDIR": str(memory), "PYTEST_DEBUG_TEMPROOT": str(memory)}
    assert checks._temp_in_memory({}) == chosen
    assert checks._temp_in_memory({"TMPDIR": "/elsewhere"}) == {}  # the user's choice stays
    monkeypatch.setattr(checks, "MEMORY_TEMP_MIN_FREE", shutil.disk_usage(memory).free + 1)
    assert checks._temp_in_memory({}) == {}  # too small (a container's 64 MB /dev/shm)
    monkeypatch.setattr(checks, "MEMORY_TEMP", tmp_path / "absent")
    assert checks._temp_in_memory({}) == {}
