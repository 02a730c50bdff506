"""``invoke db.*``: the project's Postgres (Docker when an engine answers and a compose
works, else local). ``db.status`` exits 0 only when the server runs (4 when it does not)."""

import time
from typing import TYPE_CHECKING

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task
from shared_db.exit_codes import UNREACHABLE
from shared_db.services import SERVICES, check_service

from dev_tasks.environment import announce_backend, dev_config
from dev_tasks.errors import reported

if TYPE_CHECKING:
    from db_devtools.config import DevConfig


@task
def up(c: Context) -> None:
    """Start the project's Postgres (or reuse the running one) and print its URL."""
    from db_devtools.provisioning import docker, resolve
    from shared_db.urls import mask

    with reported():
        config = dev_config()
        configured = config.parsed_database_url()
        if configured is not None:
            print(f"DATABASE_URL is set: using {mask(configured)}, no server started")
            return
        start = time.perf_counter()
        if announce_backend(config) == "docker":
            url = docker.compose_up(config)
            how = _compose_name(config)
        else:
            server = resolve.local_server(config)
            info, how = server.up()
            url = info.url(server.password())
        elapsed = time.perf_counter() - start
        print(f"postgres up ({how}, {elapsed:.2f} s): {mask(url)}")


@task
def down(c: Context) -> None:
    """Stop the project's long-lived Postgres (exits 1 when the stop failed)."""
    from db_devtools.provisioning import docker, resolve

    with reported():
        config = dev_config()
        if announce_backend(config) == "docker":
            stopped = docker.compose_down(config)
            how = f" ({_compose_name(config)})"
        else:
            stopped = resolve.local_server(config).down()
            how = ""
        print(f"postgres stopped{how}" if stopped else f"postgres was not running{how}")


@task(help={"service": "print that service's database URL", "show-password": "do not mask"})
def url(c: Context, service: str = "", show_password: bool = False) -> None:
    """Print the database URL (of the server, or of one service's database)."""
    from db_devtools.provisioning import resolve
    from shared_db.urls import render

    with reported():
        config = dev_config()
        if service:
            check_service(service)
            if config.url_for(service) is None:
                announce_backend(config)
            target = resolve.database_url(config, service)
        else:
            announce_backend(config)
            target = resolve.server_url(config)
        print(render(target, show_password=show_password))


@task
def status(c: Context) -> None:
    """Say where Postgres comes from and whether it runs (exit 0: it runs, 4: it does not)."""
    from db_devtools.provisioning import docker, resolve
    from shared_db.urls import mask

    with reported():
        config = dev_config()
        for service in SERVICES:
            if config.url_for(service) is not None:
                shown = mask(config.parsed_url(service))
                print(f"{service}: configured by environment: {shown}")
        if announce_backend(config) == "docker":
            state = docker.container_state(config)
            where = f"backend: {_compose_name(config)} ({mask(docker.compose_url(config))})"
            if state != "healthy":
                raise Exit(f"{where}: postgres is {state} (start it: invoke db.up)", UNREACHABLE)
            print(f"{where}: postgres is healthy")
            return
        server = resolve.local_server(config)
        info = server.running()
        if info is None:
            raise Exit(
                f"backend: local server in {server.state_dir}: not running "
                "(start it: invoke db.up)",
                UNREACHABLE,
            )
        print(
            f"backend: local server, pid {info.pid}, port {info.port}, data {info.data_dir}: "
            f"{mask(info.url(server.password()))}"
        )


def _compose_name(config: "DevConfig") -> str:
    from db_devtools.provisioning import docker

    compose = docker.probe(config.docker_host).compose
    return f"{compose.name} {compose.version}" if compose else "docker compose"


def collection() -> Collection:
    return Collection("db", up, down, url, status)
