"""The signal_ingestion app: ``uvicorn signal_ingestion.app:app``."""

from shared_db.web.app import create_service_app

from signal_ingestion.api import router
from signal_ingestion.settings import SignalIngestionSettings

app = create_service_app(SignalIngestionSettings, [router])
