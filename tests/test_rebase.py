"""The head marker and ``migrate.rebase``, in real git repositories (copies of the
project, the ``repo`` fixture) on a real Postgres.

Revisions are written with ``migrate.revision --empty`` (which writes the head marker),
then given a body. Every rebase proves its result on a scratch database; the
development database of a test is its own ``empty_database``.
"""

import re
import time
from pathlib import Path

from helpers import MIGRATIONS, Repo, raw, sql
from sqlalchemy.engine import URL

SERVICE = "scoring_engine"
MARKER = MIGRATIONS / SERVICE / "head.txt"


def add_revision(repo: Repo, message: str, upgrade: str = "", downgrade: str = "") -> Path:
    """``migrate.revision --empty`` (head marker included), then its body; returns the file."""
    made = repo.invoke(
        "migrate.revision", "--service", SERVICE, "-m", message, "--empty", "--phase", "expand"
    )
    assert made.code == 0, made.output
    path = repo.path / made.out.split("created ", 1)[1].split(" (revision", 1)[0]
    source = path.read_text()
    if upgrade:
        # ruff removed the imports an empty revision does not use.
        source = source.replace(
            "from collections.abc import Sequence\n",
            "from collections.abc import Sequence\n\n"
            "import sqlalchemy as sa\nfrom alembic import op\n",
        )
        source = source.replace(
            "def upgrade() -> None:\n    pass", f"def upgrade() -> None:\n{upgrade}"
        )
        source = source.replace(
            "def downgrade() -> None:\n    pass", f"def downgrade() -> None:\n{downgrade}"
        )
        path.write_text(source)
    return path


def commit(repo: Repo, message: str) -> None:
    repo.git("add", "-A")
    repo.git("commit", "-q", "-m", message)


def marker(repo: Repo) -> str:
    return (repo.path / MARKER).read_text()


def conflicted(repo: Repo) -> list[str]:
    return repo.git("diff", "--name-only", "--diff-filter=U").split()


ADD_COLUMN = '    op.add_column("scores", sa.Column("{0}", sa.Text(), nullable=True))\n'
DROP_COLUMN = '    op.drop_column("scores", "{0}")\n'
CREATE_TABLE = (
    '    op.create_table("{0}", '
    'sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True))\n'
)
DROP_TABLE = '    op.drop_table("{0}")\n'


def test_parallel_revisions_conflict_in_git_and_rebase_resolves_the_merge(
    repo: Repo, empty_database: URL
) -> None:
    env = {"DATABASE_URL": raw(empty_database)}
    # main and a feature branch made from the same commit each add a revision.
    add_revision(repo, "create audit", CREATE_TABLE.format("audit"), DROP_TABLE.format("audit"))
    commit(repo, "audit")
    assert marker(repo) == "0011_create_audit\n"
    repo.git("checkout", "-q", "-b", "feature", "main~1")
    add_revision(
        repo, "add reviewer", ADD_COLUMN.format("reviewer"), DROP_COLUMN.format("reviewer")
    )
    commit(repo, "reviewer")
    assert marker(repo) == "0012_add_reviewer\n", "the ID skips the one taken on main"

    # Before merging, the check of the merged tree says what git will do, and the fix.
    against = repo.invoke("migrate.validate", "--offline", "--against", "main")
    assert against.code == 1
    assert against.out.splitlines()[1] == (
        "scoring_engine: this branch and main both added revisions: merging stops on the "
        "head marker; move this branch's "
        "revisions on top of main's first: run: invoke migrate.rebase --service "
        "scoring_engine --onto main (or, after merging, join the heads: invoke migrate.merge "
        "--service scoring_engine)"
    )

    # The merge stops on the marker, and on nothing else.
    merging = repo.try_git("merge", "main", "-m", "merge main")
    assert merging.returncode == 1
    assert conflicted(repo) == [str(MARKER)]
    assert "<<<<<<< HEAD\n0012_add_reviewer\n=======\n0011_create_audit\n>>>>>>> main\n" in marker(
        repo
    )

    # A ref that neither side of the stopped merge holds is not a side to build on.
    elsewhere = repo.git("commit-tree", "main^{tree}", "-p", "main~1", "-m", "x").strip()
    refused = repo.invoke("migrate.rebase", "--onto", elsewhere, env=env)
    assert refused.one_line_error() == (
        f"error: a git merge is in progress and neither of its sides holds {elsewhere}; run it "
        "without --onto: the side to build on is the one the stopped git operation builds on"
    )
    assert conflicted(repo) == [str(MARKER)]

    rebased = repo.invoke("migrate.rebase", "--service", SERVICE, env=env)
    assert rebased.code == 0, rebased.output
    lines = rebased.out.splitlines()
    assert lines[0] == (
        "scoring_engine: onto MERGE_HEAD (the branch being merged in) (head 0011): "
        "1 revision(s) move"
    )
    assert lines[1] == "  0012 -> 0012  0012_add_reviewer.py -> 0012_add_reviewer.py (on 0011)"
    assert re.fullmatch(
        r"scoring_engine: proven on a scratch database in \d+\.\d\d s \(upgrade to 0012, "
        r"downgrade to 0011, upgrade again\); validate: ok, head 0012",
        lines[2],
    )
    assert lines[3:] == [
        "scoring_engine: head marker: 0012_add_reviewer",
        "resolved: the moved revisions and the head marker are staged; continue with: git commit",
    ]
    # A warning names what both sides touch: here, nothing in common.
    assert rebased.err == ""
    assert conflicted(repo) == []
    repo.git("commit", "-q", "--no-edit")
    assert marker(repo) == "0012_add_reviewer\n"
    source = (repo.versions / "0012_add_reviewer.py").read_text()
    assert 'down_revision: str | Sequence[str] | None = "0011"' in source
    assert "Revises: 0011\n" in source
    validated = repo.invoke("migrate.validate", "--offline", "--service", SERVICE)
    assert validated.out == "scoring_engine: ok, head 0012 (files only)\n", validated.output


def _changed_lines(old: str, new: str) -> list[tuple[str, str]]:
    old_lines, new_lines = old.splitlines(keepends=True), new.splitlines(keepends=True)
    assert len(old_lines) == len(new_lines)
    return [(a, b) for a, b in zip(old_lines, new_lines, strict=True) if a != b]


def test_rebase_moves_a_chain_of_three_onto_main(repo: Repo, empty_database: URL) -> None:
    env = {"DATABASE_URL": raw(empty_database)}
    # A feature branch adds a chain of three revisions; then main gets one (0014: it saw
    # the branch's IDs) that touches the table the second of them touches too.
    repo.git("checkout", "-q", "-b", "feature")
    chain = [
        add_revision(
            repo, "create audit", CREATE_TABLE.format("audit"), DROP_TABLE.format("audit")
        ),
        add_revision(
            repo, "add reviewer", ADD_COLUMN.format("reviewer"), DROP_COLUMN.format("reviewer")
        ),
        add_revision(
            repo, "create notes", CREATE_TABLE.format("notes"), DROP_TABLE.format("notes")
        ),
    ]
    assert [p.name for p in chain] == [
        "0011_create_audit.py",
        "0012_add_reviewer.py",
        "0013_create_notes.py",
    ]
    commit(repo, "three revisions")
    before = {p.name: p.read_text() for p in chain}
    repo.git("checkout", "-q", "main")
    add_revision(repo, "add flag", ADD_COLUMN.format("flag"), DROP_COLUMN.format("flag"))
    commit(repo, "flag")
    repo.git("checkout", "-q", "feature")

    dry = repo.invoke("migrate.rebase", "--onto", "main", "--dry-run", env=env)
    assert dry.code == 0, dry.output
    assert dry.out.splitlines()[:4] == [
        "api_gateway: nothing to move",
        "marketplace_publisher: nothing to move",
        "signal_ingestion: nothing to move",
        "scoring_engine: onto main (head 0014): 3 revision(s) would move",
    ]
    assert dry.out.splitlines()[-1] == "dry run: nothing written"
    assert repo.git("status", "--porcelain") == "", "a dry run changes nothing"
    assert {p.name: p.read_text() for p in chain} == before

    started = time.perf_counter()
    rebased = repo.invoke("migrate.rebase", "--service", SERVICE, "--onto", "main", env=env)
    took = time.perf_counter() - started
    assert rebased.code == 0, rebased.output
    print(f"rebase of a 3-revision chain: {took:.2f} s")
    lines = rebased.out.splitlines()
    assert lines[:4] == [
        "scoring_engine: onto main (head 0014): 3 revision(s) move",
        "  0011 -> 0015  0011_create_audit.py -> 0015_create_audit.py (on 0014)",
        "  0012 -> 0016  0012_add_reviewer.py -> 0016_add_reviewer.py (on 0015)",
        "  0013 -> 0017  0013_create_notes.py -> 0017_create_notes.py (on 0016)",
    ]
    assert lines[-1] == "scoring_engine: head marker: 0017_create_notes"
    # The second of them and main's 0014 both touch scores: said on stderr.
    assert rebased.err.splitlines() == [
        "warning: scoring_engine: 0016 (was 0012) and 0014, which landed on main, both touch "
        "scores: check that they still fit together"
    ]
    assert marker(repo) == "0017_create_notes\n"
    # Each file: its header rewritten, every other byte as it was.
    for old_name, new_name, old_id, new_id, old_down, new_down in (
        ("0011_create_audit.py", "0015_create_audit.py", "0011", "0015", "0010", "0014"),
        ("0012_add_reviewer.py", "0016_add_reviewer.py", "0012", "0016", "0011", "0015"),
        ("0013_create_notes.py", "0017_create_notes.py", "0013", "0017", "0012", "0016"),
    ):
        assert not (repo.versions / old_name).exists()
        assert _changed_lines(before[old_name], (repo.versions / new_name).read_text()) == [
            (f"Revision ID: {old_id}\n", f"Revision ID: {new_id}\n"),
            (f"Revises: {old_down}\n", f"Revises: {new_down}\n"),
            (f'revision: str = "{old_id}"\n', f'revision: str = "{new_id}"\n'),
            (
                f'down_revision: str | Sequence[str] | None = "{old_down}"\n',
                f'down_revision: str | Sequence[str] | None = "{new_down}"\n',
            ),
        ]
    commit(repo, "rebased onto main")

    # The merge still stops on the marker (both sides changed it); run again, the rebase
    # has nothing to move and resolves it.
    assert repo.try_git("merge", "main", "-m", "merge main").returncode == 1
    assert conflicted(repo) == [str(MARKER)]
    resolved = repo.invoke("migrate.rebase", "--service", SERVICE, env=env)
    assert resolved.code == 0, resolved.output
    assert resolved.out.splitlines() == [
        "scoring_engine: nothing to move; head marker resolved: 0017_create_notes",
        "resolved: the moved revisions and the head marker are staged; continue with: git commit",
    ]
    repo.git("commit", "-q", "--no-edit")
    validated = repo.invoke("migrate.validate", "--offline", "--service", SERVICE)
    assert validated.out == "scoring_engine: ok, head 0017 (files only)\n", validated.output
    again = repo.invoke("migrate.rebase", "--service", SERVICE, "--onto", "main", env=env)
    assert again.one_line_error() == (
        "error: scoring_engine: nothing to move: every scoring_engine revision of this "
        "checkout is on main, or on top of its head already; nothing to do; to check the "
        "merge: invoke migrate.validate --offline --against main"
    )


def test_rebase_resolves_each_stop_of_a_git_rebase(repo: Repo, empty_database: URL) -> None:
    """In a git rebase, HEAD is the upstream side ("ours") and the commit replayed is
    "theirs", the other way round from a merge: the revisions of the replayed commit move
    onto HEAD's head, one stop after the other."""
    env = {"DATABASE_URL": raw(empty_database)}
    repo.git("checkout", "-q", "-b", "feature")
    add_revision(repo, "create audit", CREATE_TABLE.format("audit"), DROP_TABLE.format("audit"))
    commit(repo, "audit")
    add_revision(
        repo, "add reviewer", ADD_COLUMN.format("reviewer"), DROP_COLUMN.format("reviewer")
    )
    commit(repo, "reviewer")
    repo.git("checkout", "-q", "main")
    add_revision(repo, "create notes", CREATE_TABLE.format("notes"), DROP_TABLE.format("notes"))
    commit(repo, "notes")
    repo.git("checkout", "-q", "feature")

    assert repo.try_git("rebase", "main").returncode == 1
    assert conflicted(repo) == [str(MARKER)]
    first = repo.invoke("migrate.rebase", "--service", SERVICE, env=env)
    assert first.code == 0, first.output
    assert first.out.splitlines()[:2] == [
        "scoring_engine: onto HEAD (the rebase in progress: the side replayed onto) (head "
        "0013): 1 revision(s) move",
        "  0011 -> 0014  0011_create_audit.py -> 0014_create_audit.py (on 0013)",
    ]
    assert first.out.splitlines()[-1] == (
        "resolved: the moved revisions and the head marker are staged; continue with: "
        "git rebase --continue"
    )
    # The next commit adds 0012 on 0011, which the step before moved to 0014.
    assert repo.try_git("rebase", "--continue").returncode == 1
    assert conflicted(repo) == [str(MARKER)]
    second = repo.invoke("migrate.rebase", "--service", SERVICE, env=env)
    assert second.code == 0, second.output
    assert second.out.splitlines()[1] == (
        "  0012 -> 0015  0012_add_reviewer.py -> 0015_add_reviewer.py (on 0014)"
    )
    finished = repo.try_git("rebase", "--continue")
    assert finished.returncode == 0, finished.stderr
    assert repo.git("log", "--format=%s", "-3").split("\n")[:3] == ["reviewer", "audit", "notes"]
    assert marker(repo) == "0015_add_reviewer\n"
    validated = repo.invoke("migrate.validate", "--offline", "--service", SERVICE)
    assert validated.out == "scoring_engine: ok, head 0015 (files only)\n", validated.output


def test_rebase_refuses_released_and_applied_revisions(
    repo: Repo, empty_database: URL, pg_server: URL
) -> None:
    from db_devtools.provisioning.databases import scratch_database

    repo.git("checkout", "-q", "-b", "feature")
    add_revision(repo, "create audit", CREATE_TABLE.format("audit"), DROP_TABLE.format("audit"))
    commit(repo, "audit")
    repo.git("checkout", "-q", "main")
    add_revision(repo, "add flag", ADD_COLUMN.format("flag"), DROP_COLUMN.format("flag"))
    commit(repo, "flag")
    repo.git("checkout", "-q", "feature")
    listing = repo.revisions()

    def refused(*args: str, env: dict[str, str]) -> str:
        result = repo.invoke(
            "migrate.rebase", "--service", SERVICE, "--onto", "main", *args, env=env
        )
        assert repo.revisions() == listing and repo.git("status", "--porcelain") == ""
        return result.one_line_error()

    with scratch_database(pg_server, "dev") as development:
        dev = {"DATABASE_URL": raw(development)}
        # On the main branch (here: this one, by SIGNALMARKET_MAIN_BRANCH), it is released.
        assert refused(env={**dev, "SIGNALMARKET_MAIN_BRANCH": "feature"}) == (
            "error: scoring_engine: cannot move 0011 (0011_create_audit.py): it is on feature, "
            "the main branch (released); a released revision keeps its ID and place; leave it "
            "where it is: after the git merge, join the heads with a merge revision: invoke "
            "migrate.merge --service scoring_engine"
        )
        # On a tag, it is released.
        repo.git("tag", "v1.0")
        assert refused(env=dev) == (
            "error: scoring_engine: cannot move 0011 (0011_create_audit.py): it is released (on "
            "tag v1.0); a released revision keeps its ID and place; leave it where it is: after "
            "the git merge, join the heads with a merge revision: invoke migrate.merge "
            "--service scoring_engine"
        )
        repo.git("tag", "-d", "v1.0")

        # Applied in a database named on the command line (e.g. staging's).
        staging = empty_database
        assert (
            repo.invoke(
                "migrate.upgrade", "--service", SERVICE, env={"DATABASE_URL": raw(staging)}
            ).code
            == 0
        )
        line = refused("--database-url", raw(staging), env=dev)
        assert line == (
            f"error: scoring_engine: cannot move 0011 (0011_create_audit.py): the database at "
            f"{staging.host}:{staging.port}/{staging.database} applied it; moved, it would be "
            "skipped there (or run twice), so it keeps its ID and place; leave it where it is: "
            "after the git merge, join the heads with a merge revision: invoke migrate.merge "
            "--service scoring_engine"
        )
        assert str(staging.password) not in line

        # Applied in the development database: what to run, exactly.
        assert repo.invoke("migrate.upgrade", "--service", SERVICE, env=dev).code == 0
        assert refused(env=dev) == (
            f"error: scoring_engine: your development database ({development.host}:"
            f"{development.port}/{development.database}) applied 0011, which would move: it "
            "must be downgraded to 0010 first, with the files as they are now; run: invoke "
            "migrate.rebase --service scoring_engine --onto main --local downgrade"
        )
        moved = repo.invoke(
            "migrate.rebase",
            "--service",
            SERVICE,
            "--onto",
            "main",
            "--local",
            "downgrade",
            env=dev,
        )
        assert moved.code == 0, moved.output
        assert (
            f"scoring_engine: your development database ({development.host}:{development.port}/"
            f"{development.database}) downgraded to 0010 first (it had 0011)"
        ) in moved.out.splitlines()
        assert sql(development, "SELECT version_num FROM alembic_version_scoring_engine") == [
            ("0010",)
        ]
        assert sql(
            development,
            "SELECT count(*) FROM alembic_revisions_scoring_engine WHERE revision = '0011'",
        ) == [(0,)]
        assert sorted(set(repo.revisions()) - set(listing)) == ["0013_create_audit.py"]
