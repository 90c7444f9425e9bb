"""JWT (HS256) tokens and argon2id password hashes."""

from __future__ import annotations

import re
import time
from typing import Final, TypeGuard

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from msgspec import Struct

from justchat.errors import AuthError
from justchat.wire import INT64_MAX, MAX_NAME_CHARS, TEXT_PATTERN

ALGORITHM: Final = "HS256"
ROLES: Final = ("admin", "moderator", "user", "guest")
# users.id is a bigint from 1: ASCII digits (str.isdecimal takes "٢" as 2), no sign, no leading
# zero, so that a subject names one id, within the column's range (checked after parsing).
_SUBJECT: Final = re.compile("[1-9][0-9]{0,18}")
_NAME: Final = re.compile(TEXT_PATTERN)
_hasher: Final = PasswordHasher()  # argon2id with the library's (RFC 9106 low-memory) defaults


class Claims(Struct, frozen=True, kw_only=True):
    user_id: int
    username: str
    role: str
    expires_at: int


def create_token(
    *, user_id: int, username: str, role: str, secret: str, ttl_s: int, now: float | None = None
) -> str:
    issued = int(time.time() if now is None else now)
    claims = {
        "sub": str(user_id),
        "username": username,
        "role": role,
        "iat": issued,
        "exp": issued + ttl_s,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(token: str, secret: str) -> Claims:
    """Check signature and expiry; raise ``AuthError`` with a short reason."""
    try:
        data = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["sub", "exp"]}
        )
    except jwt.ExpiredSignatureError as exc:
        raise AuthError("token expired") from exc
    except jwt.InvalidTokenError as exc:
        raise AuthError("invalid token") from exc
    sub, username, role = data.get("sub"), data.get("username"), data.get("role", "user")
    if not isinstance(sub, str) or not _SUBJECT.fullmatch(sub) or int(sub) > INT64_MAX:
        raise AuthError("invalid subject")
    if not _is_name(username) or role not in ROLES:
        raise AuthError("invalid claims")
    expires_at = int(data["exp"])  # PyJWT has checked that it is a number in the future
    if expires_at > INT64_MAX:
        raise AuthError("invalid claims")
    return Claims(user_id=int(sub), username=username, role=role, expires_at=expires_at)


def _is_name(value: object) -> TypeGuard[str]:
    """A username that storage can hold (the token names the sender of what it sends)."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_NAME_CHARS
        and _NAME.match(value) is not None
    )


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
