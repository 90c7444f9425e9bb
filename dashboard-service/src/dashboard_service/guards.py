"""Who is calling: bearer-token claims, the current user, and role guards for the dashboard."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.exceptions import NotAuthorizedException, NotFoundException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from dashboard_service.deps import services_of, settings_of
from dashboard_service.store import UserRecord, UserStore
from justchat.auth import Claims, verify_token
from justchat.errors import AuthError

NOT_AUTHENTICATED: Final = "Not authenticated"
BAD_CREDENTIALS: Final = "Could not validate credentials"
USER_NOT_FOUND: Final = "User not found"
FORBIDDEN: Final = "You don't have permission to access this resource."
CHALLENGE: Final = {"WWW-Authenticate": "Bearer"}

Connection = ASGIConnection[Any, Any, Any, Any]
Guard = Callable[[Connection, BaseRouteHandler], Awaitable[None]]

# Keys in the per-request scope state: a guard and a dependency of one request share the work.
_CLAIMS: Final = "dashboard.claims"
_USER: Final = "dashboard.user"


def unauthorized(detail: str) -> NotAuthorizedException:
    return NotAuthorizedException(detail=detail, headers=CHALLENGE)


def bearer_claims(connection: Connection) -> Claims:
    """The verified claims of the request's bearer token; 401 without one or with a bad one."""
    cached: Claims | None = connection.state.get(_CLAIMS)
    if cached is not None:
        return cached
    scheme, _, token = connection.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise unauthorized(NOT_AUTHENTICATED)
    try:
        claims = verify_token(token, settings_of(connection.app.state).jwt_secret)
    except AuthError as exc:
        raise unauthorized(BAD_CREDENTIALS) from exc
    connection.state[_CLAIMS] = claims
    return claims


async def _load_user(connection: Connection, users: UserStore) -> UserRecord:
    cached: UserRecord | None = connection.state.get(_USER)
    if cached is not None:
        return cached
    user = await users.by_id(bearer_claims(connection).user_id)
    if user is None:
        raise NotFoundException(detail=USER_NOT_FOUND)
    connection.state[_USER] = user
    return user


async def provide_current_user(
    request: Request[Any, Any, Any], users: NamedDependency[UserStore]
) -> UserRecord:
    """Dependency ``current_user``: the caller's row, read fresh (404 if it was deleted)."""
    return await _load_user(request, users)


def require_roles(*roles: str) -> Guard:
    """A guard admitting only users whose role, as stored now, is one of ``roles``.

    The database decides rather than the token's claim, so a demotion takes effect at once
    instead of when the token expires.
    """
    allowed = frozenset(roles)

    async def guard(connection: Connection, _: BaseRouteHandler) -> None:
        try:
            user = await _load_user(connection, services_of(connection.app.state).users)
        except NotFoundException as exc:
            # A token for a deleted account identifies nobody.
            raise unauthorized(BAD_CREDENTIALS) from exc
        if user.role not in allowed:
            raise PermissionDeniedException(detail=FORBIDDEN)

    return guard
