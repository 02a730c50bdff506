"""What a service's operator should do next, for the errors a service meets at startup.

The library states facts; this front end adds the hint that fits where the service
runs: a developer's machine (``invoke`` commands exist) or a container (they do not).
"""

from shared_db.errors import SharedDbError
from shared_db.services import env_prefix


def hint(error: SharedDbError, *, in_container: bool) -> str | None:
    service = error.service or "<service>"
    variables = (
        f"{env_prefix(service)}_DATABASE_URL or DATABASE_URL" if error.service else ("DATABASE_URL")
    )
    if error.kind == "no_database_url":
        if in_container:
            return "give the container one in its environment (compose file, manifest)"
        return f"in development, get one with: invoke db.url --service {service}"
    if error.kind in ("invalid_database_url", "invalid_setting"):
        return "fix the environment variable and start again"
    if error.kind == "database_unreachable":
        if in_container:
            return f"is the database up and reachable from the container? check {variables}"
        return f"is Postgres up? run: invoke db.up; check: invoke db.url --service {service}"
    if error.kind == "database_error" and _not_owner(error):
        # Typically tables an operator created as another role (a superuser) by hand.
        return (
            "its tables belong to another role: migrate as the role the service uses (the "
            "owner of its database), or give them to it: ALTER TABLE ... OWNER TO <role>"
        )
    if error.kind == "database_error":
        return f"check the credentials and database in {variables}"
    if error.kind == "squashed_revision":
        target = error.revision or "the baseline"
        if in_container:
            return (
                f"deploy a release from before the squash first (it upgrades the database "
                f"to {target}), then this one"
            )
        return (
            f"upgrade it to {target} with the code from before the squash (git log -- the "
            f"baseline's file), e.g.: invoke migrate.upgrade --service {service} --target {target}"
        )
    if error.kind == "unknown_revision":
        return "deploy the newer version, or downgrade with the code that wrote it"
    if error.kind == "revision_failed":
        if in_container:
            return "fix that revision and deploy again"
        return f"fix that revision, then run: invoke migrate.upgrade --service {service}"
    if error.kind == "unsound_history":
        if in_container:
            return "this image's migrations are broken; build it from a history that validates"
        return "run: invoke migrate.validate --offline"
    if error.kind == "lock_timeout":
        return "another replica is migrating: this one restarts and finds it done"
    if error.kind == "lock_contention":
        return "the service restarts and retries; end those sessions if they never finish"
    if error.kind == "not_migrated":
        if in_container:
            return f"run the migrate step first: python -m {service} migrate (the migrate job)"
        return f"run the migrate step: invoke migrate.upgrade --service {service}"
    if error.kind in ("incompatible_database", "database_ahead"):
        return "deploy the newer version, or downgrade with the code that wrote it"
    if error.kind == "interrupted":
        return "the next start applies it again"
    if error.kind in ("leftover", "leftover_object"):
        if in_container:
            return "an operator must do that once, then the service starts"
        return f"then run: invoke migrate.upgrade --service {service}"
    return None


def _not_owner(error: SharedDbError) -> bool:
    text = str(error)
    return "permission denied for" in text or "must be owner of" in text


def one_line(error: SharedDbError, *, in_container: bool) -> str:
    """The error and its hint as one log line."""
    advice = hint(error, in_container=in_container)
    return f"{error}; {advice}" if advice else str(error)
