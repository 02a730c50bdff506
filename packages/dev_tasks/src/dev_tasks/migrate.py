"""``invoke migrate.*``: the migration workflow, one service or all of them."""

from invoke.collection import Collection
from invoke.context import Context
from invoke.tasks import task
from shared_db import commands
from shared_db.services import SERVICES, check_service

from dev_tasks.errors import reported

SERVICE_HELP = {"service": "one of: " + ", ".join(SERVICES) + " (default: all)"}


def selected(service: str) -> tuple[str, ...]:
    return (check_service(service),) if service else SERVICES


def _show(revisions: tuple[str, ...]) -> str:
    return ", ".join(revisions) if revisions else "(empty: no revision applied)"


@task(help={**SERVICE_HELP, "target": "revision to upgrade to (default: head)"})
def upgrade(c: Context, service: str = "", target: str = "head") -> None:
    """Upgrade the database(s) to a revision."""
    with reported():
        for name in selected(service):
            print(f"{name}: at {_show(commands.upgrade(name, target))}")


@task(help={"service": "the service to downgrade", "target": "revision (default: -1)"})
def downgrade(c: Context, service: str, target: str = "-1") -> None:
    """Downgrade one service's database."""
    with reported():
        print(f"{service}: at {_show(commands.downgrade(check_service(service), target))}")


@task(help=SERVICE_HELP)
def current(c: Context, service: str = "") -> None:
    """Print the revision each database is at."""
    with reported():
        for name in selected(service):
            print(f"{name}: {_show(commands.current(name))}")


def collection() -> Collection:
    return Collection("migrate", upgrade, downgrade, current)
