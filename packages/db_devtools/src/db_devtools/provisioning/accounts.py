"""Which operating-system user runs Postgres.

``initdb`` and ``postgres`` refuse to run as root. As root we run them as an
existing unprivileged account: the configured one (``SIGNALMARKET_PG_USER``), else ``postgres``
when the machine has it, else ``nobody``. No account is ever created.
"""

import os
import pwd
import subprocess
from dataclasses import dataclass
from pathlib import Path

from db_devtools.errors import ProvisioningError

FALLBACK_USERS = ("postgres", "nobody")


@dataclass(frozen=True)
class RunAs:
    name: str
    uid: int
    gid: int

    def can_reach(self, *paths: Path) -> bool:
        """True when this user can traverse to (and execute/enter) every path."""
        checks = " && ".join(f'test -x "{p}"' for p in paths)
        result = subprocess.run(
            ["/bin/sh", "-c", checks], user=self.uid, group=self.gid, extra_groups=[], check=False
        )
        return result.returncode == 0

    def chown(self, path: Path) -> None:
        os.chown(path, self.uid, self.gid)


def server_account(wanted: str | None = None) -> RunAs | None:
    """The account to drop to (``wanted``, else the first that exists among
    ``FALLBACK_USERS``), or ``None`` when we are not root (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    names = (wanted,) if wanted else FALLBACK_USERS
    for name in names:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        if entry.pw_uid == 0:
            raise ProvisioningError(
                f"SIGNALMARKET_PG_USER={name} is root, and Postgres refuses to run as root",
                kind="root_pg_user",
            )
        return RunAs(name, entry.pw_uid, entry.pw_gid)
    raise ProvisioningError(
        f"running as root and no unprivileged account among {', '.join(names)} to run Postgres",
        kind="no_pg_user",
    )
