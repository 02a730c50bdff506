"""``migrate.squash`` in a real git repository (a copy of the project) on a real Postgres.

scoring_engine gets two revisions on top of its history: 0011 makes one of everything a
baseline must carry (an enum, a plpgsql function and its trigger, a view, a free-standing
sequence, a comment, an index, a column added then dropped, rows holding quotes, colons,
percent signs, backslashes and newlines), 0012 builds on it. Then the history is squashed
to 0011: databases below, at and past 0011, migrated by the old chain, show what happens
to each. The equality of the schemas is checked here again, independently of the
command's own proof.
"""

import time

import pytest
from db_devtools.provisioning.databases import scratch_database
from db_devtools.workflow import schema_dump, squash
from db_devtools.workflow.fingerprint import fingerprint
from helpers import MIGRATIONS, Repo, config_for, raw, sql
from shared_db import commands, runner, status
from shared_db.errors import MigrationError
from shared_db.history import read_directory
from shared_db.web.hints import one_line
from sqlalchemy.engine import URL

SERVICE = "scoring_engine"

RICH = '''"""Grades: an enum, a function and its trigger, a view, a sequence, seeded rows."""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None
phase = "expand"

FUNCTION = """
CREATE FUNCTION grade_note() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    -- a comment; with a semicolon: and a colon, 100% sure
    NEW.note := coalesce(NEW.note, 'none: ' || NEW.grade::text);
    RETURN NEW;
END
$body$
"""


def upgrade() -> None:
    op.execute("CREATE TYPE score_grade AS ENUM ('low', 'mid', 'high')")
    op.create_table(
        "grades",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("grade", sa.Text(), nullable=False),
        sa.Column("scratch", sa.Text()),
        sa.Column("note", sa.Text()),
    )
    op.drop_column("grades", "scratch")  # leaves a gap in the column numbers
    op.execute("ALTER TABLE grades ALTER COLUMN grade TYPE score_grade USING grade::score_grade")
    op.create_index("ix_grades_grade", "grades", ["grade"])
    op.execute(FUNCTION)
    op.execute(
        "CREATE TRIGGER grades_note BEFORE INSERT ON grades "
        "FOR EACH ROW EXECUTE FUNCTION grade_note()"
    )
    op.execute("CREATE VIEW high_grades AS SELECT id, note FROM grades WHERE grade = 'high'")
    op.execute("CREATE SEQUENCE ticket_numbers START 100")
    op.execute("SELECT nextval('ticket_numbers')")
    op.execute("COMMENT ON TABLE grades IS 'graded: see the docs'")
    op.execute(
        "INSERT INTO grades (grade, note) VALUES "
        "('low', 'it''s 50% off: \\"quoted\\"' || chr(10) || 'second line'), "
        "('high', E'tab\\\\there \\\\\\\\ backslash'), ('mid', NULL)"
    )


def downgrade() -> None:
    op.execute("DROP VIEW high_grades")
    op.drop_table("grades")
    op.execute("DROP FUNCTION grade_note()")
    op.execute("DROP SEQUENCE ticket_numbers")
    op.execute("DROP TYPE score_grade")
'''

LATER = '''"""Weigh grades."""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = "0004"  # squashed away: becomes the baseline
phase = "expand"


def upgrade() -> None:
    op.add_column("grades", sa.Column("weight", sa.BigInteger(), nullable=True))
    op.execute("INSERT INTO grades (grade, weight) VALUES ('high', 3)")


def downgrade() -> None:
    op.execute("DELETE FROM grades WHERE weight IS NOT NULL")
    op.drop_column("grades", "weight")
'''


@pytest.fixture
def history(repo: Repo) -> Repo:
    """The copy with 0011 and 0012 committed (the head marker naming 0012)."""
    (repo.versions / "0011_grades.py").write_text(RICH)
    (repo.versions / "0012_weigh_grades.py").write_text(LATER)
    (repo.path / MIGRATIONS / SERVICE / "head.txt").write_text("0012_weigh_grades\n")
    repo.git("add", "-A")
    repo.git("commit", "-q", "-m", "grades")
    return repo


def migrated(repo: Repo, url: URL, target: str) -> None:
    """``url``'s database migrated to ``target`` by the copy's history as it is now."""
    commands.upgrade(config_for(url, migrations_dir=repo.path / MIGRATIONS), SERVICE, target)


def test_squash_replaces_the_chain_by_a_proven_baseline(
    history: Repo, pg_server: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = history
    before = repo.revisions()
    later_source = (repo.versions / "0012_weigh_grades.py").read_text()
    with (
        scratch_database(pg_server, "below") as below,
        scratch_database(pg_server, "at_rev") as at_rev,
        scratch_database(pg_server, "past") as past,
        scratch_database(pg_server, "fresh") as fresh,
    ):
        migrated(repo, below, "0004")
        migrated(repo, at_rev, "0011")
        migrated(repo, past, "head")
        old_chain_at_head = fingerprint(past, SERVICE)
        env = {"DATABASE_URL": raw(fresh)}

        # A database below the baseline would be stranded: refused, nothing written.
        refused = repo.invoke(
            "migrate.squash", "--service", SERVICE, "--to", "0011", "--database-url", raw(below),
            env=env,
        )  # fmt: skip
        assert refused.one_line_error() == (
            f"error: scoring_engine: cannot squash to 0011: the database at {below.host}:"
            f"{below.port}/{below.database} is at 0004, below 0011: once 0004 is gone, no code "
            "can upgrade it; upgrade that database to 0011 first (DATABASE_URL=<its URL> invoke "
            "migrate.upgrade --service scoring_engine --target 0011), or squash to an earlier "
            "revision"
        )
        # The proof compares catalogs, not the dump with itself: a dump that lost the
        # trigger (as a pg_dump option or a filter could) is caught, and nothing written.
        with monkeypatch.context() as patched:
            dump = schema_dump.schema_statements
            patched.setattr(
                squash,
                "schema_statements",
                lambda *args: [s for s in dump(*args) if "CREATE TRIGGER" not in s],
            )
            missing = repo.invoke("migrate.squash", "--service", SERVICE, "--to", "0011", env=env)
        assert missing.one_line_error() == (
            "error: scoring_engine: cannot squash to 0011: the schemas at 0011 (old chain, "
            "baseline) differ: triggers: ('public', 'grades', 'grades_note', 'CREATE TRIGGER "
            "grades_note BEFORE INSERT ON grades FOR EACH ROW EXECUTE FUNCTION grade_note()', "
            "'O') only in the first; nothing written; the history builds something the dump "
            "does not carry over; squash to an earlier revision, or report it"
        )
        assert repo.revisions() == before and repo.git("status", "--porcelain") == ""

        given = ("--database-url", raw(at_rev), "--database-url", raw(past))
        dry = repo.invoke(
            "migrate.squash", "--service", SERVICE, "--to", "0011", *given, "--dry-run", env=env
        )
        assert dry.code == 0, dry.output
        assert dry.out.splitlines()[-1] == "dry run: nothing written"
        assert repo.revisions() == before and repo.git("status", "--porcelain") == ""

        started = time.perf_counter()
        squashed = repo.invoke(
            "migrate.squash", "--service", SERVICE, "--to", "0011", *given, env=env
        )
        took = time.perf_counter() - started
        assert squashed.code == 0, squashed.output
        print(f"squash of {len(before) - 1} revisions: {took:.2f} s")
        lines = squashed.out.splitlines()
        assert lines[0] == (
            f"scoring_engine: {len(before) - 1} revision(s), 0001 to 0011, squashed into "
            "packages/shared_db/src/shared_db/migrations/scoring_engine/versions/"
            "0011_baseline.py (revision 0011)"
        )
        assert lines[1].startswith("  baseline: ") and "5 tables" in lines[1]
        assert "1 enums, 1 functions, 3 rows" in lines[1]
        assert "old chain = baseline = sha256:" in lines[2]
        assert "revisions after 0011 apply (0012)" in lines[2]
        assert lines[-2:] == [
            "  rewritten: 0012_weigh_grades.py (its parent or dependency is now 0011)",
            "  head marker: 0012_weigh_grades",
        ]
        assert repo.revisions() == ["0011_baseline.py", "0012_weigh_grades.py"]
        assert (repo.versions / "0012_weigh_grades.py").read_text() == later_source.replace(
            'depends_on = "0004"', 'depends_on = "0011"'
        )
        assert (repo.path / MIGRATIONS / SERVICE / "head.txt").read_text() == "0012_weigh_grades\n"
        validated = repo.invoke("migrate.validate", "--offline", "--service", SERVICE)
        assert validated.code == 0, validated.output

        # Checked here again: an empty database through the baseline and 0012 holds what
        # the old chain built (schema and rows), and the rows read the same.
        migrated(repo, fresh, "head")
        assert fingerprint(fresh, SERVICE) == old_chain_at_head
        rows = "SELECT grade::text, note, weight FROM grades ORDER BY id"
        assert sql(fresh, rows) == sql(past, rows)
        assert sql(fresh, rows)[0] == ("low", 'it\'s 50% off: "quoted"\nsecond line', None)
        assert sql(fresh, "SELECT last_value, is_called FROM ticket_numbers") == [(100, True)]

        # At or past 0011: unchanged, not reported as changed since they were applied.
        config = config_for(migrations_dir=repo.path / MIGRATIONS)
        code = read_directory(repo.versions)
        for database in (at_rev, past):
            assert status.modified_at(config_for(database), SERVICE, code) == []
        moved = commands.upgrade(config_for(at_rev, migrations_dir=repo.path / MIGRATIONS), SERVICE)
        assert moved.steps == ("0012",)
        assert (
            commands.upgrade(config_for(past, migrations_dir=config.migrations_dir), SERVICE).steps
            == ()
        )

        # Below 0011: refused at startup, naming the baseline and what to do.
        with pytest.raises(MigrationError) as startup:
            runner.migrate_to_head(config_for(below, migrations_dir=config.migrations_dir), SERVICE)
        assert startup.value.kind == "squashed_revision"
        assert one_line(startup.value, in_container=True) == (
            "scoring_engine: the database is at revision 0004, which this code squashed into "
            "the baseline 0011 (the revisions up to 0011 are one revision now); this code "
            "cannot use it from there: it must reach 0011 first; deploy a release from before "
            "the squash first (it upgrades the database to 0011), then this one"
        )
        upgrade = repo.invoke(
            "migrate.upgrade", "--service", SERVICE, env={"DATABASE_URL": raw(below)}
        )
        assert upgrade.one_line_error().endswith(
            "it must reach 0011 first; upgrade it to 0011 with the code from before the squash "
            "(git log -- the baseline's file), e.g.: invoke migrate.upgrade --service "
            "scoring_engine --target 0011; then this code runs on it"
        )
        assert sql(below, "SELECT version_num FROM alembic_version_scoring_engine") == [("0004",)]
        below_config = config_for(below, migrations_dir=config.migrations_dir)
        assert commands.status(below_config, SERVICE).state == (
            "at 0004, squashed into the baseline 0011 (upgrade it to 0011 with an older "
            "release first)"
        )

        # The baseline's downgrade empties the database, its records with it.
        down = commands.downgrade(
            config_for(past, migrations_dir=config.migrations_dir), SERVICE, "base"
        )
        assert down.after == ()
        assert sql(past, "SELECT count(*) FROM alembic_revisions_scoring_engine") == [(0,)]
        assert sql(
            past,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = 'grades'",
        ) == [(0,)]
