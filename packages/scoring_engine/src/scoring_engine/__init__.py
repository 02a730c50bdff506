"""The scoring_engine service."""

SERVICE_NAME = "scoring_engine"
