"""Databases named on the command line (``--database-url``, e.g. staging's and
production's): where each one stands in a service's history. ``migrate.rebase`` refuses
to move a revision one of them applied; ``migrate.squash`` refuses when one of them is
below the new baseline."""

from dataclasses import dataclass

from shared_db.connections import connect
from shared_db.errors import ConfigurationError, DatabaseError
from shared_db.history import Revision
from shared_db.records import Applied, file_checksum
from shared_db.services import version_table
from shared_db.status import read_state
from shared_db.urls import normalize, where
from sqlalchemy import text

from db_devtools.config import DevConfig
from db_devtools.errors import WorkflowError


@dataclass(frozen=True)
class Deployed:
    """One database's place in a service's history."""

    where: str  # host:port/database, never the URL
    current: tuple[str, ...]
    applied: dict[str, Applied]

    def ran(self, revision: Revision, same_id_elsewhere: bool) -> bool:
        """It applied ``revision`` (this file). When another revision with the same ID
        exists (two branches chose it), only a record of this file's checksum counts."""
        record = self.applied.get(revision.id)
        if record is None:
            return revision.id in self.current
        return not same_id_elsewhere or record.checksum == file_checksum(revision.path)


def read(config: DevConfig, service: str, url_text: str) -> Deployed:
    """Where the database named by ``url_text`` stands in ``service``'s history: the one
    named, or, when it holds no such history, ``service``'s own database on that server."""
    try:
        url = normalize(url_text)
    except ConfigurationError as exc:
        raise WorkflowError(
            f"--database-url: {exc.message}", kind="bad_database_option", service=service
        ) from None
    named = url.database or service
    for database in dict.fromkeys((named, service)):
        target = url.set(database=database)
        try:
            with connect(config, service, target) as connection:
                found = connection.execute(
                    text("SELECT to_regclass(:t)"), {"t": version_table(service)}
                ).scalar()
                if found is None:
                    continue
                current, applied = read_state(connection, service)
                return Deployed(where(target), current, applied)
        except DatabaseError as exc:
            if database != named:
                continue  # the service's own database is not on that server
            raise WorkflowError(
                f"--database-url: {exc.message}",
                kind="given_database_unreachable",
                service=service,
            ) from None
    raise WorkflowError(
        f"--database-url: the database at {where(url.set(database=named))} holds no "
        f"{service} history (no table {version_table(service)}, nor in a database "
        f"{service} on that server)",
        kind="not_a_service_database",
        service=service,
    )
