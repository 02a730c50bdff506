"""Settings of the signal_ingestion service (environment variables, see ServiceSettings)."""

from shared_db.web.settings import ServiceSettings


class SignalIngestionSettings(ServiceSettings):
    service: str = "signal_ingestion"
    port: int = 8001
