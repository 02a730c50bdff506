"""Is a process still running? (A zombie is not: it has exited, only its entry remains.)"""

import os
from pathlib import Path


def alive(pid: int) -> bool:
    """True while ``pid`` runs. A background server started by an earlier command is
    reparented to PID 1 when it exits; until PID 1 reaps it, it is a zombie, which
    ``kill(pid, 0)`` alone would report as alive."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by another account (the Postgres server account)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): trust kill()
    # The state follows the parenthesised command name, which may itself hold spaces.
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"
