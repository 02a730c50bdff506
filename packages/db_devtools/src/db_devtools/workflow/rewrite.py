"""Rewrite the header of a revision file (its ID, parents, dependencies), nothing else.

The values of the module-level ``revision``, ``down_revision`` and ``depends_on``
assignments are found with ``ast``, which gives their exact place in the source, and only
those characters are replaced, in the quote style found there; the ``Revision ID:`` and
``Revises:`` lines of the module docstring follow. Every other byte of the file (the
code, comments, formatting, annotations) stays as it was. Used by ``migrate.renumber``,
``migrate.rebase`` and ``migrate.squash``.
"""

import ast
import re
from dataclasses import dataclass

from shared_db.history import module_assignments

_ID_LINE = re.compile(r"^(Revision ID:[ \t]*)(\S*)([ \t]*)$", re.MULTILINE)
_REVISES_LINE = re.compile(r"^(Revises:[ \t]*)(.*?)([ \t]*)$", re.MULTILINE)


@dataclass(frozen=True)
class _Span:
    start: int  # character offsets in the source
    end: int


def _offsets(source: str) -> list[int]:
    """The character offset at which each line starts (index 0 is line 1)."""
    starts, total = [], 0
    for line in source.splitlines(keepends=True):
        starts.append(total)
        total += len(line)
    starts.append(total)
    return starts


def _span(node: ast.expr, source: str, starts: list[int]) -> _Span:
    """``node``'s characters; ast counts columns in UTF-8 bytes, so they are converted."""
    assert node.end_lineno is not None and node.end_col_offset is not None
    lines = source.splitlines(keepends=True)

    def offset(line: int, column: int) -> int:
        text = lines[line - 1].encode("utf-8")[:column].decode("utf-8")
        return starts[line - 1] + len(text)

    return _Span(offset(node.lineno, node.col_offset), offset(node.end_lineno, node.end_col_offset))


def _quote(text: str) -> str:
    return "'" if text.lstrip("rRuU")[:1] == "'" else '"'


def _literal(values: tuple[str, ...], quote: str) -> str:
    if not values:
        return "None"
    items = [f"{quote}{value}{quote}" for value in values]
    return items[0] if len(items) == 1 else f"({', '.join(items)})"


def _strings(node: ast.expr) -> list[ast.Constant] | None:
    """The string constants of a literal string, tuple or list; ``None`` otherwise."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node]
    if isinstance(node, ast.Tuple | ast.List) and all(
        isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts
    ):
        return [e for e in node.elts if isinstance(e, ast.Constant)]
    return None


def _replacements(
    node: ast.expr, field: str, new: tuple[str, ...], source: str, starts: list[int]
) -> list[tuple[_Span, str]]:
    span = _span(node, source, starts)
    if isinstance(node, ast.Constant) and node.value is None:
        return [(span, _literal(new, '"'))]
    strings = _strings(node)
    if strings is None:
        raise ValueError(f"its {field} is not a literal")
    spans = [_span(element, source, starts) for element in strings]
    quotes = [_quote(source[s.start : s.end]) for s in spans]
    if len(strings) == len(new) and (len(new) > 1 or isinstance(node, ast.Constant)):
        # The same shape: each string in place, the rest (brackets, commas) untouched.
        return [(s, f"{q}{value}{q}") for s, q, value in zip(spans, quotes, new, strict=True)]
    return [(span, _literal(new, quotes[0] if quotes else '"'))]


def rewrite_header(
    source: str,
    *,
    revision: str | None = None,
    down: tuple[str, ...] | None = None,
    depends_on: tuple[str, ...] | None = None,
) -> str:
    """``source`` with the given header fields replaced (``None``: left as it is). Raises
    ``ValueError`` saying why when the file cannot be edited that way (it does not parse,
    or a field to change is not a literal)."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise ValueError(f"syntax error on line {exc.lineno}: {exc.msg}") from None
    values = dict(module_assignments(tree))  # the last one wins, as at import
    starts = _offsets(source)
    edits: list[tuple[_Span, str]] = []
    if revision is not None:
        node = values.get("revision")
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            raise ValueError('it declares no literal `revision = "..."`')
        edits += _replacements(node, "revision", (revision,), source, starts)
    for field, new in (("down_revision", down), ("depends_on", depends_on)):
        if new is None:
            continue
        node = values.get(field)
        if node is None:
            if field == "depends_on" and not new:
                continue
            raise ValueError(f"it declares no {field}")
        edits += _replacements(node, field, new, source, starts)
    docstring = _docstring_span(tree, source, starts)
    if docstring is not None and (revision is not None or down is not None):
        # The docstring is the module's first statement: before every edit above.
        body = source[docstring.start : docstring.end]
        if revision is not None:
            body = _ID_LINE.sub(lambda m: f"{m[1]}{revision}{m[3]}", body, count=1)
        if down is not None:
            body = _REVISES_LINE.sub(lambda m: f"{m[1]}{', '.join(down)}{m[3]}", body, count=1)
        edits.append((docstring, body))
    result = source
    for span, text in sorted(edits, key=lambda edit: edit[0].start, reverse=True):
        result = result[: span.start] + text + result[span.end :]
    return result


def _docstring_span(tree: ast.Module, source: str, starts: list[int]) -> _Span | None:
    first = tree.body[0] if tree.body else None
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        return _span(first.value, source, starts)
    return None
