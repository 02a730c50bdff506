"""The Docker path's decisions and failures, and the roles host-side commands use.

The compose CLI is replaced by a small fake (``docker``/``docker-compose`` scripts on
``PATH``, and a socket that answers the engine's ``/_ping``), so every answer Docker can
give is reproducible: a missing plugin, a failing ``up``, a ``stop`` that fails, a
container-name conflict between concurrent callers. Everything that needs Postgres uses
a real one. The real engine was exercised by hand: docs/docker.md.
"""

import os
import secrets
import shutil
import socket
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from db_devtools.config import DevConfig
from db_devtools.errors import ProvisioningError
from db_devtools.provisioning import docker, resolve
from db_devtools.provisioning.databases import drop_database
from db_devtools.provisioning.ports import free_port
from dev_tasks.hints import for_error
from helpers import (
    PING_OK,
    ROOT,
    config_for,
    execute,
    head,
    invoke,
    ping_answerer,
    service_client,
    sql,
)
from shared_db import commands
from shared_db.errors import SharedDbError
from shared_db.services import SERVICES, env_prefix
from shared_db.web.hints import one_line
from sqlalchemy.engine import URL

SERVICE = "signal_ingestion"

FAKE_DOCKER = r"""#!/bin/bash
# A stand-in for the docker CLI: answers from the files in $FAKE_DOCKER_STATE.
state=${FAKE_DOCKER_STATE:?}
if [ "$1" = compose ]; then
  if [ ! -e "$state/v2" ]; then
    echo "docker: unknown command: docker compose" >&2
    printf '\nRun %s for more information\n' "'docker --help'" >&2
    exit 1
  fi
  shift
  exec "$(dirname "$0")/fake-compose" v2 "$@"
fi
if [ "$1" = inspect ]; then
  cat "$state/status" 2>/dev/null || echo "running healthy"
  exit 0
fi
echo "fake docker: unexpected arguments: $*" >&2
exit 2
"""

FAKE_COMPOSE = r"""#!/bin/bash
# A stand-in for compose (v2 plugin or v1): one "postgres" container in $FAKE_DOCKER_STATE.
state=${FAKE_DOCKER_STATE:?}
flavour=$1; shift
while [ $# -gt 0 ]; do case "$1" in -p|-f) shift 2 ;; *) break ;; esac; done
echo "$flavour $*" >> "$state/calls"
case "$1" in
  version)
    if [ "$flavour" = v2 ]; then echo "Docker Compose version v2.40.3";
    else echo "docker-compose version 1.29.2, build unknown"; fi ;;
  ps) if [ -e "$state/container" ]; then echo "0123456789ab"; fi ;;
  up)
    if [ -e "$state/up_error" ]; then cat "$state/up_error" >&2; exit 1; fi
    if [ -e "$state/container" ]; then exit 0; fi
    if ! mkdir "$state/creating" 2>/dev/null; then
      echo " Container signalmarket-postgres-1  Creating" >&2
      echo 'Error response from daemon: Conflict. The container name' \
        '"/signalmarket-postgres-1" is already in use' >&2
      exit 1
    fi
    sleep 0.3; touch "$state/container"; rmdir "$state/creating" ;;
  stop)
    if [ -e "$state/stop_error" ]; then cat "$state/stop_error" >&2; exit 1; fi
    echo "exited " > "$state/status" ;;
  *) echo "fake compose: unexpected arguments: $*" >&2; exit 2 ;;
esac
"""


class FakeDocker:
    """The fake CLI's state folder: create files in it to change what Docker answers."""

    def __init__(self, root: Path, docker_host: str) -> None:
        self.bin = root / "bin"
        self.state = root / "state"
        self.docker_host = docker_host
        self.bin.mkdir()
        self.state.mkdir()
        for name, text in (
            ("docker", FAKE_DOCKER),
            ("fake-compose", FAKE_COMPOSE),
            ("docker-compose", '#!/bin/bash\nexec "$(dirname "$0")/fake-compose" v1 "$@"\n'),
        ):
            (self.bin / name).write_text(text)
            (self.bin / name).chmod(0o755)
        # PATH holds this folder only (a real docker-compose may be in /usr/bin): the
        # few utilities the scripts use are linked in.
        for tool in ("bash", "cat", "mkdir", "rmdir", "sleep", "touch", "dirname"):
            found = shutil.which(tool)
            assert found is not None
            (self.bin / tool).symlink_to(found)

    def set(self, name: str, text: str = "") -> None:
        (self.state / name).write_text(text)

    def calls(self) -> list[str]:
        path = self.state / "calls"
        return path.read_text().splitlines() if path.exists() else []

    def config(self, project_root: Path = ROOT, **changes: object) -> DevConfig:
        values: dict[str, object] = {
            "docker_host": self.docker_host,
            "project_root": project_root,
            **changes,
        }
        return DevConfig(**values)  # type: ignore[arg-type]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[str]:
    """A socket that answers like dockerd's ``/_ping``; yields its DOCKER_HOST value."""
    path = tmp_path / "docker.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    with ping_answerer(listener, [PING_OK]):
        yield f"unix://{path}"


@pytest.fixture
def fake(tmp_path: Path, engine: str, monkeypatch: pytest.MonkeyPatch) -> FakeDocker:
    """The fake CLI first on PATH (and only it: no real docker or docker-compose)."""
    cli = FakeDocker(tmp_path, engine)
    monkeypatch.setenv("PATH", str(cli.bin))
    monkeypatch.setenv("FAKE_DOCKER_STATE", str(cli.state))
    monkeypatch.setenv("DOCKER_HOST", engine)
    monkeypatch.setenv("SIGNALMARKET_ROOT", str(tmp_path / "project"))
    project = tmp_path / "project" / "docker"
    project.mkdir(parents=True)
    (project / "compose.yaml").write_text("services: {}\n")
    return cli


# -- what Docker says, reduced to its cause ---------------------------------------------


@pytest.mark.parametrize(
    ("output", "cause"),
    [
        (
            "docker: unknown command: docker compose\n\nRun 'docker --help' for more information\n",
            "docker: unknown command: docker compose",
        ),
        (
            " Container signalmarket-postgres-1  Creating\n"
            'Error response from daemon: Conflict. The container name "/x" is already in use\n',
            'Error response from daemon: Conflict. The container name "/x" is already in use',
        ),
        (
            "unknown flag: --wait\nSee 'docker compose up --help'.\n",
            "unknown flag: --wait",
        ),
        ("\n\n", "no output"),
        ("something odd happened\nRun 'docker --help'\n", "something odd happened"),
    ],
)
def test_the_cause_is_the_first_meaningful_line(output: str, cause: str) -> None:
    assert docker.first_meaningful_line(output) == cause


# -- which compose, and when the Docker path is passed over ------------------------------


def test_the_v2_plugin_is_preferred(fake: FakeDocker) -> None:
    fake.set("v2")
    found = docker.probe(fake.docker_host)
    assert found.compose == docker.Compose(("docker", "compose"), "v2.40.3")
    assert resolve.choice(fake.config()) == resolve.Choice("docker")


def test_docker_compose_v1_is_the_fallback(fake: FakeDocker) -> None:
    found = docker.probe(fake.docker_host)
    assert found.compose == docker.Compose(("docker-compose",), "1.29.2")
    assert resolve.backend(fake.config()) == "docker"


def test_an_engine_without_compose_falls_back_to_local_saying_why(fake: FakeDocker) -> None:
    (fake.bin / "docker-compose").unlink()
    chosen = resolve.choice(fake.config())
    assert chosen.backend == "local"
    assert chosen.fallback == (
        f"a Docker engine answers on {fake.docker_host} but no compose works "
        "(`docker compose`: docker: unknown command: docker compose; "
        "no `docker-compose` command): using the local server"
    )
    # Without an engine there is nothing to warn about: the local server is the default.
    quiet = resolve.choice(fake.config(docker_host="unix:///nonexistent/docker.sock"))
    assert quiet == resolve.Choice("local")
    # Forced to docker, the missing compose is an error naming the real cause.
    with pytest.raises(ProvisioningError) as error:
        docker.compose_up(fake.config(backend="docker"))
    assert error.value.kind == "no_compose"
    assert "docker: unknown command: docker compose" in str(error.value)


def test_db_status_warns_once_and_reports_the_local_server_truthfully(
    fake: FakeDocker, tmp_path: Path
) -> None:
    (fake.bin / "docker-compose").unlink()
    result = invoke("db.status", clean=True)
    warning = (
        f"warning: a Docker engine answers on {fake.docker_host} but no compose works "
        "(`docker compose`: docker: unknown command: docker compose; "
        "no `docker-compose` command): using the local server"
    )
    assert result.err.splitlines()[0] == warning
    assert result.err.count("warning:") == 1
    # The project copy has no server running: status says so and exits 4.
    assert result.code == 4, result
    assert "local server in" in result.err and "not running (start it: invoke db.up)" in result.err


# -- failures reported with their cause and a non-zero exit ------------------------------


def test_a_failing_up_reports_the_real_cause(fake: FakeDocker) -> None:
    fake.set("v2")
    fake.set(
        "up_error",
        "Error response from daemon: driver failed programming external "
        "connectivity: Bind for 127.0.0.1:54329 failed: port is already allocated\n"
        "Run 'docker --help' for more information\n",
    )
    result = invoke("db.up", clean=True)
    assert result.code == 1
    assert result.one_line_error().startswith(
        "error: docker compose could not start Postgres: Error response from daemon: driver "
        "failed programming external connectivity: Bind for 127.0.0.1:54329 failed"
    ), result
    assert "fix Docker, set DATABASE_URL, or use SIGNALMARKET_POSTGRES=local" in result.err


def test_db_up_then_status_then_down_and_a_failing_stop(fake: FakeDocker) -> None:
    up = invoke("db.up", clean=True)
    assert up.code == 0, up
    assert "postgres up (docker-compose 1.29.2" in up.out
    assert "v1 up -d postgres" in fake.calls()  # v1 has no --wait: it polls health instead
    status = invoke("db.status", clean=True)
    assert status.code == 0 and "postgres is healthy" in status.out, status
    fake.set("status", "running unhealthy\n")
    status = invoke("db.status", clean=True)
    assert status.code == 4 and "postgres is unhealthy (start it: invoke db.up)" in status.err
    fake.set("status", "running healthy\n")
    fake.set("stop_error", "Error response from daemon: cannot stop container: permission denied\n")
    down = invoke("db.down", clean=True)
    assert down.code == 1
    assert down.one_line_error().startswith(
        "error: docker-compose could not stop Postgres: Error response from daemon: cannot "
        "stop container: permission denied"
    ), down
    (fake.state / "stop_error").unlink()
    down = invoke("db.down", clean=True)
    assert down.code == 0 and down.out.strip() == "postgres stopped (docker-compose 1.29.2)"
    again = invoke("db.down", clean=True)
    assert (
        again.code == 0 and again.out.strip() == "postgres was not running (docker-compose 1.29.2)"
    )


def test_concurrent_callers_start_the_compose_postgres_once(fake: FakeDocker) -> None:
    fake.set("v2")
    config = fake.config(project_root=Path(os.environ["SIGNALMARKET_ROOT"]))
    # The race is real: the same compose calls made at once, without the lock, conflict.
    command = [str(fake.bin / "docker"), "compose", "-f", "x", "up", "-d", "--wait", "postgres"]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: subprocess.run(command, capture_output=True), range(8)))
    assert any(b"Conflict" in r.stderr for r in results)
    (fake.state / "container").unlink()
    calls_before = len(fake.calls())
    with ThreadPoolExecutor(8) as pool:
        urls = list(pool.map(lambda _: docker.compose_up(config), range(8)))
    assert urls == [docker.compose_url(config)] * 8
    ups = [c for c in fake.calls()[calls_before:] if c.startswith("v2 up")]
    assert ups == ["v2 up -d --wait postgres"]
    # The local server's counterpart: test_postgres_local.py (its shared server).


# -- host-side commands act as the service's own role ------------------------------------


@pytest.fixture(scope="module")
def own_server() -> Iterator[URL]:
    """A server of this module's own: it creates the services' real role names."""
    server = resolve.local_server(DevConfig.from_environ(os.environ)).throwaway()
    try:
        yield server.url()
    finally:
        server.stop()


def _drop_service(server: URL) -> None:
    drop_database(server.set(database=SERVICE))
    execute(server.set(database="postgres"), f'DROP ROLE IF EXISTS "{SERVICE}"')


@pytest.mark.parametrize("backend", ["docker", "local"])
def test_after_a_host_side_upgrade_the_service_role_migrates_and_serves(
    own_server: URL, backend: str
) -> None:
    password = secrets.token_hex(8)
    config = DevConfig(backend=backend, compose_role_passwords=((SERVICE, password),))
    url = resolve.service_database(config, own_server, SERVICE)
    try:
        assert url.username == SERVICE and url.database == SERVICE
        if backend == "docker":  # the password the containers get from <SERVICE>_DB_PASSWORD
            assert url.password == password
        assert commands.upgrade(config_for(url), SERVICE).after == head(SERVICE)
        owners = sql(
            own_server.set(database=SERVICE),
            "SELECT DISTINCT tableowner FROM pg_tables"
            " WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
        )
        assert owners == [(SERVICE,)]
        # What a container does with the same role: downgrade, upgrade, serve.
        commands.downgrade(config_for(url), SERVICE, "base")
        assert commands.upgrade(config_for(url), SERVICE).after == head(SERVICE)
        with service_client(SERVICE, url) as client:
            assert client.get("/ready").status_code == 200
    finally:
        _drop_service(own_server)


def test_tables_the_superuser_made_lock_the_service_role_out(own_server: URL) -> None:
    """The failure host-side migrations as the superuser caused: kept as the control."""
    config = DevConfig(backend="docker")
    url = resolve.service_database(config, own_server, SERVICE)
    try:
        as_superuser = own_server.set(database=SERVICE)
        commands.upgrade(config_for(as_superuser), SERVICE)
        with pytest.raises(SharedDbError, match=r"must be owner|permission denied") as error:
            commands.downgrade(config_for(url), SERVICE, "base")
        for in_container in (True, False):
            line = one_line(error.value, in_container=in_container)
            assert line.endswith(
                "its tables belong to another role: migrate as the role the service uses (the "
                "owner of its database), or give them to it: ALTER TABLE ... OWNER TO <role>"
            ), line
            assert "invoke" not in line
        assert for_error(error.value).endswith(
            "or give them to it: ALTER TABLE ... OWNER TO <role>"
        )
    finally:
        _drop_service(own_server)


# -- invoke docker.* ---------------------------------------------------------------------


def free_ports() -> dict[str, str]:
    """Host ports for the compose file that nothing here listens on (a real stack may
    hold the defaults)."""
    names = [f"{env_prefix(s)}_PORT" for s in SERVICES] + ["SIGNALMARKET_PG_PORT"]
    return {name: str(free_port()) for name in names}


def test_docker_tasks_on_an_engine_without_compose_say_what_to_install(fake: FakeDocker) -> None:
    (fake.bin / "docker-compose").unlink()
    line = invoke("docker.up").one_line_error()
    assert line == (
        f"error: a Docker engine answers on {fake.docker_host} but no compose works "
        "(`docker compose`: docker: unknown command: docker compose; no `docker-compose` "
        "command): install Compose (the docker compose plugin, or docker-compose), or run "
        "without containers: invoke up"
    )


def test_docker_up_with_compose_v1_waits_for_health_and_prints_the_ports(
    fake: FakeDocker,
) -> None:
    ports = free_ports()
    result = invoke("docker.up", "--no-build", env=ports)
    assert result.code == 0, result
    assert "v1 up --detach" in fake.calls()
    polled = {call.split()[-1] for call in fake.calls() if call.startswith("v1 ps -a -q")}
    assert polled == {"api_gateway", "scoring_engine", "marketplace_publisher", "signal_ingestion"}
    scoring, gateway = ports["SCORING_ENGINE_PORT"], ports["API_GATEWAY_PORT"]
    assert f"scoring_engine         http://127.0.0.1:{scoring}" in result.out
    assert f"api_gateway            http://127.0.0.1:{gateway}" in result.out
    fake.set("status", "exited \n")
    failed = invoke("docker.up", "--no-build", env=ports)
    assert failed.code == 1
    assert failed.one_line_error().startswith("error: not healthy: api_gateway is exited")


def test_docker_up_refuses_a_busy_port_before_creating_anything(fake: FakeDocker) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        ports = {**free_ports(), "SCORING_ENGINE_PORT": str(port)}
        result = invoke("docker.up", "--no-build", env=ports)
    assert result.one_line_error() == (
        f"error: port {port} on 127.0.0.1 (scoring_engine) is in use by another program: "
        "stop it, or publish scoring_engine elsewhere: SCORING_ENGINE_PORT=<port>"
    )
    assert not [call for call in fake.calls() if " up" in call]
