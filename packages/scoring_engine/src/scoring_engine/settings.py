"""Settings of the scoring_engine service (environment variables, see ServiceSettings)."""

from shared_db.web.settings import ServiceSettings


class ScoringEngineSettings(ServiceSettings):
    service: str = "scoring_engine"
    port: int = 8002
