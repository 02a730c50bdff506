"""Read revision files from git objects without touching the checkout."""

import contextlib
import io
import os
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from db_devtools.errors import WorkflowError
from db_devtools.workflow.head_marker import MARKER


def _git(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, check=False, env=os.environ | (env or {})
    )


def repository_root(path: Path) -> Path:
    """The top of the git work tree holding ``path``; raises when there is none."""
    try:
        result = _git(path, "rev-parse", "--show-toplevel")
    except FileNotFoundError as exc:
        raise WorkflowError("git is not installed", kind="no_git") from exc
    if result.returncode != 0:
        raise WorkflowError(f"{path} is not inside a git repository", kind="not_a_repository")
    return Path(result.stdout.decode().strip())


def file_names_in_refs(directory: Path) -> set[str]:
    """Names of the files in ``directory`` on every local and remote-tracking branch.

    Empty when ``directory`` is not in a git repository: the caller then knows
    only the files on disk.
    """
    try:
        root = repository_root(directory)
    except WorkflowError:
        return set()
    relative = directory.resolve().relative_to(root.resolve()).as_posix()
    refs = _git(root, "for-each-ref", "--format=%(objectname)", "refs/heads", "refs/remotes")
    names: set[str] = set()
    for ref in sorted(set(refs.stdout.decode().split())):
        listing = _git(root, "ls-tree", "--name-only", f"{ref}:{relative}")
        if listing.returncode == 0:
            names.update(listing.stdout.decode().split())
    return names


MAIN_BRANCHES = ("origin/main", "main", "origin/master", "master")


def commit_of(root: Path, ref: str) -> str | None:
    """The commit ``ref`` names; ``None`` when it names none."""
    found = _git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    return found.stdout.decode().strip() if found.returncode == 0 else None


def is_ancestor(root: Path, older: str, newer: str) -> bool:
    """``older`` is ``newer`` or one of its ancestors."""
    return _git(root, "merge-base", "--is-ancestor", older, newer).returncode == 0


def main_ref(root: Path, wanted: str | None = None) -> str:
    """The main branch's remote-tracking ref, else the branch itself: ``wanted`` (the
    configured ``SIGNALMARKET_MAIN_BRANCH``) or main (then master). Raises when none does."""
    names = (wanted,) if wanted else ("main", "master")
    for name in names:
        upstream = _git(
            root, "rev-parse", "--abbrev-ref", "--verify", "--quiet", f"{name}@{{upstream}}"
        )
        candidates = [upstream.stdout.decode().strip()] if upstream.returncode == 0 else []
        candidates += [f"origin/{name}", name]
        for candidate in candidates:
            if candidate and commit_of(root, candidate) is not None:
                return candidate
    raise WorkflowError(
        f"there is no main branch here ({' or '.join(names)}, or its remote-tracking ref)",
        kind="no_main_branch",
        cause=names[0],
    )


def file_names_at(root: Path, commit: str, directory: Path) -> set[str]:
    """Names of the files in ``directory`` (of the work tree at ``root``) at ``commit``."""
    relative = directory.resolve().relative_to(root.resolve()).as_posix()
    listing = _git(root, "ls-tree", "--name-only", f"{commit}:{relative}")
    return set(listing.stdout.decode().split()) if listing.returncode == 0 else set()


def tags_holding(root: Path, directory: Path) -> dict[str, list[str]]:
    """For each file name in ``directory`` on some tag, the tags that hold it (releases)."""
    tags = _git(root, "for-each-ref", "--format=%(refname:short)", "refs/tags")
    holding: dict[str, list[str]] = {}
    for tag in tags.stdout.decode().split():
        for name in file_names_at(root, tag, directory):
            holding.setdefault(name, []).append(tag)
    return holding


def extract(root: Path, commit: str, directory: Path, into: Path) -> Path:
    """Copy ``directory`` as it is at ``commit`` to ``into`` (created); returns ``into``
    (empty when the folder does not exist at that commit)."""
    relative = directory.resolve().relative_to(root.resolve()).as_posix()
    into.mkdir(parents=True, exist_ok=True)
    if not file_names_at(root, commit, directory):
        return into
    archive = _git(root, "archive", "--format=tar", f"{commit}:{relative}")
    if archive.returncode != 0:
        raise WorkflowError(
            f"git archive failed: {archive.stderr.decode().strip()}", kind="git_failed"
        )
    _untar(archive.stdout, into)
    return into


def _untar(data: bytes, into: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4
            tar.extractall(into, filter="data")
        else:  # our own git objects, written by git archive
            tar.extractall(into)


def main_branch_file_names(directory: Path, wanted: str | None = None) -> set[str] | None:
    """File names in ``directory`` on the main branch; ``None`` outside git or with no
    main branch (then every revision counts as new). ``wanted`` (the configured
    ``SIGNALMARKET_MAIN_BRANCH``) names the branch when it is not origin/main, main,
    origin/master or master."""
    try:
        root = repository_root(directory)
    except WorkflowError:
        return None
    relative = directory.resolve().relative_to(root.resolve()).as_posix()
    for ref in (wanted,) if wanted else MAIN_BRANCHES:
        if _git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").returncode == 0:
            listing = _git(root, "ls-tree", "--name-only", f"{ref}:{relative}")
            return set(listing.stdout.decode().split()) if listing.returncode == 0 else set()
    return None


def _working_tree_commit(root: Path, paths: list[str]) -> str:
    """A commit of HEAD plus the working tree's ``paths``, made with a private index."""
    with tempfile.TemporaryDirectory() as scratch:
        env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
        for args in (("read-tree", "HEAD"), ("add", "-A", "--", *paths)):
            result = _git(root, *args, env=env)
            if result.returncode != 0:
                raise WorkflowError(
                    f"git {args[0]} failed: {result.stderr.decode().strip()}", kind="git_failed"
                )
        tree = _git(root, "write-tree", env=env).stdout.decode().strip()
    commit = _git(
        root,
        "-c", "user.name=migrate.validate",
        "-c", "user.email=migrate.validate@localhost",
        "commit-tree", tree, "-p", "HEAD", "-m", "working tree (migrate.validate --against)",
    )  # fmt: skip
    if commit.returncode != 0:
        raise WorkflowError(
            f"git commit-tree failed: {commit.stderr.decode().strip()}", kind="git_failed"
        )
    return commit.stdout.decode().strip()


@dataclass(frozen=True)
class Merged:
    """Histories as they will be after a merge: their ``versions`` folders, extracted,
    and those of them whose head marker conflicts (both sides added revisions)."""

    directories: list[Path]
    marker_conflicts: list[Path] = field(default_factory=list)


@contextlib.contextmanager
def merged_directories(ref: str, directories: list[Path]) -> Iterator[Merged]:
    """``directories`` (``versions`` folders) as they will be after merging the current
    branch (with its uncommitted changes in those histories) into ``ref``, extracted to a
    temporary folder. A conflict in a head marker is the expected sign of parallel
    revisions and is reported in the result; a conflict in any other file is an error."""
    root = repository_root(directories[0])
    if commit_of(root, ref) is None:
        raise WorkflowError(f"unknown git ref {ref!r}", kind="unknown_ref", cause=ref)
    # Whole histories (revisions and head marker): their parent folders.
    relative = [d.resolve().parent.relative_to(root.resolve()).as_posix() for d in directories]
    ours = _working_tree_commit(root, relative)
    merged = _git(root, "merge-tree", "--write-tree", "--name-only", ours, ref)
    lines = merged.stdout.decode().splitlines()
    if merged.returncode not in (0, 1) or not lines:
        raise WorkflowError(
            f"git merge-tree failed: {merged.stderr.decode().strip()}", kind="git_failed"
        )
    conflicted: list[str] = []
    if merged.returncode == 1:
        for line in lines[1:]:
            if not line:
                break  # the informational messages follow
            conflicted.append(line)
    markers = {f"{rel}/{MARKER}": index for index, rel in enumerate(relative)}
    others = [name for name in conflicted if name not in markers]
    if others:
        raise WorkflowError(
            f"merging into {ref} conflicts in {', '.join(others)}",
            kind="merge_conflict",
            cause=ref,
        )
    tree = lines[0].strip()
    with tempfile.TemporaryDirectory(prefix="migrate-against-") as scratch:
        archive = _git(root, "archive", "--format=tar", tree, "--", *relative)
        if archive.returncode != 0:
            raise WorkflowError(
                f"git archive failed: {archive.stderr.decode().strip()}", kind="git_failed"
            )
        _untar(archive.stdout, Path(scratch))
        found = [Path(scratch) / rel / "versions" for rel in relative]
        yield Merged(found, [found[markers[name]] for name in conflicted if name in markers])
