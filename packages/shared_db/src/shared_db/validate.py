"""Is a history sound? Every problem found, each with what it is and the fix.

Offline checks read the files only (see ``history``): one head, no dangling
``down_revision``, no duplicate IDs, file names matching IDs, nothing cut off
from the base, unique branch labels, every file a revision. Database checks
upgrade a scratch database to head and compare it with the models.
"""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from shared_db.history import ID_PATTERN, History, read_directory, sort_ids
from shared_db.services import check_service


@dataclass(frozen=True)
class Problem:
    service: str
    kind: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.service}: {self.message}; {self.fix}"


@dataclass
class Report:
    service: str
    problems: list[Problem] = field(default_factory=list)
    heads: tuple[str, ...] = ()
    database_checked: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, object]:
        return {
            "service": self.service,
            "ok": self.ok,
            "heads": list(self.heads),
            "database_checked": self.database_checked,
            "problems": [asdict(p) for p in self.problems],
        }


def reports_as_json(reports: list["Report"]) -> str:
    return json.dumps(
        {"ok": all(r.ok for r in reports), "services": [r.as_dict() for r in reports]}, indent=2
    )


def _name(path: Path) -> str:
    return path.name


def check_history(service: str, history: History, directory: Path) -> list[Problem]:
    """The offline checks, on an already-read history."""
    problems: list[Problem] = []

    def add(kind: str, message: str, fix: str) -> None:
        problems.append(Problem(service, kind, message, fix))

    for bad in history.unreadable:
        add(
            "unreadable_file",
            f"{bad.path.name} is not a valid revision file ({bad.reason})",
            f"run: git checkout -- {bad.path} (or delete it if it is not a revision)",
        )
    for rev, paths in sorted(history.duplicates.items()):
        names = ", ".join(_name(p) for p in paths)
        add(
            "duplicate_id",
            f"revision ID {rev} is declared by {len(paths)} files ({names}); "
            "two branches probably chose the same ID",
            f"run: invoke migrate.renumber --service {service} --file {paths[-1]}",
        )
    for rev, missing in history.dangling():
        path = history.revisions[rev].path
        add(
            "dangling_down_revision",
            f"{rev} ({path.name}) has down_revision {missing!r}, which no revision declares",
            f"point down_revision in {path} at an existing revision, or restore the missing "
            f"file: git log --diff-filter=D --name-only -- {directory}",
        )
    for revision in history.revisions.values():
        for needed in revision.depends_on:
            if needed not in history.revisions and not any(
                needed in r.branch_labels for r in history.revisions.values()
            ):
                add(
                    "dangling_depends_on",
                    f"{revision.id} ({revision.path.name}) depends_on {needed!r}, "
                    "which no revision or branch label declares",
                    f"fix depends_on in {revision.path}",
                )
    for revision in history.revisions.values():
        expected_prefix = f"{revision.id}_"
        if not revision.path.name.startswith(expected_prefix):
            slug = revision.path.stem.split("_", 1)[-1] if "_" in revision.path.stem else "slug"
            target = revision.path.with_name(f"{revision.id}_{slug}.py")
            add(
                "misnamed_file",
                f"{revision.path.name} declares revision {revision.id}; "
                f"files are named <revision>_<slug>.py",
                f"run: git mv {revision.path} {target}",
            )
        elif not ID_PATTERN.match(revision.id):
            add(
                "nonsequential_id",
                f"revision ID {revision.id!r} is not a zero-padded sequential ID (e.g. 0012)",
                f"run: invoke migrate.renumber --service {service} --file {revision.path}",
            )
    labels: dict[str, list[str]] = {}
    for revision in history.revisions.values():
        for label in revision.branch_labels:
            labels.setdefault(label, []).append(revision.id)
    for label, owners in sorted(labels.items()):
        if len(owners) > 1:
            add(
                "duplicate_branch_label",
                f"branch label {label!r} is on {len(owners)} revisions ({', '.join(owners)})",
                "keep it on the first revision of the branch only",
            )

    # Graph shape. Revisions cut off behind a dangling down_revision are explained by
    # that problem: a mistyped parent is not also "several heads".
    reachable = history.reachable_from_bases()
    behind_dangling = history.descendants(rev for rev, _missing in history.dangling())
    heads = tuple(h for h in history.heads if h not in behind_dangling)
    cut_off = sort_ids(set(history.revisions) - reachable - behind_dangling)
    if cut_off:
        add(
            "unreachable_revision",
            f"{', '.join(cut_off)} cannot be reached from the base "
            "(their down_revision chain loops or never ends at a base)",
            "fix the down_revision of the revisions listed so the chain ends at a base",
        )
    if not history.revisions and not history.unreadable:
        add(
            "empty_history",
            "the history has no revisions",
            f"run: invoke migrate.revision --service {service} -m 'initial schema'",
        )
    elif not history.heads and history.revisions:
        add(
            "no_head",
            "the history has no head: every revision is some other revision's down_revision",
            "fix the down_revision loop among the revisions listed above",
        )
    elif len(heads) > 1:
        add(
            "multiple_heads",
            f"{service} has {len(heads)} heads ({', '.join(heads)})",
            f"run: invoke migrate.merge --service {service}",
        )
    return problems


def validate_directory(service: str, directory: Path) -> Report:
    """The offline checks of the history in ``directory`` (any folder of revision files)."""
    history = read_directory(directory)
    return Report(service, check_history(service, history, directory), history.heads)


def lint_problems(service: str, revision_range: str | None = None) -> list[Problem]:
    """squawk's findings as problems, each naming its revision file and the fix."""
    from shared_db.lint import lint

    return [
        Problem(
            service,
            "lint",
            f"{finding.path.name}: {finding.rule}: {finding.message}",
            f"make it safe (https://squawkhq.com/docs/{finding.rule}) or, once reviewed, "
            f"add to {finding.path}: # migrate-lint: allow {finding.rule} -- <why>",
        )
        for finding in lint(service, revision_range)
    ]


def validate(service: str, *, offline: bool = False, lint: bool = True) -> Report:
    """All checks of ``service``'s history; with ``offline`` no database is used, with
    ``lint`` the revisions not yet on the main branch go through squawk."""
    from shared_db.paths import versions_dir

    report = validate_directory(check_service(service), versions_dir(service))
    if not report.ok:
        return report  # a broken graph can be neither rendered nor upgraded
    if lint:
        report.problems.extend(lint_problems(service))
    if offline:
        return report
    from shared_db.drift import database_problems

    report.problems.extend(database_problems(service))
    report.problems.extend(tamper_problems(service))
    report.database_checked = True
    return report


def tamper_problems(service: str) -> list[Problem]:
    """Applied revisions (in ``service``'s own database) whose file changed since."""
    from shared_db.checksums import modified_at
    from shared_db.provision import database_url

    return [
        Problem(
            service,
            "modified_after_apply",
            f"revision {m.revision} was applied to {service}'s database and its file "
            + ("is gone" if m.path is None else f"{m.path.name} has changed since"),
            "restore the applied version (git log -p -- <file>); put new changes in a new "
            f"revision: invoke migrate.revision --service {service} -m '...'",
        )
        for m in modified_at(service, database_url(service))
    ]
