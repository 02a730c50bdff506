"""Read revision files from git objects without touching the checkout."""

import contextlib
import io
import os
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

from db_devtools.errors import WorkflowError


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


@contextlib.contextmanager
def merged_directories(ref: str, directories: list[Path]) -> Iterator[list[Path]]:
    """``directories`` as they will be after merging the current branch (with its
    uncommitted changes in those folders) into ``ref``, extracted to a temporary folder."""
    root = repository_root(directories[0])
    if _git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").returncode != 0:
        raise WorkflowError(f"unknown git ref {ref!r}", kind="unknown_ref", cause=ref)
    relative = [d.resolve().relative_to(root.resolve()).as_posix() for d in directories]
    ours = _working_tree_commit(root, relative)
    merged = _git(root, "merge-tree", "--write-tree", "--name-only", ours, ref)
    lines = merged.stdout.decode().splitlines()
    if merged.returncode == 1:
        conflicted = [
            line for line in lines[1:] if line and not line.startswith(("Auto", "CONFLICT"))
        ]
        raise WorkflowError(
            f"merging into {ref} conflicts in {', '.join(conflicted) or 'some files'}",
            kind="merge_conflict",
            cause=ref,
        )
    if merged.returncode != 0 or not lines:
        raise WorkflowError(
            f"git merge-tree failed: {merged.stderr.decode().strip()}", kind="git_failed"
        )
    tree = lines[0].strip()
    with tempfile.TemporaryDirectory(prefix="migrate-against-") as scratch:
        archive = _git(root, "archive", "--format=tar", tree, "--", *relative)
        if archive.returncode != 0:
            raise WorkflowError(
                f"git archive failed: {archive.stderr.decode().strip()}", kind="git_failed"
            )
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4
                tar.extractall(scratch, filter="data")
            else:  # our own git objects, written by git archive
                tar.extractall(scratch)
        yield [Path(scratch) / rel for rel in relative]
