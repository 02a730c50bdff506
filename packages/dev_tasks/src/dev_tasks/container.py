"""``invoke docker.*``: the whole system in containers (docker/compose.yaml).

Postgres plus the four services, each in its own image built from docker/Dockerfile.
Every task needs a Docker engine that answers and the compose plugin; without them it
exits 1 with one line saying what to do instead.
"""

import shlex
import shutil
import subprocess

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task
from shared_db.services import PORTS, check_service

from dev_tasks.environment import dev_config
from dev_tasks.errors import reported


def require_docker() -> None:
    """Raise ``Exit`` (one line) unless an engine answers and ``docker compose`` exists."""
    from db_devtools.provisioning import docker

    host = dev_config().docker_host
    if not docker.engine_answers(host):
        raise Exit(
            f"error: no Docker engine answers on {host}: start Docker (or point DOCKER_HOST "
            "at one), or run without containers: invoke up",
            code=1,
        )
    if not _compose_plugin():
        raise Exit(
            "error: `docker compose` is not available (the compose plugin is missing): "
            "install Docker Compose v2, or run without containers: invoke up",
            code=1,
        )


def compose_command(*args: str) -> str:
    """``docker compose -f docker/compose.yaml ARGS`` as one shell command line."""
    compose = dev_config().project_root / "docker" / "compose.yaml"
    return shlex.join(["docker", "compose", "-f", str(compose), *args])


@task(help={"service": "build only this service's image (default: all four)"})
def build(c: Context, service: str = "") -> None:
    """Build the service images (docker/Dockerfile, one image per service)."""
    with reported():
        targets = [check_service(service)] if service else []
    require_docker()
    c.run(compose_command("build", *targets))


@task(help={"build": "build the images first (default; --no-build uses the existing ones)"})
def up(c: Context, build: bool = True) -> None:
    """Postgres and the four services in containers; waits until every one is healthy."""
    require_docker()
    c.run(compose_command("up", "--detach", "--wait", *(["--build"] if build else [])))
    for service, port in PORTS.items():
        url = f"http://127.0.0.1:{port}"
        print(f"{service:<22} {url}  (ready: {url}/ready)")
    print(f"logs: {compose_command('logs', '--follow')}")
    print("stop with: invoke docker.down (--volumes also drops the database)")


@task(help={"volumes": "also remove the database volume (the data is lost)"})
def down(c: Context, volumes: bool = False) -> None:
    """Stop and remove the containers (the database volume stays unless --volumes)."""
    require_docker()
    c.run(compose_command("down", *(["--volumes"] if volumes else [])))


def _compose_plugin() -> bool:
    if shutil.which("docker") is None:
        return False
    result = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    return result.returncode == 0


def collection() -> Collection:
    return Collection("docker", build, up, down)
