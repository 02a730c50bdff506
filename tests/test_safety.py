"""Safety of the workflow: destructive changes, tamper check, atomicity, least privilege,
masked secrets. (Lint is in test_lint.py, bad input in test_bad_input.py.)"""

import logging
import os
import secrets
import subprocess
import sys
from unittest import mock

import psycopg
import pytest
from alembic.operations import ops
from db_devtools.errors import WorkflowError
from db_devtools.provisioning.databases import drop_database, ensure_service_database
from db_devtools.workflow.changes import (
    describe,
    describe_all,
    destructive_changes,
    phase_of,
    widens,
)
from helpers import BROKEN_REVISION as BROKEN
from helpers import (
    MODELS,
    ROOT,
    VERSIONS,
    Repo,
    config_for,
    execute,
    head,
    raw,
    service_client,
    sql,
)
from scoring_engine.settings import ScoringEngineSettings
from shared_db import commands, records, status
from shared_db.config import DbConfig
from shared_db.history import read_history
from shared_db.web.app import StartupFailed, start
from sqlalchemy import BigInteger, Column, Integer, Numeric, SmallInteger, String, Text
from sqlalchemy.engine import URL

SCORING = "scoring_engine"
NO_URL_LINE = (
    "scoring_engine: startup failed: no database URL: set SCORING_ENGINE_DATABASE_URL or "
    "DATABASE_URL; in development, get one with: invoke db.url --service scoring_engine"
)

# -- destructive changes -------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "widening"),
    [
        (String(16), String(64), True),
        (String(64), String(16), False),
        (String(16), Text(), True),
        (Text(), String(16), False),
        (Integer(), BigInteger(), True),
        (BigInteger(), Integer(), False),
        (SmallInteger(), Integer(), True),
        (Numeric(6, 5), Numeric(8, 5), True),
        (Numeric(6, 5), Numeric(6, 2), False),
        (Integer(), String(10), False),
    ],
)
def test_type_changes_that_lose_data_are_narrowing(
    old: object, new: object, widening: bool
) -> None:
    assert widens(old, new) is widening


def test_destructive_changes_are_the_drops_and_narrowings_among_the_operations() -> None:
    operations: list[ops.MigrateOperation] = [
        ops.CreateTableOp("notes", [Column("id", Integer, primary_key=True)]),
        ops.DropTableOp("old_scores"),
        ops.DropTableOp("mockups", schema="mockups"),
        ops.AddColumnOp("scores", Column("note", Text)),
        ops.AlterColumnOp(
            "scores", "status", existing_type=String(16), modify_type=String(8)
        ),  # narrowing
        ops.AlterColumnOp(
            "scores", "model_version", existing_type=String(16), modify_type=Text()
        ),  # widening
        ops.AlterColumnOp("scores", "value", existing_type=Numeric(6, 5), modify_nullable=True),
        ops.ModifyTableOps(
            "score_feedback",
            [
                ops.AddColumnOp("score_feedback", Column("weight", Numeric(6, 3))),
                ops.DropColumnOp("score_feedback", "comment"),
            ],
        ),
    ]
    assert destructive_changes(operations) == [
        "remove table old_scores",
        "remove table mockups.mockups",
        "narrow scores.status from VARCHAR(16) to VARCHAR(8)",
        "remove column score_feedback.comment",
    ]
    safe = [operations[0], operations[3], operations[5], operations[6]]
    assert destructive_changes(safe) == []
    # Every operation, the groups opened: the list migrate.revision prints.
    assert describe_all(operations) == [
        "add table notes",
        "remove table old_scores",
        "remove table mockups.mockups",
        "add column scores.note",
        "modify type of scores.status",
        "modify type of scores.model_version",
        "modify nullable of scores.value",
        "add column score_feedback.weight",
        "remove column score_feedback.comment",
    ]


def test_describe_names_each_kind_of_operation() -> None:
    assert describe(ops.CreateIndexOp("ix_scores_value", "scores", ["value"])) == (
        "add index ix_scores_value"
    )
    assert describe(ops.DropIndexOp("ix_scores_value", table_name="scores")) == (
        "remove index ix_scores_value"
    )
    assert describe(ops.DropConstraintOp("uq_scores_signal", "scores", type_="unique")) == (
        "remove constraint uq_scores_signal on scores"
    )
    assert describe(ops.CreateUniqueConstraintOp("uq_scores_signal", "scores", ["signal_id"])) == (
        "add constraint uq_scores_signal on scores"
    )
    renamed = ops.AlterColumnOp(
        "scores",
        "status",
        schema="mockups",
        modify_name="state",
        modify_server_default="'queued'",
        modify_nullable=False,
    )
    assert describe(renamed) == "modify nullable, server default, name of mockups.scores.status"
    # Alembic's markers: NOT NULL is modify_nullable=False, a dropped default is None.
    not_null = ops.AlterColumnOp("scores", "value", modify_nullable=False)
    assert describe(not_null) == "modify nullable of scores.value"
    no_default = ops.AlterColumnOp("scores", "status", modify_server_default=None)
    assert describe(no_default) == "modify server default of scores.status"
    assert describe(ops.ExecuteSQLOp("SELECT 1")) == "ExecuteSQLOp"


def test_dropping_a_column_needs_allow_destructive(repo: Repo) -> None:
    models = repo.path / MODELS
    source = models.read_text()
    comment = "    comment: Mapped[str | None] = mapped_column(Text)\n"
    assert comment in source
    models.write_text(source.replace(comment, ""))
    before = repo.revisions()
    # The copy's models changed: its own code autogenerates, in a process (one for both
    # runs: the refused one, then the same with --allow-destructive).
    refused, allowed = repo.invoke_process_runs(
        ("migrate.revision", "--service", SCORING, "-m", "drop comment"),
        ("migrate.revision", "--service", SCORING, "-m", "drop comment", "--allow-destructive"),
    )
    assert refused.code == 1
    assert refused.err.strip() == (
        "error: scoring_engine: autogenerate proposes changes that lose data: "
        "remove column score_feedback.comment; nothing written; if intended, run again "
        "with --allow-destructive"
    )
    assert allowed.code == 0, allowed.err
    assert "  - remove column score_feedback.comment" in allowed.out.splitlines()
    assert "  contract: remove column score_feedback.comment" in allowed.out.splitlines()
    assert "phase contract)" in allowed.out.splitlines()[-3]
    # One file more, numbered next to the head: the refused run wrote nothing.
    assert repo.revisions() == sorted([*before, "0011_drop_comment.py"])
    written = (repo.path / VERSIONS / "0011_drop_comment.py").read_text()
    assert 'op.drop_column("score_feedback", "comment")' in written
    assert '\nphase: str = "contract"\n' in written
    assert read_history(repo.config(), SCORING).revisions["0011"].phase == "contract"


def test_an_expand_revision_with_contract_changes_is_refused_before_writing() -> None:
    """The autogenerate hook sees the operations before the file is written."""
    from types import SimpleNamespace

    from db_devtools.workflow.authoring import _Autogenerate
    from dev_tasks.hints import for_error

    script = ops.MigrationScript(
        "0011",
        ops.UpgradeOps([ops.ModifyTableOps("score_feedback", [ops.DropColumnOp(
            "score_feedback", "comment")])]),
        ops.DowngradeOps([]),
    )  # fmt: skip
    context = SimpleNamespace(config=SimpleNamespace(attributes={}))
    with pytest.raises(WorkflowError) as refused:
        _Autogenerate(SCORING, allow_destructive=True, phase="expand")(context, None, [script])
    assert refused.value.kind == "expand_with_contract_changes"
    assert context.config.attributes == {}, "nothing handed to the template"
    assert for_error(refused.value) == (
        "scoring_engine: the revision cannot be an expand revision: it would remove "
        "column score_feedback.comment; nothing written; make it two revisions (expand now, "
        "contract in a later release), or write it as --phase contract"
    )
    inferred = _Autogenerate(SCORING, allow_destructive=True, phase=None)
    inferred(context, None, [script])
    assert inferred.phase == "contract" and context.config.attributes == {"phase": "contract"}


def test_autogenerate_with_nothing_to_do_writes_nothing(repo: Repo) -> None:
    # The copy's models are the installed ones: in-process is enough.
    before = repo.revisions()
    result = repo.invoke("migrate.revision", "--service", SCORING, "-m", "nothing")
    assert result.one_line_error() == (
        "error: scoring_engine: no model changes found: the models match the head; "
        "change a model in shared_db/models/scoring_engine.py, or write one by hand with --empty"
    )
    assert repo.revisions() == before
    assert repo.git("status", "--porcelain") == ""


# -- tamper check ----------------------------------------------------------------------


def test_each_applied_revision_records_its_checksum(empty_database: URL) -> None:
    config = config_for(empty_database)
    assert commands.upgrade(config, SCORING, "0002").after == ("0002",)
    rows = {
        row[0]: row[1:]
        for row in sql(
            empty_database,
            "SELECT revision, checksum, phase, down_revisions, message, duration_ms "
            f"FROM {records.records_table(SCORING)}",
        )
    }
    assert set(rows) == {"0001", "0002"}
    history = read_history(DbConfig(), SCORING)
    checksum, phase, down, message, duration_ms = rows["0002"]
    assert checksum == records.file_checksum(history.revisions["0002"].path)
    assert (phase, down, message) == ("expand", "0001", history.revisions["0002"].message)
    assert isinstance(duration_ms, int) and duration_ms >= 0
    assert commands.downgrade(config, SCORING, "0001").after == ("0001",)
    assert sql(empty_database, f"SELECT revision FROM {records.records_table(SCORING)}") == [
        ("0001",)
    ]


def test_a_changed_file_is_reported_by_validate_and_ready(repo: Repo, empty_database: URL) -> None:
    database = {"DATABASE_URL": raw(empty_database)}
    upgraded = repo.invoke("migrate.upgrade", "--service", SCORING, env=database)
    assert upgraded.code == 0, upgraded.output
    edited = repo.path / VERSIONS / "0002_add_status_column.py"
    edited.write_text(edited.read_text().replace("'pending'", "'queued'"))
    result = repo.invoke("migrate.validate", "--service", SCORING, "--no-lint", env=database)
    assert result.code == 1
    tampered = [line for line in result.out.splitlines() if "was applied" in line]
    assert tampered == [
        "scoring_engine: revision 0002 was applied to scoring_engine's database and its file "
        "0002_add_status_column.py has changed since; restore the applied version "
        f"(git log -p -- {VERSIONS / '0002_add_status_column.py'}); put new changes in a new "
        "revision: invoke migrate.revision --service scoring_engine -m '...'"
    ]
    # The installed files are unchanged: the same database is not tampered for them...
    assert (
        status.modified_at(config_for(empty_database), SCORING, read_history(DbConfig(), SCORING))
        == []
    )
    # ...until a recorded checksum differs from its file; /ready says which revision.
    execute(
        empty_database,
        f"UPDATE {records.records_table(SCORING)} SET checksum = repeat('0', 64) "
        "WHERE revision = '0004'",
    )
    with service_client(SCORING, empty_database) as client:
        ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["modified_since_applied"] == ["0004"]


# -- atomicity (the CLI path; the startup path is in test_startup.py) --------------------


def test_a_failing_revision_leaves_the_last_good_one(repo: Repo, empty_database: URL) -> None:
    (repo.path / VERSIONS / "0011_broken.py").write_text(BROKEN)
    result = repo.invoke(
        "migrate.upgrade", "--service", SCORING, env={"DATABASE_URL": raw(empty_database)}
    )
    line = result.one_line_error()
    assert line.startswith("error: scoring_engine: revision 0011 failed: ")
    assert 'relation "no_such_table" does not exist' in line
    assert line.endswith(
        "; the database stays at 0010; "
        "fix that revision, then run: invoke migrate.upgrade --service scoring_engine"
    )
    assert commands.current(config_for(empty_database), SCORING) == head(SCORING) == ("0010",)
    columns = sql(
        empty_database,
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'scores'",
    )
    assert ("half_done",) not in columns
    recorded = sql(
        empty_database,
        f"SELECT revision FROM {records.records_table(SCORING)} WHERE revision = '0011'",
    )
    assert recorded == []


# -- least privilege ---------------------------------------------------------------------


def test_each_service_role_owns_its_database_and_cannot_open_another(pg_server: URL) -> None:
    suffix = secrets.token_hex(3)
    names = (f"lp_scoring_{suffix}", f"lp_gateway_{suffix}")
    urls = {name: ensure_service_database(pg_server, name, f"pw-{name}") for name in names}
    try:
        scoring, gateway = urls[names[0]], urls[names[1]]
        # The scoring role runs its own migrations: it may create schemas and tables.
        assert commands.upgrade(config_for(scoring), SCORING).after == head(SCORING)
        owners = sql(
            scoring,
            "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname IN ('public', 'mockups')",
        )
        assert owners == [(names[0],)]
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            psycopg.connect(raw(gateway.set(database=names[0], drivername="postgresql")))
        # Running the same provisioning again changes nothing (idempotent).
        assert ensure_service_database(pg_server, names[0], f"pw-{names[0]}") == scoring
    finally:
        for name in names:
            drop_database(pg_server.set(database=name))
            execute(pg_server.set(database="postgres"), f'DROP ROLE IF EXISTS "{name}"')


# -- secrets and startup refusals ----------------------------------------------------------


def _start_with(environ: dict[str, str], caplog: pytest.LogCaptureFixture) -> str:
    """Start scoring_engine in this process with only ``environ``'s database settings;
    returns the one error line it logged (and checks it is the one it raised)."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith("DATABASE_URL") and k != "SIGNALMARKET_CONTAINER"
    }
    caplog.clear()
    with (
        caplog.at_level(logging.INFO, "signalmarket"),
        mock.patch.dict(os.environ, {**clean, **environ}, clear=True),
        pytest.raises(StartupFailed) as failed,
    ):
        start(ScoringEngineSettings)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, caplog.text
    line = errors[0].getMessage()
    assert "\n" not in line
    assert (
        line == f"scoring_engine: startup failed: {str(failed.value).removeprefix(SCORING + ': ')}"
    )
    return line


def test_startup_failure_log_masks_the_password(
    pg_server: URL, caplog: pytest.LogCaptureFixture
) -> None:
    # A database that does not exist: should the server not check passwords, the test
    # fails without migrating anything.
    missing = f"no_such_{secrets.token_hex(4)}"
    wrong = pg_server.set(password="hunter2-secret", database=missing)
    line = _start_with({"DATABASE_URL": raw(wrong), "DATABASE_WAIT_TIMEOUT": "0.5"}, caplog)
    assert "hunter2-secret" not in caplog.text
    # Where, not the URL: host, port and database only.
    assert f"cannot use the database at {pg_server.host}:{pg_server.port}/{missing}: " in line
    assert "password authentication failed" in line
    assert line.endswith(
        "; check the credentials and database in SCORING_ENGINE_DATABASE_URL or DATABASE_URL"
    )


def test_without_a_url_the_service_refuses_to_start(caplog: pytest.LogCaptureFixture) -> None:
    # Neither SCORING_ENGINE_DATABASE_URL nor DATABASE_URL: one line naming both.
    assert _start_with({}, caplog) == NO_URL_LINE
    # In a container, no invoke command: the variables to set there.
    line = _start_with({"SIGNALMARKET_CONTAINER": "1"}, caplog)
    assert line.endswith("give the container one in its environment (compose file, manifest)")
    assert "SCORING_ENGINE_DATABASE_URL or DATABASE_URL" in line and "invoke" not in line

    # The real process: exit code 1 and that single line, no traceback, no server.
    process = subprocess.run(
        [sys.executable, "-m", SCORING, "--port", "1"],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT / "tests",
    )
    assert process.returncode == 1, process.stdout + process.stderr
    assert process.stdout == ""
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1, process.stderr
    assert lines[0].endswith(f" ERROR signalmarket.startup: {NO_URL_LINE}")


# -- phases of operations (expand/contract) --------------------------------------------


@pytest.mark.parametrize(
    ("operation", "phase", "reason"),
    [
        (ops.CreateTableOp("t", [Column("id", Integer)]), "expand", None),
        (ops.AddColumnOp("t", Column("c", Text, nullable=True)), "expand", None),
        (ops.AddColumnOp("t", Column("c", Text, nullable=False, server_default="x")), "expand",
         None),
        (ops.AddColumnOp("t", Column("c", Text, nullable=False)), "contract",
         "add column t.c NOT NULL without a default (old code inserts without it)"),
        (ops.CreateIndexOp("ix", "t", ["c"]), "expand", None),
        (ops.CreateIndexOp("ux", "t", ["c"], unique=True), "contract", "add index ux (unique)"),
        (ops.DropIndexOp("ix", "t"), "expand", None),
        (ops.CreateCheckConstraintOp("ck", "t", "c > 0"), "contract",
         "add constraint ck on t, checked at once"),
        (ops.AlterColumnOp("t", "c", modify_nullable=True), "expand", None),
        (ops.AlterColumnOp("t", "c", modify_nullable=False), "contract", "set t.c NOT NULL"),
        (ops.AlterColumnOp("t", "c", modify_name="d"), "contract", "rename t.c"),
        (ops.AlterColumnOp("t", "c", existing_type=String(10), modify_type=String(20)), "expand",
         None),
        (ops.DropColumnOp("t", "c"), "contract", "remove column t.c"),
        (ops.ExecuteSQLOp("UPDATE t SET c = 1"), "expand", None),
        (ops.ExecuteSQLOp("ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (c) REFERENCES u NOT VALID"),
         "expand", None),
        (ops.ExecuteSQLOp("ALTER TABLE t VALIDATE CONSTRAINT fk"), "contract",
         "validates a constraint"),
        (ops.ExecuteSQLOp("ALTER TABLE t RENAME COLUMN c TO d"), "contract", "renames"),
    ],
)  # fmt: skip
def test_the_phase_of_an_operation(
    operation: ops.MigrateOperation, phase: str, reason: str | None
) -> None:
    found, reasons = phase_of([ops.ModifyTableOps("t", [operation])])
    assert found == phase
    if reason is None:
        assert reasons == []
    else:
        assert len(reasons) == 1 and reasons[0].startswith(reason), reasons
