"""The runtime every service shares: settings, startup migration, health, problems.

Needs the ``web`` extra of signalmarket-shared-db (FastAPI, uvicorn, httpx).
"""
