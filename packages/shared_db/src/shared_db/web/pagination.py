"""Keyset pagination of list endpoints: ``?limit=`` (at most 100) and an opaque
``?cursor=``; the body stays a JSON list, and a ``Link: <?...>; rel="next"`` header
(RFC 8288) gives the next page while there is one.

The next link is a query-only reference, resolved against the URL the client asked
for: it works unchanged through the gateway's ``/<service>/...`` prefix. A cursor holds
the sort key of the last row of the page (``received_at, id``, ...), so pages stay
stable while rows are added, and each page is one index range scan, whatever its depth.
"""

import base64
import binascii
import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

from fastapi import Depends, Query, Request, Response
from sqlalchemy import Select, tuple_
from sqlalchemy.orm import InstrumentedAttribute, Session

from shared_db.web.inputs import BIGINT_MAX, storable
from shared_db.web.problem_details import HttpProblem

DEFAULT_LIMIT = 50
MAX_LIMIT = 100
MAX_CURSOR_LENGTH = 512

Limit = Annotated[
    int, Query(ge=1, le=MAX_LIMIT, description=f"Items per page, at most {MAX_LIMIT}.")
]
Cursor = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=MAX_CURSOR_LENGTH,
        pattern=r"^[A-Za-z0-9_-]+$",
        description='Where the page starts: from the previous page\'s `Link: rel="next"`.',
    ),
]
LINK_HEADER = {
    "Link": {
        "description": 'The next page, when there is one: `<?...&cursor=...>; rel="next"`.',
        "schema": {"type": "string"},
    }
}
PAGINATED: dict[int | str, dict[str, Any]] = {200: {"headers": LINK_HEADER}}
"""``responses=`` of a paginated route: documents the ``Link`` header."""

Row = TypeVar("Row")


class PageRequest:
    """The paging of a list request (a FastAPI dependency: ``paging: Paging``)."""

    def __init__(
        self,
        request: Request,
        response: Response,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> None:
        self.request, self.response, self.limit, self.cursor = request, response, limit, cursor


Paging = Annotated[PageRequest, Depends()]


def _encode(values: Sequence[Any]) -> str:
    plain = [str(v) if isinstance(v, uuid.UUID) else v for v in values]
    plain = [v.isoformat() if isinstance(v, datetime) else v for v in plain]
    raw = json.dumps(plain, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_value(value: Any, python_type: type) -> Any:
    if python_type is datetime and isinstance(value, str):
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            raise ValueError("a timestamp without a time zone")
        return parsed
    if python_type is uuid.UUID and isinstance(value, str):
        return uuid.UUID(value)
    if python_type is int and type(value) is int and -BIGINT_MAX - 1 <= value <= BIGINT_MAX:
        return value
    if python_type is str and isinstance(value, str):
        return storable(value)
    raise ValueError(f"{value!r} is not a {python_type.__name__}")


def decode_cursor(cursor: str, types: Sequence[type]) -> tuple[Any, ...]:
    """The sort key a cursor holds; a 422 problem naming ``cursor`` if it is not one."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
        if not isinstance(values, list) or len(values) != len(types):
            raise ValueError("not a cursor of this list")
        return tuple(_decode_value(v, t) for v, t in zip(values, types, strict=True))
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        raise HttpProblem(
            422,
            "invalid cursor: pass the one from the previous page's Link header",
            field="cursor",
        ) from None


def page(
    db: Session,
    query: Select[Row],
    keys: Sequence[InstrumentedAttribute[Any]],
    paging: PageRequest,
    *,
    descending: bool = False,
) -> list[Row]:
    """One page of ``query`` ordered by ``keys`` (unique together), after the cursor;
    sets the ``Link`` header when more rows follow."""
    key = tuple_(*keys)
    if paging.cursor is not None:
        after = decode_cursor(paging.cursor, [k.type.python_type for k in keys])
        query = query.where(key < tuple_(*after) if descending else key > tuple_(*after))
    order = [k.desc() if descending else k.asc() for k in keys]
    rows = list(db.scalars(query.order_by(*order).limit(paging.limit + 1)))
    if len(rows) > paging.limit:
        rows = rows[: paging.limit]
        params = [(n, v) for n, v in paging.request.query_params.multi_items() if n != "cursor"]
        params.append(("cursor", _encode([getattr(rows[-1], k.key) for k in keys])))
        paging.response.headers["Link"] = f'<?{urlencode(params)}>; rel="next"'
    return rows
