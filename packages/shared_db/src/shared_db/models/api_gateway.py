"""Models of the api_gateway service: API keys and the scopes they grant.

Only a key's SHA-256 (lowercase hex) is stored, with its first characters
(``key_prefix``) to find candidate keys; a revoked key keeps its row.
"""

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    String,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from shared_db.models.base import service_metadata


class Base(DeclarativeBase):
    metadata = service_metadata()


class ApiKey(Base):
    """An API key, stored as its hash; revoked when ``revoked_at`` is set."""

    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint("key_hash ~ '^[0-9a-f]{64}$'", name="key_hash_sha256_hex"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    key_prefix: Mapped[str] = mapped_column(Text, index=True)
    key_hash: Mapped[str] = mapped_column(Text, unique=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("now()")
    )
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    scopes: Mapped[list["ApiKeyScope"]] = relationship(
        back_populates="api_key", cascade="all, delete-orphan", passive_deletes=True
    )


class ApiKeyScope(Base):
    """One scope (e.g. ``signals:read``) granted to an API key."""

    __tablename__ = "api_key_scopes"

    api_key_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True
    )
    scope: Mapped[str] = mapped_column(Text, primary_key=True)

    api_key: Mapped[ApiKey] = relationship(back_populates="scopes")
