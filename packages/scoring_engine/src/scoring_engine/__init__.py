"""The scoring_engine service."""
