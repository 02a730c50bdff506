"""Settings of the signal_ingestion service (environment variables, see ServiceSettings)."""

from typing import ClassVar

from pydantic import Field, SecretStr
from shared_db.services import PORTS
from shared_db.web.settings import ServiceSettings, database_url_field


class SignalIngestionSettings(ServiceSettings):
    service: ClassVar[str] = "signal_ingestion"
    database_url: SecretStr = database_url_field("signal_ingestion")
    port: int = Field(default=PORTS["signal_ingestion"], ge=1, le=65535)
