"""The migration library on small synthetic histories: the file reader, the history's
problems (``shared_db.soundness``) and the fixes the Invoke front end adds to them.

Every history here is a folder of real revision files in ``tmp_path``; no database is
used. Each verdict is checked on both readers: the runtime's plain header reader
(``shared_db.history``) and the workflow's reader, which compiles every file
(``db_devtools.workflow.history_cache``). The last tests check the reader against
Alembic's own ``ScriptDirectory`` on every real history of the project.
"""

import json
import os
import py_compile
from collections.abc import Sequence
from pathlib import Path

import pytest
from db_devtools.workflow import history_cache
from db_devtools.workflow.validate import Report, validate_directory
from dev_tasks.hints import HINTS, for_problem, problem_fix
from helpers import alembic_script, alembic_shape, head, invoke, reader_shape
from shared_db.config import DbConfig
from shared_db.history import compiled_cache_is_fresh, read_directory, read_history, sort_ids
from shared_db.services import SERVICES
from shared_db.soundness import FATAL, Problem, fatal_problems, history_problems

SERVICE = "scoring_engine"

Down = str | Sequence[str] | None


def _literal(value: Down) -> str:
    if value is None or isinstance(value, str):
        return repr(value).replace("'", '"')
    return "(" + ", ".join(f'"{v}"' for v in value) + ("," if len(value) == 1 else "") + ")"


def write_revision(
    directory: Path,
    revision: str,
    down_revision: Down,
    *,
    filename: str | None = None,
    slug: str = "change",
    branch_labels: Down = None,
    annotated: bool = False,
    message: str | None = None,
) -> Path:
    """Write a revision file like Alembic's template; returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (filename or f"{revision}_{slug}.py")
    text = message or f"Revision {revision}."
    if annotated:
        fields = (
            f'revision: str = "{revision}"\n'
            f"down_revision: str | Sequence[str] | None = {_literal(down_revision)}\n"
            f"branch_labels: str | Sequence[str] | None = {_literal(branch_labels)}\n"
            "depends_on: str | Sequence[str] | None = None\n"
        )
        imports = "from collections.abc import Sequence\n\n"
    else:
        fields = (
            f'revision = "{revision}"\n'
            f"down_revision = {_literal(down_revision)}\n"
            f"branch_labels = {_literal(branch_labels)}\n"
            "depends_on = None\n"
        )
        imports = ""
    path.write_text(
        f'"""{text}\n\nRevision ID: {revision}\n"""\n'
        f"{imports}{fields}\n"
        "def upgrade() -> None:\n    pass\n\n"
        "def downgrade() -> None:\n    pass\n",
        encoding="utf-8",
    )
    return path


def linear(directory: Path, count: int) -> None:
    """0001 <- 0002 <- ... <- count."""
    previous: str | None = None
    for number in range(1, count + 1):
        rev = f"{number:04d}"
        write_revision(directory, rev, previous)
        previous = rev


def report(directory: Path) -> Report:
    """The workflow's offline verdict on ``directory``; the runtime's plain reader
    must state exactly the same problems."""
    verdict = validate_directory(SERVICE, directory)
    assert history_problems(SERVICE, read_directory(directory)) == verdict.problems
    for problem in verdict.problems:
        # Facts only: the library never tells which command to run.
        assert "invoke" not in problem.message and "run:" not in problem.message, problem
    return verdict


def kinds(verdict: Report) -> list[str]:
    return [p.kind for p in verdict.problems]


def only(verdict: Report, kind: str) -> Problem:
    found = [p for p in verdict.problems if p.kind == kind]
    assert len(found) == 1, verdict.problems
    return found[0]


def hint(problem: Problem) -> str:
    """The Invoke front end's fix for ``problem``."""
    step = problem_fix(problem)
    assert step is not None, f"no hint for {problem.kind}"
    return step


# -- the reader ---------------------------------------------------------------


def test_reader_parses_plain_annotated_and_tuple_forms(tmp_path: Path) -> None:
    write_revision(tmp_path, "0001", None, message="Create things.")
    write_revision(tmp_path, "0002", "0001", annotated=True, branch_labels="feat")
    write_revision(tmp_path, "0003", "0001", branch_labels=("a", "b"))
    write_revision(tmp_path, "0004", ("0002", "0003"), annotated=True)
    history = read_directory(tmp_path)
    assert set(history.revisions) == {"0001", "0002", "0003", "0004"}
    assert history.revisions["0001"].down == ()
    assert history.revisions["0001"].message == "Create things."
    assert history.revisions["0002"].down == ("0001",)
    assert history.revisions["0002"].branch_labels == ("feat",)
    assert history.revisions["0003"].branch_labels == ("a", "b")
    assert history.revisions["0004"].down == ("0002", "0003")
    assert history.revisions["0004"].is_merge
    assert history.revisions["0004"].path == tmp_path / "0004_change.py"
    assert history.heads == ("0004",)
    assert history.bases == ("0001",)
    assert history.topological() == ["0001", "0002", "0003", "0004"]
    assert history.duplicates == {} and history.unreadable == []
    assert history_cache.read_directory(tmp_path, None).revisions == history.revisions


def test_sort_ids_orders_numerically_with_letter_suffixes() -> None:
    assert sort_ids(["0010", "0002b", "0002", "0002a", "0001"]) == [
        "0001",
        "0002",
        "0002a",
        "0002b",
        "0010",
    ]
    # Non-sequential IDs come after the sequential ones.
    assert sort_ids(["abc123", "0100", "0009"]) == ["0009", "0100", "abc123"]


# -- the problems, one at a time, and their fixes ----------------------------


def test_linear_history_is_ok(tmp_path: Path) -> None:
    linear(tmp_path, 4)
    verdict = report(tmp_path)
    assert verdict.ok
    assert verdict.problems == []
    assert verdict.heads == ("0004",)
    history = read_directory(tmp_path)
    assert history.bases == ("0001",)
    assert history.branch_points() == ()
    assert history.merge_points() == ()
    assert history.dangling() == []
    assert history.reachable_from_bases() == {"0001", "0002", "0003", "0004"}


def test_two_heads_are_one_multiple_heads_problem(tmp_path: Path) -> None:
    linear(tmp_path, 1)
    write_revision(tmp_path, "0002", "0001", slug="left")
    write_revision(tmp_path, "0003", "0001", slug="right")
    verdict = report(tmp_path)
    assert not verdict.ok
    assert kinds(verdict) == ["multiple_heads"]
    problem = verdict.problems[0]
    assert problem.service == SERVICE
    assert problem.message == "the history has 2 heads (0002, 0003)"
    assert problem.fatal
    assert hint(problem) == "run: invoke migrate.merge --service scoring_engine"
    assert for_problem(problem) == (
        "scoring_engine: the history has 2 heads (0002, 0003); "
        "run: invoke migrate.merge --service scoring_engine"
    )
    assert verdict.heads == ("0002", "0003")
    assert read_directory(tmp_path).branch_points() == ("0001",)


def test_three_heads_are_all_named(tmp_path: Path) -> None:
    linear(tmp_path, 2)
    write_revision(tmp_path, "0003", "0002", slug="a")
    write_revision(tmp_path, "0004", "0002", slug="b")
    write_revision(tmp_path, "0005", "0001", slug="c")
    verdict = report(tmp_path)
    assert kinds(verdict) == ["multiple_heads"]
    assert verdict.problems[0].message == "the history has 3 heads (0003, 0004, 0005)"
    assert verdict.heads == ("0003", "0004", "0005")
    assert hint(verdict.problems[0]) == "run: invoke migrate.merge --service scoring_engine"


def test_dangling_down_revision_is_not_a_missing_head(tmp_path: Path) -> None:
    # The first revision's file is gone: 0002 points at 0099, which nothing declares.
    write_revision(tmp_path, "0002", "0099")
    write_revision(tmp_path, "0003", "0002")
    history = read_directory(tmp_path)
    assert history.dangling() == [("0002", "0099")]
    assert history.heads == ("0003",)
    verdict = report(tmp_path)
    assert kinds(verdict) == ["dangling_down_revision"]
    problem = verdict.problems[0]
    assert "0002" in problem.message and "0099" in problem.message
    assert "0002_change.py" in problem.message
    assert (problem.revision, problem.path) == ("0002", tmp_path / "0002_change.py")
    step = hint(problem)
    assert str(tmp_path / "0002_change.py") in step
    assert f"git log --diff-filter=D --name-only -- {tmp_path}" in step
    # A revision cut off behind the dangling reference is not reported again.
    assert "unreachable_revision" not in kinds(verdict)


def test_dangling_merge_parent_is_reported_alone(tmp_path: Path) -> None:
    linear(tmp_path, 1)
    write_revision(tmp_path, "0002", ("0001", "0099"))
    verdict = report(tmp_path)
    assert kinds(verdict) == ["dangling_down_revision"]
    assert "0099" in verdict.problems[0].message


def test_mistyped_down_revision_is_only_dangling(tmp_path: Path) -> None:
    linear(tmp_path, 2)
    write_revision(tmp_path, "0003", "0099")  # meant "0002"
    verdict = report(tmp_path)
    assert kinds(verdict) == ["dangling_down_revision"]


def test_missing_depends_on_is_reported(tmp_path: Path) -> None:
    linear(tmp_path, 1)
    (tmp_path / "0002_needs.py").write_text(
        'revision = "0002"\ndown_revision = "0001"\ndepends_on = "0077"\n'
    )
    verdict = report(tmp_path)
    assert kinds(verdict) == ["dangling_depends_on"]
    problem = verdict.problems[0]
    assert "0077" in problem.message and "0002_needs.py" in problem.message
    assert hint(problem) == f"fix depends_on in {tmp_path / '0002_needs.py'}"


def test_duplicate_id_is_reported_once_and_not_as_two_heads(tmp_path: Path) -> None:
    linear(tmp_path, 1)
    write_revision(tmp_path, "0002", "0001", slug="add_a")
    write_revision(tmp_path, "0002", "0001", slug="add_b")
    history = read_directory(tmp_path)
    assert history.duplicates == {"0002": [tmp_path / "0002_add_a.py", tmp_path / "0002_add_b.py"]}
    assert history.heads == ("0002",)
    verdict = report(tmp_path)
    assert kinds(verdict) == ["duplicate_id"]
    problem = verdict.problems[0]
    assert "0002" in problem.message
    assert "0002_add_a.py" in problem.message and "0002_add_b.py" in problem.message
    assert problem.paths == (tmp_path / "0002_add_a.py", tmp_path / "0002_add_b.py")
    # The fix renumbers the later file.
    assert hint(problem) == (
        f"run: invoke migrate.renumber --service scoring_engine --file {tmp_path / '0002_add_b.py'}"
    )


def test_misnamed_file_is_fixed_by_git_mv(tmp_path: Path) -> None:
    linear(tmp_path, 3)
    write_revision(tmp_path, "0004", "0003", filename="0003_x.py")
    # Two files start with 0003_ but only one declares 0003: not a duplicate.
    verdict = report(tmp_path)
    assert kinds(verdict) == ["misnamed_file"]
    problem = verdict.problems[0]
    assert "0003_x.py" in problem.message and "0004" in problem.message
    assert not problem.fatal
    assert hint(problem) == f"run: git mv {tmp_path / '0003_x.py'} {tmp_path / '0004_x.py'}"


def test_nonsequential_id_is_renumbered(tmp_path: Path) -> None:
    linear(tmp_path, 1)
    write_revision(tmp_path, "ae1027a6acf", "0001", slug="autogen")
    verdict = report(tmp_path)
    assert kinds(verdict) == ["nonsequential_id"]
    problem = verdict.problems[0]
    assert "'ae1027a6acf'" in problem.message and not problem.fatal
    path = tmp_path / "ae1027a6acf_autogen.py"
    assert hint(problem) == f"run: invoke migrate.renumber --service scoring_engine --file {path}"


def test_cycle_is_unreachable(tmp_path: Path) -> None:
    linear(tmp_path, 2)
    write_revision(tmp_path, "0003", "0004")
    write_revision(tmp_path, "0004", "0003")
    history = read_directory(tmp_path)
    assert history.reachable_from_bases() == {"0001", "0002"}
    assert history.heads == ("0002",)
    verdict = report(tmp_path)
    assert kinds(verdict) == ["unreachable_revision"]
    problem = verdict.problems[0]
    assert "0003" in problem.message and "0004" in problem.message
    assert "0001" not in problem.message and "0002" not in problem.message
    assert "down_revision" in hint(problem)


def test_whole_history_in_a_cycle_has_no_head(tmp_path: Path) -> None:
    write_revision(tmp_path, "0001", "0002")
    write_revision(tmp_path, "0002", "0001")
    verdict = report(tmp_path)
    assert kinds(verdict) == ["unreachable_revision", "no_head"]
    assert verdict.heads == ()
    assert "loop" in hint(only(verdict, "no_head"))


def test_labelled_branch_merged_back_is_ok(tmp_path: Path) -> None:
    linear(tmp_path, 1)
    write_revision(tmp_path, "0002", "0001", branch_labels="feat", annotated=True)
    write_revision(tmp_path, "0003", "0001")
    write_revision(tmp_path, "0004", ("0002", "0003"), annotated=True)
    history = read_directory(tmp_path)
    assert history.branch_points() == ("0001",)
    assert history.merge_points() == ("0004",)
    assert history.reachable_from_bases() == {"0001", "0002", "0003", "0004"}
    assert history.topological() == ["0001", "0002", "0003", "0004"]
    verdict = report(tmp_path)
    assert verdict.ok, verdict.problems
    assert verdict.heads == ("0004",)


def test_branch_label_on_two_revisions(tmp_path: Path) -> None:
    linear(tmp_path, 1)
    write_revision(tmp_path, "0002", "0001", branch_labels="feat")
    write_revision(tmp_path, "0003", "0002", branch_labels=("feat",))
    verdict = report(tmp_path)
    assert kinds(verdict) == ["duplicate_branch_label"]
    problem = verdict.problems[0]
    assert "'feat'" in problem.message
    assert "0002" in problem.message and "0003" in problem.message
    assert "first revision" in hint(problem)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("", "empty"),
        ("   \n\n", "empty"),
        ('revision = "0002"\ndown_revision = (\n', "syntax error"),
        ('"""No revision here."""\ndown_revision = "0001"\n', "no `revision"),
        ('revision = "0002"\n', "no `down_revision`"),
        ('revision = "0002"\ndown_revision = compute()\n', "not a literal"),
        ('revision = "0002"\ndown_revision = 7\n', "expected a string"),
    ],
    ids=["empty", "blank", "syntax", "no-revision", "no-down", "not-literal", "not-a-string"],
)
def test_unreadable_file(tmp_path: Path, content: str, reason: str) -> None:
    linear(tmp_path, 1)
    (tmp_path / "0002_broken.py").write_text(content, encoding="utf-8")
    history = read_directory(tmp_path)
    assert [u.path.name for u in history.unreadable] == ["0002_broken.py"]
    assert reason in history.unreadable[0].reason
    verdict = report(tmp_path)
    assert kinds(verdict) == ["unreadable_file"]
    problem = verdict.problems[0]
    assert "0002_broken.py" in problem.message and reason in problem.message
    assert problem.path == tmp_path / "0002_broken.py"
    assert str(tmp_path / "0002_broken.py") in hint(problem)


def test_a_syntax_error_below_a_valid_header_is_found_by_compiling(tmp_path: Path) -> None:
    """The plain reader reads the header only (fast, enough for a service's startup);
    the workflow compiles every file, as Alembic's import would."""
    linear(tmp_path, 1)
    path = write_revision(tmp_path, "0002", "0001")
    path.write_text(
        path.read_text(encoding="utf-8").replace("    pass\n", "    op.add_column(\n", 1),
        encoding="utf-8",
    )
    # The header alone is fine.
    plain = read_directory(tmp_path)
    assert plain.unreadable == [] and plain.heads == ("0002",)
    assert history_problems(SERVICE, plain) == []
    # Compiled, the file is not a revision.
    for compiled in (
        read_directory(tmp_path, check_syntax=True),
        history_cache.read_directory(tmp_path, tmp_path / "cache"),
        history_cache.read_directory(tmp_path, tmp_path / "cache"),  # from the cache
        history_cache.read_directory(tmp_path, None),
    ):
        assert [u.path for u in compiled.unreadable] == [path]
        assert compiled.unreadable[0].reason.startswith("syntax error on line ")
        assert "0002" not in compiled.revisions
    verdict = validate_directory(SERVICE, tmp_path, tmp_path / "cache")
    assert kinds(verdict) == ["unreadable_file"]
    assert "0002_change.py is not a valid revision file (syntax error on line" in (
        verdict.problems[0].message
    )


def test_a_fresh_bytecode_cache_stands_for_compiling_and_a_stale_one_does_not(
    tmp_path: Path,
) -> None:
    """The runner's syntax check skips compiling a file whose ``__pycache__`` entry
    Python's import would use as it is (it compiled); a file written since is compiled
    again, so a syntax error in it is found even though an older, valid version left a
    cache. (The dev tooling always compiles.)"""
    linear(tmp_path, 1)
    path = write_revision(tmp_path, "0002", "0001")
    assert not compiled_cache_is_fresh(path)
    py_compile.compile(str(path), doraise=True)  # what importing it writes
    assert compiled_cache_is_fresh(path)
    assert read_directory(tmp_path, check_syntax=True, trust_bytecode=True).unreadable == []
    good = path.read_text(encoding="utf-8")
    cached = path.stat().st_mtime
    path.write_text(good.replace("    pass\n", "    pas(\n", 1), encoding="utf-8")  # same size
    # Same size, same time as the cache says: Python's import would run the cache, so
    # trusting it is what Alembic would do; compiling it finds the error.
    os.utime(path, (cached, cached))
    assert compiled_cache_is_fresh(path)
    assert read_directory(tmp_path, check_syntax=True, trust_bytecode=True).unreadable == []
    assert read_directory(tmp_path, check_syntax=True).unreadable != []
    stamp = cached + 2  # a later write, whatever the clock's granularity
    os.utime(path, (stamp, stamp))
    assert not compiled_cache_is_fresh(path)
    [unreadable] = read_directory(tmp_path, check_syntax=True, trust_bytecode=True).unreadable
    assert unreadable.path == path and unreadable.reason.startswith("syntax error on line ")


def test_unreadable_files_are_each_reported(tmp_path: Path) -> None:
    (tmp_path / "0001_empty.py").write_text("", encoding="utf-8")
    (tmp_path / "0002_syntax.py").write_text("revision = (\n", encoding="utf-8")
    (tmp_path / "0003_norev.py").write_text("x = 1\n", encoding="utf-8")
    (tmp_path / "__init__.py").write_text("", encoding="utf-8")  # not a revision file
    (tmp_path / "notes.txt").write_text("not python", encoding="utf-8")
    verdict = report(tmp_path)
    # Unreadable files are not an empty history.
    assert kinds(verdict) == ["unreadable_file"] * 3
    names = ["0001_empty.py", "0002_syntax.py", "0003_norev.py"]
    for problem, name in zip(verdict.problems, names, strict=True):
        assert name in problem.message


def test_empty_folder_is_an_empty_history(tmp_path: Path) -> None:
    verdict = report(tmp_path)
    assert kinds(verdict) == ["empty_history"]
    assert "invoke migrate.revision --service scoring_engine" in hint(verdict.problems[0])
    assert verdict.heads == ()
    # A missing folder reads as an empty one.
    assert kinds(report(tmp_path / "absent")) == ["empty_history"]


def test_several_problems_are_all_reported(tmp_path: Path) -> None:
    linear(tmp_path, 1)
    write_revision(tmp_path, "0002", "0001", slug="a")
    write_revision(tmp_path, "0002", "0001", slug="b")  # duplicate
    write_revision(tmp_path, "0004", "0002", filename="0003_c.py")  # misnamed
    write_revision(tmp_path, "0005", ("0004", "0098"))  # dangling
    (tmp_path / "0006_broken.py").write_text("", encoding="utf-8")  # unreadable
    verdict = report(tmp_path)
    assert sorted(kinds(verdict)) == sorted(
        ["unreadable_file", "duplicate_id", "dangling_down_revision", "misnamed_file"]
    )
    assert "0006_broken.py" in only(verdict, "unreadable_file").message
    assert "0002_b.py" in only(verdict, "duplicate_id").message
    assert "0098" in only(verdict, "dangling_down_revision").message
    assert "0004_c.py" in hint(only(verdict, "misnamed_file"))
    assert verdict.heads == ("0005",)
    # The misnamed file breaks a convention only; the others stop any migration.
    history = read_directory(tmp_path)
    assert sorted(p.kind for p in fatal_problems(SERVICE, history)) == sorted(
        ["unreadable_file", "duplicate_id", "dangling_down_revision"]
    )


# Histories that, together, produce every kind of problem history_problems knows.
def _every_kind(root: Path) -> list[Problem]:
    def folder(name: str) -> Path:
        return root / name

    linear(folder("heads"), 1)
    write_revision(folder("heads"), "0002", "0001", slug="a")
    write_revision(folder("heads"), "0003", "0001", slug="b")
    linear(folder("mixed"), 1)
    write_revision(folder("mixed"), "0002", "0001", slug="a")
    write_revision(folder("mixed"), "0002", "0001", slug="b")
    write_revision(folder("mixed"), "0003", ("0002", "0098"), branch_labels="x")
    write_revision(folder("mixed"), "0005", "0003", filename="0004_c.py", branch_labels="x")
    write_revision(folder("mixed"), "abc", "0005")
    (folder("mixed") / "0009_needs.py").write_text(
        'revision = "0009"\ndown_revision = "abc"\ndepends_on = "0077"\n'
    )
    (folder("mixed") / "0010_broken.py").write_text("", encoding="utf-8")
    write_revision(folder("loop"), "0001", "0002")
    write_revision(folder("loop"), "0002", "0001")
    folder("empty").mkdir()
    return [
        problem
        for name in ("heads", "mixed", "loop", "empty")
        for problem in history_problems(SERVICE, read_directory(folder(name)))
    ]


def test_every_kind_of_problem_has_a_one_line_fix(tmp_path: Path) -> None:
    problems = _every_kind(tmp_path)
    found = {p.kind for p in problems}
    assert found == FATAL | {"misnamed_file", "nonsequential_id"}
    assert found <= set(HINTS)
    for problem in problems:
        line = for_problem(problem)
        assert line == f"{problem.service}: {problem.message}; {hint(problem)}"
        assert "\n" not in line
        assert "<" not in hint(problem), f"unfilled placeholder: {hint(problem)}"


def test_validate_json_carries_each_problem_with_its_fix(tmp_path: Path) -> None:
    """``invoke migrate.validate --offline --json`` on a folder of histories."""
    for service in SERVICES:
        linear(tmp_path / service / "versions", 2)
    bad = tmp_path / SERVICE / "versions"
    write_revision(bad, "0003", "0001", slug="b")
    write_revision(bad, "0004", "0002", filename="0005_c.py")
    result = invoke(
        "migrate.validate",
        "--offline",
        "--json",
        "--no-lint",
        env={
            "SIGNALMARKET_MIGRATIONS_DIR": str(tmp_path),
            "XDG_CACHE_HOME": str(tmp_path / "cache"),
        },
    )
    assert result.code == 1, result.output
    assert result.err.strip() == "migrate.validate: 2 problem(s) found"
    data = json.loads(result.out)
    assert data["ok"] is False
    assert [s["service"] for s in data["services"]] == list(SERVICES)
    by_service = {s["service"]: s for s in data["services"]}
    assert by_service["api_gateway"] == {
        "service": "api_gateway",
        "ok": True,
        "heads": ["0002"],
        "database_checked": False,
        "problems": [],
    }
    second = by_service[SERVICE]
    assert second["ok"] is False
    assert second["heads"] == ["0003", "0004"]
    problems = {p["kind"]: p for p in second["problems"]}
    assert sorted(problems) == ["misnamed_file", "multiple_heads"]
    for problem in second["problems"]:
        assert set(problem) == {"kind", "message", "revision", "file", "fix"}
    assert problems["multiple_heads"] == {
        "kind": "multiple_heads",
        "message": "the history has 2 heads (0003, 0004)",
        "revision": "0004",
        "file": None,
        "fix": "run: invoke migrate.merge --service scoring_engine",
    }
    misnamed = problems["misnamed_file"]
    assert (misnamed["revision"], misnamed["file"]) == ("0004", str(bad / "0005_c.py"))
    assert misnamed["fix"] == f"run: git mv {bad / '0005_c.py'} {bad / '0004_c.py'}"


# -- the fast reader agrees with Alembic -------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_reader_agrees_with_alembic_on_real_histories(service: str) -> None:
    config = DbConfig()
    history = read_history(config, service)
    assert history.duplicates == {} and history.unreadable == []
    assert reader_shape(history) == alembic_shape(alembic_script(config, service))
    assert validate_directory(service, config.versions_dir(service)).ok
    compiled = read_history(config, service, check_syntax=True)
    assert compiled.revisions == history.revisions and compiled.unreadable == []


def test_scoring_engine_shape() -> None:
    history = read_history(DbConfig(), "scoring_engine")
    assert history.heads == head("scoring_engine") and len(history.heads) == 1
    assert history.bases == ("0001",)
    # The branches and merges the project's history was written with (later revisions
    # may add more).
    assert {"0002", "0004"} <= set(history.branch_points())
    assert {"0003", "0010"} <= set(history.merge_points())
    assert len(history.revisions) >= 12
    order = history.topological()
    assert order[0] == "0001" and order[-1] == history.heads[0]
    assert sorted(order) == sorted(history.revisions)
    for rev, revision in history.revisions.items():
        assert all(order.index(parent) < order.index(rev) for parent in revision.down)
    assert sort_ids(history.revisions)[-1] == history.heads[0]
