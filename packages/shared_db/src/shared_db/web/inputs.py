"""Types for what clients send: text Postgres can store, JSON of bounded size and depth,
integers that fit their column.

Postgres cannot store a NUL character in ``text`` or ``jsonb``, and a lone UTF-16
surrogate (``"\\ud800"`` in JSON) is not UTF-8 at all: both are refused here with a 422
naming the field, before any query. JSON numbers must be finite (``NaN``, ``1e999``).
"""

import json
import math
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict

# The range of a BIGINT column (identities) and an INTEGER column.
BIGINT_MAX = 2**63 - 1
INT_MAX = 2**31 - 1
JSON_MAX_DEPTH = 32
JSON_MAX_BYTES = 64 * 1024
"""A stored JSON document at most this big (UTF-8): a page of 100 stays a few MB."""

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(value: str) -> str:
    """``value`` if Postgres can store it as text, else ``ValueError`` saying why."""
    found = _UNSTORABLE.search(value)
    if found is None:
        return value
    if found.group() == "\x00":
        raise ValueError("must not contain a NUL character (\\u0000)")
    raise ValueError(f"must not contain a lone surrogate (\\u{ord(found.group()):04x})")


def _check_json(value: Any, depth: int) -> None:
    """``depth``: how many arrays and objects hold ``value``."""
    if isinstance(value, str):
        storable(value)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must hold finite numbers only (no NaN or Infinity)")
    elif isinstance(value, dict | list):
        if depth >= JSON_MAX_DEPTH:
            raise ValueError(f"is nested deeper than {JSON_MAX_DEPTH} levels")
        for key, item in value.items() if isinstance(value, dict) else enumerate(value):
            if isinstance(key, str):
                storable(key)
            _check_json(item, depth + 1)


def storable_json(value: dict[str, Any]) -> dict[str, Any]:
    """``value`` if it can be stored as ``jsonb`` within the bounds, else ``ValueError``."""
    _check_json(value, 0)
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    if size > JSON_MAX_BYTES:
        raise ValueError(f"is {size} bytes of JSON; at most {JSON_MAX_BYTES} are accepted")
    return value


StorableText = Annotated[str, AfterValidator(storable)]
"""Text Postgres can store; give it bounds with ``Field``/``Query``/``Path``."""
JsonObject = Annotated[dict[str, Any], AfterValidator(storable_json)]


class RequestBody(BaseModel):
    """The base of request bodies: non-finite floats refused, unknown fields ignored."""

    model_config = ConfigDict(allow_inf_nan=False)
