"""PROTOCOL.md sections 1 and 7 through the running stack: the shapes a browser client relies on
(signup, login, me), the token's life, errors as {"detail": str}, and CORS for the REST API.
The dashboard's routes have their own tests in dashboard-service/tests."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import jwt
import pytest

ORIGIN = "https://chat.example.org"
USER_PUBLIC = {"id", "username", "is_guest", "created_at", "role"}


def name() -> str:
    return f"r{secrets.token_hex(5)}"


async def test_rest_signup_returns_user_public(proto) -> None:
    username = name()
    before = datetime.now(UTC) - timedelta(seconds=5)
    created = await proto.api.post(
        "/auth/signup", json={"username": f"  {username} ", "password": "Secret-pass1"}
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert set(body) == USER_PUBLIC
    assert isinstance(body["id"], int)
    assert body["username"] == username  # stripped
    assert body["is_guest"] is False
    assert body["role"] == "user"
    stamp = datetime.fromisoformat(body["created_at"])
    assert stamp.utcoffset() == timedelta(0)
    assert before <= stamp <= datetime.now(UTC) + timedelta(seconds=5)


async def test_rest_signup_duplicate_is_409(proto) -> None:
    username = name()
    body = {"username": username, "password": "Secret-pass1"}
    assert (await proto.api.post("/auth/signup", json=body)).status_code == 201
    again = await proto.api.post("/auth/signup", json=body)
    assert again.status_code == 409
    assert again.json() == {"detail": "Username already exists."}


@pytest.mark.parametrize(
    "body",
    [
        {"username": "ab", "password": "Secret-pass1"},
        {"username": "x" * 31, "password": "Secret-pass1"},
        {"username": "okname", "password": "Short1"},
        {"username": "okname", "password": "alllowercase1"},
        {"username": "okname", "password": "ALLUPPERCASE1"},
        {"username": "okname", "password": "NoDigitsHere"},
        {"username": "okname"},
    ],
)
async def test_rest_signup_validation_errors_have_a_string_detail(proto, body: dict) -> None:
    response = await proto.api.post("/auth/signup", json=body)
    assert 400 <= response.status_code < 500
    assert response.status_code != 409
    assert set(response.json()) == {"detail"}
    assert isinstance(response.json()["detail"], str)


async def test_rest_login_returns_a_bearer_token_for_15_minutes(
    proto, registered, jwt_secret: str
) -> None:
    login = await proto.api.post(
        "/auth/login",
        data={"username": registered["username"], "password": registered["password"]},
    )
    assert login.status_code == 200
    assert login.headers["content-type"].startswith("application/json")
    body = login.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 900
    claims = jwt.decode(body["access_token"], jwt_secret, algorithms=["HS256"])
    assert claims["sub"] == registered["id"]
    assert claims["exp"] - claims["iat"] == 900
    # The token opens a WebSocket as that account.
    _, hello = await proto.hello(1, token=body["access_token"])
    assert hello["payload"]["user"] == {"username": registered["username"], "is_guest": False}


@pytest.mark.parametrize("wrong", ["password", "username"])
async def test_rest_login_with_wrong_credentials_is_401(proto, registered, wrong: str) -> None:
    form = {"username": registered["username"], "password": registered["password"]}
    form[wrong] += "x"
    login = await proto.api.post("/auth/login", data=form)
    assert login.status_code == 401
    assert login.json() == {"detail": "Incorrect username or password"}


async def test_rest_login_takes_a_form_not_json(proto, registered) -> None:
    as_json = await proto.api.post(
        "/auth/login",
        json={"username": registered["username"], "password": registered["password"]},
    )
    assert as_json.status_code != 200
    assert isinstance(as_json.json()["detail"], str)


async def test_rest_me_is_the_callers_user_public(proto, registered) -> None:
    me = await proto.api.get("/auth/me", headers={"Authorization": f"Bearer {registered['token']}"})
    assert me.status_code == 200
    body = me.json()
    assert set(body) == USER_PUBLIC
    assert (body["id"], body["username"], body["is_guest"]) == (
        int(registered["id"]),
        registered["username"],
        False,
    )


@pytest.mark.parametrize("header", [None, "Bearer nonsense", "Basic dXNlcjpwYXNz"])
async def test_rest_me_without_a_valid_token_is_401(proto, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    me = await proto.api.get("/auth/me", headers=headers)
    assert me.status_code == 401
    assert isinstance(me.json()["detail"], str)


async def test_rest_dashboard_needs_staff(proto, registered) -> None:
    anonymous = await proto.api.get("/dashboard/users/")
    assert anonymous.status_code == 401
    assert anonymous.json() == {"detail": "Not authenticated"}
    plain = await proto.api.get(
        "/dashboard/users/", headers={"Authorization": f"Bearer {registered['token']}"}
    )
    assert plain.status_code == 403
    for role in ("moderator", "admin"):
        staff = await proto.account(role)
        for path in ("/dashboard/users/", "/dashboard/users"):
            listed = await proto.api.get(path, headers={"Authorization": f"Bearer {staff.token}"})
            assert listed.status_code == 200, (role, path, listed.text)
            assert set(listed.json()) == {"total_users", "total_pages", "users"}


@pytest.mark.parametrize("method", ["PATCH", "DELETE", "POST", "GET"])
async def test_rest_cors_preflight_allows_a_cross_origin_client(proto, method: str) -> None:
    response = await proto.api.options(
        "/dashboard/users/1",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "Authorization, Content-Type",
        },
    )
    assert 200 <= response.status_code < 300
    assert response.headers["access-control-allow-origin"] in (ORIGIN, "*")
    allowed_methods = response.headers["access-control-allow-methods"].upper()
    assert method in allowed_methods or "*" in allowed_methods
    allowed_headers = response.headers["access-control-allow-headers"].lower()
    assert "*" in allowed_headers or (
        "authorization" in allowed_headers and "content-type" in allowed_headers
    )


async def test_rest_cors_headers_on_actual_responses(proto, registered) -> None:
    me = await proto.api.get(
        "/auth/me",
        headers={"Origin": ORIGIN, "Authorization": f"Bearer {registered['token']}"},
    )
    assert me.status_code == 200
    assert me.headers["access-control-allow-origin"] in (ORIGIN, "*")
    login = await proto.api.post(
        "/auth/login",
        data={"username": registered["username"], "password": "wrong-Pass1"},
        headers={"Origin": ORIGIN},
    )
    assert login.status_code == 401
    # Even errors must be readable by the cross-origin client.
    assert login.headers["access-control-allow-origin"] in (ORIGIN, "*")


async def test_rest_cors_preflight_for_signup_json(proto) -> None:
    response = await proto.api.options(
        "/auth/signup",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert 200 <= response.status_code < 300
    assert response.headers["access-control-allow-origin"] in (ORIGIN, "*")


async def test_rest_messages_sent_over_the_socket_survive_their_sender(
    proto, channel_id: int, registered
) -> None:
    admin = await proto.staff("admin")
    headers = {"Authorization": f"Bearer {admin.token}"}
    member = await proto.connect(0, token=registered["token"])
    await proto.joined(member, channel_id)
    for text in ("first words", "last words"):
        await proto.echo(member, channel_id, text)
    listed = await proto.api.get(f"/dashboard/users/{registered['id']}/messages", headers=headers)
    assert listed.status_code == 200
    assert listed.json()["count"] == 2
    newest = listed.json()["messages"]
    assert [(m["channel_id"], m["sender_username"], m["content"]) for m in newest] == [
        (channel_id, registered["username"], "last words"),
        (channel_id, registered["username"], "first words"),
    ]
    assert all(datetime.fromisoformat(m["timestamp"]).utcoffset() == timedelta(0) for m in newest)
    await proto.hang_up(member)
    deleted = await proto.api.delete(f"/dashboard/users/{registered['id']}", headers=headers)
    assert deleted.status_code == 204
    gone = await proto.api.get(f"/dashboard/users/{registered['id']}", headers=headers)
    assert gone.status_code == 404
    assert gone.json() == {"detail": "User not found"}
    # The messages remain, attributed by username, with the sender's real is_guest.
    reader = await proto.connect(1)
    history = [
        f for f in await proto.joined(reader, channel_id) if f.__struct_config__.tag == "chat_send"
    ]
    assert [
        (f.payload.sender.username, f.payload.sender.is_guest, f.payload.content) for f in history
    ] == [
        (registered["username"], False, "first words"),
        (registered["username"], False, "last words"),
    ]
