"""Is a history sound? The problems of a history as its files describe it.

Each problem is a fact: what is wrong, with the revision and file concerned. A
*fatal* problem is one Alembic itself would reject (an unreadable file, a duplicate
ID, a missing parent, a cycle, several heads...): nothing migrates on such a
history. The others break the project's conventions (file names, sequential IDs).
Front ends add the fix that fits where they run.

``sound_history`` is the gate of every path that migrates (the runner, Alembic's own
command line): the history every file of which compiles, or one error naming the first
fatal problem. Where the reader cannot tell (a computed ``down_revision``), Alembic's own
reading decides, with its warnings (e.g. a duplicate ID) turned into problems instead of
lines on stderr.
"""

import re
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from shared_db.config import DbConfig
from shared_db.errors import MigrationError
from shared_db.history import (
    ID_PATTERN,
    History,
    Revision,
    parse_revision_file,
    read_directory,
    revision_files,
    sort_ids,
)

if TYPE_CHECKING:  # Alembic is imported only when the reader cannot tell
    from alembic.script import ScriptDirectory

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


# -- the gate of every path that migrates ----------------------------------------------

# Reader problems that mean "the reader cannot tell" rather than "the file is broken".
_READER_DOUBTS = ("is not a literal", "declares no `revision", "declares no `down_revision")
_PRESENT_TWICE = re.compile(r"^Revision (\S+) is present more than once")


def sound_history(config: DbConfig, service: str) -> History:
    """``service``'s history, every file compiled; raises when Alembic would reject it."""

    def script() -> "ScriptDirectory":
        from alembic.script import ScriptDirectory

        from shared_db.alembic_config import alembic_config

        return ScriptDirectory.from_config(alembic_config(config, service))

    return sound_directory(service, config.versions_dir(service), script)


def sound_directory(
    service: str, directory: Path, script: Callable[[], "ScriptDirectory"]
) -> History:
    """The history in ``directory``, every file compiled; raises ``MigrationError`` (kind
    ``unsound_history``, the problem's kind as ``cause``) when Alembic would reject it.
    ``script`` gives Alembic's reading of it, asked for only when the reader cannot tell."""
    # A file with a fresh bytecode cache compiled already (the runner's reads of an
    # installed history, whose caches pip wrote, or of one Alembic imported before).
    history = read_directory(directory, check_syntax=True, trust_bytecode=True)
    problems = fatal_problems(service, history)
    if any(p.kind == "unreadable_file" and _doubtful(p.message) for p in problems):
        # The reader cannot tell (and what follows from it, e.g. a child's missing
        # parent, is in doubt too): Alembic's own reading decides.
        history = alembic_history(service, directory, script)
        problems = fatal_problems(service, history)
    if problems:
        first = problems[0]
        raise MigrationError(
            f"the history cannot be used: {first.message}",
            kind="unsound_history",
            service=service,
            revision=first.revision,
            cause=first.kind,
            path=first.path,
        )
    return history


def _doubtful(message: str) -> bool:
    return any(doubt in message for doubt in _READER_DOUBTS)


def alembic_history(
    service: str, directory: Path, script: Callable[[], "ScriptDirectory"]
) -> History:
    """The history as Alembic itself reads it (every module imported). Alembic keeps the
    last of two files declaring one ID and only warns: here that is a duplicate, naming
    both files, and nothing reaches stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            revisions = [
                Revision(
                    id=s.revision,
                    down=_as_tuple(s.down_revision),
                    branch_labels=_as_tuple(getattr(s.module, "branch_labels", None)),
                    depends_on=_as_tuple(s.dependencies),
                    path=Path(s.path or ""),
                    message=s.doc or "",
                )
                for s in script().walk_revisions()
            ]
        except Exception as exc:  # Alembic refuses it (CommandError, ImportError...): so do we
            raise unloadable(service, directory, exc) from None
    history = History.from_revisions(revisions)
    for warning in caught:
        twice = _PRESENT_TWICE.match(str(warning.message))
        if twice is None:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
            continue
        kept = history.revisions.get(twice.group(1))
        declaring = _declaring(directory, twice.group(1))
        if kept is not None and kept.path.resolve() not in {p.resolve() for p in declaring}:
            declaring.append(kept.path)
        history.duplicates[twice.group(1)] = declaring
    return history


def _declaring(directory: Path, revision: str) -> list[Path]:
    """The files of ``directory`` that declare ``revision``: read, or (where the reader
    cannot tell) imported as Alembic imports them."""
    from alembic.util import load_python_file

    found = []
    for path in revision_files(directory):
        try:
            declared: object = parse_revision_file(path).id
        except ValueError:
            try:
                declared = getattr(load_python_file(str(directory), path.name), "revision", None)
            except Exception:
                continue
        if declared == revision:
            found.append(path)
    return found


def _as_tuple(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)  # type: ignore[attr-defined]


def loaded(service: str, script: "ScriptDirectory") -> "ScriptDirectory":
    """``script`` with every revision module imported (as Alembic does before it runs
    anything); one that cannot be imported is refused, naming its file."""
    try:
        script.get_heads()
    except Exception as exc:
        raise unloadable(service, Path(script.versions), exc) from None
    return script


def unloadable(service: str, directory: Path, exc: BaseException) -> MigrationError:
    """Alembic could not load the history in ``directory``: which file, and why."""
    reason = f"{type(exc).__name__}: {_first_line(exc)}"
    path = failing_file(exc, directory)
    if path is None:
        return MigrationError(
            f"the history cannot be used: Alembic cannot load it: {_first_line(exc)}",
            kind="unsound_history",
            service=service,
        )
    return MigrationError(
        f"the history cannot be used: Alembic cannot load it: {path.name} is not a valid "
        f"revision file (it cannot be imported: {reason})",
        kind="unsound_history",
        service=service,
        cause="unreadable_file",
        path=path,
    )


def failing_file(exc: BaseException, directory: Path) -> Path | None:
    """The file of ``directory`` an error raised while importing it comes from (a syntax
    error's own file, else the innermost frame in that folder); ``None`` when none is."""
    folder = directory.resolve()
    names = [getattr(exc, "filename", None)]
    names += [frame.filename for frame in reversed(traceback.extract_tb(exc.__traceback__))]
    for name in names:
        if isinstance(name, str) and name:
            path = Path(name).resolve()
            if path.parent == folder:
                return path
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
