"""The Invoke front end: exit codes and one-line messages."""

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy.engine import URL

ROOT = Path(__file__).resolve().parents[1]


def invoke(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
    )


def test_unknown_service_is_one_line_and_exit_1() -> None:
    result = invoke("migrate.current", "--service", "billing")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "unknown service 'billing'" in lines[0] and "scoring_engine" in lines[0]
    assert "Traceback" not in result.stderr


def test_upgrade_and_current_against_a_given_database(empty_database: URL) -> None:
    env = {"DATABASE_URL": empty_database.render_as_string(hide_password=False)}
    upgraded = invoke("migrate.upgrade", "--service", "scoring_engine", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "scoring_engine: at 0010" in upgraded.stdout
    current = invoke("migrate.current", env=env)
    assert current.returncode == 0, current.stderr
    assert "scoring_engine: 0010" in current.stdout
    assert "signal_ingestion: (empty: no revision applied)" in current.stdout


def test_unreachable_database_is_reported_with_a_masked_url() -> None:
    env = {"DATABASE_URL": "postgresql://app:hunter2@127.0.0.1:1/app"}
    result = invoke("migrate.current", "--service", "api_gateway", env=env)
    assert result.returncode == 1
    assert "127.0.0.1:1" in result.stderr
    assert "hunter2" not in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_db_url_masks_the_password_unless_asked(empty_database: URL) -> None:
    env = {"DATABASE_URL": empty_database.render_as_string(hide_password=False)}
    masked = invoke("db.url", "--service", "scoring_engine", env=env)
    assert masked.returncode == 0, masked.stderr
    assert "***" in masked.stdout and (empty_database.password or "") not in masked.stdout
    shown = invoke("db.url", "--service", "scoring_engine", "--show-password", env=env)
    assert (empty_database.password or "-") in shown.stdout
