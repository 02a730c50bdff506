"""The raw Alembic commands of the seed document work from the repository root.

``alembic -c packages/shared_db/alembic_<service>.ini ...`` runs as a real process (the
commands of one test share one): it takes the database from the environment, and in a
development checkout with no URL set, from the dev tooling's
``signalmarket.database_provider`` entry point.
"""

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from unittest import mock

import pytest
from alembic.config import Config
from alembic.config import main as alembic_main
from alembic.script import ScriptDirectory
from db_devtools.config import DevConfig
from db_devtools.provisioning import provider, resolve
from helpers import ROOT, config_for, head, raw
from shared_db import commands
from shared_db.alembic_config import alembic_config
from shared_db.config import DbConfig
from shared_db.migrations import env_runner
from shared_db.services import SERVICES
from shared_db.urls import normalize
from sqlalchemy.engine import URL

ALEMBIC = [sys.executable, "-m", "alembic"]


def _ini(service: str) -> str:
    return f"packages/shared_db/alembic_{service}.ini"


def _without_urls() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.endswith("DATABASE_URL")}


# Alembic's own command line (``alembic.config.main``, what the ``alembic`` script runs)
# once per argument list (JSON), in one process: starting Python with Alembic is what a
# process costs. The first command that fails ends the process with its exit code.
COMMANDS = (
    "import json, sys\nfrom alembic.config import main\n"
    "for argv in json.loads(sys.argv[1]):\n    main(argv=argv, prog='alembic')\n"
)


def _alembic(*commands: list[str], url: URL | None = None) -> subprocess.CompletedProcess[str]:
    """The commands, from the repository root, with ``url`` as the only database URL."""
    env = _without_urls()
    if url is not None:
        env["DATABASE_URL"] = raw(url)
    return subprocess.run(
        [sys.executable, "-c", COMMANDS, json.dumps(commands)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )


def test_heads_from_the_repository_root() -> None:
    """`alembic -c packages/shared_db/alembic_<service>.ini heads` for the four services."""
    result = _alembic(*(["-c", _ini(s), "heads"] for s in SERVICES))
    assert result.returncode == 0, result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()] == [
        head(service)[0] for service in SERVICES
    ]
    for service in SERVICES:
        assert head(service) == commands.heads(DbConfig(), service)


def test_upgrade_head_then_current(empty_database: URL) -> None:
    """`alembic ... upgrade head`, then `alembic ... current`: the head is all stdout holds
    (the upgrade's log goes to stderr)."""
    ini = _ini("scoring_engine")
    result = _alembic(["-c", ini, "upgrade", "head"], ["-c", ini, "current"], url=empty_database)
    assert result.returncode == 0, result.stderr
    assert commands.current(config_for(empty_database), "scoring_engine") == head("scoring_engine")
    assert result.stdout.startswith(head("scoring_engine")[0]), result.stdout + result.stderr


def test_offline_sql_needs_no_server() -> None:
    env_without_server = {"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    result = subprocess.run(
        [*ALEMBIC, "-c", _ini("scoring_engine"), "upgrade", "0002", "--sql"],
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
    ini = Config(str(ROOT / f"packages/shared_db/alembic_{service}.ini"))
    code = alembic_config(DbConfig(), service)
    location = Path(ini.get_main_option("script_location") or "").resolve()
    assert location == DbConfig().script_location(service)
    from_ini, from_code = ScriptDirectory.from_config(ini), ScriptDirectory.from_config(code)
    assert from_ini.get_heads() == from_code.get_heads()
    for option in ("file_template", "truncate_slug_length", "path_separator"):
        assert ini.get_main_option(option) == code.get_main_option(option), option


# -- no URL in the environment: the development provider -------------------------------


def test_the_dev_tooling_registers_the_database_provider() -> None:
    (entry,) = entry_points(group=env_runner.PROVIDER_GROUP)
    assert entry.value == "db_devtools.provisioning.provider:database_url"
    assert entry.dist is not None and entry.dist.name == "signalmarket-db-devtools"
    assert entry.load() is provider.database_url


def test_the_provider_gives_the_configured_database_as_is(
    empty_database: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in [k for k in os.environ if k.endswith("DATABASE_URL")]:
        monkeypatch.delenv(variable)
    monkeypatch.setenv("DATABASE_URL", raw(empty_database))
    given = normalize(provider.database_url("scoring_engine"))
    assert given == normalize(raw(empty_database))
    assert given.password == empty_database.password, "a usable URL, password included"
    # The same answer from the configuration object the provider builds.
    config = DevConfig.from_environ({"DATABASE_URL": raw(empty_database)})
    assert resolve.database_url(config, "scoring_engine") == given


@contextlib.contextmanager
def _command_line(providers: list[EntryPoint]) -> Iterator[list[str]]:
    """Alembic's command line in this process, no URL in the environment, the given
    providers registered; yields the lines it prints."""
    printed: list[str] = []

    def print_stdout(config: Config, text: str, *arg: object) -> None:
        printed.append(str(text) % arg if arg else str(text))

    with (
        mock.patch.dict(os.environ, _without_urls(), clear=True),
        mock.patch.object(env_runner, "entry_points", lambda group: providers),
        mock.patch.object(Config, "print_stdout", print_stdout),
        contextlib.chdir(ROOT),
    ):
        yield printed


def _provider_of(url: URL, calls: list[str]) -> list[EntryPoint]:
    def provide(service: str) -> str:
        calls.append(service)
        return raw(url)

    entry = mock.Mock(spec=EntryPoint)
    entry.load.return_value = provide
    return [entry]


def test_alembic_without_a_url_uses_the_provider(empty_database: URL) -> None:
    commands.upgrade(config_for(empty_database), "scoring_engine", "0002")
    calls: list[str] = []
    with _command_line(_provider_of(empty_database, calls)) as out:
        alembic_main(["-c", _ini("scoring_engine"), "current"])
    assert calls == ["scoring_engine"]
    assert out == ["0002 (branchpoint)"]


def test_the_real_provider_is_what_alembic_asks(
    empty_database: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The registered entry point, with provisioning replaced by this test's database."""
    seen: list[DevConfig] = []

    def provisioned(config: DevConfig, service: str) -> URL:
        seen.append(config)
        return empty_database

    monkeypatch.setattr(provider, "provisioned_url", provisioned)
    registered = list(entry_points(group=env_runner.PROVIDER_GROUP))
    with _command_line(registered) as out:
        alembic_main(["-c", _ini("marketplace_publisher"), "upgrade", "head"])
        alembic_main(["-c", _ini("marketplace_publisher"), "current"])
    assert out == [f"{head('marketplace_publisher')[0]} (head)"]
    assert len(seen) == 2
    assert all(c.url_for("marketplace_publisher") is None for c in seen)


def test_no_url_and_no_provider_is_one_line() -> None:
    with _command_line([]), pytest.raises(SystemExit) as exited:
        alembic_main(["-c", _ini("scoring_engine"), "current"])
    assert exited.value.code == (
        "error: scoring_engine: no database URL: set SCORING_ENGINE_DATABASE_URL or DATABASE_URL"
    )


def test_a_service_url_wins_over_the_provider(empty_database: URL) -> None:
    entry = mock.Mock(spec=EntryPoint)
    with _command_line([entry]) as out:
        os.environ["SCORING_ENGINE_DATABASE_URL"] = raw(empty_database)
        alembic_main(["-c", _ini("scoring_engine"), "current"])
    assert out == []  # an empty database: no revision applied
    entry.load.assert_not_called()
