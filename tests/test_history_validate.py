"""The migration library on small synthetic histories: the fast reader and the validator.

Every history here is a folder of real revision files in ``tmp_path``; no database is
used. The last test checks the fast reader against Alembic's own ``ScriptDirectory``
on every real history of the project.
"""

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from helpers import alembic_shape, reader_shape
from shared_db.config import alembic_config
from shared_db.history import read_directory, read_history, sort_ids
from shared_db.services import SERVICES
from shared_db.validate import Problem, Report, reports_as_json, validate_directory

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


def kinds(report: Report) -> list[str]:
    return [p.kind for p in report.problems]


def only(report: Report, kind: str) -> Problem:
    found = [p for p in report.problems if p.kind == kind]
    assert len(found) == 1, report.problems
    return found[0]


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


# -- the validator, one problem at a time -------------------------------------


def test_linear_history_is_ok(tmp_path: Path) -> None:
    linear(tmp_path, 4)
    report = validate_directory(SERVICE, tmp_path)
    assert report.ok
    assert report.problems == []
    assert report.heads == ("0004",)
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
    report = validate_directory(SERVICE, tmp_path)
    assert not report.ok
    assert kinds(report) == ["multiple_heads"]
    problem = report.problems[0]
    assert problem.service == SERVICE
    assert "0002" in problem.message and "0003" in problem.message
    assert problem.fix == "run: invoke migrate.merge --service scoring_engine"
    assert report.heads == ("0002", "0003")
    assert read_directory(tmp_path).branch_points() == ("0001",)


def test_three_heads_are_all_named(tmp_path: Path) -> None:
    linear(tmp_path, 2)
    write_revision(tmp_path, "0003", "0002", slug="a")
    write_revision(tmp_path, "0004", "0002", slug="b")
    write_revision(tmp_path, "0005", "0001", slug="c")
    report = validate_directory(SERVICE, tmp_path)
    assert kinds(report) == ["multiple_heads"]
    message = report.problems[0].message
    assert "3 heads" in message
    assert all(rev in message for rev in ("0003", "0004", "0005"))
    assert report.heads == ("0003", "0004", "0005")
    assert report.problems[0].fix == "run: invoke migrate.merge --service scoring_engine"


def test_dangling_down_revision_is_not_a_missing_head(tmp_path: Path) -> None:
    # The first revision's file is gone: 0002 points at 0099, which nothing declares.
    write_revision(tmp_path, "0002", "0099")
    write_revision(tmp_path, "0003", "0002")
    history = read_directory(tmp_path)
    assert history.dangling() == [("0002", "0099")]
    assert history.heads == ("0003",)
    report = validate_directory(SERVICE, tmp_path)
    assert kinds(report) == ["dangling_down_revision"]
    problem = report.problems[0]
    assert "0002" in problem.message and "0099" in problem.message
    assert "0002_change.py" in problem.message
    assert str(tmp_path / "0002_change.py") in problem.fix
    assert "git log --diff-filter=D" in problem.fix
    # A revision cut off behind the dangling reference is not reported again.
    assert "unreachable_revision" not in kinds(report)


def test_dangling_merge_parent_is_reported_alone(tmp_path: Path) -> None:
    linear(tmp_path, 1)
    write_revision(tmp_path, "0002", ("0001", "0099"))
    report = validate_directory(SERVICE, tmp_path)
    assert kinds(report) == ["dangling_down_revision"]
    assert "0099" in report.problems[0].message


def test_mistyped_down_revision_is_only_dangling(tmp_path: Path) -> None:
    linear(tmp_path, 2)
    write_revision(tmp_path, "0003", "0099")  # meant "0002"
    report = validate_directory(SERVICE, tmp_path)
    assert kinds(report) == ["dangling_down_revision"]


def test_missing_depends_on_is_reported(tmp_path: Path) -> None:
    linear(tmp_path, 1)
    (tmp_path / "0002_needs.py").write_text(
        'revision = "0002"\ndown_revision = "0001"\ndepends_on = "0077"\n'
    )
    report = validate_directory(SERVICE, tmp_path)
    assert kinds(report) == ["dangling_depends_on"]
    assert "0077" in report.problems[0].message


def test_duplicate_id_is_reported_once_and_not_as_two_heads(tmp_path: Path) -> None:
    linear(tmp_path, 1)
    write_revision(tmp_path, "0002", "0001", slug="add_a")
    write_revision(tmp_path, "0002", "0001", slug="add_b")
    history = read_directory(tmp_path)
    assert history.duplicates == {"0002": [tmp_path / "0002_add_a.py", tmp_path / "0002_add_b.py"]}
    assert history.heads == ("0002",)
    report = validate_directory(SERVICE, tmp_path)
    assert kinds(report) == ["duplicate_id"]
    problem = report.problems[0]
    assert "0002" in problem.message
    assert "0002_add_a.py" in problem.message and "0002_add_b.py" in problem.message
    assert "invoke migrate.renumber --service scoring_engine" in problem.fix
    assert "0002_add_b.py" in problem.fix


def test_misnamed_file_is_fixed_by_git_mv(tmp_path: Path) -> None:
    linear(tmp_path, 3)
    write_revision(tmp_path, "0004", "0003", filename="0003_x.py")
    # Two files start with 0003_ but only one declares 0003: not a duplicate.
    report = validate_directory(SERVICE, tmp_path)
    assert kinds(report) == ["misnamed_file"]
    problem = report.problems[0]
    assert "0003_x.py" in problem.message and "0004" in problem.message
    assert problem.fix == f"run: git mv {tmp_path / '0003_x.py'} {tmp_path / '0004_x.py'}"


def test_cycle_is_unreachable(tmp_path: Path) -> None:
    linear(tmp_path, 2)
    write_revision(tmp_path, "0003", "0004")
    write_revision(tmp_path, "0004", "0003")
    history = read_directory(tmp_path)
    assert history.reachable_from_bases() == {"0001", "0002"}
    assert history.heads == ("0002",)
    report = validate_directory(SERVICE, tmp_path)
    assert kinds(report) == ["unreachable_revision"]
    problem = report.problems[0]
    assert "0003" in problem.message and "0004" in problem.message
    assert "0001" not in problem.message and "0002" not in problem.message
    assert "down_revision" in problem.fix


def test_whole_history_in_a_cycle_has_no_head(tmp_path: Path) -> None:
    write_revision(tmp_path, "0001", "0002")
    write_revision(tmp_path, "0002", "0001")
    report = validate_directory(SERVICE, tmp_path)
    assert kinds(report) == ["unreachable_revision", "no_head"]
    assert report.heads == ()


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
    report = validate_directory(SERVICE, tmp_path)
    assert report.ok, report.problems
    assert report.heads == ("0004",)


def test_branch_label_on_two_revisions(tmp_path: Path) -> None:
    linear(tmp_path, 1)
    write_revision(tmp_path, "0002", "0001", branch_labels="feat")
    write_revision(tmp_path, "0003", "0002", branch_labels=("feat",))
    report = validate_directory(SERVICE, tmp_path)
    assert kinds(report) == ["duplicate_branch_label"]
    problem = report.problems[0]
    assert "'feat'" in problem.message
    assert "0002" in problem.message and "0003" in problem.message
    assert "first revision" in problem.fix


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
    report = validate_directory(SERVICE, tmp_path)
    assert kinds(report) == ["unreadable_file"]
    problem = report.problems[0]
    assert "0002_broken.py" in problem.message and reason in problem.message
    assert str(tmp_path / "0002_broken.py") in problem.fix


def test_unreadable_files_are_each_reported(tmp_path: Path) -> None:
    (tmp_path / "0001_empty.py").write_text("", encoding="utf-8")
    (tmp_path / "0002_syntax.py").write_text("revision = (\n", encoding="utf-8")
    (tmp_path / "0003_norev.py").write_text("x = 1\n", encoding="utf-8")
    (tmp_path / "__init__.py").write_text("", encoding="utf-8")  # not a revision file
    (tmp_path / "notes.txt").write_text("not python", encoding="utf-8")
    report = validate_directory(SERVICE, tmp_path)
    # Unreadable files are not an empty history.
    assert kinds(report) == ["unreadable_file"] * 3
    names = ["0001_empty.py", "0002_syntax.py", "0003_norev.py"]
    for problem, name in zip(report.problems, names, strict=True):
        assert name in problem.message


def test_empty_folder_is_an_empty_history(tmp_path: Path) -> None:
    report = validate_directory(SERVICE, tmp_path)
    assert kinds(report) == ["empty_history"]
    assert "invoke migrate.revision --service scoring_engine" in report.problems[0].fix
    assert report.heads == ()


def test_several_problems_are_all_reported(tmp_path: Path) -> None:
    linear(tmp_path, 1)
    write_revision(tmp_path, "0002", "0001", slug="a")
    write_revision(tmp_path, "0002", "0001", slug="b")  # duplicate
    write_revision(tmp_path, "0004", "0002", filename="0003_c.py")  # misnamed
    write_revision(tmp_path, "0005", ("0004", "0098"))  # dangling
    (tmp_path / "0006_broken.py").write_text("", encoding="utf-8")  # unreadable
    report = validate_directory(SERVICE, tmp_path)
    assert sorted(kinds(report)) == sorted(
        ["unreadable_file", "duplicate_id", "dangling_down_revision", "misnamed_file"]
    )
    assert "0006_broken.py" in only(report, "unreadable_file").message
    assert "0002_b.py" in only(report, "duplicate_id").message
    assert "0098" in only(report, "dangling_down_revision").message
    assert "0004_c.py" in only(report, "misnamed_file").fix
    assert report.heads == ("0005",)


def test_reports_as_json_round_trips(tmp_path: Path) -> None:
    good, bad = tmp_path / "good", tmp_path / "bad"
    linear(good, 2)
    linear(bad, 1)
    write_revision(bad, "0002", "0001", slug="a")
    write_revision(bad, "0003", "0001", slug="b")
    write_revision(bad, "0004", "0002", filename="0005_c.py")
    reports = [validate_directory("api_gateway", good), validate_directory(SERVICE, bad)]
    data = json.loads(reports_as_json(reports))
    assert data["ok"] is False
    assert [s["service"] for s in data["services"]] == ["api_gateway", SERVICE]
    first, second = data["services"]
    assert first == {
        "service": "api_gateway",
        "ok": True,
        "heads": ["0002"],
        "database_checked": False,
        "problems": [],
    }
    assert second["ok"] is False
    assert second["heads"] == ["0003", "0004"]
    assert sorted(p["kind"] for p in second["problems"]) == [
        "misnamed_file",
        "multiple_heads",
    ]
    for problem in second["problems"]:
        assert set(problem) == {"service", "kind", "message", "fix"}
        assert problem["service"] == SERVICE
    assert json.loads(reports_as_json([reports[0]]))["ok"] is True


# -- the fast reader agrees with Alembic -------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_reader_agrees_with_alembic_on_real_histories(service: str) -> None:
    history = read_history(service)
    assert history.duplicates == {} and history.unreadable == []
    assert reader_shape(history) == alembic_shape(
        ScriptDirectory.from_config(alembic_config(service))
    )
    assert validate_directory(service, history.revisions[history.heads[0]].path.parent).ok


def test_scoring_engine_shape() -> None:
    history = read_history("scoring_engine")
    assert history.heads == ("0010",)
    assert history.bases == ("0001",)
    assert history.branch_points() == ("0002", "0004")
    assert history.merge_points() == ("0003", "0010")
    assert len(history.revisions) == 12
    order = history.topological()
    assert order[0] == "0001" and order[-1] == "0010"
    for rev, revision in history.revisions.items():
        assert all(order.index(parent) < order.index(rev) for parent in revision.down)
