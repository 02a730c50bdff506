"""Where each service's migrations live inside the package (no heavy imports here)."""

import os
from pathlib import Path

from shared_db.services import check_service

PACKAGED_MIGRATIONS = Path(__file__).parent / "migrations"


def migrations_dir() -> Path:
    """The folder holding ``<service>/{env.py, versions/}``: the packaged one, unless
    ``SIGNALMARKET_MIGRATIONS_DIR`` points elsewhere (benchmarks, tooling on a copy)."""
    override = os.environ.get("SIGNALMARKET_MIGRATIONS_DIR")
    return Path(override) if override else PACKAGED_MIGRATIONS


def script_location(service: str) -> Path:
    return migrations_dir() / check_service(service)


def versions_dir(service: str) -> Path:
    return script_location(service) / "versions"


def project_root() -> Path:
    """The checkout holding this package (develop install), else the working directory."""
    override = os.environ.get("SIGNALMARKET_ROOT")
    if override:
        return Path(override)
    for parent in Path(__file__).resolve().parents:
        if (parent / "packages" / "shared_db").is_dir() and (parent / "pyproject.toml").exists():
            return parent
    return Path.cwd()
