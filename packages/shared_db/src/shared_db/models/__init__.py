"""SQLAlchemy models, one module and one MetaData per service."""

from importlib import import_module

from sqlalchemy import MetaData

from shared_db.services import check_service


def metadata_for(service: str) -> MetaData:
    """The MetaData of ``service``'s models (imported on first use, not at package import)."""
    module = import_module(f"shared_db.models.{check_service(service)}")
    metadata: MetaData = module.Base.metadata
    return metadata
