"""Read a revision history from its files, without importing them.

Alembic imports every revision module to build its graph and refuses (or warns
and overrides) when the history is broken. This reader parses each file's
module-level ``revision``/``down_revision``/``branch_labels``/``depends_on``
with ``ast`` instead, so it is fast and it can describe a broken history: the
validator and ``migrate.heads`` are built on it.
"""

import ast
import importlib.util
import os
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from shared_db.config import DbConfig

ID_PATTERN = re.compile(r"^(\d{4,})([a-z]*)$")
_FIELDS = ("revision", "down_revision", "branch_labels", "depends_on", "phase", "replaces")
# A revision's compatibility phase: "expand" keeps the previous release's code working
# (new tables, nullable columns, indexes...); "contract" does not (drops, renames...).
PHASES = ("expand", "contract")


@dataclass(frozen=True)
class Revision:
    id: str
    down: tuple[str, ...]
    branch_labels: tuple[str, ...]
    depends_on: tuple[str, ...]
    path: Path
    message: str
    phase: str | None = None  # None: the file declares none (written before phases)
    # A baseline (``migrate.squash``) replaces the revisions up to its own ID: (ID, sha256
    # of that revision's file as databases applied it), from ``replaces = {...}``; later
    # revisions whose header the squash rewrote are listed too, with their old checksum.
    replaces: tuple[tuple[str, str], ...] = ()

    @property
    def is_merge(self) -> bool:
        return len(self.down) > 1


@dataclass(frozen=True)
class Unreadable:
    path: Path
    reason: str


def _as_tuple(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError(f"expected a string, a sequence of strings or None, got {value!r}")


_FAST_ASSIGN = re.compile(
    r"^(revision|down_revision|branch_labels|depends_on|phase|replaces)"
    r"[ \t]*(?::[^=\n]*)?=[ \t]*(.*?)[ \t]*$",
    re.MULTILINE,
)
_STRING = re.compile(r"""^(["'])([^"'\\\n]*)\1$""")
_SEQUENCE = re.compile(r"""^[(\[]\s*((?:(["'])[^"'\\\n]*\2\s*,?\s*)*)[)\]]$""")
_SEQUENCE_ITEM = re.compile(r"""(["'])([^"'\\\n]*)\1""")
_DOCSTRING = re.compile(r'^[ \t]*("""|\'\'\')[ \t]*([^\n]*?)[ \t]*(?:\1|$)', re.MULTILINE)


def control_characters(text: str) -> list[str]:
    """The characters of ``text`` that are not text to show, each once: control characters
    (NUL, ESC, a carriage return...), lone surrogates (bytes that were not UTF-8), line
    and paragraph separators, and the bidirectional overrides and isolates that make
    source code read otherwise than it runs (U+202A-U+202E, U+2066-U+2069)."""
    return list(dict.fromkeys(ch for ch in text if _not_text(ch)))


def _not_text(ch: str) -> bool:
    return (
        unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp")
        or "\u202a" <= ch <= "\u202e"
        or "\u2066" <= ch <= "\u2069"
    )


def docstring_text(message: str) -> str:
    """``message`` as the text of a revision file's docstring (the ``\"\"\"`` kind), so
    that the file compiles whatever the message and its docstring reads ``message`` back
    (``alembic history``, this reader): backslashes doubled, each quote of a run of three
    escaped, characters that are not text (see ``control_characters``; newlines and tabs
    are kept) written as escapes. Readable text, Unicode included, is written as it is.
    The revision templates (``script.py.mako``) write the message through it."""
    text = message.replace("\\", "\\\\")
    text = re.sub(r'"{3,}', lambda run: '\\"' * len(run.group()), text)
    return "".join(_escape(ch) if _not_text(ch) and ch not in "\n\t" else ch for ch in text)


def _escape(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _fast_value(text: str) -> object:
    """The literal forms Alembic writes; anything else raises KeyError (use ast)."""
    if text == "None":
        return None
    string = _STRING.match(text)
    if string:
        return string.group(2)
    sequence = _SEQUENCE.match(text)
    if sequence:
        return tuple(m.group(2) for m in _SEQUENCE_ITEM.finditer(sequence.group(1)))
    raise KeyError(text)


def _fast_parse(source: str, path: Path) -> Revision | None:
    """Regex reading of a plainly written revision file (~10x faster than ast);
    ``None`` when the file is anything but plain, and ast decides."""
    values: dict[str, object] = {}
    for match in _FAST_ASSIGN.finditer(source):
        if match.group(1) in values:
            return None
        try:
            values[match.group(1)] = _fast_value(match.group(2))
        except KeyError:
            return None
    revision = values.get("revision")
    if not isinstance(revision, str) or not revision or "down_revision" not in values:
        return None
    docstring = _DOCSTRING.match(source)
    if docstring is None or not docstring.group(2) or "\\" in docstring.group(2):
        return None
    return _revision(revision, values, path, docstring.group(2).strip())


def parse_revision_file(
    path: Path, *, check_syntax: bool = False, trust_bytecode: bool = False
) -> Revision:
    """One revision file; raises ``ValueError`` saying why it is not a revision.

    The header is read without compiling the file; ``check_syntax`` also compiles it
    (as Alembic's import would), so a syntax error anywhere in it is found; with
    ``trust_bytecode``, not if its bytecode cache is fresh: then it compiled, and
    Alembic's import would use that cache."""
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read it: {exc}") from exc
    if not source.strip():
        raise ValueError("the file is empty")
    fast = _fast_parse(source, path)
    if fast is None:
        return _ast_parse(source, path)
    if check_syntax and not (trust_bytecode and compiled_cache_is_fresh(path)):
        try:
            compile(source, str(path), "exec", dont_inherit=True)
        except (SyntaxError, ValueError) as exc:
            line = getattr(exc, "lineno", None)
            raise ValueError(f"syntax error on line {line}: {getattr(exc, 'msg', exc)}") from exc
    return fast


def compiled_cache_is_fresh(path: Path) -> bool:
    """Whether ``path`` has a bytecode cache (``__pycache__``) that Python's import would
    use as it is: this interpreter's magic number, stamped with the source's current
    modification time and size (PEP 3147/552, the default timestamp kind)."""
    try:
        with open(importlib.util.cache_from_source(str(path)), "rb") as cached:
            header = cached.read(16)
        stat = path.stat()
    except (OSError, NotImplementedError, ValueError):
        return False
    return (
        len(header) == 16
        and header[:4] == importlib.util.MAGIC_NUMBER
        and int.from_bytes(header[4:8], "little") == 0  # not a hash-based cache
        and int.from_bytes(header[8:12], "little") == int(stat.st_mtime) & 0xFFFFFFFF
        and int.from_bytes(header[12:16], "little") == stat.st_size & 0xFFFFFFFF
    )


def module_assignments(tree: ast.Module) -> list[tuple[str, ast.expr]]:
    """The module-level ``name = value`` (or ``name: T = value``) of ``tree``, in order."""
    found: list[tuple[str, ast.expr]] = []
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        for target in targets:
            if isinstance(target, ast.Name):
                found.append((target.id, value))
    return found


def _ast_parse(source: str, path: Path) -> Revision:
    """The exact reading, for any valid file (and the reasons an invalid one fails)."""
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        raise ValueError(f"syntax error on line {exc.lineno}: {exc.msg}") from exc
    values: dict[str, object] = {}
    for name, value in module_assignments(tree):
        if name in _FIELDS:
            try:
                values[name] = ast.literal_eval(value)
            except ValueError as exc:
                raise ValueError(f"{name} is not a literal") from exc
    revision = values.get("revision")
    if not isinstance(revision, str) or not revision:
        raise ValueError('it declares no `revision = "..."`')
    if "down_revision" not in values:
        raise ValueError("it declares no `down_revision`")
    docstring = (ast.get_docstring(tree) or "").strip()
    return _revision(revision, values, path, docstring.splitlines()[0] if docstring else "")


def _replaces(value: object) -> tuple[tuple[str, str], ...]:
    """A baseline's ``replaces``: ``{"0001": "<sha256>", ...}`` (or IDs without checksums)."""
    if value is None:
        return ()
    if isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        return tuple(value.items())
    return tuple((rev, "") for rev in _as_tuple(value))


def _revision(revision: str, values: dict[str, object], path: Path, message: str) -> Revision:
    phase = values.get("phase")
    if phase is not None and phase not in PHASES:
        raise ValueError(f"phase must be 'expand' or 'contract', not {phase!r}")
    return Revision(
        id=revision,
        down=_as_tuple(values["down_revision"]),
        branch_labels=_as_tuple(values.get("branch_labels")),
        depends_on=_as_tuple(values.get("depends_on")),
        path=path,
        message=message,
        phase=phase if isinstance(phase, str) else None,
        replaces=_replaces(values.get("replaces")),
    )


@dataclass
class History:
    """A revision graph as the files describe it, broken or not."""

    revisions: dict[str, Revision] = field(default_factory=dict)
    duplicates: dict[str, list[Path]] = field(default_factory=dict)
    unreadable: list[Unreadable] = field(default_factory=list)

    @classmethod
    def from_revisions(cls, revisions: Iterable[Revision]) -> "History":
        history = cls()
        for revision in revisions:
            history.add(revision)
        return history

    def add_file(
        self, path: Path, *, check_syntax: bool = False, trust_bytecode: bool = False
    ) -> None:
        """Read one file: a revision, or an unreadable file with the reason."""
        try:
            self.add(
                parse_revision_file(path, check_syntax=check_syntax, trust_bytecode=trust_bytecode)
            )
        except ValueError as exc:
            self.unreadable.append(Unreadable(path, str(exc)))

    def add(self, revision: Revision) -> None:
        """Add a parsed revision; a second file with the same ID is a duplicate."""
        existing = self.revisions.get(revision.id)
        if existing is None:
            self.revisions[revision.id] = revision
            return
        paths = self.duplicates.setdefault(revision.id, [existing.path])
        paths.append(revision.path)

    # -- structure ------------------------------------------------------------
    def children(self) -> dict[str, list[str]]:
        result: dict[str, list[str]] = {rev: [] for rev in self.revisions}
        for revision in self.revisions.values():
            for parent in revision.down:
                if parent in result:
                    result[parent].append(revision.id)
        return result

    @property
    def heads(self) -> tuple[str, ...]:
        referenced = {p for r in self.revisions.values() for p in r.down}
        return tuple(sort_ids(r for r in self.revisions if r not in referenced))

    @property
    def bases(self) -> tuple[str, ...]:
        return tuple(sort_ids(r.id for r in self.revisions.values() if not r.down))

    def branch_points(self) -> tuple[str, ...]:
        return tuple(sort_ids(rev for rev, kids in self.children().items() if len(kids) > 1))

    def merge_points(self) -> tuple[str, ...]:
        return tuple(sort_ids(r.id for r in self.revisions.values() if r.is_merge))

    def dangling(self) -> list[tuple[str, str]]:
        """(revision, missing down_revision) pairs."""
        return [
            (r.id, parent)
            for r in self.revisions.values()
            for parent in r.down
            if parent not in self.revisions
        ]

    def ancestors(self, revision: str) -> set[str]:
        """``revision`` and every revision below it (following down_revision)."""
        seen: set[str] = set()
        stack = [revision]
        while stack:
            current = stack.pop()
            if current in seen or current not in self.revisions:
                continue
            seen.add(current)
            stack.extend(self.revisions[current].down)
        return seen

    def descendants(self, revisions: Iterable[str]) -> set[str]:
        """``revisions`` and every revision above them (following the children)."""
        children = self.children()
        seen: set[str] = set()
        stack = list(revisions)
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(children.get(current, []))
        return seen

    def reachable_from_bases(self) -> set[str]:
        """Revisions on some path up from a base (a cycle or a cut-off part is not)."""
        children = self.children()
        seen: set[str] = set()
        stack = list(self.bases)
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            # A merge is reachable only once all its parents are.
            if any(p not in seen for p in self.revisions[current].down):
                continue
            seen.add(current)
            stack.extend(children[current])
        return seen

    def topological(self) -> list[str]:
        """Revisions from the bases up; each after all of its parents."""
        children = self.children()
        pending = {
            rev: sum(p in self.revisions for p in r.down) for rev, r in self.revisions.items()
        }
        ready = sort_ids(rev for rev, count in pending.items() if count == 0)
        order: list[str] = []
        while ready:
            current = ready.pop(0)
            order.append(current)
            for child in sort_ids(children[current]):
                pending[child] -= 1
                if pending[child] == 0:
                    ready.append(child)
        return order

    def replaced(self) -> dict[str, Revision]:
        """Revisions squashed away, each with the baseline that replaces it (a baseline
        keeps its own ID, and lists the later revisions it rewrote: those are here)."""
        return {
            rev: baseline
            for baseline in self.revisions.values()
            for rev, _checksum in baseline.replaces
            if rev not in self.revisions
        }

    def numbers(self) -> Iterator[int]:
        for revision in self.revisions:
            match = ID_PATTERN.match(revision)
            if match:
                yield int(match.group(1))


def sort_ids(ids: Iterable[str]) -> list[str]:
    """Sequential IDs in numeric order (``0002`` < ``0002a`` < ``0010``), others after."""

    def key(rev: str) -> tuple[int, int, str]:
        match = ID_PATTERN.match(rev)
        if match:
            return (0, int(match.group(1)), match.group(2))
        return (1, 0, rev)

    return sorted(ids, key=key)


def revision_files(directory: Path) -> list[Path]:
    """The files Alembic would load as revisions (``*.py`` directly in the folder)."""
    return sorted(p for p in directory.glob("*.py") if p.name != "__init__.py")


def revision_file_names(directory: Path) -> list[str]:
    """The names of the files Alembic would load as revisions, sorted."""
    with os.scandir(directory) as scan:
        return sorted(
            entry.name
            for entry in scan
            if entry.name.endswith(".py") and entry.name != "__init__.py" and entry.is_file()
        )


def read_directory(
    directory: Path, *, check_syntax: bool = False, trust_bytecode: bool = False
) -> History:
    """The history in ``directory`` (a missing folder is an empty history); with
    ``check_syntax`` every file is compiled too (with ``trust_bytecode``, a file whose
    bytecode cache is fresh counts as compiled)."""
    history = History()
    try:
        names = revision_file_names(directory)
    except FileNotFoundError:
        return history
    for name in names:
        history.add_file(directory / name, check_syntax=check_syntax, trust_bytecode=trust_bytecode)
    return history


def read_history(config: DbConfig, service: str, *, check_syntax: bool = False) -> History:
    """The history of ``service`` as its files describe it."""
    return read_directory(config.versions_dir(service), check_syntax=check_syntax)
