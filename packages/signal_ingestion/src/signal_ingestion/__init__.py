"""The signal_ingestion service."""
