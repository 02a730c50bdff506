"""Migration commands over one service's history: plain functions, typed errors.

Each takes a service name; a database URL may be given, otherwise the resolution
order of ``shared_db.provision`` applies. Nothing here prints.
"""

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import URL, Connection
from sqlalchemy.exc import SQLAlchemyError

from shared_db.config import alembic_config
from shared_db.errors import MigrationError
from shared_db.history import read_history
from shared_db.provision import database_url
from shared_db.services import check_service, version_table
from shared_db.urls import mask, normalize


def script_directory(service: str) -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config(service))


def heads(service: str) -> tuple[str, ...]:
    """The head revisions of ``service``'s history (one, in a healthy history)."""
    return tuple(sorted(script_directory(service).get_heads()))


@contextmanager
def connect(service: str, url: str | URL | None = None) -> Iterator[Connection]:
    target = normalize(url) if url is not None else database_url(service)
    engine = create_engine(target, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            yield connection
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        hint = "is Postgres up? (invoke db.up)" if _unreachable(exc) else "check the URL"
        raise MigrationError(
            f"{service}: database error at {target.host}:{target.port or 5432} "
            f"({mask(target)}): {reason}; {hint}, see: invoke db.url --service {service}"
        ) from exc
    finally:
        engine.dispose()


def _unreachable(exc: SQLAlchemyError) -> bool:
    text = str(exc).lower()
    return "refused" in text or "timeout" in text or "could not translate host" in text


def refuse_unknown(service: str, current: tuple[str, ...]) -> None:
    """A database at a revision this code does not know was migrated by newer code."""
    known = read_history(service).revisions
    unknown = [rev for rev in current if rev not in known]
    if unknown:
        raise MigrationError(
            f"{service}: the database is at revision {', '.join(unknown)}, which this code "
            "does not know (it was migrated by a newer version); refusing to migrate: "
            "deploy the newer version, or downgrade with the code that wrote it"
        )


def require_readable_history(service: str) -> None:
    """Alembic would fail to load a history with a broken file: say which one."""
    broken = read_history(service).unreadable
    if broken:
        bad = broken[0]
        raise MigrationError(
            f"{service}: {bad.path.name} is not a valid revision file ({bad.reason}); "
            f"run: git checkout -- {bad.path} (or delete it), then: invoke migrate.validate"
        )


def current(service: str, url: str | URL | None = None) -> tuple[str, ...]:
    """The revisions recorded in ``service``'s version table (empty: nothing applied)."""
    check_service(service)
    with connect(service, url) as connection:
        return _current(connection, service)


def upgrade(service: str, target: str = "head", url: str | URL | None = None) -> tuple[str, ...]:
    """Upgrade ``service``'s database to ``target``; returns the revisions it ends at."""
    return _run(service, url, lambda cfg: command.upgrade(cfg, target), f"upgrade to {target}")


def downgrade(service: str, target: str = "-1", url: str | URL | None = None) -> tuple[str, ...]:
    """Downgrade ``service``'s database to ``target``; returns the revisions it ends at."""
    return _run(service, url, lambda cfg: command.downgrade(cfg, target), f"downgrade to {target}")


class _StepRecorder(logging.Handler):
    """Remembers the last "Running upgrade A -> B" step Alembic announced."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.step: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith(("Running upgrade", "Running downgrade")):
            self.step = message.removeprefix("Running ").strip()


@contextmanager
def _recording_steps() -> Iterator[_StepRecorder]:
    logger = logging.getLogger("alembic.runtime.migration")
    recorder, level = _StepRecorder(), logger.level
    logger.addHandler(recorder)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield recorder
    finally:
        logger.removeHandler(recorder)
        logger.setLevel(level)


def _first_line(exc: BaseException) -> str:
    origin = getattr(exc, "orig", None) or exc
    text = str(origin).strip()
    return text.splitlines()[0] if text else type(origin).__name__


def _run(
    service: str, url: str | URL | None, action: Callable[[Config], None], what: str
) -> tuple[str, ...]:
    check_service(service)
    require_readable_history(service)
    with connect(service, url) as connection:
        refuse_unknown(service, _current(connection, service))
        connection.rollback()  # end the read's transaction: each revision runs in its own
        config = alembic_config(service, connection=connection)
        with _recording_steps() as recorder:
            try:
                action(config)
            except CommandError as exc:
                connection.rollback()
                # Alembic hides "Multiple revisions start with ..." behind "Can't locate".
                cause = exc.__cause__
                reason = cause if cause and "Multiple revisions" in str(cause) else exc
                raise MigrationError(
                    f"{service}: {what} failed: {reason}; "
                    f"see the revisions: invoke migrate.history --service {service}"
                ) from exc
            except Exception as exc:
                connection.rollback()
                at = _current(connection, service)
                step = recorder.step or "?"
                failing = step.split("->")[-1].split(",")[0].strip()
                raise MigrationError(
                    f"{service}: {what} failed in revision {failing} ({step}): "
                    f"{_first_line(exc)}; the database stays at {', '.join(at) or 'base'}; "
                    f"fix that revision, then run: invoke migrate.upgrade --service {service}"
                ) from exc
        connection.commit()
        return _current(connection, service)


def _current(connection: Connection, service: str) -> tuple[str, ...]:
    context = MigrationContext.configure(connection, opts={"version_table": version_table(service)})
    return tuple(sorted(context.get_current_heads()))
