"""The body of every service's ``env.py``: Alembic calls it, it never runs on import.

Online mode uses, in this order: a connection (or engine) handed over in
``config.attributes["connection"]`` (the library, the services' startup,
pytest-alembic), the ini's ``sqlalchemy.url`` when a caller set one, else the URL the
environment or the provisioned Postgres gives for the service.
Offline mode (``--sql``) needs only the dialect, never a server.
"""

from typing import Any, Literal

from alembic import context
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import Connection, Engine

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


def _options(service: str) -> dict[str, Any]:
    # One transaction per revision: a failure leaves the last good revision applied.
    return {**comparison_options(service), "transaction_per_migration": True}


def _run_online(connection: Connection, service: str) -> None:
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
