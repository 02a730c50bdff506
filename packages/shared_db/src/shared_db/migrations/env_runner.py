"""The body of every service's ``env.py``: Alembic calls it, it never runs on import.

Online mode uses, in this order: a connection (or engine) handed over in
``config.attributes["connection"]`` (the library, the services' startup,
pytest-alembic), the ini's ``sqlalchemy.url`` when a caller set one, else the URL the
environment or the provisioned Postgres gives for the service.
Offline mode (``--sql``) needs only the dialect, never a server.
"""

from pathlib import Path
from typing import Any, Literal

from alembic import context
from alembic.runtime.migration import MigrationContext, MigrationInfo
from sqlalchemy import create_engine, pool, text
from sqlalchemy.engine import Connection, Engine

from shared_db import checksums
from shared_db.models import metadata_for
from shared_db.services import version_table

NameType = Literal[
    "schema", "table", "column", "index", "unique_constraint", "foreign_key_constraint"
]


def _include_name_for(service: str) -> Any:
    metadata = metadata_for(service)
    tables = {table.name for table in metadata.tables.values()}
    schemas = {table.schema for table in metadata.tables.values()} | {None}

    def include_name(name: str | None, type_: NameType, parent_names: dict[str, Any]) -> bool:
        # Only this service's tables and schemas: services may share one database.
        if type_ == "schema":
            return name in schemas
        if type_ == "table":
            return name in tables
        return True

    return include_name


def comparison_options(service: str) -> dict[str, Any]:
    """What autogenerate compares for ``service``: its own tables, types and defaults."""
    metadata = metadata_for(service)
    return {
        "target_metadata": metadata,
        "version_table": version_table(service),
        "compare_type": True,
        "compare_server_default": True,
        "include_schemas": any(t.schema for t in metadata.tables.values()),
        "include_name": _include_name_for(service),
    }


# A migration waiting for a table lock fails after LOCK_TIMEOUT instead of queueing
# every other query behind it; a runaway statement is stopped after STATEMENT_TIMEOUT.
LOCK_TIMEOUT = "10s"
STATEMENT_TIMEOUT = "15min"
SESSION_SETTINGS = (
    f"SET lock_timeout = '{LOCK_TIMEOUT}'",
    f"SET statement_timeout = '{STATEMENT_TIMEOUT}'",
)


def _record_checksum(service: str) -> Any:
    """An ``on_version_apply`` hook: runs inside each revision's own transaction."""
    create = text(checksums.create_table_sql(service))
    record, forget = text(checksums.record_sql(service)), text(checksums.forget_sql(service))
    table_ready = False  # the side table is created (if missing) with the first step

    def on_step(
        *, ctx: MigrationContext, step: MigrationInfo, heads: set[str], run_args: Any
    ) -> None:
        nonlocal table_ready
        if step.is_stamp:
            return
        if not table_ready:
            ctx.impl._exec(create)
            table_ready = True
        for revision in step.up_revision_ids:
            if not step.is_upgrade:
                ctx.impl._exec(forget.bindparams(revision=revision))
                continue
            script = context.script.get_revision(revision)
            path = Path(script.path) if script is not None and script.path else None
            digest = checksums.file_checksum(path) if path else "0" * 64
            ctx.impl._exec(record.bindparams(revision=revision, checksum=digest))

    return on_step


def _options(service: str) -> dict[str, Any]:
    # One transaction per revision: a failure leaves the last good revision applied.
    return {
        **comparison_options(service),
        "transaction_per_migration": True,
        "on_version_apply": _record_checksum(service),
    }


def _run_online(connection: Connection, service: str) -> None:
    outside_transaction = not connection.in_transaction()
    for statement in SESSION_SETTINGS:
        connection.exec_driver_sql(statement)
    if outside_transaction:
        connection.commit()  # session settings stay; each revision opens its own transaction
    context.configure(connection=connection, **_options(service))
    with context.begin_transaction():
        context.run_migrations()


def run(service: str) -> None:
    config = context.config
    if context.is_offline_mode():
        context.configure(
            dialect_name="postgresql",
            literal_binds=True,
            dialect_opts={"paramstyle": "named"},
            **_options(service),
        )
        for statement in SESSION_SETTINGS:
            context.execute(statement)
        with context.begin_transaction():
            context.run_migrations()
        return

    connectable = config.attributes.get("connection")
    if isinstance(connectable, Engine):  # pytest-alembic hands over an engine
        with connectable.connect() as conn:
            _run_online(conn, service)
            conn.commit()
        return
    if connectable is not None:
        _run_online(connectable, service)
        return

    url = config.get_main_option("sqlalchemy.url")
    if not url:
        from shared_db.provision import database_url  # starts Postgres only when needed

        url = database_url(service).render_as_string(hide_password=False)
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            _run_online(conn, service)
    finally:
        engine.dispose()
