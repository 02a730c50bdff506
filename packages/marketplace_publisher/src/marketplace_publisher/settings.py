"""Settings of the marketplace_publisher service (environment variables, see ServiceSettings)."""

from shared_db.web.settings import ServiceSettings


class MarketplacePublisherSettings(ServiceSettings):
    service: str = "marketplace_publisher"
    port: int = 8003
