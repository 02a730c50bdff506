"""Invoke entry point: assembles the task collections, no logic here (see dev_tasks)."""

from dev_tasks import namespace

ns = namespace()
