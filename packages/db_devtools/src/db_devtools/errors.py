"""Errors of the developer tooling (facts; the Invoke front end adds the hints)."""

from shared_db.errors import SharedDbError


class ProvisioningError(SharedDbError):
    """Postgres could not be found, started, reached or prepared."""

    kind = "provisioning"


class WorkflowError(SharedDbError):
    """An authoring or validation step cannot be done (bad input, a broken history...)."""

    kind = "workflow"
