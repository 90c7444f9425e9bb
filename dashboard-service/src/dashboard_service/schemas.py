"""Request and response bodies of the REST API (protocol section 7); pure data."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from msgspec import Meta, Struct


def _doc(description: str, example: Any) -> Meta:
    # Litestar reads descriptions and examples for OpenAPI from ``extra_json_schema`` only.
    return Meta(extra_json_schema={"description": description, "examples": [example]})


class SignupRequest(Struct, frozen=True, kw_only=True):
    username: Annotated[str, _doc("3-30 characters once surrounding spaces are removed", "alice")]
    password: Annotated[
        str,
        _doc("8+ characters with an uppercase letter, a lowercase letter and a digit", "Secret123"),
    ]


class LoginForm(Struct, frozen=True, kw_only=True):
    username: Annotated[str, _doc("the account's username", "alice")]
    password: Annotated[str, _doc("the account's password", "Secret123")]


class UserPublic(Struct, frozen=True, kw_only=True):
    id: Annotated[int, _doc("user id", 42)]
    username: Annotated[str, _doc("unique, case-sensitive", "alice")]
    is_guest: Annotated[bool, _doc("true for guests named by a gateway", False)]
    created_at: Annotated[datetime, _doc("UTC, ISO-8601", "2024-05-01T12:00:00.000000Z")]
    role: Annotated[str, _doc("admin, moderator, user or guest", "user")]


class TokenResponse(Struct, frozen=True, kw_only=True):
    access_token: Annotated[
        str,
        _doc(
            "HS256 JWT for the Authorization header and the gateway",
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9...",
        ),
    ]
    token_type: Annotated[str, _doc("always bearer", "bearer")]
    expires_in: Annotated[int, _doc("seconds until the token expires", 900)]


class GatewayUrl(Struct, frozen=True, kw_only=True):
    url: Annotated[str, _doc("WebSocket URL of a live gateway", "ws://127.0.0.1:8001/ws")]


class ErrorBody(Struct, frozen=True, kw_only=True):
    detail: Annotated[str, _doc("what went wrong, for people", "Username already exists.")]
