"""The scoring_engine API: scores computed for signals, and their mockups."""

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field
from shared_db.models.scoring_engine import Mockup, Score
from shared_db.web.app import session
from shared_db.web.inputs import RequestBody, StorableText
from shared_db.web.pagination import PAGINATED, Paging, page
from shared_db.web.problem_details import HttpProblem
from sqlalchemy import select
from sqlalchemy.orm import Session

router = APIRouter(tags=["scores"])
Db = Annotated[Session, Depends(session)]
Status = Literal["pending", "scored", "rejected"]


class ScoreIn(RequestBody):
    signal_id: uuid.UUID
    value: Decimal = Field(ge=0, le=1, max_digits=6, decimal_places=5)
    model_version: StorableText = Field(default="v1", min_length=1, max_length=64)


class ScoreOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    signal_id: uuid.UUID
    value: Decimal
    model_version: str
    status: str
    created_at: datetime


class MockupIn(RequestBody):
    template: StorableText = Field(min_length=1, max_length=64)


class MockupOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    score_id: uuid.UUID
    template: str
    status: str
    image_uri: str | None
    created_at: datetime


def _score(db: Session, score_id: uuid.UUID) -> Score:
    score = db.get(Score, score_id)
    if score is None:
        raise HttpProblem(404, f"no score {score_id}")
    return score


@router.post("/scores", status_code=201, response_model=ScoreOut)
def create_score(body: ScoreIn, db: Db) -> Score:
    """Record a score for a signal; its status starts as ``pending`` (database default)."""
    score = Score(signal_id=body.signal_id, value=body.value, model_version=body.model_version)
    db.add(score)
    db.commit()
    db.refresh(score)
    return score


@router.get("/scores", response_model=list[ScoreOut], responses=PAGINATED)
def list_scores(
    db: Db, paging: Paging, status: Status | None = None, signal_id: uuid.UUID | None = None
) -> list[Score]:
    """The newest scores first, optionally only those of one status or signal."""
    query = select(Score)
    if status is not None:
        query = query.where(Score.status == status)
    if signal_id is not None:
        query = query.where(Score.signal_id == signal_id)
    return page(db, query, (Score.created_at, Score.id), paging, descending=True)


@router.get("/scores/{score_id}", response_model=ScoreOut)
def get_score(score_id: uuid.UUID, db: Db) -> Score:
    return _score(db, score_id)


@router.post("/scores/{score_id}/mockups", status_code=201, response_model=MockupOut)
def create_mockup(score_id: uuid.UUID, body: MockupIn, db: Db) -> Mockup:
    """Queue a mockup rendering for a score (status starts ``queued``)."""
    _score(db, score_id)
    mockup = Mockup(score_id=score_id, template=body.template)
    db.add(mockup)
    db.commit()
    db.refresh(mockup)
    return mockup


@router.get("/scores/{score_id}/mockups", response_model=list[MockupOut], responses=PAGINATED)
def list_mockups(score_id: uuid.UUID, db: Db, paging: Paging) -> list[Mockup]:
    """The mockups of a score, oldest first."""
    _score(db, score_id)
    query = select(Mockup).where(Mockup.score_id == score_id)
    return page(db, query, (Mockup.created_at, Mockup.id), paging)
