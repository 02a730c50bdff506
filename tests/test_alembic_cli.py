"""The raw Alembic commands of the seed document work from the repository root."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from shared_db import commands
from shared_db.config import alembic_config, script_location
from shared_db.services import SERVICES
from sqlalchemy.engine import URL

ROOT = Path(__file__).resolve().parents[1]
ALEMBIC = [sys.executable, "-m", "alembic"]


def _alembic(service: str, *args: str, url: URL | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("DATABASE_URL")}
    if url is not None:
        env["DATABASE_URL"] = url.render_as_string(hide_password=False)
    ini = f"packages/shared_db/alembic_{service}.ini"
    return subprocess.run(
        [*ALEMBIC, "-c", ini, *args], cwd=ROOT, env=env, capture_output=True, text=True
    )


@pytest.mark.parametrize("service", SERVICES)
def test_heads_from_the_repository_root(service: str) -> None:
    result = _alembic(service, "heads")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == commands.heads(service)[0]


def test_upgrade_head_and_current(empty_database: URL) -> None:
    result = _alembic("scoring_engine", "upgrade", "head", url=empty_database)
    assert result.returncode == 0, result.stderr
    assert commands.current("scoring_engine", url=empty_database) == ("0010",)
    current = _alembic("scoring_engine", "current", url=empty_database)
    assert current.stdout.startswith("0010"), current.stdout + current.stderr


def test_offline_sql_needs_no_server() -> None:
    env_without_server = {"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    result = subprocess.run(
        [
            *ALEMBIC,
            "-c",
            "packages/shared_db/alembic_scoring_engine.ini",
            "upgrade",
            "0002",
            "--sql",
        ],
        cwd=ROOT,
        env={**os.environ, **env_without_server},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "CREATE TABLE scores" in result.stdout
    assert "ALTER TABLE scores ADD COLUMN status VARCHAR(16) DEFAULT 'pending' NOT NULL" in (
        result.stdout
    )
    assert "alembic_version_scoring_engine" in result.stdout


@pytest.mark.parametrize("service", SERVICES)
def test_ini_and_code_configuration_agree(service: str) -> None:
    from alembic.config import Config

    ini = Config(str(ROOT / f"packages/shared_db/alembic_{service}.ini"))
    code = alembic_config(service)
    assert Path(ini.get_main_option("script_location") or "").resolve() == script_location(service)
    from_ini, from_code = ScriptDirectory.from_config(ini), ScriptDirectory.from_config(code)
    assert from_ini.get_heads() == from_code.get_heads()
    for option in ("file_template", "truncate_slug_length", "path_separator"):
        assert ini.get_main_option(option) == code.get_main_option(option), option
