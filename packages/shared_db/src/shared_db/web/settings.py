"""The settings of a service: one pydantic-settings class, read once at startup."""

from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL

from shared_db import provision, settings


class ServiceSettings(BaseSettings):
    """Environment variables: ``DATABASE_URL`` (or ``<SERVICE>_DATABASE_URL``),
    ``HOST``, ``PORT``, ``SKIP_MIGRATIONS`` (1/true/yes, any case), ``LOG_LEVEL``,
    ``MIGRATION_LOCK_TIMEOUT`` and ``DATABASE_WAIT_TIMEOUT`` (seconds)."""

    model_config = SettingsConfigDict(extra="ignore")

    service: str = ""
    host: str = "127.0.0.1"
    port: int = 8000
    skip_migrations: bool = False
    log_level: str = "info"
    migration_lock_timeout: float = 60.0
    database_wait_timeout: float = 30.0

    def database_url(self) -> URL:
        """The service's database: the environment's URL, else the provisioned one."""
        return provision.database_url(self.service)

    def database_is_configured(self) -> bool:
        return settings.configured_url(self.service) is not None
