"""Invoke tasks for the monorepo; the root ``tasks.py`` only calls ``namespace()``."""

from invoke.collection import Collection

from dev_tasks import bench_task, checks, container, db, migrate, workspace


def namespace() -> Collection:
    return Collection(
        db.collection(),
        migrate.collection(),
        container.collection(),
        checks.test,
        checks.lint,
        workspace.up,
        workspace.down,
        bench_task.bench,
    )
