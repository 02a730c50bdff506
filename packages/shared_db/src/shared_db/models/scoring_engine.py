"""Models of the scoring_engine service: scores of signals, and generated mockups.

Mockups live in their own Postgres schema, ``mockups``, created by the
``generated_mockups`` branch of the history.
"""

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Numeric,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from shared_db.models.base import service_metadata

MOCKUPS_SCHEMA = "mockups"


class Base(DeclarativeBase):
    metadata = service_metadata()


class Score(Base):
    """A score computed for one signal (signals are owned by signal_ingestion)."""

    __tablename__ = "scores"
    __table_args__ = (
        CheckConstraint("value >= 0 AND value <= 1", name="value_range"),
        Index("ix_scores_signal_id", "signal_id"),
        Index("ix_scores_status_created_at", "status", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")
    )
    signal_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    value: Mapped[Decimal] = mapped_column(Numeric(6, 5))
    model_version: Mapped[str] = mapped_column(String(64), server_default=text("'v1'"))
    status: Mapped[str] = mapped_column(String(16), server_default=text("'pending'"))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("now()")
    )

    explanation: Mapped["ScoreExplanation | None"] = relationship(back_populates="score")
    feedback: Mapped[list["ScoreFeedback"]] = relationship(back_populates="score")
    mockups: Mapped[list["Mockup"]] = relationship(back_populates="score")


class ScoreExplanation(Base):
    """Why a score has its value: the features that weighed most."""

    __tablename__ = "score_explanations"

    score_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("scores.id", ondelete="CASCADE"), primary_key=True
    )
    features: Mapped[dict[str, float]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))

    score: Mapped[Score] = relationship(back_populates="explanation")


class ScoreFeedback(Base):
    """A human verdict on a score, used to retrain models."""

    __tablename__ = "score_feedback"

    id: Mapped[int] = mapped_column(Identity(), primary_key=True)
    score_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("scores.id", ondelete="CASCADE"), index=True
    )
    verdict: Mapped[str] = mapped_column(String(16))
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("now()")
    )

    score: Mapped[Score] = relationship(back_populates="feedback")


class Mockup(Base):
    """A rendered mockup generated for a score."""

    __tablename__ = "mockups"
    __table_args__ = ({"schema": MOCKUPS_SCHEMA},)

    id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")
    )
    score_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("scores.id", ondelete="CASCADE"), index=True
    )
    template: Mapped[str] = mapped_column(String(64))
    image_uri: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), server_default=text("'queued'"))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("now()")
    )

    score: Mapped[Score] = relationship(back_populates="mockups")
