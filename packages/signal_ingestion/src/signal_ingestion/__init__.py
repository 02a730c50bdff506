"""The signal_ingestion service."""

SERVICE_NAME = "signal_ingestion"
