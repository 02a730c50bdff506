"""The marketplace_publisher app: ``uvicorn marketplace_publisher.app:app``."""

from shared_db.web.app import create_service_app

from marketplace_publisher.api import router
from marketplace_publisher.settings import MarketplacePublisherSettings

app = create_service_app(MarketplacePublisherSettings, [router])
