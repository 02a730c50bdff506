"""Developer tooling beside the shared_db runtime; never shipped in a service image.

``workflow``: author, validate, lint, draw and compare migration histories.
``provisioning``: where a development or test database comes from (Docker, a
project-owned local server, scratch and throwaway databases).
"""
