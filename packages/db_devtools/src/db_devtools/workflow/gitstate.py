"""The checkout's state: a merge or rebase that stopped, unmerged and uncommitted files,
and staging a resolution. Read with git's plumbing; nothing here commits."""

import subprocess
from dataclasses import dataclass
from pathlib import Path

from db_devtools.errors import WorkflowError


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)


def _git_path(root: Path, name: str) -> Path:
    found = _git(root, "rev-parse", "--git-path", name).stdout.strip()
    path = Path(found)
    return path if path.is_absolute() else root / path


@dataclass(frozen=True)
class Operation:
    """A git operation that stopped (on a conflict), or none (``kind`` empty).

    Which side is which differs: in a merge, HEAD is the branch being merged into and
    ``incoming`` (MERGE_HEAD) the branch merged in; in a rebase (or a cherry-pick), HEAD
    is the new base with the commits replayed so far, and ``incoming`` the commit being
    replayed, so git's "ours" and "theirs" are the other way round."""

    kind: str  # "merge", "rebase", "cherry-pick" or ""
    head: str
    incoming: str | None = None

    @property
    def continue_command(self) -> str:
        return {
            "merge": "git commit",
            "rebase": "git rebase --continue",
            "cherry-pick": "git cherry-pick --continue",
        }.get(self.kind, "git commit")


def _read_head(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").split()[0]
    except (OSError, IndexError):
        return None


def operation(root: Path) -> Operation:
    head = _git(root, "rev-parse", "--verify", "--quiet", "HEAD").stdout.strip()
    merging = _read_head(_git_path(root, "MERGE_HEAD"))
    if merging:
        return Operation("merge", head, merging)
    if _git_path(root, "rebase-merge").is_dir() or _git_path(root, "rebase-apply").is_dir():
        return Operation("rebase", head, _read_head(_git_path(root, "REBASE_HEAD")))
    picking = _read_head(_git_path(root, "CHERRY_PICK_HEAD"))
    if picking:
        return Operation("cherry-pick", head, picking)
    return Operation("", head)


def unmerged(root: Path, folder: Path) -> list[Path]:
    """Files under ``folder`` that git left unmerged."""
    listed = _git(root, "diff", "--name-only", "--diff-filter=U", "--", str(folder))
    return [root / name for name in listed.stdout.split("\n") if name]


def uncommitted(root: Path, folder: Path) -> list[Path]:
    """Files under ``folder`` that differ from HEAD (staged, unstaged or untracked)."""
    listed = _git(root, "status", "--porcelain", "--untracked-files=all", "-z", "--", str(folder))
    entries = iter(listed.stdout.split("\0"))
    found = []
    for entry in entries:
        if len(entry) > 3:
            found.append(root / entry[3:])
            if entry[0] in "RC":
                next(entries, None)  # a rename's or copy's source follows
    return found


def stage(root: Path, removed: list[Path], added: list[Path]) -> None:
    """Record a resolution in the index: ``removed`` files gone, ``added`` files as they
    are now (a conflicted file added is resolved)."""
    if removed:
        result = _git(
            root, "rm", "--cached", "--quiet", "--ignore-unmatch", "--", *map(str, removed)
        )
        if result.returncode != 0:
            raise WorkflowError(f"git rm failed: {result.stderr.strip()}", kind="git_failed")
    if added:
        result = _git(root, "add", "--", *map(str, added))
        if result.returncode != 0:
            raise WorkflowError(f"git add failed: {result.stderr.strip()}", kind="git_failed")
