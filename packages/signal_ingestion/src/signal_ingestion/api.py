"""The signal_ingestion API: signals received from their sources, each recorded once."""

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import AliasPath, BaseModel, ConfigDict, Field
from shared_db.models.signal_ingestion import Signal, SignalSource
from shared_db.web.app import session
from shared_db.web.inputs import JsonObject, RequestBody, StorableText
from shared_db.web.pagination import PAGINATED, Paging, page
from shared_db.web.problem_details import HttpProblem
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, contains_eager, joinedload

router = APIRouter(tags=["signals"])
Db = Annotated[Session, Depends(session)]

# The kind of a source created on the fly by its first signal posted to this API.
API_SOURCE_KIND = "api"


class SignalIn(RequestBody):
    source: StorableText = Field(min_length=1, max_length=128)
    # Bounded so that (source_id, external_id) always fits a btree entry of the unique index.
    external_id: StorableText = Field(min_length=1, max_length=512)
    payload: JsonObject = Field(
        default_factory=dict, description="Any JSON object: at most 64 KiB, 32 levels deep."
    )


class SignalOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    source: str = Field(validation_alias=AliasPath("source", "name"))
    source_id: int
    external_id: str
    payload: dict[str, Any]
    received_at: datetime


class SourceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    kind: str
    active: bool
    created_at: datetime


def _source_id(db: Session, name: str) -> int:
    """The id of the source called ``name``, created (race-safely) if there is none."""
    by_name = select(SignalSource.id).where(SignalSource.name == name)
    found = db.scalar(by_name)
    if found is not None:
        return found
    db.execute(
        insert(SignalSource)
        .values(name=name, kind=API_SOURCE_KIND)
        .on_conflict_do_nothing(index_elements=[SignalSource.name])
    )
    return db.scalars(by_name).one()


def _signal(db: Session, signal_id: uuid.UUID) -> Signal:
    signal = db.get(Signal, signal_id, options=[joinedload(Signal.source)])
    if signal is None:
        raise HttpProblem(404, f"no signal {signal_id}")
    return signal


@router.post(
    "/signals",
    status_code=201,
    response_model=SignalOut,
    responses={200: {"model": SignalOut, "description": "Received before: the signal as stored"}},
)
def receive_signal(body: SignalIn, db: Db, response: Response) -> Signal:
    """Record a signal once per (source, external_id): 201 when new, else 200 with the
    signal already recorded, unchanged (the repeat's payload is ignored)."""
    source_id = _source_id(db, body.source)
    created_id = db.scalars(
        insert(Signal)
        .values(source_id=source_id, external_id=body.external_id, payload=body.payload)
        .on_conflict_do_nothing(index_elements=[Signal.source_id, Signal.external_id])
        .returning(Signal.id)
    ).one_or_none()
    db.commit()
    if created_id is not None:
        return _signal(db, created_id)
    response.status_code = 200
    return db.scalars(
        select(Signal)
        .options(joinedload(Signal.source))
        .where(Signal.source_id == source_id, Signal.external_id == body.external_id)
    ).one()


@router.get("/signals", response_model=list[SignalOut], responses=PAGINATED)
def list_signals(
    db: Db,
    paging: Paging,
    source: Annotated[StorableText | None, Query(min_length=1, max_length=128)] = None,
) -> list[Signal]:
    """The newest signals first, optionally only those of the source called ``source``."""
    query = select(Signal).join(Signal.source).options(contains_eager(Signal.source))
    if source is not None:
        query = query.where(SignalSource.name == source)
    return page(db, query, (Signal.received_at, Signal.id), paging, descending=True)


@router.get("/signals/{signal_id}", response_model=SignalOut)
def get_signal(signal_id: uuid.UUID, db: Db) -> Signal:
    return _signal(db, signal_id)


@router.get("/sources", response_model=list[SourceOut], responses=PAGINATED)
def list_sources(db: Db, paging: Paging) -> list[SignalSource]:
    """The sources, by name."""
    return page(db, select(SignalSource), (SignalSource.name,), paging)
