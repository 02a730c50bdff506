"""Is a history sound, and does it upgrade to the models? Every problem found.

Offline checks read the files only (see ``shared_db.soundness``), every file compiled:
one head, no dangling ``down_revision``, no duplicate IDs, file names matching IDs,
nothing cut off from the base, unique branch labels, every file a valid revision, the
head marker naming the head (``head_marker``); then the squawk lint of the revisions not
yet on the main branch. Database checks upgrade a scratch database to head and compare
it with the models, and compare the applied revisions' checksums with the files. The
Invoke front end adds a fix to each problem.
"""

from dataclasses import dataclass, field
from pathlib import Path

from shared_db.history import read_directory as _plain_read
from shared_db.services import check_service
from shared_db.soundness import Problem, history_problems

from db_devtools.config import DevConfig
from db_devtools.workflow.head_marker import MARKER_KINDS, marker_problems
from db_devtools.workflow.history_cache import read_directory


@dataclass
class Report:
    service: str
    problems: list[Problem] = field(default_factory=list)
    heads: tuple[str, ...] = ()
    database_checked: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems


def validate_directory(service: str, directory: Path, cache_dir: Path | None = None) -> Report:
    """The offline checks of the history in ``directory`` (any folder of revision files),
    and of its head marker once the history itself is sound."""
    history = read_directory(directory, cache_dir)
    problems = history_problems(service, history)
    if not any(p.fatal for p in problems):
        problems += marker_problems(service, directory, history)
    return Report(service, problems, history.heads)


def lint_problems(
    config: DevConfig, service: str, revision_range: str | None = None
) -> list[Problem]:
    """squawk's findings as problems, each naming its revision file."""
    from db_devtools.workflow.lint import IDEMPOTENT_AUTOCOMMIT, OWN_RULES, lint

    return [
        Problem(
            service,
            "lint_autocommit"
            if finding.rule == IDEMPOTENT_AUTOCOMMIT
            else "lint_phase"
            if finding.rule in OWN_RULES
            else "lint",
            f"{finding.path.name}: {finding.rule}: {finding.message}",
            revision=finding.revision,
            path=finding.path,
            detail=finding.rule,
        )
        for finding in lint(config, service, revision_range)
    ]


def tamper_problems(config: DevConfig, service: str) -> list[Problem]:
    """Applied revisions (in ``service``'s own database) whose file changed since."""
    from shared_db.status import modified_at

    from db_devtools.provisioning.resolve import with_databases

    history = _plain_read(config.versions_dir(service))
    return [
        Problem(
            service,
            "modified_after_apply",
            f"revision {m.revision} was applied to {service}'s database and its file "
            + ("is gone" if m.path is None else f"{m.path.name} has changed since"),
            revision=m.revision,
            path=m.path,
        )
        for m in modified_at(with_databases(config, [service]), service, history)
    ]


def leftover_problems(config: DevConfig, service: str) -> list[Problem]:
    """Invalid indexes on ``service``'s tables in its own database: left by a killed
    ``CREATE INDEX CONCURRENTLY`` (the runner drops them before it migrates)."""
    from shared_db.connections import connect_autocommit
    from shared_db.leftovers import invalid_indexes
    from shared_db.models import metadata_for

    from db_devtools.provisioning.resolve import with_databases

    tables = {(t.schema or "public", t.name) for t in metadata_for(service).tables.values()}
    url = with_databases(config, [service]).parsed_url(service)
    with connect_autocommit(url, timeout_s=config.connect_timeout_s, service=service) as conn:
        found = invalid_indexes(conn, tables)
    return [
        Problem(
            service,
            "invalid_index",
            f"the index {schema}.{index} on {table} in {service}'s database is invalid "
            "(a CREATE INDEX CONCURRENTLY was killed or failed)",
            detail=f"DROP INDEX CONCURRENTLY {schema}.{index}",
        )
        for schema, index, table in found
    ]


def validate(
    config: DevConfig, service: str, *, offline: bool = False, lint: bool = True
) -> Report:
    """All checks of ``service``'s history; with ``offline`` no database is used, with
    ``lint`` the revisions not yet on the main branch go through squawk. Without a
    configured URL, the database checks use the project's provisioned Postgres."""
    report = validate_directory(
        check_service(service), config.versions_dir(service), config.cache_dir
    )
    if any(p.kind not in MARKER_KINDS for p in report.problems):
        return report  # a broken graph can be neither rendered nor upgraded
    if lint:
        report.problems.extend(lint_problems(config, service))
    if offline:
        return report
    from db_devtools.workflow.drift import database_problems

    report.problems.extend(database_problems(config, service))
    report.problems.extend(tamper_problems(config, service))
    report.problems.extend(leftover_problems(config, service))
    report.database_checked = True
    return report
