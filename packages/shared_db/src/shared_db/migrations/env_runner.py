"""The body of every service's ``env.py``: Alembic calls it, it never runs on import.

Online mode runs on, in this order: a connection (or engine) handed over in
``config.attributes["connection"]`` (the runner, pytest-alembic), else the database
URL of the ``DbConfig`` in ``config.attributes["db_config"]`` (the library's own
configurations), else, for Alembic's own command line
(``alembic -c packages/shared_db/alembic_<service>.ini ...``), the URL the environment
gives (``<SERVICE>_DATABASE_URL``, ``DATABASE_URL``) or a development database
provider registered under the ``signalmarket.database_provider`` entry point.
Offline mode (``--sql``) needs only the dialect, never a server.
"""

import os
import time
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Literal

from alembic import context
from alembic.runtime.migration import MigrationContext, MigrationInfo
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import URL, Connection, Engine

from shared_db import records
from shared_db.config import DbConfig
from shared_db.connections import migration_engine
from shared_db.errors import SharedDbError
from shared_db.history import PHASES
from shared_db.locking import migration_lock
from shared_db.models import metadata_for
from shared_db.services import version_table
from shared_db.soundness import loaded, sound_directory

PROVIDER_GROUP = "signalmarket.database_provider"

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
# every other query behind it (the runner sets it per revision and retries; Alembic's
# own command line fails fast); a runaway statement is stopped after STATEMENT_TIMEOUT.
LOCK_TIMEOUT = "2s"
STATEMENT_TIMEOUT = "15min"
SESSION_SETTINGS = (
    f"SET lock_timeout = '{LOCK_TIMEOUT}'",
    f"SET statement_timeout = '{STATEMENT_TIMEOUT}'",
)


class RevisionRecorder:
    """The ``on_version_apply`` hook: runs inside each revision's own transaction and
    records the revision (parents, checksum, phase, message, duration) beside the version
    table; a downgrade step removes the record. ``step_started`` is when the current step
    began (the runner sets it; Alembic's own command line counts from the previous step).

    Online, the record is sent as the driver's own SQL (no statement to compile for
    each revision; the server prepares it after a few); offline (``--sql``) it is
    rendered into the script like Alembic's own statements."""

    def __init__(self, service: str, script: ScriptDirectory) -> None:
        self.script = script
        self.ensure = [text(statement) for statement in records.ensure_table_sql(service)]
        self.record = records.record_sql(service)
        self.forget = records.forget_sql(service)
        self.table_ready = False  # made (if missing) with the first step
        self.step_started = time.perf_counter()

    def __call__(
        self, *, ctx: MigrationContext, step: MigrationInfo, heads: set[str], run_args: Any
    ) -> None:
        if step.is_stamp:
            return
        if not self.table_ready:
            for statement in self.ensure:
                ctx.execute(statement)
            self.table_ready = True
        duration_ms = round((time.perf_counter() - self.step_started) * 1000)
        for revision in step.up_revision_ids:
            found = self.script.get_revision(revision)
            if not step.is_upgrade:
                # A baseline (migrate.squash) undone takes the records of the revisions it
                # replaced with it: a database that applied them is at base now.
                replaced = getattr(found.module, "replaces", None) if found is not None else None
                for gone in (*(replaced or ()), revision):
                    _execute(ctx, self.forget, revision=gone)
                continue
            path = Path(found.path) if found is not None and found.path else None
            phase = getattr(found.module, "phase", None) if found is not None else None
            _execute(
                ctx,
                self.record,
                revision=revision,
                down=",".join(step.down_revision_ids),
                checksum=records.file_checksum(path) if path else "0" * 64,
                phase=phase if phase in PHASES else None,
                message=((found.doc or "").strip().splitlines() or [""])[0] if found else "",
                duration_ms=duration_ms,
            )
        self.step_started = time.perf_counter()


def _execute(ctx: MigrationContext, statement: str, **params: object) -> None:
    """``statement`` (named ``:parameters``) in the revision's transaction."""
    if ctx.as_sql or ctx.connection is None:
        ctx.execute(text(statement).bindparams(**params))
    else:
        ctx.connection.exec_driver_sql(records.driver_sql(statement), params)


def apply_options(service: str, recorder: RevisionRecorder) -> dict[str, Any]:
    """What a ``MigrationContext`` needs to apply ``service``'s revisions (the runner's:
    nothing of autogenerate, so the models are not imported)."""
    # One transaction per revision: a failure leaves the last good revision applied.
    return {
        "version_table": version_table(service),
        "transaction_per_migration": True,
        "on_version_apply": (recorder,),
    }


def runner_options(
    service: str, script: ScriptDirectory, recorder: RevisionRecorder | None = None
) -> dict[str, Any]:
    """The options of ``env.py``'s context: applying, and comparing (autogenerate)."""
    return {
        **comparison_options(service),
        **apply_options(service, recorder or RevisionRecorder(service, script)),
    }


def _options(service: str) -> dict[str, Any]:
    return runner_options(service, context.script)


def _run_online(connection: Connection, service: str) -> None:
    outside_transaction = not connection.in_transaction()
    for statement in SESSION_SETTINGS:
        connection.exec_driver_sql(statement)
    if outside_transaction:
        connection.commit()  # session settings stay; each revision opens its own transaction
    context.configure(connection=connection, **_options(service))
    with context.begin_transaction():
        context.run_migrations()


def _command_line_config(service: str) -> DbConfig:
    """Alembic's own command line: the environment's URL, else a development provider.

    This is the one place where the runtime reads the environment itself: Alembic's
    command line is a front end that builds no configuration of its own."""
    config = DbConfig.from_environ(os.environ, caller="alembic")
    if config.url_for(service) is not None:
        return config  # set (even if empty or wrong: refused naming the variable)
    providers = entry_points(group=PROVIDER_GROUP)
    if not providers:
        config.require_url(service)  # raises: no URL and nothing to provide one
    provide = next(iter(providers)).load()
    return config.with_urls({service: str(provide(service))})


def _check_history(service: str) -> None:
    """Alembic's own command line migrates nothing on a history the runner would refuse
    (a duplicate ID, two heads...): one line instead of Alembic's warnings and tracebacks."""
    script = context.script
    sound_directory(service, Path(script.versions), lambda: script)
    loaded(service, script)


# What to do next, for Alembic's own command line (the Invoke tasks have their own hints).
_COMMAND_LINE_HINTS = {
    "invalid_database_url": "fix that variable, or unset it (in a checkout, the project's "
    "Postgres is used then)",
    "database_unreachable": "is the server up? check the host and port of the URL in use",
    "database_error": "check the URL in use",
    "unsound_history": "fix the history (in a checkout, see every problem: invoke "
    "migrate.validate --offline --service {s})",
}


def command_line_error(error: SharedDbError) -> str:
    """``error`` as the one line Alembic's command line prints."""
    hint = _COMMAND_LINE_HINTS.get(error.kind)
    if hint is None:
        return f"error: {error}"
    return f"error: {error}; {hint.format(s=error.service or '<service>')}"


def run(service: str) -> None:
    alembic_config = context.config
    attributes = alembic_config.attributes
    command_line = attributes.get("db_config") is None and attributes.get("connection") is None
    try:
        if command_line:
            _check_history(service)
        if context.is_offline_mode():
            _run_offline(service)
            return
        if command_line:  # Alembic's own command line: a front end, so one line
            config = _command_line_config(service)
            _run_locked(config, service, config.parsed_url(service))
            return
    except SharedDbError as exc:
        if not command_line:
            raise
        raise SystemExit(command_line_error(exc)) from None

    connectable = attributes.get("connection")
    if isinstance(connectable, Engine):  # pytest-alembic hands over an engine
        with connectable.connect() as conn:
            _run_online(conn, service)
            conn.commit()
        return
    if connectable is not None:
        _run_online(connectable, service)
        return
    config = attributes["db_config"]  # the library's own configuration: errors propagate
    _run_locked(config, service, config.parsed_url(service))


def _run_offline(service: str) -> None:
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


def _run_locked(config: DbConfig, service: str, url: URL) -> None:
    """No connection was handed over, so this is not the runner (which holds the lock
    already) but e.g. `alembic upgrade` itself: it takes the same lock."""
    made = migration_engine(config, service, url)
    try:
        with migration_lock(config, service), made.connect() as conn:
            _run_online(conn, service)
    finally:
        made.dispose()
