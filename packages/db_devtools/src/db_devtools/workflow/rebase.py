"""``migrate.rebase``: move a branch's revisions, the whole chain, on top of another
branch's head, as ``git rebase`` moves commits.

For each history, the revisions of the checkout that the other side (``REF``) does not
have move, in order, after ``REF``'s head: new sequential IDs after ``REF``'s highest,
new file names, ``down_revision``/``depends_on`` rewritten (``rewrite``: the rest of each
file byte for byte), the head marker naming the new head. Before anything is written:

- a revision that is released (on the main branch, or on a tag) or recorded as applied
  in a database given with ``--database-url`` is not moved: a database that ran it
  would skip it under its new place in the chain (Alembic's silent skip), or run it
  twice;
- the development database must not hold the revisions that move (``local="downgrade"``
  downgrades them first, with their old files);
- revisions that landed on ``REF`` since the fork and touch the tables the moved ones
  touch are named (a warning);
- the result is proven on a scratch database (upgrade to head, downgrade the moved
  revisions, upgrade again) and validated (every offline check, the head marker).

It works in a checkout where nothing is in progress (``REF``: ``--onto``, default the
main branch's remote-tracking ref), and in the middle of a ``git rebase`` or ``git
merge`` that stopped on a head-marker conflict, where it moves the incoming side's
revisions onto the other side's head and stages the resolution. Git's "ours" and
"theirs" swap between the two; the side to build on is told by the operation instead:
in a rebase it is HEAD (the upstream, with the commits replayed so far), in a merge it
is the branch merged in (MERGE_HEAD), unless HEAD holds the main branch and MERGE_HEAD
does not (a feature merged into main).
"""

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from shared_db import runner
from shared_db.errors import MigrationError
from shared_db.history import History, Revision, parse_revision_file, revision_files, sort_ids
from shared_db.services import check_service
from shared_db.status import read_state
from shared_db.urls import where

from db_devtools.config import DevConfig
from db_devtools.errors import WorkflowError
from db_devtools.workflow import deployed, gitrefs, gitstate, head_marker
from db_devtools.workflow.authoring import replace_revision_files
from db_devtools.workflow.rewrite import rewrite_header
from db_devtools.workflow.scratch import history_folder, quiet, scratch


@dataclass(frozen=True)
class Move:
    """One revision moved: from its file in the checkout to its new ID and file."""

    old: Revision
    new_id: str
    new_down: tuple[str, ...]
    new_depends_on: tuple[str, ...]
    new_path: Path
    source: str  # the new file's content


@dataclass
class Plan:
    """What ``rebase`` does (or did) to one history."""

    service: str
    onto: str  # the side built on, as the user knows it (a ref, or HEAD/MERGE_HEAD)
    onto_head: str  # its head revision
    moves: list[Move] = field(default_factory=list)
    landed: list[str] = field(default_factory=list)  # on REF since the fork, oldest first
    warnings: list[str] = field(default_factory=list)
    marker: str = ""  # what the head marker says afterwards
    local_target: str | None = None  # the development database downgraded to this first
    local_revisions: tuple[str, ...] = ()
    local_current: tuple[str, ...] = ()
    local_database: str = ""
    proven_s: float | None = None
    base_files: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def head(self) -> str:
        return self.moves[-1].new_id if self.moves else self.onto_head


@dataclass
class Result:
    plans: list[Plan]
    operation: gitstate.Operation
    skipped: list[str] = field(default_factory=list)  # services with nothing to move


# -- where to build on ------------------------------------------------------------------


def _base_side(
    root: Path, op: gitstate.Operation, onto: str | None, main_branch: str | None
) -> tuple[str, str]:
    """(commit, name) of the side whose history the revisions move onto."""
    if onto is not None and gitrefs.commit_of(root, onto) is None:
        raise WorkflowError(f"unknown git ref {onto!r}", kind="unknown_ref", cause=onto)
    if not op.kind:
        ref = onto or gitrefs.main_ref(root, main_branch)
        commit = gitrefs.commit_of(root, ref)
        assert commit is not None
        return commit, ref
    if op.kind in ("rebase", "cherry-pick"):
        if onto is not None and not gitrefs.is_ancestor(root, onto, op.head):
            raise WorkflowError(
                f"a git {op.kind} is in progress: its revisions move onto HEAD, which does "
                f"not hold {onto}",
                kind="onto_outside_operation",
                cause=onto,
            )
        return op.head, f"HEAD (the {op.kind} in progress: the side replayed onto)"
    assert op.incoming is not None
    side: str | None = onto
    if side is None:
        try:
            side = gitrefs.main_ref(root, main_branch)
        except WorkflowError:
            side = None
    in_incoming = side is not None and gitrefs.is_ancestor(root, side, op.incoming)
    in_head = side is not None and gitrefs.is_ancestor(root, side, op.head)
    if onto is not None and not (in_incoming or in_head):
        raise WorkflowError(
            f"a git merge is in progress and neither of its sides holds {onto}",
            kind="onto_outside_operation",
            cause=onto,
        )
    if in_head and not in_incoming:
        return op.head, "HEAD (the branch being merged into)"
    return op.incoming, "MERGE_HEAD (the branch being merged in)"


# -- the plan ---------------------------------------------------------------------------


def _checkout_revisions(service: str, versions: Path) -> list[Revision]:
    """Every revision file of the checkout, two with one ID included (a merge in progress
    holds both sides' files); an unreadable one is refused."""
    found = []
    for path in revision_files(versions):
        try:
            found.append(parse_revision_file(path, check_syntax=True))
        except ValueError as exc:
            raise WorkflowError(
                f"cannot rebase: {path.name} is not a valid revision file ({exc})",
                kind="unreadable_file",
                service=service,
                path=path,
            ) from None
    return found


def _read_base(root: Path, commit: str, versions: Path) -> tuple[History, dict[str, str]]:
    with tempfile.TemporaryDirectory(prefix="migrate-rebase-") as folder:
        extracted = gitrefs.extract(root, commit, versions, Path(folder))
        texts = {p.name: p.read_text(encoding="utf-8") for p in revision_files(extracted)}
        history = History()
        for path in revision_files(extracted):
            history.add_file(path, check_syntax=True)
    return history, texts


def _refuse_unsound_base(service: str, name: str, base: History) -> None:
    from shared_db.soundness import fatal_problems

    if not base.revisions and not base.unreadable:
        raise WorkflowError(
            f"{name} has no {service} history to move revisions onto",
            kind="no_history_on_ref",
            service=service,
        )
    problems = fatal_problems(service, base)
    if problems:
        raise WorkflowError(
            f"cannot rebase onto {name}: its history cannot be built on: {problems[0].message}",
            kind="unsound_onto",
            service=service,
        )


def _graph_ancestors(parents: dict[str, tuple[str, ...]], start: str) -> set[str]:
    seen: set[str] = set()
    stack = [start]
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(parents.get(current, ()))
    return seen


def plan_moves(
    service: str,
    name: str,
    base: History,
    checkout: list[Revision],
    replayed: frozenset[str] = frozenset(),
) -> tuple[list[Move], list[str], list[str]]:
    """(moves, landed, fork points) for the checkout's revisions that ``base`` (the side
    named ``name``) does not have; no moves when there is nothing to move. The fork
    points are the revisions of ``base`` the moving ones were written on; landed are the
    revisions of ``base`` above them.

    ``replayed``: in a git rebase, the IDs the branch's earlier commits had, which an
    earlier step moved: a parent among them is now ``base``'s head (the commits replayed
    so far are on top of it)."""
    on_base = {
        r.path.name
        for r in checkout
        if (found := base.revisions.get(r.id)) is not None and found.path.name == r.path.name
    }
    moving = [r for r in checkout if r.path.name not in on_base]
    ids = [r.id for r in moving]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise WorkflowError(
            f"cannot rebase: this branch declares revision {twice[0]} in two files",
            kind="duplicate_id",
            service=service,
            revision=twice[0],
            path=next(r.path for r in reversed(moving) if r.id == twice[0]),
        )
    by_id = {r.id: r for r in moving}
    base_head = base.heads[0]
    forks: set[str] = set()
    for r in moving:
        for parent in r.down:
            if parent in by_id:
                continue
            if parent not in base.revisions and parent in replayed:
                continue  # moved by an earlier step of the rebase: below base's head now
            if parent not in base.revisions:
                raise WorkflowError(
                    f"cannot rebase: {r.id} ({r.path.name}) revises {parent}, which {name} "
                    "does not have (is it on a branch not yet merged there?)",
                    kind="unknown_parent",
                    service=service,
                    revision=r.id,
                    path=r.path,
                )
            forks.add(parent)
    landed_set = base.ancestors(base_head) - set().union(*(base.ancestors(f) for f in forks))
    landed = [rev for rev in base.topological() if rev in landed_set]
    order = History.from_revisions(moving).topological()
    highest = max(base.numbers(), default=0)
    new_ids = {old: f"{highest + n:04d}" for n, old in enumerate(order, 1)}
    parents: dict[str, tuple[str, ...]] = {rev: base.revisions[rev].down for rev in base.revisions}
    moves: list[Move] = []
    for old in order:
        r = by_id[old]
        mapped = list(dict.fromkeys(new_ids.get(p, base_head) for p in r.down))
        # A parent below another parent adds nothing (it was a merge with REF's side).
        kept = tuple(
            p
            for p in mapped
            if not any(p != q and p in _graph_ancestors(parents, q) for q in mapped)
        )
        parents[new_ids[old]] = kept
        depends = tuple(new_ids.get(d, d) for d in r.depends_on)
        slug = r.path.stem.split("_", 1)[1] if "_" in r.path.stem else "revision"
        new_path = r.path.with_name(f"{new_ids[old]}_{slug}.py")
        try:
            source = rewrite_header(
                r.path.read_text(encoding="utf-8"),
                revision=new_ids[old],
                down=kept,
                depends_on=depends if depends != r.depends_on else None,
            )
        except ValueError as exc:
            raise WorkflowError(
                f"cannot rebase: {r.path.name} cannot be rewritten: {exc}",
                kind="not_a_revision_file",
                service=service,
                path=r.path,
            ) from None
        moves.append(Move(r, new_ids[old], kept, depends, new_path, source))
    referenced = {p for m in moves for p in m.new_down}
    heads = [m.new_id for m in moves if m.new_id not in referenced]
    if len(heads) > 1:
        raise WorkflowError(
            f"cannot rebase: the revisions to move have {len(heads)} heads "
            f"({', '.join(m.old.id for m in moves if m.new_id in heads)}); join them on this "
            "branch first",
            kind="moved_heads",
            service=service,
        )
    unchanged = all(
        m.new_id == m.old.id and m.new_down == m.old.down and m.new_depends_on == m.old.depends_on
        for m in moves
    )
    return ([] if unchanged else moves), landed, sort_ids(forks)


def _refuse_released(
    config: DevConfig,
    root: Path,
    service: str,
    moves: list[Move],
    base: History,
    database_urls: list[str],
) -> None:
    versions = config.versions_dir(service)
    holding = gitrefs.tags_holding(root, versions)
    try:
        main = gitrefs.main_ref(root, config.main_branch)
    except WorkflowError:
        main = None
    on_main = gitrefs.file_names_at(root, main, versions) if main else set()
    for move in moves:
        if move.old.path.name in on_main:
            raise _cannot_move(
                move, service, "released_revision", f"it is on {main}, the main branch "
                "(released); a released revision keeps its ID and place",
            )  # fmt: skip
        tags = holding.get(move.old.path.name)
        if tags:
            raise _cannot_move(
                move, service, "released_revision", f"it is released (on tag "
                f"{', '.join(sorted(tags))}); a released revision keeps its ID and place",
            )  # fmt: skip
    for url in database_urls:
        found = deployed.read(config, service, url)
        for move in moves:
            if found.ran(move.old, move.old.id in base.revisions):
                raise _cannot_move(
                    move, service, "applied_elsewhere", f"the database at {found.where} "
                    "applied it; moved, it would be skipped there (or run twice), so it "
                    "keeps its ID and place",
                )  # fmt: skip


def _cannot_move(move: Move, service: str, kind: str, why: str) -> WorkflowError:
    """``cannot move <id> (<file>): <why>``, naming the revision and its file."""
    return WorkflowError(
        f"cannot move {move.old.id} ({move.old.path.name}): {why}",
        kind=kind,
        service=service,
        revision=move.old.id,
        path=move.old.path,
    )


def _check_local(
    config: DevConfig, plan: Plan, base: History, local: str | None, forks: list[str]
) -> None:
    """The development database must not hold revisions that move: downgraded first with
    ``local="downgrade"``, else refused with what to run."""
    from shared_db.connections import connect

    from db_devtools.provisioning.resolve import with_databases

    service = plan.service
    dev = with_databases(config, [service])
    with connect(dev, service) as connection:
        current, applied = read_state(connection, service)
    state = deployed.Deployed(where(dev.parsed_url(service)), current, applied)
    ran = tuple(m.old.id for m in plan.moves if state.ran(m.old, m.old.id in base.revisions))
    if not ran:
        return
    if len(forks) > 1:
        raise WorkflowError(
            f"your development database ({state.where}) applied {', '.join(ran)}, which would "
            f"move, and they were written on several revisions ({', '.join(forks)}): "
            "downgrade it below them by hand first",
            kind="local_database_applied",
            service=service,
        )
    target = forks[0] if forks else "base"
    plan.local_database, plan.local_revisions, plan.local_target = state.where, ran, target
    plan.local_current = current
    if local != "downgrade":
        raise WorkflowError(
            f"your development database ({state.where}) applied {', '.join(ran)}, which would "
            f"move: it must be downgraded to {target} first, with the files as they are now",
            kind="local_database_applied",
            service=service,
            revision=target,
            cause=target,
        )


# -- proving and writing ------------------------------------------------------------------


def _prove(config: DevConfig, plan: Plan) -> None:
    """Validate the history as it will be, and run it on a scratch database: upgrade to
    head, downgrade the moved revisions, upgrade again. Collects the warnings."""
    from alembic.script import ScriptDirectory
    from shared_db.alembic_config import alembic_config

    from db_devtools.workflow.touches import overlap, touched
    from db_devtools.workflow.validate import validate_directory

    service = plan.service
    files = {**plan.base_files, **{m.new_path.name: m.source for m in plan.moves}}
    with history_folder(config, service, files) as folder:
        versions = folder.versions_dir(service)
        head_marker.write(versions, plan.marker)
        report = validate_directory(service, versions)
        if report.problems:
            raise WorkflowError(
                f"cannot rebase: the history would not be sound: {report.problems[0].message}; "
                "nothing written",
                kind="rebase_invalid",
                service=service,
            )
        script = ScriptDirectory.from_config(alembic_config(folder, service))
        theirs = {rev: touched(script, rev) for rev in plan.landed}
        for move in plan.moves:
            mine = touched(script, move.new_id)
            for rev, touches in theirs.items():
                common = overlap(mine or set(), touches or set())
                if common:
                    plan.warnings.append(
                        f"{service}: {move.new_id} (was {move.old.id}) and {rev}, which landed "
                        f"on {plan.onto}, both touch {'; '.join(common)}: check that they "
                        "still fit together"
                    )
        started = time.perf_counter()
        try:
            with scratch(folder, service, "rebase") as (database, _url):
                runner.upgrade(database, service, report=quiet)
                runner.downgrade(database, service, plan.onto_head, report=quiet)
                runner.upgrade(database, service, report=quiet)
        except MigrationError as exc:
            raise WorkflowError(
                f"cannot rebase: the moved revisions do not apply on top of "
                f"{plan.onto_head}: {exc.message}; nothing written",
                kind="rebase_proof_failed",
                service=service,
                revision=exc.revision,
            ) from None
        plan.proven_s = time.perf_counter() - started


def _downgrade_local(config: DevConfig, plan: Plan, checkout: list[Revision]) -> None:
    """Downgrade the development database below the moving revisions, with their old
    files (the checkout's, before the rewrite): the history up to where it stands."""
    from db_devtools.provisioning.resolve import with_databases

    service = plan.service
    dev = with_databases(config, [service])
    moving = {m.old.id: m.old for m in plan.moves}
    by_id = {**{r.id: r for r in checkout if r.id not in moving}, **moving}
    parents = {rev: r.down for rev, r in by_id.items()}
    needed = set().union(*(_graph_ancestors(parents, rev) for rev in plan.local_current))
    old = {
        r.path.name: r.path.read_text(encoding="utf-8") for rev, r in by_id.items() if rev in needed
    }
    with history_folder(dev, service, old) as folder:
        runner.downgrade(folder, service, plan.local_target or "base", report=quiet)


def _write(plan: Plan, versions: Path) -> None:
    """The new files, then the old ones removed, then the marker: new contents are
    written beside their targets first, so a failure leaves the checkout as it was."""
    replace_revision_files(
        versions,
        plan.service,
        {move.new_path: move.source for move in plan.moves},
        [move.old.path for move in plan.moves],
        plan.marker,
        "rebase",
    )


# -- the command ----------------------------------------------------------------------------


def rebase(
    config: DevConfig,
    services: tuple[str, ...],
    *,
    onto: str | None = None,
    database_urls: list[str] | None = None,
    local: str | None = None,
    dry_run: bool = False,
) -> Result:
    """Move, for each of ``services``, the checkout's revisions that the other side does
    not have onto its head (see the module's docstring). Nothing is written when any
    service's move is refused or fails its proof; with ``dry_run``, nothing at all."""
    if local not in (None, "downgrade"):
        raise WorkflowError(f"--local takes 'downgrade', not {local!r}", kind="bad_local_option")
    for service in services:
        check_service(service)
    try:
        root = gitrefs.repository_root(config.versions_dir(services[0]))
    except WorkflowError as exc:
        exc.kind = "rebase_outside_git" if exc.kind == "not_a_repository" else exc.kind
        raise
    op = gitstate.operation(root)
    commit, name = _base_side(root, op, onto, config.main_branch)
    result = Result([], op)
    checkouts: dict[str, list[Revision]] = {}
    for service in services:
        versions = config.versions_dir(service)
        location = versions.parent
        if not op.kind:
            # The files it rewrites must be committed: git can then show and undo it all.
            dirty = gitstate.uncommitted(root, location)
            if dirty:
                raise WorkflowError(
                    f"cannot rebase: the history has uncommitted changes "
                    f"({', '.join(sorted(p.name for p in dirty))})",
                    kind="dirty_history",
                    service=service,
                )
        else:
            open_files = [
                p for p in gitstate.unmerged(root, location) if p.name != head_marker.MARKER
            ]
            if open_files:
                raise WorkflowError(
                    f"cannot rebase: git left {', '.join(p.name for p in open_files)} unmerged",
                    kind="unmerged_revisions",
                    service=service,
                    path=open_files[0],
                )
        checkout = _checkout_revisions(service, versions)
        base, texts = _read_base(root, commit, versions)
        _refuse_unsound_base(service, name, base)
        replayed: frozenset[str] = frozenset()
        if op.kind in ("rebase", "cherry-pick") and op.incoming:
            earlier = gitrefs.file_names_at(root, f"{op.incoming}^", versions)
            replayed = frozenset(n.split("_", 1)[0] for n in earlier if n.endswith(".py"))
        moves, landed, forks = plan_moves(service, name, base, checkout, replayed)
        marker = head_marker.read(versions)
        conflicted = marker is not None and marker.conflicted
        plan = Plan(service, name, base.heads[0], moves, landed, base_files=texts)
        plan.marker = moves[-1].new_path.stem if moves else _combined_marker(base, checkout)
        if not moves and not (op.kind and conflicted):
            result.skipped.append(service)
            continue
        if moves:
            _refuse_released(config, root, service, moves, base, list(database_urls or []))
            _check_local(config, plan, base, local, forks)
        checkouts[service] = checkout
        result.plans.append(plan)
    if not result.plans:
        only = f"{services[0]} " if len(services) == 1 else ""
        raise WorkflowError(
            f"nothing to move: every {only}revision of this checkout is on {name}, or on top "
            "of its head already",
            kind="nothing_to_move",
            service=services[0] if len(services) == 1 else None,
            cause=name.split(" ", 1)[0],
        )
    for plan in result.plans:
        if plan.moves:
            _prove(config, plan)
    if dry_run:
        return result
    for plan in result.plans:
        versions = config.versions_dir(plan.service)
        if plan.local_target is not None:
            _downgrade_local(config, plan, checkouts[plan.service])
        _write(plan, versions)
        if op.kind:
            gitstate.stage(
                root,
                [m.old.path for m in plan.moves],
                [*(m.new_path for m in plan.moves), head_marker.marker_path(versions)],
            )
    return result


def _combined_marker(base: History, checkout: list[Revision]) -> str:
    """The marker when nothing moves: the head of the checkout's history (its revisions
    are on top of the other side's already), else the other side's head."""
    found = head_marker.expected(History.from_revisions(checkout))
    return found or base.revisions[base.heads[0]].path.stem
