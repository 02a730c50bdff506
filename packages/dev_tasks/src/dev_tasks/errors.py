"""Turn library errors into one line on stderr and a non-zero exit."""

from collections.abc import Iterator
from contextlib import contextmanager

from invoke.exceptions import Exit
from shared_db.errors import SharedDbError


@contextmanager
def reported() -> Iterator[None]:
    """Library errors become ``Exit(message, 1)``: one line, no traceback."""
    try:
        yield
    except SharedDbError as exc:
        raise Exit(f"error: {exc}", code=1) from None
