"""Database checks of a history: does an empty database upgrade to head, and does the
result match the models? Run on a scratch database, never on a service's own."""

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import URL

from shared_db import commands
from shared_db.databases import scratch_database
from shared_db.errors import MigrationError
from shared_db.migrations.env_runner import comparison_options
from shared_db.provision import admin_url
from shared_db.services import check_service
from shared_db.validate import Problem


def describe_diff(diff: Any) -> str:
    """One autogenerate difference as a short phrase, e.g. ``add column scores.note``."""
    if isinstance(diff, list):  # column modifications come grouped
        return "; ".join(describe_diff(d) for d in diff)
    kind = diff[0]
    if kind in ("add_table", "remove_table"):
        return f"{kind.replace('_', ' ')} {diff[1].fullname}"
    if kind in ("add_column", "remove_column"):
        return f"{kind.replace('_', ' ')} {diff[2]}.{diff[3].name}"
    if kind in ("add_index", "remove_index"):
        return f"{kind.replace('_', ' ')} {diff[1].name}"
    if kind in ("add_constraint", "remove_constraint", "add_fk", "remove_fk"):
        return f"{kind.replace('_', ' ')} {diff[1].name}"
    if kind.startswith("modify_"):
        return f"{kind.replace('_', ' ')} of {diff[2]}.{diff[3]}"
    return str(kind)


def schema_diff(service: str, url: URL) -> list[str]:
    """Differences between ``service``'s models and the schema at ``url``."""
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts=comparison_options(service))
            return [
                describe_diff(d) for d in compare_metadata(context, context.opts["target_metadata"])
            ]
    finally:
        engine.dispose()


def database_problems(service: str, server: URL | None = None) -> list[Problem]:
    """Upgrade a scratch database to head and compare it with the models."""
    check_service(service)
    with scratch_database(server or admin_url(service), f"check_{service}") as url:
        try:
            commands.upgrade(service, url=url)
        except MigrationError as exc:
            return [
                Problem(
                    service,
                    "upgrade_failed",
                    f"an empty database does not upgrade to head: {exc}",
                    "fix the failing revision",
                )
            ]
        diffs = schema_diff(service, url)
    if not diffs:
        return []
    return [
        Problem(
            service,
            "model_drift",
            f"the models differ from the migrated schema: {', '.join(diffs)}",
            f"run: invoke migrate.revision --service {service} -m 'describe the change'",
        )
    ]
