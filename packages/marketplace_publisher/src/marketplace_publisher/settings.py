"""Settings of the marketplace_publisher service (environment variables, see ServiceSettings)."""

from typing import ClassVar

from pydantic import Field, SecretStr
from shared_db.services import PORTS
from shared_db.web.settings import ServiceSettings, database_url_field


class MarketplacePublisherSettings(ServiceSettings):
    service: ClassVar[str] = "marketplace_publisher"
    database_url: SecretStr = database_url_field("marketplace_publisher")
    port: int = Field(default=PORTS["marketplace_publisher"], ge=1, le=65535)
