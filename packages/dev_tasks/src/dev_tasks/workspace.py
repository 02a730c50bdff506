"""``invoke up`` / ``invoke down``: the whole system on this machine."""

import os
from typing import TYPE_CHECKING

from invoke.context import Context
from invoke.tasks import task

from dev_tasks import db
from dev_tasks.environment import dev_config
from dev_tasks.errors import reported

if TYPE_CHECKING:
    from dev_tasks.stack import Running


@task(help={"base-port": "first of four consecutive ports (default: 8000-8003)"})
def up(c: Context, base_port: int = 0) -> None:
    """Postgres up, then the four services (each migrates on startup); prints their URLs.
    All or nothing: when one fails, those it started are stopped."""
    from dev_tasks import stack  # starts processes, talks HTTP: loaded on use

    db.up(c)
    with reported():
        config = dev_config()
        running = stack.start(config, dict(os.environ), base_port or None, note=print)
    for service in running:
        print(f"{service.service:<22} {running_line(service)}")
    print(
        f"logs: {config.run_dir}/<service>.log; gateway admin token: {config.run_dir}/admin_token"
    )
    print("stop with: invoke down (Postgres stays up: invoke db.down)")


def running_line(service: "Running") -> str:
    return f"{service.url}  (pid {service.pid}, ready: {service.url}/ready)"


@task
def down(c: Context) -> None:
    """Stop the services started by ``invoke up`` (only those: a pid file whose process
    is another program's is removed, that program left alone)."""
    from dev_tasks import stack  # starts processes, talks HTTP: loaded on use

    with reported():
        stopped = stack.stop(dev_config(), note=print)
    print(f"stopped: {', '.join(stopped)}" if stopped else "no service was running")
