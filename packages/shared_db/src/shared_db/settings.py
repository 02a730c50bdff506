"""Where the environment says a service's database is, read once and lazily.

Two variables, no parsing: plain ``os.environ`` rather than a settings class, so that
the command line does not pay pydantic's import for two lookups (the services' own
settings are a pydantic-settings class, see ``shared_db.web.settings``).
"""

import os
from functools import cache

from shared_db.services import check_service


@cache
def configured_url(service: str) -> str | None:
    """The URL the environment sets for ``service``: ``<SERVICE>_DATABASE_URL``, then
    ``DATABASE_URL``; ``None`` when neither is set (Postgres is then provisioned)."""
    own = os.environ.get(f"{check_service(service).upper()}_DATABASE_URL")
    return own or os.environ.get("DATABASE_URL") or None


def reset() -> None:
    """Forget what was read (tests that change the environment call this)."""
    configured_url.cache_clear()
