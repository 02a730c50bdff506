"""Settings of the scoring_engine service (environment variables, see ServiceSettings)."""

from typing import ClassVar

from pydantic import Field, SecretStr
from shared_db.services import PORTS
from shared_db.web.settings import ServiceSettings, database_url_field


class ScoringEngineSettings(ServiceSettings):
    service: ClassVar[str] = "scoring_engine"
    database_url: SecretStr = database_url_field("scoring_engine")
    port: int = Field(default=PORTS["scoring_engine"], ge=1, le=65535)
