"""API keys: generated here, stored only as their SHA-256, checked with a constant-time compare.

A key reads ``sm_<prefix>_<secret>``: the 8-character hex prefix is stored in clear
(``ApiKey.key_prefix``) to find the candidate rows; the whole key is only ever hashed.
The functions that change rows commit.
"""

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime

from shared_db.models.api_gateway import ApiKey, ApiKeyScope
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

KEY_TAG = "sm"
PREFIX_BYTES = 4  # 8 hex characters
SECRET_BYTES = 32


def hash_key(plaintext: str) -> str:
    """The stored form of a key: its SHA-256, lowercase hex."""
    return hashlib.sha256(plaintext.encode()).hexdigest()


def generate_key() -> tuple[str, str, str]:
    """A new key: ``(plaintext, prefix, sha256 hex of the plaintext)``."""
    prefix = secrets.token_hex(PREFIX_BYTES)
    plaintext = f"{KEY_TAG}_{prefix}_{secrets.token_urlsafe(SECRET_BYTES)}"
    return plaintext, prefix, hash_key(plaintext)


def _prefix(plaintext: str) -> str | None:
    tag, sep, rest = plaintext.partition("_")
    prefix, sep2, secret = rest.partition("_")
    if tag != KEY_TAG or not sep or not sep2 or not secret:
        return None
    if len(prefix) != 2 * PREFIX_BYTES or not all(c in "0123456789abcdef" for c in prefix):
        return None
    return prefix


def create_key(session: Session, name: str, scopes: Iterable[str]) -> tuple[ApiKey, str]:
    """Store a new key granting ``scopes``; returns the row and the plaintext (shown once)."""
    plaintext, prefix, digest = generate_key()
    key = ApiKey(
        name=name,
        key_prefix=prefix,
        key_hash=digest,
        scopes=[ApiKeyScope(scope=scope) for scope in sorted(set(scopes))],
    )
    session.add(key)
    session.commit()
    return key, plaintext


def authenticate(session: Session, plaintext: str) -> ApiKey | None:
    """The unrevoked key ``plaintext`` is, with its scopes loaded; records its use."""
    prefix = _prefix(plaintext)
    if prefix is None:
        return None
    digest = hash_key(plaintext)
    candidates = session.scalars(
        select(ApiKey)
        .where(ApiKey.key_prefix == prefix, ApiKey.revoked_at.is_(None))
        .options(selectinload(ApiKey.scopes))
    ).all()
    for key in candidates:
        if hmac.compare_digest(key.key_hash, digest):
            key.last_used_at = datetime.now(UTC)
            session.commit()
            return key
    return None


def revoke(session: Session, key_id: int) -> ApiKey | None:
    """Revoke key ``key_id`` (a revoked key stays revoked at its first date); ``None`` if
    there is no such key."""
    key = session.get(ApiKey, key_id, options=[selectinload(ApiKey.scopes)])
    if key is None:
        return None
    if key.revoked_at is None:
        key.revoked_at = datetime.now(UTC)
        session.commit()
    return key
