"""``python -m marketplace_publisher [--host H] [--port P]``."""

from shared_db.web.cli import main

from marketplace_publisher.settings import MarketplacePublisherSettings

if __name__ == "__main__":
    main(MarketplacePublisherSettings)
