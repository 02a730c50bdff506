"""The services that own a migration history, and name validation."""

from shared_db.errors import UnknownServiceError

SERVICES: tuple[str, ...] = (
    "api_gateway",
    "scoring_engine",
    "marketplace_publisher",
    "signal_ingestion",
)


def check_service(name: str) -> str:
    """Return ``name`` if it is a known service, else raise listing the valid ones."""
    if name in SERVICES:
        return name
    valid = ", ".join(SERVICES)
    raise UnknownServiceError(
        f"unknown service {name!r}: there is no migration history for it; "
        f"use one of: {valid} (e.g. --service {SERVICES[1]})"
    )


def version_table(service: str) -> str:
    """Each service keeps its revision in its own table, so histories never collide."""
    return f"alembic_version_{check_service(service)}"
