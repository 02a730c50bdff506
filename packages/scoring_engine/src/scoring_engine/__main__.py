"""``python -m scoring_engine [--host H] [--port P]``."""

from shared_db.web.cli import main

from scoring_engine.settings import ScoringEngineSettings

if __name__ == "__main__":
    main(ScoringEngineSettings)
