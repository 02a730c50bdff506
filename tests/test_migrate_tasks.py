"""The ``invoke migrate.*`` front end, run in-process: exit codes and one-line messages.

Only the test of ``scripts/validate_migrations.sh`` runs a real process: the script itself
(and Alembic's own ``revision``, for its post-write hooks). Revision files are written in
a copy of the project (the ``repo`` fixture), never in this checkout.
"""

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from helpers import ROOT, Repo, head, invoke, raw
from ruff import find_ruff_bin  # type: ignore[import-untyped]
from shared_db.alembic_config import alembic_config
from shared_db.config import DbConfig
from shared_db.history import read_history
from shared_db.services import SERVICES
from sqlalchemy.engine import URL

CODE = DbConfig()  # the project's own histories
RUFF = str(find_ruff_bin())


def listing(service: str) -> list[str]:
    return sorted(p.name for p in CODE.versions_dir(service).iterdir())


def revision_count(service: str) -> int:
    return len(read_history(CODE, service).revisions)


@pytest.fixture
def database_env(empty_database: URL) -> dict[str, str]:
    return {"DATABASE_URL": raw(empty_database)}


# -- offline -------------------------------------------------------------------


def test_heads_prints_one_line_per_service() -> None:
    result = invoke("migrate.heads")
    assert result.code == 0, result.output
    lines = result.out.strip().splitlines()
    assert lines == [f"{s}: {', '.join(head(s))}" for s in SERVICES]
    assert all(len(head(s)) == 1 for s in SERVICES)  # no "<- 2 heads" flag on a sound history


def test_heads_of_one_service() -> None:
    result = invoke("migrate.heads", "--service", "api_gateway")
    assert result.code == 0, result.output
    assert result.out.strip() == f"api_gateway: {head('api_gateway')[0]}"


def test_validate_offline_says_ok_for_each_service() -> None:
    result = invoke("migrate.validate", "--offline")
    assert result.code == 0, result.output
    lines = result.out.strip().splitlines()
    assert lines == [f"{s}: ok, head {head(s)[0]} (files only)" for s in SERVICES]


def test_validate_offline_json() -> None:
    result = invoke("migrate.validate", "--offline", "--json")
    assert result.code == 0, result.output
    data = json.loads(result.out)
    assert data["ok"] is True
    assert [s["service"] for s in data["services"]] == list(SERVICES)
    assert len(data["services"]) == 4
    for entry in data["services"]:
        assert entry["ok"] is True
        assert entry["problems"] == []
        assert entry["database_checked"] is False
        assert entry["heads"] == list(head(entry["service"]))


def test_validate_unknown_service_is_one_line() -> None:
    result = invoke("migrate.validate", "--service", "billing")
    assert result.code == 1
    line = result.one_line_error()
    assert line.startswith("error: unknown service 'billing'")
    assert all(s in line for s in SERVICES)
    assert result.out == ""


def test_merge_of_a_single_head_writes_nothing() -> None:
    before = listing("scoring_engine")
    result = invoke("migrate.merge", "--service", "scoring_engine")
    assert result.code == 1, result.output
    assert result.err.strip() == (
        f"error: scoring_engine has a single head ({head('scoring_engine')[0]}): "
        "nothing to merge, no file written"
    )
    assert result.out == ""
    assert listing("scoring_engine") == before


def test_revision_without_message_is_refused() -> None:
    before = listing("scoring_engine")
    result = invoke("migrate.revision", "--service", "scoring_engine")
    assert result.code == 1
    line = result.one_line_error()
    assert "needs a message" in line and "-m '" in line
    assert listing("scoring_engine") == before


def test_history_marks_branch_and_merge_points() -> None:
    result = invoke("migrate.history", "--service", "scoring_engine")
    assert result.code == 0, result.output
    lines = result.out.splitlines()
    assert lines[0] == "scoring_engine:"

    def line_of(rev: str) -> str:
        found = [line for line in lines if f"-> {rev} " in line or f"-> {rev}," in line]
        assert len(found) == 1, (rev, lines)
        return found[0]

    # The documented shape of scoring_engine's history (docs/migrations.md).
    for rev in ("0003", "0010"):
        assert "(mergepoint)" in line_of(rev)
    for rev in ("0002", "0004"):
        assert "(branchpoint)" in line_of(rev)
    for rev in ("0001", "0002a", "0005", "0009"):
        assert "(mergepoint)" not in line_of(rev) and "(branchpoint)" not in line_of(rev)
    (scoring_head,) = head("scoring_engine")
    assert "(head)" in line_of(scoring_head) and "(base)" in line_of("0001")
    assert [line for line in lines if "(head)" in line] == [line_of(scoring_head)]
    assert "(generated_mockups)" in line_of("0005")
    assert len(lines) == 1 + revision_count("scoring_engine")


def test_sql_of_a_range() -> None:
    result = invoke("migrate.sql", "--service", "scoring_engine", "--range", "0001:0002")
    assert result.code == 0, result.output
    assert "ALTER TABLE scores ADD COLUMN status" in result.out
    assert "DEFAULT 'pending'" in result.out
    assert "CREATE TABLE scores" not in result.out  # 0001 is not part of the range


def test_sql_of_an_unknown_revision_is_one_line() -> None:
    result = invoke("migrate.sql", "--service", "scoring_engine", "--range", "0001:9999")
    assert result.code == 1
    line = result.one_line_error()
    assert "unknown revision '9999'" in line
    assert "invoke migrate.history --service scoring_engine" in line


def test_validate_script_is_a_thin_wrapper() -> None:
    def script(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "scripts/validate_migrations.sh", *args],
            cwd=ROOT,
            env=dict(os.environ),
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )

    result = script("--offline")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(": ok, head") == len(SERVICES)
    failed = script("--service", "billing")
    assert failed.returncode == 1
    assert "unknown service 'billing'" in failed.stderr


# -- with a database -----------------------------------------------------------


def _status_rows(stdout: str) -> dict[str, list[str]]:
    lines = stdout.strip().splitlines()
    assert lines[0].split() == [
        "service", "database", "head", "pending", "last", "migrated", "took", "state",
    ]  # fmt: skip
    # The last-migrated and took columns hold spaces: read them by position.
    return {line.split()[0]: line.split()[1:] for line in lines[1:]}


def test_status_before_and_after_upgrade(database_env: dict[str, str]) -> None:
    before = invoke("migrate.status", env=database_env, clean=True)
    assert before.code == 0, before.output
    rows = _status_rows(before.out)
    assert list(rows) == list(SERVICES)
    # database, head, pending, last migrated, took, state
    for service in SERVICES:
        count = str(revision_count(service))
        assert rows[service] == ["-", head(service)[0], count, "-", "-", "empty"]

    upgraded = invoke("migrate.upgrade", env=database_env, clean=True)
    assert upgraded.code == 0, upgraded.output
    # One line per revision applied, then a summary per service.
    progress = [line for line in upgraded.out.splitlines() if re.search(r"\(\d+/\d+\) ", line)]
    assert len(progress) == sum(revision_count(s) for s in SERVICES)
    summaries = [line for line in upgraded.out.splitlines() if " revision(s) in " in line]
    assert [line.split(" revision(s) in ")[0] for line in summaries] == [
        f"{s}: applied {revision_count(s)}" for s in SERVICES
    ]
    assert all(
        line.endswith(f", at {head(s)[0]}") for s, line in zip(SERVICES, summaries, strict=True)
    )

    after = invoke("migrate.status", env=database_env, clean=True)
    assert after.code == 0, after.output
    rows = _status_rows(after.out)
    for service in SERVICES:
        (service_head,) = head(service)
        database, code_head, pending, day, minute, took, seconds, *state = rows[service]
        assert (database, code_head, pending) == (service_head, service_head, "0")
        assert re.fullmatch(r"\d{4}-\d\d-\d\d", day) and re.fullmatch(r"\d\d:\d\d", minute)
        assert float(took) >= 0 and seconds == "s"
        assert state == ["at", "head"]


def test_validate_with_the_database(database_env: dict[str, str]) -> None:
    result = invoke("migrate.validate", env=database_env, clean=True)
    assert result.code == 0, result.output
    lines = result.out.strip().splitlines()
    assert lines == [f"{s}: ok, head {head(s)[0]}" for s in SERVICES]
    assert "(files only)" not in result.out


# -- revision files from messages of any content (in a copy of the project) ------------

REVISION_EMPTY = ("migrate.revision", "--service", "scoring_engine", "--empty", "--phase", "expand")
# Messages that once wrote a file Python could not import (or read back otherwise).
HOSTILE_MESSAGES = [
    'fix the """ parser',
    "back\\slash, \\N{EM DASH}, \\x00, \\u2603 and a trailing backslash\\",
    "first line\nsecond line\r\n\tthird, indented",
    "single ''' quotes and \"double\" ones",
    'ends with a quote"',
    '"',
    '""""""',
    "🚀 ship it 👩‍👩‍👧 שלום عليكم",
    "e\u0301 combining, \u00a0non-breaking, zero\u200bwidth",
    "${7 * 6} <% mako %> %(rev)s {braces}",
    "'; import os; os.system('echo owned') #",
    "x" * 300,
]


def _check_revision_file(repo: Repo, path: Path, revision: str, message: str) -> None:
    """``path`` compiles, imports, and reads back ``revision`` and ``message``: for Alembic
    (what ``alembic history`` prints), for the history reader, and for migrate.history."""
    source = path.read_text(encoding="utf-8")
    compile(source, str(path), "exec")
    # Fixed and formatted by ruff (an empty revision's unused imports are gone).
    for check in (["check", "--quiet"], ["format", "--check", "--quiet"]):
        ruffed = subprocess.run([RUFF, *check, str(path)], capture_output=True, text=True)
        assert ruffed.returncode == 0, (check, ruffed.stdout, ruffed.stderr)
    script = ScriptDirectory.from_config(alembic_config(repo.config(), "scoring_engine"))
    found = script.get_revision(revision)
    assert found is not None and found.path == str(path)
    assert found.doc == message
    assert read_history(repo.config(), "scoring_engine").revisions[revision].message == message
    history = repo.invoke("migrate.history", "--service", "scoring_engine")
    assert history.code == 0, history.output
    newest = history.out.splitlines()[1]
    assert f"-> {revision} (head)" in newest and newest.endswith(f" [expand], {message}")


def test_a_message_of_any_content_writes_a_file_that_imports(repo: Repo) -> None:
    """The message is escaped for the docstring: the file compiles, imports, and its
    message reads back the same; nothing of ruff (or Alembic) is printed."""
    (previous,) = head("scoring_engine")
    revision = f"{int(previous) + 1:04d}"
    before = repo.revisions()
    for given in HOSTILE_MESSAGES:
        result = repo.invoke(*REVISION_EMPTY, "-m", given)
        assert result.code == 0, (given, result.output)
        assert result.err == ""
        (line,) = result.out.splitlines()
        assert line.endswith(f"(revision {revision}, on {previous}, phase expand)"), line
        (written,) = set(repo.revisions()) - set(before)
        path = repo.versions / written
        message = " ".join(given.split())  # one line, as written
        _check_revision_file(repo, path, revision, message)
        path.unlink()


def test_a_merge_message_of_any_content_writes_a_file_that_imports(repo: Repo) -> None:
    (previous,) = head("scoring_engine")
    left, right, merge_id = (f"{int(previous) + n:04d}" for n in (1, 2, 3))
    for revision, name in ((left, "left"), (right, "right")):
        (repo.versions / f"{revision}_{name}.py").write_text(
            f'"""{name}"""\n\nrevision = "{revision}"\ndown_revision = "{previous}"\n'
            'branch_labels = None\ndepends_on = None\nphase = "expand"\n\n\n'
            "def upgrade() -> None:\n    pass\n\n\ndef downgrade() -> None:\n    pass\n"
        )
    message = 'merge the """ heads \\ of 🚀'
    result = repo.invoke("migrate.merge", "--service", "scoring_engine", "-m", message)
    assert result.code == 0, result.output
    assert result.err == "" and len(result.out.splitlines()) == 1, result.output
    (path,) = repo.versions.glob(f"{merge_id}_*.py")
    _check_revision_file(repo, path, merge_id, message)
    assert read_history(repo.config(), "scoring_engine").revisions[merge_id].down == (left, right)


TEMPLATE = Path("packages/shared_db/src/shared_db/migrations/scoring_engine/script.py.mako")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda t: t + "\nimport no_such_module_in_template\n",
            "cannot be imported (ModuleNotFoundError: No module named "
            "'no_such_module_in_template')",
        ),
        (lambda t: t + "\ndef broken(:\n", "cannot be imported (SyntaxError: "),
        (
            lambda t: t.replace("docstring_text(message)", "docstring_text(message.upper())"),
            "does not read back its message",
        ),
    ],
    ids=["import-error", "syntax-error", "wrong-message"],
)
def test_a_written_file_that_fails_its_checks_is_removed(
    repo: Repo, change: Callable[[str], str], expected: str
) -> None:
    template = repo.path / TEMPLATE
    template.write_text(change(template.read_text()))
    before = repo.revisions()
    result = repo.invoke(*REVISION_EMPTY, "-m", "fix the parser")
    line = result.one_line_error()
    (previous,) = head("scoring_engine")
    name = f"{int(previous) + 1:04d}_fix_the_parser.py"
    assert line.startswith(f"error: scoring_engine: the revision file written, {name}, ")
    assert expected in line
    assert line.endswith(
        "; nothing written; check the revision template (script.py.mako of scoring_engine), "
        "or report it"
    )
    assert repo.revisions() == before
    assert not list((repo.versions / "__pycache__").glob(f"{name[:-3]}.*"))


def test_raw_alembic_revision_escapes_the_message_and_formats_the_file(repo: Repo) -> None:
    """Alembic's own ``revision`` goes through the same template, and keeps the ini's
    post-write hooks (ruff)."""
    (previous,) = head("scoring_engine")
    revision = f"{int(previous) + 1:04d}"
    ini = repo.path / "packages/shared_db/alembic_scoring_engine.ini"
    message = 'raw """ message \\ here'
    command = [sys.executable, "-m", "alembic", "-c", str(ini), "revision"]
    result = subprocess.run(
        [*command, "-m", message, "--rev-id", revision],
        cwd=repo.path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Running post write hook 'ruff_format'" in result.stdout
    (path,) = repo.versions.glob(f"{revision}_*.py")
    formatted = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", str(path)],
        cwd=repo.path,
        capture_output=True,
        text=True,
    )
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr
    script = ScriptDirectory.from_config(alembic_config(repo.config(), "scoring_engine"))
    found = script.get_revision(revision)
    assert found is not None and found.doc == message
