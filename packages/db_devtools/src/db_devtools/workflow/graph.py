"""Draw a revision history: text lanes for a terminal, Graphviz DOT, or an image.

The input is a ``History`` as the files describe it, so the drawing works on a
broken history too: a ``down_revision`` that names no file is shown as
``(missing <id>)`` and a revision caught in a cycle is still drawn once.

Text is drawn newest first, one line per revision, in the style of
``git log --graph``: ``*`` is a revision, ``|`` a lane waiting for a parent,
``\\`` a lane opening to the right (a merge's other parents) and ``/`` lanes
joining (the children of a branch point meeting at their parent).
"""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from shared_db.history import History, sort_ids

from db_devtools.errors import WorkflowError

IMAGE_FORMATS = ("png", "svg", "pdf")
SUPPORTED_SUFFIXES = (".dot", ".gv", ".txt", *(f".{fmt}" for fmt in IMAGE_FORMATS))
DOT_TIMEOUT_SECONDS = 60
LABEL_WIDTH = 40

Track = tuple[int, int]  # a lane's column before and after a transition


# -- order --------------------------------------------------------------------
def newest_first(history: History) -> list[str]:
    """Every revision once, each before its parents; a branch is kept together.

    Among revisions whose children are all drawn, the highest ID goes first. When
    a cycle leaves nothing ready, the highest revision on a cycle is drawn next.
    """
    revisions = history.revisions
    waiting = {rev: len(kids) for rev, kids in history.children().items()}
    ready = sort_ids(rev for rev, count in waiting.items() if count == 0)
    done: set[str] = set()
    order: list[str] = []
    while len(order) < len(revisions):
        if not ready:
            ready = [_break_cycle(history, done)]
        current = ready.pop()
        done.add(current)
        order.append(current)
        freed = []
        for parent in revisions[current].down:
            if parent in revisions and parent not in done:
                waiting[parent] -= 1
                if waiting[parent] == 0:
                    freed.append(parent)
        ready.extend(sort_ids(freed))
    return order


def _break_cycle(history: History, done: set[str]) -> str:
    left = sort_ids(rev for rev in history.revisions if rev not in done)
    on_cycle = [
        rev
        for rev in left
        if any(rev in history.ancestors(parent) for parent in history.revisions[rev].down)
    ]
    return (on_cycle or left)[-1]


# -- text ---------------------------------------------------------------------
def _describe(
    history: History, rev: str, drawn: set[str], heads: set[str], branch_points: set[str]
) -> str:
    """``rev``'s text: its ID, markers, branch labels, odd parents and message."""
    revision = history.revisions[rev]
    parts = [rev]
    if rev in heads:
        parts.append("(head)")
    if not revision.down:
        parts.append("(base)")
    if rev in branch_points:
        parts.append("(branchpoint)")
    if revision.is_merge:
        parts.append("(mergepoint)")
    parts.extend(f"[{label}]" for label in revision.branch_labels)
    for parent in revision.down:
        if parent not in history.revisions:
            parts.append(f"(missing {parent})")
        elif parent in drawn:
            cycle = rev in history.ancestors(parent)
            parts.append(f"({'cycle: ' if cycle else ''}parent {parent} is drawn above)")
    if revision.message:
        parts.append(revision.message)
    return " ".join(parts)


def _transition(tracks: list[Track]) -> list[str]:
    """Rows moving each lane one column per row from its start to its end column."""
    rows: list[str] = []
    positions = [start for start, _ in tracks]
    while any(pos != end for pos, (_, end) in zip(positions, tracks, strict=True)):
        width = 2 * (max(positions + [end for _, end in tracks]) + 1)
        cells = [" "] * width
        for index, (pos, (_, end)) in enumerate(zip(positions, tracks, strict=True)):
            if end > pos:
                cells[2 * pos + 1] = "\\"
                positions[index] = pos + 1
            elif end < pos:
                cells[2 * pos - 1] = "/"
                positions[index] = pos - 1
            else:
                cells[2 * pos] = "|"
        rows.append("".join(cells).rstrip())
    return rows


def render_text(history: History) -> str:
    """The history as lanes for a terminal, newest first, one line per revision."""
    lines: list[str] = []
    lanes: list[str] = []  # lanes[column] = the revision that lane is waiting for
    drawn: set[str] = set()
    heads, branch_points = set(history.heads), set(history.branch_points())
    ended = -1  # the column of the previous revision when no lane went on below it
    for rev in newest_first(history):
        # Join every lane waiting for this revision into the leftmost one.
        if rev in lanes:
            column = lanes.index(rev)
            kept = [i for i, lane in enumerate(lanes) if lane != rev or i == column]
            tracks = [(i, kept.index(i) if i in kept else column) for i in range(len(lanes))]
            lines.extend(_transition(tracks))
            lanes = [lanes[i] for i in kept]
        else:
            column = len(lanes)
            if column == ended:  # a gap, so it does not look like the parent of the line above
                lines.append(" ".join("|" for _ in lanes))
            lanes.append(rev)
        drawn.add(rev)
        revision = history.revisions[rev]
        parents = [p for p in revision.down if p in history.revisions and p not in drawn]
        after = lanes[:column] + parents + lanes[column + 1 :]
        cells = ["*" if i == column else "|" for i in range(len(lanes))]
        graph = " ".join(cells).ljust(2 * max(len(lanes), len(after)) - 1)
        text = _describe(history, rev, drawn, heads, branch_points)
        lines.append(f"{graph} {text}".rstrip())
        # Open a lane for each parent; lanes to the right make room (or close a gap).
        shift = len(parents) - 1
        tracks = [(i, i) for i in range(column)]
        tracks += [(column, column + k) for k in range(len(parents))]
        tracks += [(i, i + shift) for i in range(column + 1, len(lanes))]
        lines.extend(_transition(tracks))
        lanes = after
        ended = -1 if parents else column
    return "\n".join(lines) + "\n" if lines else ""


# -- dot ----------------------------------------------------------------------
def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _trim(text: str, width: int = LABEL_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def render_dot(history: History, name: str) -> str:
    """Graphviz DOT: edges go parent -> child; heads have a double border, merges are diamonds."""
    heads = set(history.heads)
    lines = [
        f"digraph {_quote(name)} {{",
        "  rankdir=BT;",
        '  node [shape=box, fontname="monospace"];',
    ]
    ordered = sort_ids(history.revisions)
    for rev in ordered:
        revision = history.revisions[rev]
        label = f"{rev}\n{_trim(revision.message)}"
        if revision.branch_labels:
            label += "\n" + " ".join(f"[{b}]" for b in revision.branch_labels)
        attributes = [f"label={_quote(label)}"]
        if revision.is_merge:
            attributes.append("shape=diamond")
        if rev in heads:
            attributes.append("peripheries=2")
        lines.append(f"  {_quote(rev)} [{', '.join(attributes)}];")
    for missing in sort_ids({parent for _, parent in history.dangling()}):
        lines.append(
            f"  {_quote(missing)} [label={_quote(f'(missing {missing})')}, "
            "color=red, fontcolor=red, style=dashed];"
        )
    for rev in ordered:
        for parent in history.revisions[rev].down:
            style = "" if parent in history.revisions else " [color=red, style=dashed]"
            lines.append(f"  {_quote(parent)} -> {_quote(rev)}{style};")
    lines.append("}")
    return "\n".join(lines) + "\n"


# -- files --------------------------------------------------------------------
def _image(dot_text: str, fmt: str, output: Path) -> bytes:
    dot = shutil.which("dot")
    if dot is None:
        raise WorkflowError(
            f"cannot write {output.name}: Graphviz 'dot' is not installed", kind="no_graphviz"
        )
    try:
        result = subprocess.run(
            [dot, f"-T{fmt}"],
            input=dot_text.encode("utf-8"),
            capture_output=True,
            timeout=DOT_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WorkflowError(
            f"cannot write {output.name}: running {dot} failed ({exc})", kind="dot_failed"
        ) from exc
    if result.returncode != 0:
        reason = result.stderr.decode("utf-8", "replace").strip().splitlines()
        raise WorkflowError(
            f"cannot write {output.name}: dot -T{fmt} exited with {result.returncode}"
            f" ({reason[0] if reason else 'no message'})",
            kind="dot_failed",
        )
    return result.stdout


def _write_atomically(output: Path, content: bytes) -> None:
    """Write to a temporary file next to ``output``, then rename it into place."""
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        descriptor, name = tempfile.mkstemp(
            dir=output.parent, prefix=f".{output.name}.", suffix=".tmp"
        )
        temporary = Path(name)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(content)
            temporary.chmod(0o644)  # mkstemp makes it private; a graph is not
            os.replace(temporary, output)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise WorkflowError(
            f"cannot write {output}: {exc.strerror or exc}", kind="unwritable_output"
        ) from exc


def write_graph(history: History, name: str, output: Path) -> Path:
    """Write the graph in the format ``output``'s suffix names; returns ``output``."""
    suffix = output.suffix.lower()
    if suffix in (".dot", ".gv"):
        content = render_dot(history, name).encode("utf-8")
    elif suffix == ".txt":
        content = render_text(history).encode("utf-8")
    elif suffix in SUPPORTED_SUFFIXES:
        content = _image(render_dot(history, name), suffix[1:], output)
    else:
        raise WorkflowError(
            f"cannot write {output.name}: unknown graph format {suffix or '(no suffix)'!r}; "
            f"the formats are {', '.join(SUPPORTED_SUFFIXES)}",
            kind="unknown_graph_format",
        )
    _write_atomically(output, content)
    return output
