"""Turn library errors into one line on stderr and a non-zero exit."""

from collections.abc import Iterator
from contextlib import contextmanager

from invoke.exceptions import Exit
from shared_db.errors import SharedDbError

from dev_tasks.hints import for_error


@contextmanager
def reported() -> Iterator[None]:
    """Library errors become ``Exit(message, 1)``: one line with its next step, no traceback."""
    try:
        yield
    except SharedDbError as exc:
        raise Exit(f"error: {for_error(exc)}", code=1) from None
