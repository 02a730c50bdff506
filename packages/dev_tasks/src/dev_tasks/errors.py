"""Turn library errors into one line on stderr and a non-zero exit."""

from collections.abc import Iterator
from contextlib import contextmanager

from invoke.exceptions import Exit
from shared_db.errors import SharedDbError
from shared_db.exit_codes import exit_code

from dev_tasks.hints import for_error


@contextmanager
def reported() -> Iterator[None]:
    """Library errors become ``Exit(message, code)``: one line with its next step, no
    traceback; the code tells contention (3) and an unreachable database (4) from other
    failures (1), see ``shared_db.exit_codes``."""
    try:
        yield
    except SharedDbError as exc:
        raise Exit(f"error: {for_error(exc)}", code=exit_code(exc)) from None
