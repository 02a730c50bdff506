"""Lint the SQL of revisions with squawk, the Postgres migration linter.

Each revision's upgrade is rendered offline (the SQL Alembic would run, with the
session timeouts every migration sets) and checked on its own, so a finding names
its revision file. A reviewed exception is a marker in that file, never global::

    # migrate-lint: allow require-concurrent-index-creation -- table has 200 rows

The reason after ``--`` is required.
"""

import io
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from shared_db.history import History, sort_ids
from shared_db.services import check_service

from db_devtools.config import DevConfig
from db_devtools.errors import WorkflowError
from db_devtools.workflow.gitrefs import main_branch_file_names
from db_devtools.workflow.history_cache import read_history

if TYPE_CHECKING:  # Alembic is imported only when there is something to lint
    from alembic.script import ScriptDirectory

MARKER = re.compile(
    r"^[ \t]*#[ \t]*migrate-lint:[ \t]*allow[ \t]+(?P<rules>[a-z0-9, \t-]*?)"
    r"[ \t]*(?:--[ \t]*(?P<reason>.*?))?[ \t]*$",
    re.MULTILINE,
)
RULE = re.compile(r"^[a-z][a-z0-9-]*$")


@dataclass(frozen=True)
class Finding:
    revision: str
    path: Path
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.path.name}: {self.rule}: {self.message}"


def squawk_binary() -> str:
    beside = Path(sys.executable).parent / "squawk"
    found = str(beside) if beside.exists() else shutil.which("squawk")
    if not found:
        raise WorkflowError("squawk (the migration linter) is not installed", kind="no_squawk")
    return found


def allowed_rules(path: Path) -> set[str]:
    """Rules the revision file allows by a reviewed marker; a marker without reason fails."""
    allowed: set[str] = set()
    for match in MARKER.finditer(path.read_text(encoding="utf-8")):
        rules = [r.strip() for r in match.group("rules").split(",") if r.strip()]
        if not match.group("reason") or not match.group("reason").strip() or not rules:
            raise WorkflowError(
                f"{path.name}: a migrate-lint marker needs rules and a reason: "
                "# migrate-lint: allow <rule>[, <rule>] -- <why it is safe here>",
                kind="bad_lint_marker",
            )
        bad = [r for r in rules if not RULE.match(r)]
        if bad:
            raise WorkflowError(
                f"{path.name}: {', '.join(bad)} is not a squawk rule name", kind="bad_lint_marker"
            )
        allowed.update(rules)
    return allowed


def render_upgrade(script: "ScriptDirectory", revision: str) -> str:
    """The SQL of one revision's ``upgrade()``, offline, after the session settings."""
    from alembic.operations import Operations
    from alembic.runtime.migration import MigrationContext
    from shared_db.migrations.env_runner import SESSION_SETTINGS

    rev = script.get_revision(revision)
    if rev is None:
        raise WorkflowError(f"unknown revision {revision!r}", kind="unknown_target")
    buffer = io.StringIO()
    context = MigrationContext.configure(
        dialect_name="postgresql",
        opts={"as_sql": True, "output_buffer": buffer, "literal_binds": True},
    )
    for statement in SESSION_SETTINGS:
        buffer.write(f"{statement};\n\n")
    with Operations.context(context):
        rev.module.upgrade()
    return buffer.getvalue()


def lint_revisions(config: DevConfig, service: str, revisions: list[str]) -> list[Finding]:
    check_service(service)
    if not revisions:
        return []
    from alembic.script import ScriptDirectory
    from shared_db.alembic_config import alembic_config
    from shared_db.soundness import loaded, sound_history

    sound_history(config, service)  # a history Alembic would reject: one line, no warning
    squawk = squawk_binary()
    script = loaded(service, ScriptDirectory.from_config(alembic_config(config, service)))
    findings: list[Finding] = []
    for revision in revisions:
        rev = script.get_revision(revision)
        assert rev is not None and rev.path is not None
        path = Path(rev.path)
        command = [squawk, "--reporter", "json", "--assume-in-transaction"]
        command += ["--stdin-filepath", path.name]
        allowed = allowed_rules(path)
        for_squawk = sorted(allowed - {IDEMPOTENT_AUTOCOMMIT, *OWN_RULES})  # ours, not squawk's
        if for_squawk:
            command += ["--exclude", ",".join(for_squawk)]
        rendered = render_upgrade(script, revision)
        result = subprocess.run(command, input=rendered, capture_output=True, text=True)
        if result.returncode not in (0, 1) or not result.stdout.strip().startswith("["):
            raise WorkflowError(
                f"squawk failed on {path.name}: {result.stderr.strip()[:300]}", kind="squawk_failed"
            )
        for item in json.loads(result.stdout):
            findings.append(Finding(revision, path, item["rule_name"], item["message"]))
        if IDEMPOTENT_AUTOCOMMIT not in allowed:
            findings += [
                Finding(revision, path, IDEMPOTENT_AUTOCOMMIT, message)
                for message in autocommit_findings(rendered)
            ]
        findings += [
            Finding(revision, path, rule, message)
            for rule, message in phase_findings(script, revision)
            if rule not in allowed
        ]
    return findings


# -- our own rules: a phase that says what the revision does --------------------------

PHASE_REQUIRED = "phase-required"
PHASE_MATCHES = "phase-matches-operations"
OWN_RULES = (PHASE_REQUIRED, PHASE_MATCHES)


def phase_findings(script: "ScriptDirectory", revision: str) -> list[tuple[str, str]]:
    """A revision needs ``phase = "expand"`` or ``"contract"``; ``expand`` is refused for
    operations that would break the previous release's code (see ``changes.phase_of``)."""
    from db_devtools.workflow.changes import phase_of, recorded_operations

    found = script.get_revision(revision)
    phase = getattr(found.module, "phase", None) if found is not None else None
    if phase not in ("expand", "contract"):
        return [
            (
                PHASE_REQUIRED,
                'it declares no phase: add phase = "expand" (the previous release\'s code '
                'keeps working on the new schema) or phase = "contract"',
            )
        ]
    if phase != "expand":
        return []
    try:
        inferred, reasons = phase_of(recorded_operations(script, revision))
    except Exception as exc:  # upgrade() needs a live database (op.get_bind())
        return [
            (
                PHASE_MATCHES,
                f"it is marked expand, which cannot be checked offline ({type(exc).__name__}): "
                "review it, then allow the rule",
            )
        ]
    if inferred == "contract":
        return [(PHASE_MATCHES, f"it is marked expand but would {'; '.join(reasons)}")]
    return []


# -- our own rule: a statement outside the revision's transaction must run twice safely --

IDEMPOTENT_AUTOCOMMIT = "idempotent-autocommit"
# Alembic renders an autocommit block offline as COMMIT; <statements>; BEGIN;
_AUTOCOMMIT = re.compile(r"^COMMIT;\s*$(.*?)^BEGIN;\s*$", re.MULTILINE | re.DOTALL)
_SAFE = (
    (
        re.compile(r"^CREATE\s+(UNIQUE\s+)?INDEX\s+CONCURRENTLY\s", re.I),
        re.compile(r"\bIF\s+NOT\s+EXISTS\b", re.I),
    ),
    (re.compile(r"^DROP\s+INDEX\s+CONCURRENTLY\s", re.I), re.compile(r"\bIF\s+EXISTS\b", re.I)),
    (
        re.compile(r"^ALTER\s+TYPE\s.*\bADD\s+VALUE\b", re.I | re.S),
        re.compile(r"\bIF\s+NOT\s+EXISTS\b", re.I),
    ),
    (re.compile(r"^(REINDEX|VACUUM|ANALYZE)\b", re.I), re.compile(r"")),
)


def autocommit_findings(rendered: str) -> list[str]:
    """Statements of autocommit blocks that would fail when run again: a killed run may
    have done them without its revision being recorded (the runner drops invalid
    indexes before it migrates, so IF NOT EXISTS is enough for an index)."""
    found = []
    for block in _AUTOCOMMIT.finditer(rendered):
        for statement in filter(None, (s.strip() for s in block.group(1).split(";"))):
            if statement.startswith("--"):
                continue
            rule = next((safe for kind, safe in _SAFE if kind.search(statement)), None)
            first = " ".join(statement.split())[:80]
            if rule is None:
                found.append(
                    f"outside the revision's transaction, {first!r} cannot be shown to run "
                    "twice safely (a killed run may have done it already)"
                )
            elif not rule.search(statement):
                found.append(
                    f"outside the revision's transaction, {first!r} fails when run again "
                    "(a killed run may have done it already): add IF [NOT] EXISTS"
                )
    return found


def revisions_in_range(history: History, revision_range: str) -> list[str]:
    """``A:B``: the revisions above A up to and including B (``base`` and ``head`` work)."""
    if ":" not in revision_range:
        raise WorkflowError(f"a range is A:B, not {revision_range!r}", kind="bad_range")
    low, high = revision_range.split(":", 1)
    tops = history.heads if high in ("head", "heads", "") else (high,)
    for rev in (*tops, *((low,) if low not in ("base", "") else ())):
        if rev not in history.revisions:
            raise WorkflowError(
                f"unknown revision {rev!r} in the range {revision_range}", kind="bad_range"
            )
    wanted: set[str] = set()
    for top in tops:
        wanted |= history.ancestors(top)
    if low not in ("base", ""):
        wanted -= history.ancestors(low)
    return sort_ids(wanted)


def new_revisions(config: DevConfig, service: str) -> list[str]:
    """Revisions whose file is not on the main branch (all of them outside git)."""
    history = read_history(config, service)
    on_main = main_branch_file_names(config.versions_dir(service), config.main_branch)
    if on_main is None:
        return sort_ids(history.revisions)
    return sort_ids(r.id for r in history.revisions.values() if r.path.name not in on_main)


def lint(config: DevConfig, service: str, revision_range: str | None = None) -> list[Finding]:
    """Lint ``service``'s revisions: a range, else those not yet on the main branch."""
    history = read_history(config, check_service(service))
    revisions = (
        revisions_in_range(history, revision_range)
        if revision_range
        else new_revisions(config, service)
    )
    return lint_revisions(config, service, revisions)
