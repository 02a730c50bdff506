"""Where a database comes from in development: the resolution order of URLs, the
backend choice and the Docker probe, the configuration they read, and the URL helpers.

Provisioning takes its settings from a ``DevConfig`` (built once by a front end from the
environment); nothing here patches the environment of the test process.
"""

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from db_devtools.config import COMPOSE_PG_PORT, DevConfig
from db_devtools.errors import ProvisioningError
from db_devtools.provisioning import accounts, binaries, docker, ports, resolve
from dev_tasks.hints import for_error
from helpers import PING_OK, ping_answerer
from shared_db import urls
from shared_db.errors import ConfigurationError, UnknownServiceError
from shared_db.services import SERVICES
from sqlalchemy.engine import URL

SHARED = "postgresql://app:pw@db.internal:5432/shared"
SCORES = "postgresql://se:pw2@db2:6543/scores"


def test_service_url_wins_over_database_url() -> None:
    config = DevConfig.from_environ({"DATABASE_URL": SHARED, "SCORING_ENGINE_DATABASE_URL": SCORES})
    scoring = resolve.database_url(config, "scoring_engine")
    assert (scoring.host, scoring.port, scoring.database) == ("db2", 6543, "scores")
    assert scoring.drivername == "postgresql+psycopg"
    other = resolve.database_url(config, "api_gateway")
    assert (other.host, other.database) == ("db.internal", "shared"), "DATABASE_URL is used as is"
    # Configured URLs are kept: nothing is provisioned, whatever the backend.
    assert resolve.with_databases(config, SERVICES).database_urls == config.database_urls
    assert resolve.admin_url(config, "scoring_engine").database == "postgres"
    assert resolve.admin_url(config, "scoring_engine").host == "db2"
    assert resolve.admin_url(config).host == "db.internal"


def test_with_databases_keeps_the_configured_urls() -> None:
    config = DevConfig(database_urls={s: SCORES for s in SERVICES}, backend="local")
    # Every service has a URL: no server is started (the local backend would need one).
    assert resolve.with_databases(config, SERVICES) is config


def test_a_configured_server_is_the_test_server() -> None:
    config = DevConfig(database_url=SCORES, backend="local")
    with resolve.test_server(config) as url:
        assert (url.host, url.port, url.database) == ("db2", 6543, "postgres")


def test_unknown_service_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownServiceError) as error:
        resolve.database_url(DevConfig(database_url=SHARED), "billing")
    message = str(error.value)
    assert "'billing'" in message
    for service in SERVICES:
        assert service in message
    assert for_error(error.value).endswith("; pass one of them with --service")


def test_backend_can_be_forced_and_rejects_nonsense() -> None:
    assert DevConfig.from_environ({"SIGNALMARKET_POSTGRES": "local"}).backend == "local"
    assert DevConfig.from_environ({"SIGNALMARKET_POSTGRES": "Docker"}).backend == "docker"
    assert DevConfig.from_environ({}).backend == "auto"
    # A forced backend is not probed (this Docker host does not exist).
    nowhere = "unix:///nonexistent/docker.sock"
    assert resolve.backend(DevConfig(backend="local", docker_host=nowhere)) == "local"
    assert resolve.backend(DevConfig(backend="docker", docker_host=nowhere)) == "docker"
    with pytest.raises(ConfigurationError) as error:
        DevConfig.from_environ({"SIGNALMARKET_POSTGRES": "kubernetes"})
    assert error.value.kind == "invalid_setting"
    assert "SIGNALMARKET_POSTGRES='kubernetes'" in str(error.value)
    assert "auto, docker, local" in str(error.value)


def test_the_dev_configuration_reads_the_provisioning_settings(tmp_path: Path) -> None:
    config = DevConfig.from_environ(
        {
            "SIGNALMARKET_ROOT": str(tmp_path),
            "SIGNALMARKET_PG_USER": "nobody",
            "SIGNALMARKET_PG_BIN": str(tmp_path / "bin"),
            "SIGNALMARKET_PARENT_DEATH": "watchdog",
            "SIGNALMARKET_PG_PORT": "6000",
            "POSTGRES_PASSWORD": "compose-pw",
            "DOCKER_HOST": "tcp://127.0.0.1:2375",
            "XDG_CACHE_HOME": str(tmp_path / "cache"),
        }
    )
    assert config.project_root == tmp_path
    assert config.state_dir == tmp_path / ".postgres"
    assert config.run_dir == tmp_path / ".run"
    assert (config.pg_user, config.pg_bin) == ("nobody", tmp_path / "bin")
    assert config.parent_death == "watchdog"
    assert config.docker_host == "tcp://127.0.0.1:2375"
    assert config.cache_dir == tmp_path / "cache" / "signalmarket"
    assert docker.compose_url(config) == URL.create(
        "postgresql+psycopg", "postgres", "compose-pw", "127.0.0.1", 6000, "postgres"
    )
    server = resolve.local_server(config)
    assert (server.state_dir, server.pg_bin, server.parent_death) == (
        tmp_path / ".postgres",
        tmp_path / "bin",
        "watchdog",
    )
    defaults = DevConfig.from_environ({"SIGNALMARKET_ROOT": str(tmp_path)})
    assert docker.compose_url(defaults).port == COMPOSE_PG_PORT
    assert docker.compose_url(defaults).password == "postgres"
    assert defaults.parent_death == "auto" and defaults.pg_bin is None


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SIGNALMARKET_PG_PORT", "70000"),
        ("SIGNALMARKET_PG_PORT", "port"),
        ("SIGNALMARKET_PARENT_DEATH", "signal"),
    ],
)
def test_a_bad_provisioning_setting_is_named(variable: str, value: str) -> None:
    with pytest.raises(ConfigurationError) as error:
        DevConfig.from_environ({variable: value})
    assert error.value.kind == "invalid_setting"
    assert f"{variable}={value!r}" in str(error.value)
    assert for_error(error.value).endswith("; fix or unset that variable")


def test_passwords_are_masked() -> None:
    url = "postgresql://svc:s3cret@localhost:5432/app"
    assert "s3cret" not in urls.mask(url)
    assert "***" in urls.mask(url)
    assert "s3cret" in urls.render(url, show_password=True)
    assert urls.where(urls.normalize(url)) == "localhost:5432/app"
    with pytest.raises(ConfigurationError) as error:
        urls.normalize("mysql://svc:s3cret@localhost/app")
    assert error.value.kind == "invalid_database_url"
    assert "s3cret" not in str(error.value)


def test_service_settings_carry_the_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """A service reads its URL itself (pydantic-settings) and never provisions one."""
    from scoring_engine.settings import ScoringEngineSettings

    for variable in [k for k in os.environ if k.endswith("DATABASE_URL")]:
        monkeypatch.delenv(variable)
    with pytest.raises(ConfigurationError) as error:
        ScoringEngineSettings.load()
    assert error.value.kind == "no_database_url"
    assert str(error.value) == (
        "scoring_engine: no database URL: set SCORING_ENGINE_DATABASE_URL or DATABASE_URL"
    )
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:pw@db:5432/shared")
    monkeypatch.setenv("SKIP_MIGRATIONS", "YES")
    loaded = ScoringEngineSettings.load()
    assert loaded.database_url.get_secret_value() == "postgresql://app:pw@db:5432/shared"
    assert "pw" not in repr(loaded)
    assert loaded.skip_migrations is True
    assert loaded.db_config().url_for("scoring_engine") == "postgresql://app:pw@db:5432/shared"
    monkeypatch.setenv("SCORING_ENGINE_DATABASE_URL", "postgresql://se:pw@db2:5432/scores")
    url = ScoringEngineSettings.load().db_config().require_url("scoring_engine")
    assert urls.normalize(url).host == "db2"


# -- the Docker probe ---------------------------------------------------------------


@pytest.fixture(params=["unix", "tcp"])
def fake_daemon(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, list[bytes]]]:
    """A socket that answers like dockerd's /_ping, with a configurable reply; yields
    its DOCKER_HOST value."""
    replies: list[bytes] = [PING_OK]
    if request.param == "unix":
        path = tmp_path / "docker.sock"
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(path))
        host = f"unix://{path}"
    else:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        host = f"tcp://127.0.0.1:{listener.getsockname()[1]}"
    with ping_answerer(listener, replies):
        yield host, replies


def test_docker_is_used_only_when_the_daemon_answers(
    fake_daemon: tuple[str, list[bytes]], tmp_path: Path
) -> None:
    host, replies = fake_daemon
    assert docker.engine_answers(host) is True
    # Docker also needs a working compose (test_docker_path.py covers the cases).
    with_compose = "docker" if docker.find_compose()[0] is not None else "local"
    assert resolve.backend(DevConfig(docker_host=host)) == with_compose
    replies[0] = b"HTTP/1.1 500 Internal Server Error\r\n\r\n"
    assert docker.engine_answers(host) is False
    assert resolve.backend(DevConfig(docker_host=host)) == "local"
    absent = f"unix://{tmp_path / 'absent.sock'}"
    assert docker.engine_answers(absent) is False
    assert resolve.backend(DevConfig(backend="auto", docker_host=absent)) == "local"


def test_unprobed_docker_hosts_do_not_answer() -> None:
    assert docker.engine_answers("ssh://me@build-host") is False
    assert docker.engine_answers("tcp://127.0.0.1:1", timeout=0.2) is False


def test_compose_without_its_file_is_a_provisioning_error(tmp_path: Path) -> None:
    with pytest.raises(ProvisioningError) as error:
        docker.compose_up(DevConfig(project_root=tmp_path))
    assert error.value.kind == "no_compose_file"
    assert str(tmp_path / "docker" / "compose.yaml") in str(error.value)


# -- binaries, the server account, ports ------------------------------------------------


def test_the_server_binaries_are_found_or_the_override_is_checked(tmp_path: Path) -> None:
    found = binaries.find_bin_dir()
    assert os.access(found / "initdb", os.X_OK) and os.access(found / "postgres", os.X_OK)
    assert binaries.find_bin_dir(found) == found
    with pytest.raises(ProvisioningError) as error:
        binaries.find_bin_dir(tmp_path)
    assert error.value.kind == "bad_pg_bin"
    assert str(tmp_path) in str(error.value)
    assert "SIGNALMARKET_PG_BIN" in for_error(error.value)


def test_the_server_account() -> None:
    if os.geteuid() != 0:
        # Not root: the server runs as ourselves, whatever is configured.
        assert accounts.server_account() is None
        assert accounts.server_account("nobody") is None
        return
    default = accounts.server_account()
    assert default is not None and default.uid != 0
    assert default.name in accounts.FALLBACK_USERS
    wanted = accounts.server_account("nobody")
    assert wanted is not None and wanted.name == "nobody"
    with pytest.raises(ProvisioningError, match="root"):
        accounts.server_account("root")
    with pytest.raises(ProvisioningError, match="no-such-account"):
        accounts.server_account("no-such-account")


def test_free_ports() -> None:
    with socket.socket() as taken:
        taken.bind((ports.HOST, 0))
        taken.listen()
        busy = taken.getsockname()[1]
        assert not ports.port_free(busy)
        other = ports.free_port(busy)
        assert other != busy and ports.port_free(other)
    assert ports.free_port(other) == other
