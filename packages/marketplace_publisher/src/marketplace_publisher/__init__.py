"""The marketplace_publisher service."""

SERVICE_NAME = "marketplace_publisher"
