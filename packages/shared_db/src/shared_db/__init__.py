"""Shared database layer for the four services."""
