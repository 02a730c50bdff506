"""The scoring_engine app: ``uvicorn scoring_engine.app:app``."""

from shared_db.web.app import create_service_app

from scoring_engine.api import router
from scoring_engine.settings import ScoringEngineSettings

app = create_service_app(ScoringEngineSettings, [router])
