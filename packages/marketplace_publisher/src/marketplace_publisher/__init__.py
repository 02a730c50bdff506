"""The marketplace_publisher service."""
