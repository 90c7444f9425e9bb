"""Input storage cannot hold is refused at the edge: 401 or 422 with a string ``detail``.

PostgreSQL text cannot hold U+0000, ``users.id`` is a bigint and ``channels.id`` an integer, and
chat-service binds a sanction's seconds as int4. Each case was a 500 (or a command that failed
in chat-service) before; now none reaches a query, so nothing is logged as an error either.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import httpx
import jwt
import pytest

from justchat import wire
from justchat.settings import Settings

USERS = "/api/v1/dashboard/users"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
JSON = {"Content-Type": "application/json"}
NUL_PATTERN = "NUL characters and lone surrogates are not allowed"


class Caller(Protocol):
    id: int
    username: str
    headers: dict[str, str]


MakeUser = Callable[..., Awaitable[Caller]]
AssertError = Callable[..., str]


@pytest.fixture
def no_error_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING)
    return caplog


def assert_nothing_logged(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert errors == [], [r.getMessage() for r in errors]


def bearer(settings: Settings, **claims: Any) -> dict[str, str]:
    """A token signed with the app's secret whose claims alone are wrong."""
    full = {"username": "alice", "role": "admin", "exp": int(time.time()) + 600, **claims}
    return {"Authorization": f"Bearer {jwt.encode(full, settings.jwt_secret, algorithm='HS256')}"}


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"sub": "9" * 30}, id="sub-30-digits"),
        pytest.param({"sub": str(2**63)}, id="sub-2**63"),
        pytest.param({"sub": "\u0662"}, id="sub-arabic-indic-2"),
        pytest.param({"sub": "\uff11"}, id="sub-fullwidth-1"),
        pytest.param({"sub": "1", "username": "a\x00"}, id="username-nul"),
        pytest.param({"sub": "1", "exp": 10**30}, id="exp-10**30"),
    ],
)
async def test_tokens_whose_claims_storage_cannot_hold_are_401(
    client: httpx.AsyncClient,
    settings: Settings,
    assert_error: AssertError,
    no_error_logs: pytest.LogCaptureFixture,
    claims: dict[str, Any],
) -> None:
    headers = bearer(settings, **claims)
    for path in ("/api/v1/auth/me", f"{USERS}/", "/api/v1/channels/7/messages"):
        response = await client.get(path, headers=headers)
        assert_error(response, 401, "Could not validate credentials")
    assert_nothing_logged(no_error_logs)


async def test_an_arabic_indic_subject_is_not_user_2(
    client: httpx.AsyncClient, settings: Settings, make_user: MakeUser
) -> None:
    admin = await make_user("admin")
    digits = str(admin.id).translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    response = await client.get("/api/v1/auth/me", headers=bearer(settings, sub=digits))
    assert response.status_code == 401, response.text
    # The same claims in ASCII digits are the admin: only the digits made the difference.
    response = await client.get("/api/v1/auth/me", headers=bearer(settings, sub=str(admin.id)))
    assert response.status_code == 200 and response.json()["id"] == admin.id


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param("GET", f"{USERS}?search=%00", None, id="users-search"),
        pytest.param("GET", f"{USERS}/?search=a%00b", None, id="users-search-slash"),
        pytest.param("GET", "/api/v1/dashboard/audit?actor=%00", None, id="audit-actor"),
        pytest.param("GET", "/api/v1/dashboard/audit?target=x%00", None, id="audit-target"),
        pytest.param("PATCH", "{user}", {"username": "ab\x00c"}, id="patch-username"),
        pytest.param("PATCH", "{user}", {"password": "Secret123\x00"}, id="patch-password"),
        pytest.param(
            "POST",
            "{sanctions}",
            {"username": "a\x00", "kind": "mute"},
            id="sanction-username",
        ),
        pytest.param(
            "POST",
            "{sanctions}",
            {"username": "{name}", "kind": "ban", "reason": "spam\x00"},
            id="sanction-reason",
        ),
        pytest.param("DELETE", "{sanctions}/mute/a%00b", None, id="lift-username"),
    ],
)
async def test_nul_in_any_string_is_422(
    client: httpx.AsyncClient,
    make_user: MakeUser,
    create_channel: Callable[[], Awaitable[int]],
    assert_nonempty_error: AssertError,
    no_error_logs: pytest.LogCaptureFixture,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    admin = await make_user("admin")
    target = await make_user()
    path = path.format(
        user=f"{USERS}/{target.id}",
        sanctions=f"/api/v1/dashboard/channels/{await create_channel()}/sanctions",
    )
    if body is not None:
        body = {k: v.format(name=target.username) for k, v in body.items()}
    response = await client.request(method, path, json=body, headers=admin.headers)
    detail = assert_nonempty_error(response, 422)
    # Usernames get the signup rules' own text; every other string the pattern's.
    assert detail.endswith(NUL_PATTERN) or "control characters" in detail, detail
    assert_nothing_logged(no_error_logs)


async def test_nul_in_signup_and_login_is_422(
    client: httpx.AsyncClient,
    assert_nonempty_error: AssertError,
    no_error_logs: pytest.LogCaptureFixture,
) -> None:
    for body in (
        {"username": "ab\x00cd", "password": "Secret123"},
        {"username": "abcdef", "password": "Secret123\x00"},
    ):
        response = await client.post("/api/v1/auth/signup", json=body)
        assert_nonempty_error(response, 422)
    for form in (b"username=%00&password=Secret123", b"username=alice&password=%00"):
        response = await client.post("/api/v1/auth/login", content=form, headers=FORM)
        detail = assert_nonempty_error(response, 422)
        assert detail.endswith(NUL_PATTERN), detail
    assert_nothing_logged(no_error_logs)


async def test_an_escaped_lone_surrogate_is_a_client_error(
    client: httpx.AsyncClient,
    assert_nonempty_error: AssertError,
    no_error_logs: pytest.LogCaptureFixture,
) -> None:
    body = b'{"username": "abc\\ud800", "password": "Secret123"}'
    response = await client.post("/api/v1/auth/signup", content=body, headers=JSON)
    assert_nonempty_error(response, 400)  # Litestar: the JSON does not decode
    assert_nothing_logged(no_error_logs)


@pytest.mark.parametrize("duration", [2**31, 2**63, 10**30])
async def test_a_sanction_longer_than_int4_seconds_is_422(
    client: httpx.AsyncClient,
    make_user: MakeUser,
    create_channel: Callable[[], Awaitable[int]],
    assert_error: AssertError,
    duration: int,
) -> None:
    admin = await make_user("admin")
    target = await make_user()
    channel_id = await create_channel()
    response = await client.post(
        f"/api/v1/dashboard/channels/{channel_id}/sanctions",
        json={"username": target.username, "kind": "mute", "duration_s": duration},
        headers=admin.headers,
    )
    assert_error(
        response, 422, f"Invalid request: duration_s: Expected `int` <= {wire.MAX_SANCTION_S}"
    )


@pytest.mark.parametrize("value", ["\u0662", "1_0", "\uff11", "+", "1.0", "0x10"])
async def test_integer_query_values_are_ascii_digits(
    client: httpx.AsyncClient,
    make_user: MakeUser,
    create_channel: Callable[[], Awaitable[int]],
    assert_error: AssertError,
    value: str,
) -> None:
    admin = await make_user("admin")
    channel_id = await create_channel()
    response = await client.get(
        "/api/v1/dashboard/audit", params={"channel_id": value}, headers=admin.headers
    )
    assert_error(response, 422, "Invalid request: channel_id: Expected a 32-bit integer")
    response = await client.get(
        f"/api/v1/channels/{channel_id}/messages",
        params={"before_seq": value},
        headers=admin.headers,
    )
    assert_error(response, 422, "Invalid request: before_seq: Expected an integer >= 0")


async def test_ascii_integer_query_values_still_work(
    client: httpx.AsyncClient,
    make_user: MakeUser,
    create_channel: Callable[[], Awaitable[int]],
) -> None:
    admin = await make_user("admin")
    channel_id = await create_channel()
    for params in ({"channel_id": str(channel_id)}, {"channel_id": f" -{wire.INT32_MAX} "}):
        response = await client.get("/api/v1/dashboard/audit", params=params, headers=admin.headers)
        assert response.status_code == 200, response.text
    response = await client.get(
        f"/api/v1/channels/{channel_id}/messages",
        params={"before_seq": str(2**70)},  # beyond any seq: the newest page
        headers=admin.headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["messages"] == []


@pytest.mark.parametrize(
    "params",
    [
        {"actor": "a" * (wire.MAX_NAME_CHARS + 1)},
        {"target": "t" * (wire.MAX_NAME_CHARS + 1)},
    ],
)
async def test_audit_name_filters_are_at_most_a_name_long(
    client: httpx.AsyncClient,
    make_user: MakeUser,
    assert_nonempty_error: AssertError,
    params: dict[str, str],
) -> None:
    admin = await make_user("admin")
    response = await client.get("/api/v1/dashboard/audit", params=params, headers=admin.headers)
    assert_nonempty_error(response, 422)
