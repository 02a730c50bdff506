"""The head marker: a committed one-line file per history naming its head.

``migrations/<service>/head.txt`` holds the head revision's file name without ``.py``
(e.g. ``0012_add_reviewer``). Every command that changes the head writes it (revision,
merge, renumber, rebase, squash), so two branches that each add a revision to one
history both change that one line, and git stops the second merge (or rebase) on it:
parallel revisions show up as a merge conflict, before the merge is made, instead of
two heads after it. The file name rather than the bare ID is written so that two
branches that chose the same ID conflict as well.

A folder of revisions without a marker (a history made outside the project) is not
checked; every history of the project has one.
"""

import os
from dataclasses import dataclass
from pathlib import Path

from shared_db.history import History
from shared_db.soundness import Problem

MARKER = "head.txt"
# The problems of a marker that disagrees: the history itself is sound, so the other
# checks (lint, the database ones) still run.
MARKER_KINDS = frozenset({"head_marker_conflict", "stale_head_marker"})
_CONFLICT_LINES = ("<<<<<<<", "=======", ">>>>>>>", "|||||||")


def marker_path(versions: Path) -> Path:
    """The marker of the history whose revision files are in ``versions``."""
    return versions.parent / MARKER


def expected(history: History) -> str | None:
    """What the marker of ``history`` must say; ``None`` unless it has exactly one head."""
    heads = history.heads
    if len(heads) != 1:
        return None
    return history.revisions[heads[0]].path.stem


@dataclass(frozen=True)
class Marker:
    text: str  # the file's content, as it is

    @property
    def conflicted(self) -> bool:
        """Git left its conflict markers in it (a merge or rebase stopped on it)."""
        return any(line.startswith(_CONFLICT_LINES) for line in self.text.splitlines())

    @property
    def value(self) -> str:
        return self.text.strip()


def read(versions: Path) -> Marker | None:
    """The marker of the history in ``versions``; ``None`` when there is none."""
    try:
        return Marker(marker_path(versions).read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, UnicodeDecodeError) as exc:
        return Marker(f"<unreadable: {exc}>")


def content(stem: str) -> str:
    return f"{stem}\n"


def write(versions: Path, stem: str) -> Path:
    """Write the marker naming ``stem``, whole or not at all (a temporary file replaced)."""
    path = marker_path(versions)
    scratch = path.with_name(f".{MARKER}.{os.getpid()}.tmp")
    try:
        scratch.write_text(content(stem), encoding="utf-8")
        scratch.replace(path)
    finally:
        scratch.unlink(missing_ok=True)
    return path


def write_for(versions: Path, history: History) -> Path | None:
    """Write the marker of ``history`` (read from ``versions``) when it has one head."""
    stem = expected(history)
    return write(versions, stem) if stem is not None else None


def marker_problems(service: str, versions: Path, history: History) -> list[Problem]:
    """The marker disagrees with the history (which has no fatal problem: a broken
    history is reported as such, and the commands that repair it write the marker)."""
    marker = read(versions)
    want = expected(history)
    if marker is None or want is None:
        return []
    path = marker_path(versions)
    if marker.conflicted:
        return [
            Problem(
                service,
                "head_marker_conflict",
                f"the head marker {MARKER} holds git's conflict markers: a merge or rebase "
                "stopped on it (two branches each added revisions)",
                path=path,
            )
        ]
    if marker.value != want:
        return [
            Problem(
                service,
                "stale_head_marker",
                f"the head marker {MARKER} says {marker.value or '(nothing)'!r}, but the head "
                f"is {want}.py",
                revision=want.split("_", 1)[0],
                path=path,
                detail=want,
            )
        ]
    return []
