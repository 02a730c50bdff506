"""The runtime's migration verbs: flat functions ``fn(config, service, ...)``, typed errors.

Like ``alembic.command``: each takes the one ``DbConfig`` a front end built, returns
data and raises ``SharedDbError`` subclasses; nothing here prints. Every verb that
changes a database's revision goes through ``shared_db.runner``.
"""

from shared_db import records, runner
from shared_db.config import DbConfig
from shared_db.connections import connect
from shared_db.history import read_history
from shared_db.runner import Reporter, RunResult, log_progress
from shared_db.services import check_service
from shared_db.status import Status, status

__all__ = ["RunResult", "Status", "current", "downgrade", "heads", "stamp", "status", "upgrade"]


def heads(config: DbConfig, service: str) -> tuple[str, ...]:
    """The head revisions of ``service``'s history (one, in a healthy history)."""
    return read_history(config, check_service(service)).heads


def current(config: DbConfig, service: str) -> tuple[str, ...]:
    """The revisions recorded in ``service``'s version table (empty: nothing applied)."""
    with connect(config, check_service(service)) as connection:
        return records.current_revisions(connection, service)


def upgrade(
    config: DbConfig, service: str, target: str = "head", report: Reporter = log_progress
) -> RunResult:
    """Upgrade ``service``'s database to ``target``; ``report`` gets each revision applied."""
    return runner.upgrade(config, check_service(service), target, report)


def downgrade(
    config: DbConfig, service: str, target: str = "-1", report: Reporter = log_progress
) -> RunResult:
    """Downgrade ``service``'s database to ``target`` (default: one revision)."""
    return runner.downgrade(config, check_service(service), target, report)


def stamp(config: DbConfig, service: str, revision: str) -> RunResult:
    """Record ``revision`` as the database's revision without running migrations."""
    return runner.stamp(config, check_service(service), revision)
