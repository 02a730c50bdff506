"""The revision graph renderer: text lanes, DOT and files, on synthetic and real histories."""

import re
import shutil
import sys
from pathlib import Path

import pytest
from db_devtools.errors import WorkflowError
from db_devtools.workflow.graph import newest_first, render_dot, render_text, write_graph
from dev_tasks.hints import for_error
from helpers import head
from shared_db.config import DbConfig
from shared_db.history import History, Revision, read_history

GRAPH_CHARS = " |*"
EDGE_CHARS = set(" |/\\")


def revision(rev: str, *down: str, labels: tuple[str, ...] = ()) -> Revision:
    return Revision(
        id=rev,
        down=down,
        branch_labels=labels,
        depends_on=(),
        path=Path(f"/x/{rev}_s.py"),
        message=f"Message of {rev}.",
    )


def history(*revisions: Revision) -> History:
    return History.from_revisions(revisions)


LINEAR = history(revision("0001"), revision("0002", "0001"), revision("0003", "0002"))
BRANCH_AND_MERGE = history(
    revision("0001"),
    revision("0002", "0001"),
    revision("0003", "0001"),
    revision("0004", "0002", "0003"),
)
THREE_HEADS = history(
    revision("0001"),
    revision("0002", "0001"),
    revision("0003", "0001"),
    revision("0004", "0001"),
    revision("0005", "0002"),
)
DANGLING = history(revision("0001"), revision("0002", "0001"), revision("0003", "0099"))
LABELLED = history(
    revision("0001"),
    revision("0002", "0001", labels=("feature",)),
    revision("0003", "0002"),
)
CYCLE = history(
    revision("0001"),
    revision("0002", "0001", "0004"),
    revision("0003", "0002"),
    revision("0004", "0003"),
    revision("0005", "0004"),
)

OCTOPUS = history(
    revision("0001"),
    revision("0002", "0001"),
    revision("0003", "0001"),
    revision("0004", "0001"),
    revision("0005", "0002", "0003", "0004"),
    revision("0006"),
)
TWO_BASES = history(
    revision("0001"), revision("0002"), revision("0003", "0001", "0002"), revision("0004", "0003")
)
NESTED_MERGES = history(
    revision("0001"),
    revision("0002", "0001"),
    revision("0003", "0001"),
    revision("0004", "0002", "0003"),
    revision("0005", "0001"),
    revision("0006", "0004", "0005"),
)


@pytest.fixture(scope="module")
def scoring() -> History:
    return read_history(DbConfig(), "scoring_engine")


# -- reading the text back -------------------------------------------------------
def node_lines(text: str) -> dict[str, str]:
    """Revision ID -> its line; fails on an ID drawn twice or a line that is neither kind."""
    nodes: dict[str, str] = {}
    for line in text.splitlines():
        prefix = line[: len(line) - len(line.lstrip(GRAPH_CHARS))]
        if "*" not in prefix:
            assert set(line) <= EDGE_CHARS, f"neither a revision nor an edge line: {line!r}"
            continue
        assert prefix.count("*") == 1, line
        rev = line[len(prefix) :].split()[0]
        assert rev not in nodes, f"{rev} drawn twice"
        nodes[rev] = line
    return nodes


def order(text: str) -> list[str]:
    return list(node_lines(text))


def edges_drawn(text: str) -> set[tuple[str, str]]:
    """(parent, child) pairs the lanes connect, following |, / and \\ down the text."""
    edges: set[tuple[str, str]] = set()
    carried: dict[int, set[str]] = {}  # even character position -> children a lane comes from
    for line in text.splitlines():
        prefix = line[: len(line) - len(line.lstrip(GRAPH_CHARS))]
        below: dict[int, set[str]] = {}
        if "*" in prefix:
            for x, char in enumerate(prefix):
                if char == "|":
                    below[x] = carried.get(x, set())
                elif char == "*":
                    rev = line[len(prefix) :].split()[0]
                    edges.update((rev, child) for child in carried.get(x, set()))
                    below[x] = {rev}
        else:
            for x, char in enumerate(line):
                source, target = {"|": (x, x), "\\": (x - 1, x + 1), "/": (x + 1, x - 1)}.get(
                    char, (-1, -1)
                )
                if source >= 0:
                    below.setdefault(target, set()).update(carried.get(source, set()))
        carried = below
    return edges


def edges_of(hist: History) -> set[tuple[str, str]]:
    return {
        (parent, r.id)
        for r in hist.revisions.values()
        for parent in r.down
        if parent in hist.revisions
    }


def marked(text: str, marker: str) -> set[str]:
    return {rev for rev, line in node_lines(text).items() if marker in line}


# -- text ---------------------------------------------------------------------------
def test_linear_history_is_one_lane() -> None:
    assert render_text(LINEAR) == (
        "* 0003 (head) Message of 0003.\n* 0002 Message of 0002.\n* 0001 (base) Message of 0001.\n"
    )


def test_branch_point_and_merge_open_and_join_lanes() -> None:
    assert render_text(BRANCH_AND_MERGE) == (
        "*   0004 (head) (mergepoint) Message of 0004.\n"
        "|\\\n"
        "| * 0003 Message of 0003.\n"
        "* | 0002 Message of 0002.\n"
        "|/\n"
        "* 0001 (base) (branchpoint) Message of 0001.\n"
    )


def test_three_heads_each_get_a_lane() -> None:
    text = render_text(THREE_HEADS)
    assert order(text) == ["0005", "0002", "0004", "0003", "0001"]
    assert marked(text, "(head)") == {"0003", "0004", "0005"}
    assert marked(text, "(branchpoint)") == {"0001"}
    assert edges_drawn(text) == edges_of(THREE_HEADS)


@pytest.mark.parametrize(
    "hist",
    [LINEAR, BRANCH_AND_MERGE, THREE_HEADS, OCTOPUS, TWO_BASES, NESTED_MERGES, LABELLED],
    ids=["linear", "merge", "three-heads", "octopus", "two-bases", "nested-merges", "label"],
)
def test_lanes_connect_exactly_the_parent_child_pairs(hist: History) -> None:
    text = render_text(hist)
    assert sorted(node_lines(text)) == sorted(hist.revisions)
    position = {rev: index for index, rev in enumerate(node_lines(text))}
    assert all(position[child] < position[parent] for parent, child in edges_of(hist))
    assert edges_drawn(text) == edges_of(hist)


def test_a_dangling_parent_is_named_not_drawn() -> None:
    text = render_text(DANGLING)
    lines = node_lines(text)
    assert set(lines) == {"0001", "0002", "0003"}
    assert "(missing 0099)" in lines["0003"]
    assert edges_drawn(text) == {("0001", "0002")}


def test_a_revision_without_a_lane_below_is_set_apart_from_the_next() -> None:
    """0003's line must not look like the child of 0002 drawn right under it."""
    text = render_text(DANGLING)
    assert order(text)[:2] == ["0003", "0002"]
    assert text.splitlines()[1] == ""


def test_branch_labels_are_shown() -> None:
    assert marked(render_text(LABELLED), "[feature]") == {"0002"}


def test_a_cycle_draws_every_revision_once() -> None:
    text = render_text(CYCLE)
    assert sorted(node_lines(text)) == ["0001", "0002", "0003", "0004", "0005"]
    assert "(cycle: parent 0004 is drawn above)" in node_lines(text)["0002"]
    assert sorted(newest_first(CYCLE)) == sorted(CYCLE.revisions)


def test_a_revision_that_is_its_own_parent_does_not_hang() -> None:
    text = render_text(history(revision("0001", "0001")))
    assert list(node_lines(text)) == ["0001"]


def test_an_empty_history_draws_nothing() -> None:
    assert render_text(History()) == ""


def test_output_is_deterministic_whatever_the_file_order() -> None:
    shuffled = history(*reversed(list(THREE_HEADS.revisions.values())))
    assert render_text(shuffled) == render_text(THREE_HEADS)


def test_scoring_engine_text(scoring: History) -> None:
    text = render_text(scoring)
    lines = node_lines(text)
    assert sorted(lines) == sorted(scoring.revisions)
    position = {rev: index for index, rev in enumerate(lines)}
    for parent, child in edges_of(scoring):
        assert position[child] < position[parent], f"{child} must come before {parent}"
    (tip,) = head("scoring_engine")
    assert order(text)[0] == tip
    assert order(text)[-1] == "0001"
    assert marked(text, "(head)") == {tip}
    assert marked(text, "(base)") == {"0001"}
    assert marked(text, "(mergepoint)") == set(scoring.merge_points()) >= {"0003", "0010"}
    assert marked(text, "(branchpoint)") == set(scoring.branch_points()) >= {"0002", "0004"}
    assert marked(text, "[generated_mockups]") == {"0005"}
    assert edges_drawn(text) == edges_of(scoring)
    assert text.isascii()


# -- dot ----------------------------------------------------------------------------
NODE = re.compile(r'^  "([^"]+)" \[(.*)\];$')
EDGE = re.compile(r'^  "([^"]+)" -> "([^"]+)"( \[.*\])?;$')


def parse_dot(text: str) -> tuple[dict[str, str], dict[tuple[str, str], str]]:
    """Node -> attributes and (parent, child) -> attributes; fails on any other statement."""
    lines = text.splitlines()
    assert lines[0].startswith("digraph ") and lines[0].endswith(" {")
    assert lines[-1] == "}"
    nodes: dict[str, str] = {}
    edges: dict[tuple[str, str], str] = {}
    for line in lines[1:-1]:
        if (edge := EDGE.match(line)) is not None:
            edges[(edge[1], edge[2])] = edge[3] or ""
        elif (node := NODE.match(line)) is not None:
            assert node[1] not in nodes, f"node {node[1]} declared twice"
            nodes[node[1]] = node[2]
        else:
            assert line in ("  rankdir=BT;", '  node [shape=box, fontname="monospace"];'), line
    return nodes, edges


def test_scoring_engine_dot(scoring: History) -> None:
    text = render_dot(scoring, "scoring_engine")
    assert text.startswith('digraph "scoring_engine" {\n')
    nodes, edges = parse_dot(text)
    assert set(nodes) == set(scoring.revisions)
    assert set(edges) == edges_of(scoring)
    assert '"0009" -> "0010";' in text
    assert '"0008" -> "0010";' in text
    assert {rev for rev, attrs in nodes.items() if "peripheries=2" in attrs} == set(
        head("scoring_engine")
    )
    merges = {rev for rev, attrs in nodes.items() if "shape=diamond" in attrs}
    assert merges == set(scoring.merge_points()) >= {"0003", "0010"}
    assert 'label="0001\\nCreate the scores table."' in nodes["0001"]
    assert "[generated_mockups]" in nodes["0005"]


def test_dot_labels_are_trimmed_and_escaped() -> None:
    long = Revision(
        id="0001",
        down=(),
        branch_labels=(),
        depends_on=(),
        path=Path("/x/0001_s.py"),
        message='Say "hi" \\ ' + "x" * 60,
    )
    nodes, _ = parse_dot(render_dot(history(long), 'a "name"'))
    label = re.search(r'label="((?:[^"\\]|\\.)*)"', nodes["0001"])
    assert label is not None
    message = label[1].split("\\n")[1]
    assert message.startswith('Say \\"hi\\" \\\\ x')
    assert message.endswith("...")
    assert len(message.replace("\\\\", "\\").replace('\\"', '"')) == 40


def test_dot_draws_a_dangling_parent_red_and_dashed() -> None:
    nodes, edges = parse_dot(render_dot(DANGLING, "broken"))
    assert "(missing 0099)" in nodes["0099"]
    assert "color=red" in nodes["0099"] and "style=dashed" in nodes["0099"]
    assert "style=dashed" in edges[("0099", "0003")]
    assert edges[("0001", "0002")] == ""


# -- files --------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["graph.dot", "graph.gv", "graph.txt", "GRAPH.DOT"])
def test_write_text_formats(tmp_path: Path, scoring: History, name: str) -> None:
    output = tmp_path / name
    assert write_graph(scoring, "scoring_engine", output) == output
    expected = (
        render_text(scoring) if name.endswith(".txt") else render_dot(scoring, "scoring_engine")
    )
    assert output.read_text(encoding="utf-8") == expected
    assert [p.name for p in tmp_path.iterdir()] == [name], "no temporary file is left"
    assert output.stat().st_mode & 0o777 == 0o644


def test_write_creates_the_folder(tmp_path: Path) -> None:
    output = tmp_path / "new" / "graph.txt"
    write_graph(LINEAR, "linear", output)
    assert output.read_text(encoding="utf-8") == render_text(LINEAR)


def test_write_png_with_the_installed_graphviz_or_a_clear_error(
    tmp_path: Path, scoring: History
) -> None:
    output = tmp_path / "graph.png"
    if shutil.which("dot") is None:
        with pytest.raises(WorkflowError, match="Graphviz"):
            write_graph(scoring, "scoring_engine", output)
        assert not output.exists()
    else:
        write_graph(scoring, "scoring_engine", output)
        assert output.read_bytes().startswith(b"\x89PNG")


def test_write_png_without_graphviz(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    with pytest.raises(WorkflowError) as caught:
        write_graph(LINEAR, "linear", tmp_path / "graph.png")
    assert caught.value.kind == "no_graphviz"
    assert str(caught.value) == "cannot write graph.png: Graphviz 'dot' is not installed"
    assert for_error(caught.value) == (
        "cannot write graph.png: Graphviz 'dot' is not installed; install Graphviz "
        "(apt-get install graphviz), or write --output graph.dot"
    )
    assert list(tmp_path.iterdir()) == []


def fake_dot(tmp_path: Path, body: str) -> Path:
    """An executable standing in for Graphviz's ``dot``."""
    script = tmp_path / "bin" / "dot"
    script.parent.mkdir()
    script.write_text(f"#!{sys.executable}\nimport sys\n{body}\n", encoding="utf-8")
    script.chmod(0o755)
    return script


@pytest.mark.parametrize("fmt", ["png", "svg", "pdf"])
def test_write_image_pipes_the_dot_text_to_graphviz(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    seen = tmp_path / "seen.txt"
    script = fake_dot(
        tmp_path,
        f"open({str(seen)!r}, 'w').write(sys.argv[1] + '\\n' + sys.stdin.read())\n"
        "sys.stdout.buffer.write(b'\\x89PNG fake image')",
    )
    monkeypatch.setattr(shutil, "which", lambda _name: str(script))
    output = tmp_path / f"graph.{fmt}"
    write_graph(LINEAR, "linear", output)
    assert output.read_bytes() == b"\x89PNG fake image"
    assert seen.read_text(encoding="utf-8") == f"-T{fmt}\n" + render_dot(LINEAR, "linear")


def test_a_failing_graphviz_leaves_the_old_file_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = fake_dot(tmp_path, "sys.stderr.write('Error: syntax error in line 1\\n')\nsys.exit(1)")
    monkeypatch.setattr(shutil, "which", lambda _name: str(script))
    output = tmp_path / "graph.svg"
    output.write_text("old", encoding="utf-8")
    with pytest.raises(WorkflowError) as caught:
        write_graph(LINEAR, "linear", output)
    assert caught.value.kind == "dot_failed"
    assert str(caught.value) == (
        "cannot write graph.svg: dot -Tsvg exited with 1 (Error: syntax error in line 1)"
    )
    assert for_error(caught.value).endswith("; write --output graph.dot and render it yourself")
    assert output.read_text(encoding="utf-8") == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "graph.svg"]


def test_unknown_suffix_lists_the_supported_ones(tmp_path: Path) -> None:
    with pytest.raises(WorkflowError) as caught:
        write_graph(LINEAR, "linear", tmp_path / "graph.jpg")
    assert caught.value.kind == "unknown_graph_format"
    message = str(caught.value)
    assert "'.jpg'" in message
    for suffix in (".dot", ".gv", ".txt", ".png", ".svg", ".pdf"):
        assert suffix in message
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_output_is_a_workflow_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    with pytest.raises(WorkflowError, match="cannot write") as caught:
        write_graph(LINEAR, "linear", blocker / "graph.dot")
    assert caught.value.kind == "unwritable_output"
    assert for_error(caught.value).endswith("; choose a writable --output path")
