"""The ``invoke migrate.*`` front end, run as subprocesses: exit codes and one-line messages."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from shared_db.config import versions_dir
from shared_db.history import read_history
from shared_db.services import SERVICES
from sqlalchemy.engine import URL

ROOT = Path(__file__).resolve().parents[1]


def run(
    *args: str, env: dict[str, str] | None = None, module: bool = True
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "invoke", *args] if module else list(args)
    return subprocess.run(
        command,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )


def invoke(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run(*args, env=env)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a failed task; no traceback."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def listing(service: str) -> list[str]:
    return sorted(p.name for p in versions_dir(service).iterdir())


@pytest.fixture
def database_env(empty_database: URL) -> dict[str, str]:
    return {"DATABASE_URL": empty_database.render_as_string(hide_password=False)}


# -- offline -------------------------------------------------------------------


def test_heads_prints_one_line_per_service() -> None:
    result = invoke("migrate.heads")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines == [f"{s}: {', '.join(read_history(s).heads)}" for s in SERVICES]
    assert "scoring_engine: 0010" in lines


def test_heads_of_one_service() -> None:
    result = invoke("migrate.heads", "--service", "api_gateway")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"api_gateway: {read_history('api_gateway').heads[0]}"


def test_validate_offline_says_ok_for_each_service() -> None:
    result = invoke("migrate.validate", "--offline")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == len(SERVICES)
    for service, line in zip(SERVICES, lines, strict=True):
        head = read_history(service).heads[0]
        assert line == f"{service}: ok, head {head} (files only)"


def test_validate_offline_json() -> None:
    result = invoke("migrate.validate", "--offline", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(result.stdout)
    assert data["ok"] is True
    assert [s["service"] for s in data["services"]] == list(SERVICES)
    assert len(data["services"]) == 4
    for entry in data["services"]:
        assert entry["ok"] is True
        assert entry["problems"] == []
        assert entry["database_checked"] is False
        assert entry["heads"] == list(read_history(entry["service"]).heads)


def test_validate_unknown_service_is_one_line() -> None:
    line = one_line_error(invoke("migrate.validate", "--service", "billing"))
    assert "unknown service 'billing'" in line
    assert all(s in line for s in SERVICES)


def test_merge_of_a_single_head_writes_nothing() -> None:
    before = listing("scoring_engine")
    result = invoke("migrate.merge", "--service", "scoring_engine")
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == (
        "error: scoring_engine has a single head (0010): nothing to merge, no file written"
    )
    assert result.stdout == ""
    assert listing("scoring_engine") == before


def test_revision_without_message_is_refused() -> None:
    before = listing("scoring_engine")
    line = one_line_error(invoke("migrate.revision", "--service", "scoring_engine"))
    assert "needs a message" in line and "-m" in line
    assert listing("scoring_engine") == before


def test_history_marks_branch_and_merge_points() -> None:
    result = invoke("migrate.history", "--service", "scoring_engine")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "scoring_engine:"

    def line_of(rev: str) -> str:
        found = [line for line in lines if f"-> {rev} " in line or f"-> {rev}," in line]
        assert len(found) == 1, (rev, lines)
        return found[0]

    for rev in ("0003", "0010"):
        assert "(mergepoint)" in line_of(rev)
    for rev in ("0002", "0004"):
        assert "(branchpoint)" in line_of(rev)
    for rev in ("0001", "0002a", "0005", "0009"):
        assert "(mergepoint)" not in line_of(rev) and "(branchpoint)" not in line_of(rev)
    assert "(head)" in line_of("0010") and "(base)" in line_of("0001")
    assert "(generated_mockups)" in line_of("0005")
    assert len(lines) == 1 + len(read_history("scoring_engine").revisions)


def test_sql_of_a_range() -> None:
    result = invoke("migrate.sql", "--service", "scoring_engine", "--range", "0001:0002")
    assert result.returncode == 0, result.stderr
    assert "ALTER TABLE scores ADD COLUMN status" in result.stdout
    assert "DEFAULT 'pending'" in result.stdout
    assert "CREATE TABLE scores" not in result.stdout  # 0001 is not part of the range


def test_sql_of_an_unknown_revision_is_one_line() -> None:
    line = one_line_error(
        invoke("migrate.sql", "--service", "scoring_engine", "--range", "0001:9999")
    )
    assert "unknown revision '9999'" in line


def test_validate_script_is_a_thin_wrapper() -> None:
    result = run("bash", "scripts/validate_migrations.sh", "--offline", module=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(": ok, head") == len(SERVICES)
    failed = run("bash", "scripts/validate_migrations.sh", "--service", "billing", module=False)
    assert failed.returncode == 1
    assert "unknown service 'billing'" in failed.stderr


# -- with a database -----------------------------------------------------------


def _status_rows(stdout: str) -> dict[str, list[str]]:
    lines = stdout.strip().splitlines()
    assert lines[0].split() == ["service", "database", "head", "pending", "state"]
    return {line.split()[0]: line.split()[1:] for line in lines[1:]}


def test_status_before_and_after_upgrade(database_env: dict[str, str]) -> None:
    before = invoke("migrate.status", env=database_env)
    assert before.returncode == 0, before.stderr
    rows = _status_rows(before.stdout)
    assert list(rows) == list(SERVICES)
    # database, head, pending, state...
    assert rows["scoring_engine"] == ["-", "0010", "12", "empty"]
    for service in SERVICES:
        history = read_history(service)
        assert rows[service] == ["-", history.heads[0], str(len(history.revisions)), "empty"]

    upgraded = invoke("migrate.upgrade", env=database_env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "scoring_engine: at 0010" in upgraded.stdout

    after = invoke("migrate.status", env=database_env)
    assert after.returncode == 0, after.stderr
    rows = _status_rows(after.stdout)
    for service in SERVICES:
        head = read_history(service).heads[0]
        assert rows[service] == [head, head, "0", "at", "head"]


def test_validate_with_the_database(database_env: dict[str, str]) -> None:
    result = invoke("migrate.validate", env=database_env)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == len(SERVICES)
    for service, line in zip(SERVICES, lines, strict=True):
        assert line == f"{service}: ok, head {read_history(service).heads[0]}"
    assert "(files only)" not in result.stdout
