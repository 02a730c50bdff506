"""Postgres provisioning: binaries, a project-owned local server, Docker."""
