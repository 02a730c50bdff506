"""Where each service's migrations live inside the package (no heavy imports here)."""

import os
from pathlib import Path

from shared_db.services import check_service

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def script_location(service: str) -> Path:
    return MIGRATIONS_DIR / check_service(service)


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
