"""``invoke db.*``: the project's Postgres (Docker when an engine answers, else local)."""

import os
import time

from invoke.collection import Collection
from invoke.context import Context
from invoke.tasks import task
from shared_db.services import SERVICES, check_service

from dev_tasks.errors import reported


@task
def up(c: Context) -> None:
    """Start the project's Postgres (or reuse the running one) and print its URL."""
    from shared_db import paths, provision, urls
    from shared_db.postgres import docker

    with reported():
        configured = os.environ.get("DATABASE_URL")
        if configured:
            print(f"DATABASE_URL is set: using {urls.mask(configured)}, no server started")
            return
        start = time.perf_counter()
        if provision.backend() == "docker":
            url = docker.compose_up(paths.project_root())
            how = "docker compose"
        else:
            info, how = provision.local_server().up()
            url = info.url(provision.local_server().password())
        elapsed = time.perf_counter() - start
        print(f"postgres up ({how}, {elapsed:.2f} s): {urls.mask(url)}")


@task
def down(c: Context) -> None:
    """Stop the project's long-lived Postgres."""
    from shared_db import paths, provision
    from shared_db.postgres import docker

    with reported():
        if provision.backend() == "docker":
            docker.compose_down(paths.project_root())
            print("postgres stopped (docker compose)")
        elif provision.local_server().down():
            print("postgres stopped")
        else:
            print("postgres was not running")


@task(help={"service": "print that service's database URL", "show-password": "do not mask"})
def url(c: Context, service: str = "", show_password: bool = False) -> None:
    """Print the database URL (of the server, or of one service's database)."""
    from shared_db import provision, urls

    with reported():
        if service:
            target = provision.database_url(check_service(service))
        else:
            target = provision.server_url()
        print(urls.render(target, show_password=show_password))


@task
def status(c: Context) -> None:
    """Say where Postgres comes from and whether it runs."""
    from shared_db import provision, settings, urls
    from shared_db.postgres import docker

    with reported():
        for service in SERVICES:
            configured = settings.configured_url(service)
            if configured:
                print(f"{service}: configured by environment: {urls.mask(configured)}")
        backend = provision.backend()
        if backend == "docker":
            print(f"backend: docker compose ({urls.mask(docker.compose_url())})")
            return
        server = provision.local_server()
        info = server.running()
        if info is None:
            print(f"backend: local server in {server.state_dir}: not running (invoke db.up)")
        else:
            print(
                f"backend: local server, pid {info.pid}, port {info.port}, data {info.data_dir}: "
                f"{urls.mask(info.url(server.password()))}"
            )


def collection() -> Collection:
    return Collection("db", up, down, url, status)
