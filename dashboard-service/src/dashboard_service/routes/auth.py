"""``/auth``: sign up, log in for a bearer token, and read the caller's own account."""

from __future__ import annotations

from typing import Final

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, URLEncodedBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from dashboard_service.errors import USERNAME_TAKEN
from dashboard_service.guards import (
    BAD_CREDENTIALS,
    NOT_AUTHENTICATED,
    USER_NOT_FOUND,
    unauthorized,
)
from dashboard_service.passwords import Passwords
from dashboard_service.routes._common import BEARER_AUTH, EXAMPLE_USER, public
from dashboard_service.routes._docs import error, ok
from dashboard_service.rules import check_password, clean_username
from dashboard_service.schemas import LoginForm, SignupRequest, TokenResponse, UserPublic
from dashboard_service.store import UserRecord, UserStore
from justchat.auth import create_token
from justchat.settings import Settings

BAD_LOGIN: Final = "Incorrect username or password"

_INVALID = error(
    "The body does not satisfy the rules",
    "Password must contain an uppercase letter and a digit.",
    "Usernames of the form Guest<number> are reserved for guests.",
)
_UNAUTHORIZED = error("No valid bearer token", NOT_AUTHENTICATED, BAD_CREDENTIALS)


class AuthController(Controller):
    path = "/auth"
    tags = ["auth"]

    @post(
        "/signup",
        status_code=HTTP_201_CREATED,
        summary="Create an account",
        description="Username 3-30 characters (surrounding spaces removed; Guest<number> is"
        " reserved); password 8+ characters with an uppercase letter, a lowercase letter and a"
        " digit.",
        responses={
            201: ok("The new account", EXAMPLE_USER),
            409: error("The username is taken", USERNAME_TAKEN),
            422: _INVALID,
        },
    )
    async def signup(
        self,
        data: JSONBody[SignupRequest],
        users: NamedDependency[UserStore],
        passwords: NamedDependency[Passwords],
    ) -> UserPublic:
        username = clean_username(data.username)
        check_password(data.password)
        user = await users.create(username, await passwords.hash(data.password))
        return public(user)

    @post(
        "/login",
        status_code=HTTP_200_OK,
        summary="Log in for a bearer token",
        description="Form-encoded (OAuth2 password style). The token authenticates REST calls"
        " and the WebSocket hello.",
        responses={
            200: ok(
                "A bearer token",
                TokenResponse(
                    access_token="eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9...",
                    token_type="bearer",
                    expires_in=900,
                ),
            ),
            401: error("Wrong credentials (also for guests)", BAD_LOGIN),
            422: error(
                "A form field is missing",
                "Invalid request: Object missing required field `password`",
            ),
        },
    )
    async def login(
        self,
        data: URLEncodedBody[LoginForm],
        users: NamedDependency[UserStore],
        passwords: NamedDependency[Passwords],
        settings: NamedDependency[Settings],
    ) -> TokenResponse:
        user = await users.by_username(data.username.strip())
        # Guests and unknown names cost one verification too: timing must not tell them apart.
        password_hash = user.password_hash if user is not None and not user.is_guest else None
        matches = await passwords.verify(password_hash, data.password)
        if user is None or not matches:
            raise unauthorized(BAD_LOGIN)
        token = create_token(
            user_id=user.id,
            username=user.username,
            role=user.role,
            secret=settings.jwt_secret,
            ttl_s=settings.token_ttl_s,
        )
        return TokenResponse(
            access_token=token, token_type="bearer", expires_in=settings.token_ttl_s
        )

    @get(
        "/me",
        security=BEARER_AUTH,
        summary="The caller's account",
        description="Requires `Authorization: Bearer <token>`.",
        responses={
            200: ok("The caller's account as stored now", EXAMPLE_USER),
            401: _UNAUTHORIZED,
            404: error("The account was deleted", USER_NOT_FOUND),
        },
    )
    async def me(self, current_user: NamedDependency[UserRecord]) -> UserPublic:
        return public(current_user)
