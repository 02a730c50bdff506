"""``python -m signal_ingestion [--host H] [--port P]``."""

from shared_db.web.cli import main

from signal_ingestion.settings import SignalIngestionSettings

if __name__ == "__main__":
    main(SignalIngestionSettings)
