"""``migrate.squash``: replace the revisions from the base up to REV by one baseline.

Alembic has no ``replaces``: a hand-rolled squash strands every database stamped at a
removed revision ("Can't locate revision"). Here the baseline keeps REV's ID, so a
database at or past REV is unchanged, and it declares what it replaced
(``replaces = {ID: checksum}``): the runtime tells a database stamped at a removed
revision what to do (``squashed_revision``), and the tamper check accepts the records
of the replaced files.

The baseline is generated, not written by hand: the history is replayed on a scratch
database up to REV and dumped (``schema_dump``: tables, indexes, constraints, enums,
functions, and the rows the history inserted); its ``upgrade`` runs those statements, its
``downgrade`` drops everything (to base). Before anything is written it is proven:

- the schema fingerprint (``fingerprint``, read from the catalog, not from the dump) of
  a database upgraded through the old chain to REV equals that of one upgraded through
  the baseline;
- the revisions after REV still apply on it, and the fingerprints at head are equal too;
- its downgrade leaves the database as empty as it found it;
- the new history passes every offline check (and the head marker names its head).

Refused: a REV that not every path passes through (``not on the main line``), nothing to
squash, a database given with ``--database-url`` that is below REV, uncommitted changes
to the history.
"""

import time
from dataclasses import dataclass, field
from pathlib import Path

from shared_db import runner
from shared_db.errors import MigrationError
from shared_db.history import History, Revision, control_characters, read_directory, sort_ids
from shared_db.records import file_checksum
from shared_db.services import check_service
from shared_db.soundness import fatal_problems

from db_devtools.config import DevConfig
from db_devtools.errors import WorkflowError, refusal
from db_devtools.workflow import deployed, gitrefs, gitstate, head_marker
from db_devtools.workflow.authoring import format_file, replace_revision_files
from db_devtools.workflow.fingerprint import Fingerprint, counts, differences, digest, fingerprint
from db_devtools.workflow.history_cache import read_history
from db_devtools.workflow.rewrite import rewrite_header
from db_devtools.workflow.schema_dump import drop_statements, schema_statements
from db_devtools.workflow.scratch import history_folder, quiet, scratch

BASELINE_SLUG = "baseline"


@dataclass
class Squash:
    """What ``squash`` does (or did) to one history."""

    service: str
    to: str
    replaced: list[Revision]  # in ID order, REV's own file last
    baseline: Path
    source: str = ""
    rewritten: dict[Path, str] = field(default_factory=dict)  # later revisions edited
    later: list[str] = field(default_factory=list)  # the revisions after REV
    head: str = ""
    marker: str = ""
    statements: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    fingerprint_at_rev: str = ""
    fingerprint_at_head: str = ""
    replay_s: float = 0.0
    proof_s: float = 0.0


def _main_line(history: History) -> list[str]:
    """The revisions every path from the base to the head passes through."""
    everything = set(history.revisions)
    return [
        rev
        for rev in history.topological()
        if history.ancestors(rev) | history.descendants([rev]) == everything
    ]


def _choose(config: DevConfig, service: str, to: str) -> tuple[History, str]:
    history = read_history(config, service)
    problems = fatal_problems(service, history)
    if problems:
        raise refusal("squash", service, problems[0])
    rev = history.heads[0] if to in ("head", "heads") else to
    if rev not in history.revisions:
        raise WorkflowError(
            f"there is no revision {to!r} to squash to",
            kind="unknown_target",
            service=service,
            revision=to,
        )
    below = history.ancestors(rev)
    above = history.descendants([rev])
    aside = sort_ids(set(history.revisions) - below - above)
    if aside:
        line = [r for r in _main_line(history) if len(history.ancestors(r)) > 1]
        raise WorkflowError(
            f"{rev} is not on the main line: {', '.join(aside)} are neither below nor above "
            "it, so a baseline at it would cut them off",
            kind="not_on_main_line",
            service=service,
            revision=rev,
            cause=", ".join(line) or "none",
        )
    if len(below) < 2:
        raise WorkflowError(
            f"nothing to squash: {rev} is the first revision of the history",
            kind="nothing_to_squash",
            service=service,
            revision=rev,
        )
    return history, rev


def _refuse_databases_below(
    config: DevConfig, service: str, history: History, rev: str, urls: list[str]
) -> None:
    above = history.descendants([rev])
    for url in urls:
        found = deployed.read(config, service, url)
        for current in found.current:
            if current in above:
                continue
            why = (
                f"below {rev}: once {current} is gone, no code can upgrade it"
                if current in history.revisions
                else f"which this history does not know, not at or past {rev}"
            )
            raise WorkflowError(
                f"cannot squash to {rev}: the database at {found.where} is at {current}, {why}",
                kind="database_below_squash",
                service=service,
                revision=rev,
                cause=current,
            )


def _later_sources(
    history: History, rev: str, label_of: dict[str, str]
) -> tuple[dict[str, str], dict[Path, str]]:
    """The files after ``rev``, as they will be: a parent or a dependency on a squashed
    revision (or its branch label) becomes ``rev`` itself (``rewrite``)."""
    below = history.ancestors(rev) - {rev}
    files: dict[str, str] = {}
    rewritten: dict[Path, str] = {}
    for later in sorted(history.descendants([rev]) - {rev}):
        revision = history.revisions[later]
        source = revision.path.read_text(encoding="utf-8")
        down = tuple(dict.fromkeys(rev if p in below else p for p in revision.down))
        if len(down) > 1 and rev in down:  # the others already descend from it
            down = tuple(p for p in down if p != rev) or (rev,)
        depends = tuple(
            dict.fromkeys(rev if d in below or label_of.get(d) else d for d in revision.depends_on)
        )
        if down != revision.down or depends != revision.depends_on:
            source = rewrite_header(
                source,
                down=down if down != revision.down else None,
                depends_on=depends if depends != revision.depends_on else None,
            )
            rewritten[revision.path] = source
        files[revision.path.name] = source
    return files, rewritten


def _python_string(text: str) -> str:
    """``text`` as a Python string literal that reads it back exactly (a triple-quoted
    one when it has several lines)."""
    body = text.replace("\\", "\\\\").replace('"', '\\"')
    for ch in control_characters(body):
        if ch not in "\n\t":
            body = body.replace(ch, f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
    return f'"""{body}"""' if "\n" in body else f'"{body}"'


def baseline_source(
    service: str,
    rev: str,
    replaced: list[Revision],
    replaces: dict[str, str],
    upgrade: list[str],
    downgrade: list[str],
    phase: str,
    allowed: list[str],
) -> str:
    """The baseline revision file."""
    first = replaced[0].id
    ids = ", ".join(r.id for r in replaced)
    allow = (
        f"# migrate-lint: allow {', '.join(allowed)} -- a baseline runs on empty databases "
        f"only: a database at or past {rev} never runs it\n"
        if allowed
        else ""
    )
    replaced_lines = "".join(f'    "{k}": "{v}",\n' for k, v in replaces.items())
    upgrade_lines = "".join(f"    {_python_string(s)},\n" for s in upgrade)
    downgrade_lines = "".join(f"    {_python_string(s)},\n" for s in downgrade)
    return f'''"""Baseline of {service}: revisions {first} to {rev}, squashed into one.

Revision ID: {rev}
Revises:
Replaces: {ids}

Written by invoke migrate.squash from a database that the replaced revisions built (its
schema and rows, dumped by pg_dump), and proven equal to it. A database at or past {rev}
never runs it; an empty one gets in one step what they made. Its downgrade empties the
database.
"""

# The statements are pg_dump's, lines as long as it wrote them.
# ruff: noqa: E501, W291, W293
{allow}
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "{rev}"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
phase: str = "{phase}"
# The revisions this baseline replaces (and later ones the squash rewrote), each with the
# checksum of its file as databases applied it: one stamped at a removed revision is
# told what to do, and one at or past {rev} is not reported as changed since.
replaces: dict[str, str] = {{
{replaced_lines}}}

UPGRADE: tuple[str, ...] = (
{upgrade_lines})

DOWNGRADE: tuple[str, ...] = (
{downgrade_lines})


def _run(statements: tuple[str, ...]) -> None:
    for statement in statements:
        # In text(), a colon starts a bind parameter; escaped, it is a colon.
        op.execute(sa.text(statement.replace(":", "\\\\:")))


def upgrade() -> None:
    _run(UPGRADE)


def downgrade() -> None:
    _run(DOWNGRADE)
'''


def _replaces(replaced: list[Revision]) -> dict[str, str]:
    """Each replaced revision's checksum, with those an earlier baseline carried."""
    sums: dict[str, list[str]] = {}
    for revision in replaced:
        for rev, older in revision.replaces:
            sums.setdefault(rev, []).extend(older.split())
        sums.setdefault(revision.id, []).append(file_checksum(revision.path))
    return {rev: " ".join(dict.fromkeys(found)) for rev, found in sums.items()}


def _equal(what: str, old: Fingerprint, new: Fingerprint, plan: Squash) -> None:
    if old != new:
        raise WorkflowError(
            f"cannot squash to {plan.to}: {what} differ: {'; '.join(differences(old, new))}; "
            "nothing written",
            kind="squash_not_equivalent",
            service=plan.service,
            revision=plan.to,
        )


def _lint_rules(config: DevConfig, service: str, rev: str) -> list[str]:
    from db_devtools.workflow.lint import lint_revisions

    return sorted({finding.rule for finding in lint_revisions(config, service, [rev])})


def squash(
    config: DevConfig,
    service: str,
    to: str,
    *,
    database_urls: list[str] | None = None,
    dry_run: bool = False,
) -> Squash:
    """Replace ``service``'s revisions up to ``to`` by one proven baseline (see the
    module's docstring); with ``dry_run`` everything but writing the files."""
    check_service(service)
    history, rev = _choose(config, service, to)
    versions = config.versions_dir(service)
    _refuse_databases_below(config, service, history, rev, list(database_urls or []))
    try:
        root: Path | None = gitrefs.repository_root(versions)
    except WorkflowError:
        root = None  # outside git: nothing to compare with
    if root is not None:
        dirty = gitstate.uncommitted(root, versions.parent)
        if dirty:
            raise WorkflowError(
                f"cannot squash: the history has uncommitted changes "
                f"({', '.join(sorted(p.name for p in dirty))})",
                kind="dirty_history",
                service=service,
            )
    below = history.ancestors(rev)
    replaced = [history.revisions[r] for r in sort_ids(below)]
    labels = {label: r.id for r in replaced for label in r.branch_labels}
    later, rewritten = _later_sources(history, rev, labels)
    plan = Squash(service, rev, replaced, versions / f"{rev}_{BASELINE_SLUG}.py")
    plan.rewritten, plan.later = rewritten, sort_ids(history.descendants([rev]) - {rev})
    plan.head = history.heads[0]
    phase = "expand" if all(r.phase == "expand" for r in replaced) else "contract"

    started = time.perf_counter()
    with scratch(config, service, "squash_old") as (old_db, old_url):
        runner.upgrade(old_db, service, rev, report=quiet)
        upgrade = schema_statements(config, old_url, service)
        downgrade = drop_statements(old_url, service)
        at_rev_old = fingerprint(old_url, service)
        runner.upgrade(old_db, service, report=quiet)
        at_head_old = fingerprint(old_url, service)
    plan.replay_s = time.perf_counter() - started
    plan.statements, plan.counts = len(upgrade), counts(at_rev_old)
    replaces = _replaces(replaced)
    # A later revision whose header the squash rewrites keeps, in the baseline, the
    # checksum it had when databases past REV applied it: they are not reported as changed.
    for later_id in plan.later:
        revision = history.revisions[later_id]
        if revision.path in rewritten:
            replaces[later_id] = file_checksum(revision.path)

    started = time.perf_counter()
    name = plan.baseline.name
    source = baseline_source(service, rev, replaced, replaces, upgrade, downgrade, phase, [])
    with history_folder(config, service, {**later, name: source}) as folder:
        written = folder.versions_dir(service) / name
        format_file(written)
        rules = _lint_rules(folder, service, rev)
        if rules:  # reviewed by construction: a baseline only ever runs on empty databases
            source = baseline_source(
                service, rev, replaced, replaces, upgrade, downgrade, phase, rules
            )
            written.write_text(source, encoding="utf-8")
            format_file(written)
        plan.source = written.read_text(encoding="utf-8")
        new_history = read_directory(folder.versions_dir(service))
        plan.marker = head_marker.expected(new_history) or ""
        head_marker.write(folder.versions_dir(service), plan.marker)
        _validate(folder, service, rev)
        at_rev_new, at_head_new = _prove(folder, plan, at_rev_old, at_head_old)
    plan.proof_s = time.perf_counter() - started
    plan.fingerprint_at_rev, plan.fingerprint_at_head = digest(at_rev_new), digest(at_head_new)
    if not dry_run:
        _write(plan, versions)
    return plan


def _prove(
    config: DevConfig, plan: Squash, at_rev_old: Fingerprint, at_head_old: Fingerprint
) -> tuple[Fingerprint, Fingerprint]:
    """On a scratch database, with the new history: the baseline builds what the old
    chain built at REV, the later revisions apply on it (the same schema at head), and
    everything downgrades to an empty database. Returns the fingerprints at REV and head."""
    service, rev = plan.service, plan.to
    try:
        with scratch(config, service, "squash_new") as (database, url):
            empty = fingerprint(url, service)
            runner.upgrade(database, service, rev, report=quiet)
            at_rev = fingerprint(url, service)
            _equal(f"the schemas at {rev} (old chain, baseline)", at_rev_old, at_rev, plan)
            runner.upgrade(database, service, report=quiet)
            at_head = fingerprint(url, service)
            _equal(f"the schemas at head {plan.head}", at_head_old, at_head, plan)
            runner.downgrade(database, service, "base", report=quiet)
            _equal(
                "an empty database and the one downgraded", empty, fingerprint(url, service), plan
            )
    except MigrationError as exc:
        raise WorkflowError(
            f"cannot squash to {rev}: the new history does not run: {exc.message}; nothing written",
            kind="squash_proof_failed",
            service=service,
            revision=exc.revision,
        ) from None
    return at_rev, at_head


def _validate(config: DevConfig, service: str, rev: str) -> None:
    from db_devtools.workflow.validate import validate_directory

    report = validate_directory(service, config.versions_dir(service))
    if report.problems:
        raise WorkflowError(
            f"cannot squash to {rev}: the new history would not be sound: "
            f"{report.problems[0].message}; nothing written",
            kind="squash_invalid",
            service=service,
            revision=rev,
        )


def _write(plan: Squash, versions: Path) -> None:
    """New files beside their targets first, then the replaced files removed, then the
    new ones in place and the marker: a failure before the removal changes nothing."""
    replace_revision_files(
        versions,
        plan.service,
        {plan.baseline: plan.source, **plan.rewritten},
        [revision.path for revision in plan.replaced],
        plan.marker,
        "squash",
    )
