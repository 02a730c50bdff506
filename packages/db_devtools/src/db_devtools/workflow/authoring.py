"""Write revision files: new revisions, merges of diverged heads, renumbering.

Each of them leaves the history's head marker (``head_marker``) naming its head.

IDs are sequential and zero-padded (``0012``). The next ID is one past the highest
number in the history *and* on every local or remote-tracking git branch, so two
branches made from the same parent rarely pick the same ID; when they do,
``renumber`` gives one of them a free ID.

A file is written whole or not at all: Alembic writes it (its template escapes the
message for the docstring, ``shared_db.history.docstring_text``), ruff fixes and formats
it (output captured), then it is compiled and imported and must read back the revision
and the message asked for; on any failure it is removed and one error says why. A
message is plain text: control characters (NUL, ESC...) are refused.
"""

import re
import subprocess
import types
from collections.abc import Callable
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from shared_db import runner
from shared_db.connections import first_line
from shared_db.errors import SharedDbError
from shared_db.history import (
    PHASES,
    History,
    control_characters,
    parse_revision_file,
    revision_files,
)
from shared_db.services import check_service
from shared_db.soundness import failing_file, history_problems
from shared_db.urls import render

from db_devtools.config import DevConfig
from db_devtools.errors import WorkflowError, refusal
from db_devtools.provisioning.databases import scratch_database
from db_devtools.provisioning.resolve import admin_url
from db_devtools.workflow import head_marker
from db_devtools.workflow.gitrefs import file_names_in_refs
from db_devtools.workflow.history_cache import read_directory
from db_devtools.workflow.rewrite import rewrite_header

_FILE_ID = re.compile(r"^(\d{4,})[a-z]*_")


@dataclass(frozen=True)
class Written:
    revision: str
    path: Path
    down_revisions: tuple[str, ...]
    changes: tuple[str, ...] = ()
    phase: str | None = None
    reasons: tuple[str, ...] = ()  # why the phase is "contract"


def next_id(directory: Path, history: History) -> str:
    """One past the highest sequential number here and on any git branch."""
    numbers = set(history.numbers())
    for name in file_names_in_refs(directory):
        match = _FILE_ID.match(name)
        if match:
            numbers.add(int(match.group(1)))
    return f"{max(numbers, default=0) + 1:04d}"


def _require_sound(service: str, history: History, doing: str) -> None:
    """Refuse to write on top of a broken history; multiple heads are named first."""
    problems = [p for p in history_problems(service, history) if p.kind != "empty_history"]
    heads = [p for p in problems if p.kind == "multiple_heads"]
    first = heads[0] if heads else problems[0] if problems else None
    if first is not None:
        raise refusal(doing, service, first)


def _message(message: str, *, required: bool = True) -> str:
    """The message on one line (whitespace runs, newlines included, become one space);
    refused when empty (if ``required``) or when it holds characters that are not text."""
    cleaned = " ".join(message.split())
    if not cleaned and required:
        raise WorkflowError("a revision needs a message saying what it changes", kind="no_message")
    bad = control_characters(cleaned)
    if bad:
        codes = ", ".join(f"U+{ord(ch):04X}" for ch in bad)
        raise WorkflowError(
            f"the revision message contains characters that are not text ({codes})",
            kind="bad_message",
        )
    return cleaned


class _Autogenerate:
    """A ``process_revision_directives`` hook: refuses an empty or (unless allowed) a
    data-losing autogenerate before anything is written, and keeps what it changes."""

    def __init__(self, service: str, allow_destructive: bool, phase: str | None) -> None:
        self.service, self.allow_destructive = service, allow_destructive
        self.changes: tuple[str, ...] = ()
        self.phase: str | None = phase
        self.reasons: tuple[str, ...] = ()

    def __call__(self, context: Any, revision: Any, directives: list[Any]) -> None:
        from db_devtools.workflow.changes import describe_all, destructive_changes, phase_of

        upgrade = directives[0].upgrade_ops
        if upgrade is None or upgrade.is_empty():
            raise WorkflowError(
                "no model changes found: the models match the head",
                kind="no_changes",
                service=self.service,
            )
        destructive = destructive_changes(upgrade.ops)
        if destructive and not self.allow_destructive:
            raise WorkflowError(
                f"autogenerate proposes changes that lose data: {'; '.join(destructive)}; "
                "nothing written",
                kind="destructive_changes",
                service=self.service,
            )
        self.changes = tuple(describe_all(upgrade.ops))
        inferred, reasons = phase_of(upgrade.ops)
        self.reasons = tuple(reasons)
        if self.phase == "expand" and inferred == "contract":
            raise WorkflowError(
                f"the revision cannot be an expand revision: it would {'; '.join(reasons)}; "
                "nothing written",
                kind="expand_with_contract_changes",
                service=self.service,
            )
        self.phase = self.phase or inferred
        context.config.attributes["phase"] = self.phase  # the template writes it


def revision(
    config: DevConfig,
    service: str,
    message: str,
    *,
    empty: bool = False,
    allow_destructive: bool = False,
    phase: str | None = None,
) -> Written:
    """Write the next revision of ``service``: autogenerated from the models unless
    ``empty``. Refuses on several heads, on an autogenerate that finds nothing, and on
    changes that lose data (dropped tables/columns, narrowed types) unless allowed.

    Its ``phase`` is inferred from the autogenerated operations (``contract`` when the
    previous release's code would break on the new schema), or given: a hand-written
    (``empty``) revision needs it; ``expand`` is refused for contract changes."""
    from alembic import command
    from shared_db.alembic_config import alembic_config

    check_service(service)
    message = _message(message)
    if phase is not None and phase not in PHASES:
        raise WorkflowError(
            f"phase must be one of {', '.join(PHASES)}, not {phase!r}", kind="bad_phase"
        )
    if empty and phase is None:
        raise WorkflowError(
            "a hand-written revision needs its phase: expand (the previous release's code "
            "keeps working) or contract",
            kind="no_phase",
            service=service,
        )
    directory = config.versions_dir(service)
    history = read_directory(directory, config.cache_dir)
    _require_sound(service, history, "create a revision")
    rev_id = next_id(directory, history)
    if empty:
        alembic = alembic_config(config, service, post_write_hooks=False)
        alembic.attributes["phase"] = phase
        script = _write(
            service,
            directory,
            rev_id,
            message,
            "create a revision",
            lambda: command.revision(alembic, message, rev_id=rev_id),
        )
        return _written(script, rev_id, phase=phase)
    # Autogenerate against a scratch database at head, never the developer's own.
    hook = _Autogenerate(service, allow_destructive, phase)
    with scratch_database(admin_url(config, service), f"autogen_{service}") as url:
        scratch = config.with_urls({service: render(url, show_password=True)})
        runner.upgrade(scratch, service)
        script = _write(
            service,
            directory,
            rev_id,
            message,
            "create a revision",
            lambda: command.revision(
                alembic_config(scratch, service, post_write_hooks=False),
                message,
                autogenerate=True,
                rev_id=rev_id,
                process_revision_directives=hook,
            ),
        )
    return _written(script, rev_id, hook.changes, hook.phase, hook.reasons)


def merge(config: DevConfig, service: str, message: str | None = None) -> Written | None:
    """Write one merge revision joining every head; ``None`` when there is one head."""
    from alembic import command
    from shared_db.alembic_config import alembic_config

    check_service(service)
    given = _message(message or "", required=False)
    directory = config.versions_dir(service)
    history = read_directory(directory, config.cache_dir)
    problems = [p for p in history_problems(service, history) if p.kind != "multiple_heads"]
    if problems:
        raise refusal("merge", service, problems[0])
    heads = history.heads
    if len(heads) < 2:
        return None
    rev_id = next_id(directory, history)
    text = given or f"merge heads {', '.join(heads)}"
    alembic = alembic_config(config, service, post_write_hooks=False)
    alembic.attributes["phase"] = "expand"  # a merge changes nothing by itself
    script = _write(
        service,
        directory,
        rev_id,
        text,
        "merge",
        lambda: command.merge(alembic, list(heads), message=text, rev_id=rev_id),
    )
    return _written(script, rev_id, phase="expand")


# -- writing a file whole, or not at all ----------------------------------------------


def _write(
    service: str,
    directory: Path,
    rev_id: str,
    message: str,
    doing: str,
    make: Callable[[], Any],
) -> Any:
    """Run Alembic's writer (``make``), then format, compile and import the file it wrote;
    on any failure the file is removed and one ``WorkflowError`` says why. A file of the
    history that Alembic cannot import (it imports them all) is named."""
    from alembic.util.exc import CommandError

    existing = set(directory.glob(f"{rev_id}_*.py"))
    try:
        script = make()
    except SharedDbError:
        _remove_new(directory, rev_id, existing)
        raise
    except CommandError as exc:
        _remove_new(directory, rev_id, existing)
        raise WorkflowError(
            f"cannot {doing}: Alembic refused: {first_line(exc)}; nothing written",
            kind="authoring_failed",
            service=service,
        ) from None
    except Exception as exc:  # a file that cannot be imported: the new one, or the history's
        written = _remove_new(directory, rev_id, existing)
        broken = failing_file(exc, directory)
        reason = f"{type(exc).__name__}: {first_line(exc)}"
        if broken is not None and broken in {p.resolve() for p in written}:
            raise WorkflowError(
                f"the revision file written, {broken.name}, cannot be imported ({reason}); "
                "nothing written",
                kind="bad_revision_file",
                service=service,
            ) from None
        if broken is None:
            raise WorkflowError(
                f"cannot {doing}: {reason}; nothing written",
                kind="authoring_failed",
                service=service,
            ) from None
        raise WorkflowError(
            f"cannot {doing}: {broken.name} is not a valid revision file (it cannot be "
            f"imported: {reason}); nothing written",
            kind="unreadable_file",
            service=service,
            path=broken,
        ) from None
    path = Path(getattr(script, "path", None) or "")
    if not path.name:
        raise WorkflowError(f"alembic wrote no file for revision {rev_id}", kind="not_written")
    try:
        format_file(path)
        _check_written(path, rev_id, message)
        _mark_head(directory, path)
    except WorkflowError as exc:
        _remove_new(directory, rev_id, existing)
        exc.service = service
        raise
    return script


def _mark_head(directory: Path, path: Path) -> None:
    """The new revision is the history's one head: the head marker names it."""
    try:
        head_marker.write(directory, path.stem)
    except OSError as exc:
        raise WorkflowError(
            f"the head marker {head_marker.MARKER} cannot be written ({exc.strerror or exc}); "
            "nothing written",
            kind="unwritable_marker",
            path=head_marker.marker_path(directory),
        ) from None


def _remove_new(directory: Path, rev_id: str, existing: set[Path]) -> list[Path]:
    """Remove the file(s) written for ``rev_id`` (and their bytecode), those not among
    ``existing``; returns them."""
    removed = []
    for path in set(directory.glob(f"{rev_id}_*.py")) - existing:
        path.unlink(missing_ok=True)
        removed.append(path)
        for compiled in (directory / "__pycache__").glob(f"{path.stem}.*.pyc"):
            compiled.unlink(missing_ok=True)
    return removed


def format_file(path: Path) -> None:
    """``ruff check --fix`` and ``ruff format`` the file, as Alembic's post-write hooks do
    for the raw command line, with the output captured: lint findings that remain are
    not failures (the checks that follow decide), and nothing is printed."""
    if find_spec("ruff") is None:
        return
    from ruff import find_ruff_bin  # type: ignore[import-untyped]

    try:  # the binary itself: ``python -m ruff`` would start a Python only to exec it
        ruff = str(find_ruff_bin())
    except FileNotFoundError:
        return
    for arguments in (["check", "--fix", "--quiet"], ["format", "--quiet"]):
        try:
            subprocess.run(
                [ruff, *arguments, str(path)],
                capture_output=True,
                timeout=60,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return


def _check_written(path: Path, rev_id: str, message: str) -> None:
    """The written file compiles, imports, and reads back ``rev_id`` and ``message``, for
    Alembic (the module) and for the history reader alike; raises saying which failed."""
    name = path.name
    try:
        source = path.read_text(encoding="utf-8")
        code = compile(source, str(path), "exec", dont_inherit=True)
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError) as exc:
        raise WorkflowError(
            f"the revision file written, {name}, does not compile ({first_line(exc)}); "
            "nothing written",
            kind="bad_revision_file",
        ) from None
    module = types.ModuleType(f"_signalmarket_written_{rev_id}")
    module.__file__ = str(path)
    try:
        exec(code, module.__dict__)
    except Exception as exc:
        raise WorkflowError(
            f"the revision file written, {name}, cannot be imported "
            f"({type(exc).__name__}: {first_line(exc)}); nothing written",
            kind="bad_revision_file",
        ) from None
    doc_line = (module.__doc__ or "").split("\n", 1)[0].strip()
    try:
        read = parse_revision_file(path, check_syntax=True)
    except ValueError as exc:
        raise WorkflowError(
            f"the revision file written, {name}, cannot be read ({exc}); nothing written",
            kind="bad_revision_file",
        ) from None
    if getattr(module, "revision", None) != rev_id or read.id != rev_id:
        raise WorkflowError(
            f"the revision file written, {name}, does not declare revision {rev_id}; "
            "nothing written",
            kind="bad_revision_file",
        )
    if doc_line != message or read.message != message:
        raise WorkflowError(
            f"the revision file written, {name}, does not read back its message; nothing written",
            kind="bad_revision_file",
        )


def renumber(config: DevConfig, service: str, file: Path) -> Written:
    """Give the revision in ``file`` the next free ID: rewrite its ID, rename the file.

    For two branches that chose the same ID: revisions that point at the old ID keep
    pointing at the other file, which keeps it."""
    check_service(service)
    directory = config.versions_dir(service)
    path = file if file.is_absolute() else Path.cwd() / file
    if path.parent.resolve() != directory.resolve() or not path.is_file():
        raise WorkflowError(
            f"{file} is not a revision file of {service} (they are in {directory})",
            kind="not_a_revision_file",
            service=service,
        )
    history = read_directory(directory, config.cache_dir)
    old = next((r for r in _all_revisions(directory) if r[1] == path.resolve()), None)
    if old is None:
        raise WorkflowError(
            f"{path.name} declares no revision; it cannot be renumbered",
            kind="not_a_revision_file",
            service=service,
        )
    new_id = next_id(directory, history)
    try:
        updated = rewrite_header(path.read_text(encoding="utf-8"), revision=new_id)
    except ValueError as exc:
        raise WorkflowError(
            f"{path.name} cannot be renumbered: {exc}",
            kind="not_a_revision_file",
            service=service,
        ) from None
    slug = path.stem.split("_", 1)[1] if "_" in path.stem else "revision"
    target = directory / f"{new_id}_{slug}.py"
    target.write_text(updated, encoding="utf-8")
    path.unlink()
    forget_bytecode(path)
    parsed = parse_revision_file(target)
    head_marker.write_for(directory, read_directory(directory, config.cache_dir))
    return Written(new_id, target, parsed.down)


def replace_revision_files(
    versions: Path,
    service: str,
    written: dict[Path, str],
    removed: list[Path],
    marker: str,
    tag: str,
) -> None:
    """Put ``written`` (path → new content) in place of ``removed``, then the head
    marker naming ``marker``. New contents go beside their targets first (``.NAME.tag``),
    so a failure to write leaves the checkout as it was."""
    staged: list[tuple[Path, Path]] = []
    try:
        for path, source in written.items():
            temporary = path.with_name(f".{path.name}.{tag}")
            temporary.write_text(source, encoding="utf-8")
            staged.append((temporary, path))
    except OSError as exc:
        for temporary, _path in staged:
            temporary.unlink(missing_ok=True)
        raise WorkflowError(
            f"cannot write {versions}: {exc.strerror or exc}; nothing written",
            kind="unwritable_history",
            service=service,
        ) from None
    for path in removed:
        path.unlink(missing_ok=True)
        forget_bytecode(path)
    for temporary, path in staged:
        temporary.replace(path)
        forget_bytecode(path)
    head_marker.write(versions, marker)


def forget_bytecode(path: Path) -> None:
    """Remove the cached bytecode of ``path``: a file rewritten within the same second at
    the same size would otherwise be imported from the stale ``.pyc``."""
    for compiled in (path.parent / "__pycache__").glob(f"{path.stem}.*.pyc"):
        compiled.unlink(missing_ok=True)


def _all_revisions(directory: Path) -> list[tuple[str, Path]]:
    found = []
    for path in revision_files(directory):
        try:
            found.append((parse_revision_file(path).id, path.resolve()))
        except ValueError:
            continue
    return found


def _written(
    script: Any,
    rev_id: str,
    changes: tuple[str, ...] = (),
    phase: str | None = None,
    reasons: tuple[str, ...] = (),
) -> Written:
    path = getattr(script, "path", None)
    if path is None:
        raise WorkflowError(f"alembic wrote no file for revision {rev_id}", kind="not_written")
    down = script.down_revision
    parents = (down,) if isinstance(down, str) else tuple(down or ())
    return Written(rev_id, Path(path), parents, changes, phase, reasons)
