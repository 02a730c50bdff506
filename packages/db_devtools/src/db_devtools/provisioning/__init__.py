"""Development and test databases: Docker, a project-owned local server, scratch ones."""
