"""Models of the marketplace_publisher service: listings and their publications.

A listing is published at most once per channel (``uq_publications_listing_id_channel``).
"""

from datetime import datetime

from sqlalchemy import (
    CHAR,
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from shared_db.models.base import service_metadata


class Base(DeclarativeBase):
    metadata = service_metadata()


class Listing(Base):
    """A product offered on the marketplaces, priced in minor units of ``currency``."""

    __tablename__ = "listings"
    __table_args__ = (CheckConstraint("price_cents >= 0", name="price_cents_non_negative"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    sku: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(Text)
    price_cents: Mapped[int]
    currency: Mapped[str] = mapped_column(CHAR(3), server_default=text("'USD'"))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("now()")
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("now()"), onupdate=func.now()
    )

    publications: Mapped[list["Publication"]] = relationship(
        back_populates="listing", cascade="all, delete-orphan", passive_deletes=True
    )


class Publication(Base):
    """A listing on one sales channel, from draft to published."""

    __tablename__ = "publications"
    __table_args__ = (UniqueConstraint("listing_id", "channel"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    listing_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("listings.id", ondelete="CASCADE")
    )
    channel: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, server_default=text("'draft'"), index=True)
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    listing: Mapped[Listing] = relationship(back_populates="publications")
