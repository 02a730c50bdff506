"""The settings of a service: one pydantic-settings class, read once at startup.

The database URL is required: ``<SERVICE>_DATABASE_URL``, else ``DATABASE_URL``. A
service never provisions a database; without a URL it refuses to start.
"""

from typing import Any, ClassVar, Literal, Self

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared_db.config import DbConfig
from shared_db.errors import ConfigurationError
from shared_db.services import env_prefix
from shared_db.urls import normalize

DEFAULT_MAX_BODY_BYTES = 1024 * 1024


def database_url_field(service: str) -> Any:
    """The required URL field of ``service``: its own variable wins over ``DATABASE_URL``."""
    return Field(
        validation_alias=AliasChoices(f"{env_prefix(service)}_DATABASE_URL", "DATABASE_URL")
    )


class ServiceSettings(BaseSettings):
    """Environment variables: ``<SERVICE>_DATABASE_URL`` or ``DATABASE_URL`` (required),
    ``HOST``, ``PORT``, ``SKIP_MIGRATIONS`` (1/true/yes, any case), ``LOG_LEVEL``,
    ``MIGRATION_LOCK_TIMEOUT``, ``MIGRATION_TABLE_LOCK_TIMEOUT``, ``MIGRATION_RETRY_BUDGET``
    ``DATABASE_WAIT_TIMEOUT`` and ``MIGRATION_WAIT_TIMEOUT`` (seconds),
    ``MIGRATION_LOCK_RETRIES``, ``MAX_BODY_BYTES`` (the largest request body, 1 MiB),
    ``SIGNALMARKET_CONTAINER`` (set by the image: errors then give container hints)."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    service: ClassVar[str] = ""
    database_url: SecretStr
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    skip_migrations: bool = False
    log_level: str = "info"
    migration_lock_timeout: float = Field(default=60.0, ge=0)
    migration_table_lock_timeout: float = Field(default=2.0, gt=0)
    migration_lock_retries: int = Field(default=10, ge=1)
    migration_retry_budget: float = Field(default=120.0, ge=0)
    database_wait_timeout: float = Field(default=30.0, ge=0)
    # With SKIP_MIGRATIONS: how long to wait for the migrate step to bring the database
    # to a revision this code can serve on.
    migration_wait_timeout: float = Field(default=300.0, ge=0)
    # Which revisions startup applies: all of them, or the expand phase only (contract
    # revisions then run in the migrate step, after a rolling deploy).
    migration_phases: Literal["all", "expand"] = "all"
    in_container: bool = Field(default=False, validation_alias="SIGNALMARKET_CONTAINER")
    # The largest request body accepted (413 beyond).
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024)

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr) -> SecretStr:
        try:
            normalize(value.get_secret_value())
        except ConfigurationError as exc:
            raise ValueError(exc.message) from None
        return value

    @classmethod
    def load(cls) -> Self:
        """Read the environment; a missing or bad value raises ``ConfigurationError``."""
        try:
            return cls()  # type: ignore[call-arg]  # the URL comes from the environment
        except ValidationError as exc:
            raise _configuration_error(cls.service, exc) from None

    @classmethod
    def running_in_container(cls) -> bool:
        """``SIGNALMARKET_CONTAINER`` alone: the hint of a failed ``load`` needs it too."""
        try:
            return _Where().in_container
        except ValidationError:
            return False

    def db_config(self, caller: str = "startup") -> DbConfig:
        """The runtime configuration of this service's migrations."""
        return DbConfig(
            database_urls={self.service: self.database_url.get_secret_value()},
            caller=caller,
            lock_wait_s=self.migration_lock_timeout,
            table_lock_timeout_s=self.migration_table_lock_timeout,
            lock_retries=self.migration_lock_retries,
            retry_budget_s=self.migration_retry_budget,
            database_wait_s=self.database_wait_timeout,
        )


class _Where(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    in_container: bool = Field(default=False, validation_alias="SIGNALMARKET_CONTAINER")


def _configuration_error(service: str, exc: ValidationError) -> ConfigurationError:
    """One line naming the first bad setting, never its value (it may be a secret)."""
    error = exc.errors()[0]
    field = str(error["loc"][0]) if error["loc"] else "?"
    prefix = env_prefix(service) if service else "<SERVICE>"
    if "database_url" in field.lower():
        if error["type"] == "missing":
            return ConfigurationError(
                f"no database URL: set {prefix}_DATABASE_URL or DATABASE_URL",
                kind="no_database_url",
                service=service,
            )
        reason = str(error["msg"]).removeprefix("Value error, ")
        return ConfigurationError(
            f"{prefix}_DATABASE_URL or DATABASE_URL: {reason}",
            kind="invalid_database_url",
            service=service,
        )
    return ConfigurationError(
        f"setting {field.upper()} is invalid: {error['msg']}",
        kind="invalid_setting",
        service=service,
    )
