"""Models of the signal_ingestion service: the sources signals come from, and the signals.

A signal is identified by its source and the id the source gave it (``external_id``):
receiving the same signal twice is rejected by ``uq_signals_source_id_external_id``.
"""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Identity,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from shared_db.models.base import service_metadata


class Base(DeclarativeBase):
    metadata = service_metadata()


class SignalSource(Base):
    """A feed, webhook or poller that signals are received from."""

    __tablename__ = "signal_sources"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    active: Mapped[bool] = mapped_column(server_default=text("true"))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("now()")
    )

    signals: Mapped[list["Signal"]] = relationship(
        back_populates="source", cascade="all, delete-orphan", passive_deletes=True
    )


class Signal(Base):
    """One signal as received from its source, payload kept as sent."""

    __tablename__ = "signals"
    __table_args__ = (UniqueConstraint("source_id", "external_id"),)

    id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")
    )
    source_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("signal_sources.id", ondelete="CASCADE")
    )
    external_id: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("now()"), index=True
    )

    source: Mapped[SignalSource] = relationship(back_populates="signals")
