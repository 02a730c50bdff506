"""Database checks of a history: does an empty database upgrade to head, and does the
result match the models? Run on a scratch database, never on a service's own."""

from alembic.autogenerate import produce_migrations
from alembic.runtime.migration import MigrationContext
from shared_db import runner
from shared_db.connections import engine
from shared_db.errors import MigrationError
from shared_db.migrations.env_runner import comparison_options
from shared_db.services import check_service
from shared_db.soundness import Problem
from shared_db.urls import render
from sqlalchemy.engine import URL

from db_devtools.config import DevConfig
from db_devtools.provisioning.databases import scratch_database
from db_devtools.provisioning.resolve import admin_url
from db_devtools.workflow.changes import describe_all


def schema_diff(service: str, url: URL) -> list[str]:
    """Differences between ``service``'s models and the schema at ``url``."""
    made = engine(url)
    try:
        with made.connect() as connection:
            context = MigrationContext.configure(connection, opts=comparison_options(service))
            script = produce_migrations(context, context.opts["target_metadata"])
            assert script.upgrade_ops is not None
            return describe_all(script.upgrade_ops.ops)
    finally:
        made.dispose()


def database_problems(config: DevConfig, service: str, server: URL | None = None) -> list[Problem]:
    """Upgrade a scratch database to head and compare it with the models."""
    check_service(service)
    with scratch_database(server or admin_url(config, service), f"check_{service}") as url:
        scratch = config.with_urls({service: render(url, show_password=True)})
        try:
            runner.upgrade(scratch, service)
        except MigrationError as exc:
            return [
                Problem(
                    service,
                    "upgrade_failed",
                    f"an empty database does not upgrade to head: {exc.message}",
                    revision=exc.revision,
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
        )
    ]
