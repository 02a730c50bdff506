"""``invoke docker.*``: the whole system in containers (docker/compose.yaml).

Postgres, a one-shot migrate job per service, and the four services, each in its own
image built from docker/Dockerfile. Every task needs a Docker engine that answers and a
compose (the v2 plugin, else ``docker-compose`` v1); without them it exits 1 with one
line saying why and what to do instead. Host ports: ``<SERVICE>_PORT`` (defaults 8000-8003).
"""

import os
import shlex
import time

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task
from shared_db.services import PORTS, check_service, env_prefix

from dev_tasks.environment import dev_config
from dev_tasks.errors import reported

HEALTHY_TIMEOUT_S = 300.0


def require_compose() -> tuple[str, ...]:
    """The compose command to use, or ``Exit`` (one line) saying why there is none."""
    from db_devtools.provisioning import docker

    config = dev_config()
    found = docker.probe(config.docker_host)
    if found.compose is not None:
        return found.compose.command
    if docker.engine_answers(config.docker_host):
        step = "install Compose (the docker compose plugin, or docker-compose)"
    else:
        step = "start Docker (or point DOCKER_HOST at one)"
    raise Exit(f"error: {found.reason}: {step}, or run without containers: invoke up", code=1)


def compose_command(compose: tuple[str, ...], *args: str) -> str:
    """``<compose> -p signalmarket -f docker/compose.yaml ARGS`` as one shell command line."""
    from db_devtools.provisioning import docker

    file = docker.compose_file(dev_config().project_root)
    return shlex.join([*compose, "-p", docker.PROJECT, "-f", str(file), *args])


def host_port(service: str) -> int:
    """Where docker/compose.yaml publishes ``service`` on the host (``<SERVICE>_PORT``)."""
    value = os.environ.get(f"{env_prefix(service)}_PORT", "")
    return int(value) if value.isdigit() else PORTS[service]


def _run(c: Context, command: str, action: str) -> None:
    result = c.run(command, warn=True, in_stream=False)
    if result is None or result.failed:
        code = result.exited if result is not None else 1
        raise Exit(f"error: could not {action} (exit {code}; its output is above)", code=1)


@task(help={"service": "build only this service's image (default: all four)"})
def build(c: Context, service: str = "") -> None:
    """Build the service images (docker/Dockerfile, one image per service)."""
    with reported():
        targets = [check_service(service)] if service else []
    compose = require_compose()
    _run(c, compose_command(compose, "build", *targets), "build the images")


@task(help={"build": "build the images first (default; --no-build uses the existing ones)"})
def up(c: Context, build: bool = True) -> None:
    """Postgres, the migrate jobs and the four services; waits until every one is healthy."""
    compose = require_compose()
    _check_ports()
    building = ["--build"] if build else []
    if compose == ("docker", "compose"):
        _run(c, compose_command(compose, "up", "--detach", "--wait", *building), "start")
    else:  # docker-compose v1 has no --wait
        _run(c, compose_command(compose, "up", "--detach", *building), "start")
        _wait_healthy()
    for service in PORTS:
        url = f"http://127.0.0.1:{host_port(service)}"
        print(f"{service:<22} {url}  (ready: {url}/ready)")
    print(f"logs: {compose_command(compose, 'logs', '--follow')}")
    print("stop with: invoke docker.down (--volumes also drops the database)")


def _check_ports() -> None:
    """Refuse up front when a host port is held by another program: compose would create
    the containers, fail to start one, and leave it in "Created". A port our own running
    container publishes is held too, and is fine."""
    from db_devtools.provisioning import docker
    from db_devtools.provisioning.ports import port_free

    config = dev_config()
    wanted = {service: host_port(service) for service in PORTS}
    wanted["postgres"] = config.compose_pg_port
    with reported():
        for service, port in wanted.items():
            if port_free(port):
                continue
            if docker.container_state(config, service) in ("absent", "created", "exited", "dead"):
                variable = (
                    "SIGNALMARKET_PG_PORT"
                    if service == "postgres"
                    else (f"{env_prefix(service)}_PORT")
                )
                raise Exit(
                    f"error: port {port} on 127.0.0.1 ({service}) is in use by another "
                    f"program: stop it, or publish {service} elsewhere: {variable}=<port>",
                    code=1,
                )


def _wait_healthy() -> None:
    from db_devtools.provisioning import docker

    config = dev_config()
    deadline = time.monotonic() + HEALTHY_TIMEOUT_S
    waiting = list(PORTS)
    with reported():
        while waiting:
            states = {service: docker.container_state(config, service) for service in waiting}
            failed = {s: state for s, state in states.items() if state in ("exited", "dead")}
            if failed or time.monotonic() > deadline:
                which = ", ".join(f"{s} is {state}" for s, state in (failed or states).items())
                raise Exit(f"error: not healthy: {which} (see: docker logs <container>)", 1)
            waiting = [s for s, state in states.items() if state != "healthy"]
            time.sleep(1.0 if waiting else 0)


@task(help={"volumes": "also remove the database volume (the data is lost)"})
def down(c: Context, volumes: bool = False) -> None:
    """Stop and remove the containers (the database volume stays unless --volumes)."""
    compose = require_compose()
    _run(c, compose_command(compose, "down", *(["--volumes"] if volumes else [])), "stop")


def collection() -> Collection:
    return Collection("docker", build, up, down)
