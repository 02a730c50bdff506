"""Errors of the developer tooling (facts; the Invoke front end adds the hints)."""

from shared_db.errors import SharedDbError
from shared_db.soundness import Problem


class ProvisioningError(SharedDbError):
    """Postgres could not be found, started, reached or prepared."""

    kind = "provisioning"


class WorkflowError(SharedDbError):
    """An authoring or validation step cannot be done (bad input, a broken history...)."""

    kind = "workflow"


def refusal(doing: str, service: str, problem: Problem) -> WorkflowError:
    """``cannot <doing>: <problem>``, carrying the problem's kind, revision and file (so
    the front end's hint is the problem's own fix)."""
    return WorkflowError(
        f"cannot {doing}: {problem.message}",
        kind=problem.kind,
        service=service,
        revision=problem.revision,
        path=problem.path,
    )
