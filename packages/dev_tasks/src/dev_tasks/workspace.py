"""``invoke up``: the main job, from a fresh machine to migrated databases."""

from invoke.context import Context
from invoke.tasks import task
from shared_db import commands
from shared_db.services import SERVICES

from dev_tasks import db
from dev_tasks.errors import reported


@task
def up(c: Context) -> None:
    """Bring Postgres up, upgrade every service to head, print each one's revision."""
    db.up(c)
    with reported():
        for service in SERVICES:
            revisions = commands.upgrade(service)
            head = commands.heads(service)
            state = "at head" if revisions == head else f"head is {', '.join(head)}"
            print(f"{service}: {', '.join(revisions) or '(empty)'} ({state})")
