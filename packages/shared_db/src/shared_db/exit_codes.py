"""Exit codes of the front ends (``invoke migrate.*``, ``python -m <service>``), so a
script or an orchestrator can tell a broken revision from a busy database.

- 0: done.
- 1: failed: a failing revision, a refused history, bad input, any other error.
- 3: lock contention: the migration lock or a table lock was not granted in time;
  nothing is wrong with the revision: retry later.
- 4: the database could not be reached.
- 128 + n: stopped by signal n (130: SIGINT, 143: SIGTERM); the revision being applied
  was rolled back.
"""

import signal

from shared_db.errors import SharedDbError

FAILED = 1
LOCK_CONTENTION = 3
UNREACHABLE = 4
_BY_KIND = {
    "lock_timeout": LOCK_CONTENTION,
    "lock_contention": LOCK_CONTENTION,
    "database_unreachable": UNREACHABLE,
}


def exit_code(error: SharedDbError) -> int:
    if error.kind == "interrupted" and error.cause in signal.Signals.__members__:
        return 128 + signal.Signals[str(error.cause)].value
    return _BY_KIND.get(error.kind, FAILED)
