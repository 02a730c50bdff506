"""Is a history sound? The problems of a history as its files describe it.

Each problem is a fact: what is wrong, with the revision and file concerned. A
*fatal* problem is one Alembic itself would reject (an unreadable file, a duplicate
ID, a missing parent, a cycle, several heads...): nothing migrates on such a
history. The others break the project's conventions (file names, sequential IDs).
Front ends add the fix that fits where they run.
"""

from dataclasses import dataclass
from pathlib import Path

from shared_db.history import ID_PATTERN, History, sort_ids

# Problems that make Alembic refuse (or silently misread) the history.
FATAL = frozenset(
    {
        "unreadable_file",
        "duplicate_id",
        "dangling_down_revision",
        "dangling_depends_on",
        "duplicate_branch_label",
        "unreachable_revision",
        "no_head",
        "multiple_heads",
        "empty_history",
    }
)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a service's history (or its database, for the dev checks)."""

    service: str
    kind: str
    message: str
    revision: str | None = None
    path: Path | None = None
    paths: tuple[Path, ...] = ()
    detail: str | None = None  # e.g. the lint rule

    @property
    def fatal(self) -> bool:
        return self.kind in FATAL

    def __str__(self) -> str:
        return f"{self.service}: {self.message}"


def history_problems(service: str, history: History) -> list[Problem]:
    """Every problem of ``history``, fatal ones and broken conventions."""
    problems: list[Problem] = []
    for bad in history.unreadable:
        problems.append(
            Problem(
                service,
                "unreadable_file",
                f"{bad.path.name} is not a valid revision file ({bad.reason})",
                path=bad.path,
            )
        )
    for rev, paths in sorted(history.duplicates.items()):
        names = ", ".join(p.name for p in paths)
        problems.append(
            Problem(
                service,
                "duplicate_id",
                f"revision ID {rev} is declared by {len(paths)} files ({names}); "
                "two branches probably chose the same ID",
                revision=rev,
                path=paths[-1],
                paths=tuple(paths),
            )
        )
    for rev, missing in history.dangling():
        path = history.revisions[rev].path
        problems.append(
            Problem(
                service,
                "dangling_down_revision",
                f"{rev} ({path.name}) has down_revision {missing!r}, which no revision declares",
                revision=rev,
                path=path,
            )
        )
    labels = {label for r in history.revisions.values() for label in r.branch_labels}
    for revision in history.revisions.values():
        for needed in revision.depends_on:
            if needed not in history.revisions and needed not in labels:
                problems.append(
                    Problem(
                        service,
                        "dangling_depends_on",
                        f"{revision.id} ({revision.path.name}) depends_on {needed!r}, "
                        "which no revision or branch label declares",
                        revision=revision.id,
                        path=revision.path,
                    )
                )
    problems += _convention_problems(service, history)
    problems += _label_problems(service, history)
    problems += _shape_problems(service, history)
    return problems


def fatal_problems(service: str, history: History) -> list[Problem]:
    return [p for p in history_problems(service, history) if p.fatal]


def _convention_problems(service: str, history: History) -> list[Problem]:
    problems = []
    for revision in history.revisions.values():
        if not revision.path.name.startswith(f"{revision.id}_"):
            problems.append(
                Problem(
                    service,
                    "misnamed_file",
                    f"{revision.path.name} declares revision {revision.id}; "
                    "files are named <revision>_<slug>.py",
                    revision=revision.id,
                    path=revision.path,
                )
            )
        elif not ID_PATTERN.match(revision.id):
            problems.append(
                Problem(
                    service,
                    "nonsequential_id",
                    f"revision ID {revision.id!r} is not a zero-padded sequential ID (e.g. 0012)",
                    revision=revision.id,
                    path=revision.path,
                )
            )
    return problems


def _label_problems(service: str, history: History) -> list[Problem]:
    owners: dict[str, list[str]] = {}
    for revision in history.revisions.values():
        for label in revision.branch_labels:
            owners.setdefault(label, []).append(revision.id)
    return [
        Problem(
            service,
            "duplicate_branch_label",
            f"branch label {label!r} is on {len(revs)} revisions ({', '.join(revs)})",
            revision=revs[-1],
        )
        for label, revs in sorted(owners.items())
        if len(revs) > 1
    ]


def _shape_problems(service: str, history: History) -> list[Problem]:
    # Revisions cut off behind a dangling down_revision are explained by that problem:
    # a mistyped parent is not also "several heads".
    behind_dangling = history.descendants(rev for rev, _missing in history.dangling())
    heads = tuple(h for h in history.heads if h not in behind_dangling)
    cut_off = sort_ids(set(history.revisions) - history.reachable_from_bases() - behind_dangling)
    problems = []
    if cut_off:
        problems.append(
            Problem(
                service,
                "unreachable_revision",
                f"{', '.join(cut_off)} cannot be reached from the base "
                "(their down_revision chain loops or never ends at a base)",
                revision=cut_off[0],
            )
        )
    if not history.revisions and not history.unreadable:
        problems.append(Problem(service, "empty_history", "the history has no revisions"))
    elif not history.heads and history.revisions:
        problems.append(
            Problem(
                service,
                "no_head",
                "the history has no head: every revision is some other revision's down_revision",
            )
        )
    elif len(heads) > 1:
        problems.append(
            Problem(
                service,
                "multiple_heads",
                f"the history has {len(heads)} heads ({', '.join(heads)})",
                revision=heads[-1],
            )
        )
    return problems
