"""The settings of a service: one pydantic-settings class, read once at startup."""

import os

from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL

from shared_db import provision
from shared_db.urls import normalize


class ServiceSettings(BaseSettings):
    """Environment variables: ``DATABASE_URL`` (``<SERVICE>_DATABASE_URL`` wins over it),
    ``HOST``, ``PORT``, ``SKIP_MIGRATIONS`` (1/true/yes, any case), ``LOG_LEVEL``,
    ``MIGRATION_LOCK_TIMEOUT`` and ``DATABASE_WAIT_TIMEOUT`` (seconds)."""

    model_config = SettingsConfigDict(extra="ignore")

    service: str = ""
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    skip_migrations: bool = False
    log_level: str = "info"
    migration_lock_timeout: float = 60.0
    database_wait_timeout: float = 30.0

    def resolved_database_url(self) -> URL:
        """``<SERVICE>_DATABASE_URL``, else ``DATABASE_URL``, else the provisioned database."""
        own = os.environ.get(f"{self.service.upper()}_DATABASE_URL")
        if own or self.database_url:
            return normalize(own or self.database_url or "")
        return provision.database_url(self.service)
