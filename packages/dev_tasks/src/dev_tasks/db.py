"""``invoke db.*``: the project's Postgres (Docker when an engine answers, else local)."""

import time

from invoke.collection import Collection
from invoke.context import Context
from invoke.tasks import task
from shared_db.services import SERVICES, check_service

from dev_tasks.environment import dev_config
from dev_tasks.errors import reported


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
        if resolve.backend(config) == "docker":
            url = docker.compose_up(config)
            how = "docker compose"
        else:
            server = resolve.local_server(config)
            info, how = server.up()
            url = info.url(server.password())
        elapsed = time.perf_counter() - start
        print(f"postgres up ({how}, {elapsed:.2f} s): {mask(url)}")


@task
def down(c: Context) -> None:
    """Stop the project's long-lived Postgres."""
    from db_devtools.provisioning import docker, resolve

    with reported():
        config = dev_config()
        if resolve.backend(config) == "docker":
            docker.compose_down(config)
            print("postgres stopped (docker compose)")
        elif resolve.local_server(config).down():
            print("postgres stopped")
        else:
            print("postgres was not running")


@task(help={"service": "print that service's database URL", "show-password": "do not mask"})
def url(c: Context, service: str = "", show_password: bool = False) -> None:
    """Print the database URL (of the server, or of one service's database)."""
    from db_devtools.provisioning import resolve
    from shared_db.urls import render

    with reported():
        config = dev_config()
        if service:
            target = resolve.database_url(config, check_service(service))
        else:
            target = resolve.server_url(config)
        print(render(target, show_password=show_password))


@task
def status(c: Context) -> None:
    """Say where Postgres comes from and whether it runs."""
    from db_devtools.provisioning import docker, resolve
    from shared_db.urls import mask

    with reported():
        config = dev_config()
        for service in SERVICES:
            if config.url_for(service) is not None:
                shown = mask(config.parsed_url(service))
                print(f"{service}: configured by environment: {shown}")
        if resolve.backend(config) == "docker":
            print(f"backend: docker compose ({mask(docker.compose_url(config))})")
            return
        server = resolve.local_server(config)
        info = server.running()
        if info is None:
            print(f"backend: local server in {server.state_dir}: not running (invoke db.up)")
        else:
            print(
                f"backend: local server, pid {info.pid}, port {info.port}, data {info.data_dir}: "
                f"{mask(info.url(server.password()))}"
            )


def collection() -> Collection:
    return Collection("db", up, down, url, status)
