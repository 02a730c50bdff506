"""Database settings read from the environment, once and lazily."""

from functools import cache

from pydantic_settings import BaseSettings, SettingsConfigDict

from shared_db.services import check_service


class DatabaseSettings(BaseSettings):
    """``DATABASE_URL``; with a prefix (``SCORING_ENGINE_``) the per-service override."""

    model_config = SettingsConfigDict(extra="ignore")

    database_url: str | None = None


@cache
def configured_url(service: str) -> str | None:
    """The URL the environment sets for ``service``: ``<SERVICE>_DATABASE_URL``, then
    ``DATABASE_URL``; ``None`` when neither is set (Postgres is then provisioned)."""
    prefix = f"{check_service(service).upper()}_"
    own = DatabaseSettings(_env_prefix=prefix).database_url  # type: ignore[call-arg]
    return own or DatabaseSettings().database_url or None


def reset() -> None:
    """Forget what was read (tests that change the environment call this)."""
    configured_url.cache_clear()
