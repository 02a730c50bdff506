"""The marketplace_publisher API: listings, and their publication on sales channels."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response
from pydantic import BaseModel, ConfigDict, Field
from shared_db.models.marketplace_publisher import Listing, Publication
from shared_db.web.app import session
from shared_db.web.inputs import BIGINT_MAX, INT_MAX, RequestBody, StorableText
from shared_db.web.pagination import PAGINATED, Paging, page
from shared_db.web.problem_details import HttpProblem
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

router = APIRouter(tags=["listings"])
Db = Annotated[Session, Depends(session)]
ListingId = Annotated[int, Path(ge=1, le=BIGINT_MAX)]  # a BIGINT identity
Channel = Annotated[StorableText, Path(min_length=1, max_length=64)]
PUBLISHED, WITHDRAWN = "published", "withdrawn"


class ListingIn(RequestBody):
    sku: StorableText = Field(min_length=1, max_length=64)
    title: StorableText = Field(min_length=1, max_length=1000)
    price_cents: int = Field(ge=0, le=INT_MAX, strict=True)  # an INTEGER column
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")


class ListingOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    sku: str
    title: str
    price_cents: int
    currency: str
    created_at: datetime
    updated_at: datetime


class PublicationIn(RequestBody):
    channel: StorableText = Field(min_length=1, max_length=64)


class PublicationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    listing_id: int
    channel: str
    status: str
    published_at: datetime | None


def _listing(db: Session, listing_id: int) -> Listing:
    listing = db.get(Listing, listing_id)
    if listing is None:
        raise HttpProblem(404, f"no listing {listing_id}")
    return listing


def _publication(db: Session, listing_id: int, channel: str) -> Publication:
    """The publication as stored now (after a Core-level insert or update of it)."""
    return db.scalars(
        select(Publication)
        .where(Publication.listing_id == listing_id, Publication.channel == channel)
        .execution_options(populate_existing=True)
    ).one()


@router.post("/listings", status_code=201, response_model=ListingOut)
def create_listing(body: ListingIn, db: Db) -> Listing:
    """Create a listing; 409 if its sku is taken."""
    listing = db.scalars(
        insert(Listing)
        .values(**body.model_dump())
        .on_conflict_do_nothing(index_elements=[Listing.sku])
        .returning(Listing)
    ).one_or_none()
    if listing is None:
        raise HttpProblem(409, f"a listing with sku {body.sku!r} exists")
    db.commit()
    return listing


@router.get("/listings", response_model=list[ListingOut], responses=PAGINATED)
def list_listings(db: Db, paging: Paging) -> list[Listing]:
    """The newest listings first."""
    return page(db, select(Listing), (Listing.created_at, Listing.id), paging, descending=True)


@router.get("/listings/{listing_id}", response_model=ListingOut)
def get_listing(listing_id: ListingId, db: Db) -> Listing:
    return _listing(db, listing_id)


@router.post(
    "/listings/{listing_id}/publications",
    status_code=201,
    response_model=PublicationOut,
    responses={200: {"model": PublicationOut, "description": "Published there before"}},
)
def publish(listing_id: ListingId, body: PublicationIn, db: Db, response: Response) -> Publication:
    """Publish the listing on ``channel``: 201 when first published there; 200 when the
    publication exists (re-published, with a new ``published_at``, unless it already was)."""
    _listing(db, listing_id)
    created = db.scalars(
        insert(Publication)
        .values(
            listing_id=listing_id, channel=body.channel, status=PUBLISHED, published_at=func.now()
        )
        .on_conflict_do_nothing(index_elements=[Publication.listing_id, Publication.channel])
        .returning(Publication.id)
    ).one_or_none()
    if created is None:
        response.status_code = 200
        db.execute(
            update(Publication)
            .where(
                Publication.listing_id == listing_id,
                Publication.channel == body.channel,
                Publication.status != PUBLISHED,
            )
            .values(status=PUBLISHED, published_at=func.now())
        )
    db.commit()
    return _publication(db, listing_id, body.channel)


@router.get(
    "/listings/{listing_id}/publications", response_model=list[PublicationOut], responses=PAGINATED
)
def list_publications(listing_id: ListingId, db: Db, paging: Paging) -> list[Publication]:
    """The publications of a listing, by channel."""
    _listing(db, listing_id)
    query = select(Publication).where(Publication.listing_id == listing_id)
    return page(db, query, (Publication.channel,), paging)


@router.delete("/listings/{listing_id}/publications/{channel}", response_model=PublicationOut)
def withdraw(listing_id: ListingId, channel: Channel, db: Db) -> Publication:
    """Withdraw the listing from ``channel`` (``published_at`` is kept); 404 if it never
    was published there."""
    _listing(db, listing_id)
    withdrawn = db.scalars(
        update(Publication)
        .where(Publication.listing_id == listing_id, Publication.channel == channel)
        .values(status=WITHDRAWN)
        .returning(Publication.id)
    ).one_or_none()
    if withdrawn is None:
        raise HttpProblem(404, f"listing {listing_id} has no publication on {channel!r}")
    db.commit()
    return _publication(db, listing_id, channel)
