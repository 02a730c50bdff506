"""The services that own a migration history, their names and default ports."""

from shared_db.errors import UnknownServiceError

SERVICES: tuple[str, ...] = (
    "api_gateway",
    "scoring_engine",
    "marketplace_publisher",
    "signal_ingestion",
)

# The one port map: each service's default port on a developer's machine (`invoke up`,
# `python -m <service>`) and where docker/compose.yaml publishes it on the host.
PORTS: dict[str, int] = {
    "api_gateway": 8000,
    "signal_ingestion": 8001,
    "scoring_engine": 8002,
    "marketplace_publisher": 8003,
}


def check_service(name: str) -> str:
    """Return ``name`` if it is a known service, else raise listing the valid ones."""
    if name in SERVICES:
        return name
    raise UnknownServiceError(
        f"unknown service {name!r}: there is no migration history for it; "
        f"use one of: {', '.join(SERVICES)}"
    )


def version_table(service: str) -> str:
    """Each service keeps its revision in its own table, so histories never collide."""
    return f"alembic_version_{check_service(service)}"


def env_prefix(service: str) -> str:
    """``SCORING_ENGINE`` for ``scoring_engine``: the prefix of its own variables."""
    return check_service(service).upper()
