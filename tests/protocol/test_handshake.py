"""PROTOCOL.md section 3: the hello handshake, guests, JWTs, bad hellos and the timeout."""

from __future__ import annotations

import asyncio
import json
import re
import time

import jwt
import pytest
import redis.asyncio as aioredis

from justchat.keys import Keys
from justchat.settings import Settings

INVALID_HELLO = "Invalid HELLO message"
GUEST_NAME = re.compile(r"^Guest[0-9]+$")
HANDSHAKE_TIMEOUT_S = Settings().handshake_timeout_s  # the protocol stack runs at the defaults


def hello(payload: object, **envelope: object) -> str:
    return json.dumps({"type": "hello", "payload": payload, **envelope})


def token(secret: str, **claims: object) -> str:
    now = int(time.time())
    body = {"sub": "1", "username": "someone", "role": "user", "iat": now, "exp": now + 600}
    body.update(claims)
    return jwt.encode({k: v for k, v in body.items() if v is not None}, secret, algorithm="HS256")


async def test_handshake_guest_hello_creates_a_guest(proto) -> None:
    ws = await proto.raw()
    await ws.send(hello({}))
    reply = await proto.recv_json(ws)
    assert reply["type"] == "hello"
    assert set(reply["payload"]) == {"token", "user"}
    assert reply["payload"]["token"] is None
    user = reply["payload"]["user"]
    assert set(user) == {"username", "is_guest"}
    assert user["is_guest"] is True
    assert GUEST_NAME.match(user["username"]), user


async def test_handshake_guest_naming_unique(proto) -> None:
    results = await asyncio.gather(*(proto.hello(i % 2) for i in range(30)))
    names = [reply["payload"]["user"]["username"] for _, reply in results]
    assert all(GUEST_NAME.match(name) for name in names), names
    assert len(set(names)) == len(names)


async def test_handshake_guest_naming_not_limited_to_10000(proto, redis_url: str) -> None:
    # The original server named guests from 10,000 names; push the counter past that.
    redis = aioredis.Redis.from_url(redis_url)
    try:
        await redis.incrby(Keys(proto.stack.config.env["JUSTCHAT_REDIS_PREFIX"]).guest_seq, 10_000)
    finally:
        await redis.aclose()
    results = await asyncio.gather(*(proto.hello(i % 2) for i in range(5)))
    names = [reply["payload"]["user"]["username"] for _, reply in results]
    assert len(set(names)) == 5
    assert all(int(name.removeprefix("Guest")) > 10_000 for name in names), names


async def test_handshake_guest_appears_in_dashboard_user_list(proto) -> None:
    admin = await proto.staff("admin")
    _, reply = await proto.hello(1)
    name = reply["payload"]["user"]["username"]
    headers = {"Authorization": f"Bearer {admin.token}"}
    deadline = time.monotonic() + 10
    while True:
        listed = await proto.api.get(
            "/dashboard/users/", params={"search": name, "page_size": 100}, headers=headers
        )
        assert listed.status_code == 200, listed.text
        users = [u for u in listed.json()["users"] if u["username"] == name]
        if users or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert len(users) == 1, listed.json()
    assert users[0]["is_guest"] is True


async def test_handshake_token_hello_is_the_account(proto, registered) -> None:
    ws = await proto.raw(1)
    await ws.send(hello({"token": registered["token"]}))
    reply = await proto.recv_json(ws)
    assert reply["type"] == "hello"
    assert reply["payload"] == {
        "token": None,
        "user": {"username": registered["username"], "is_guest": False},
    }


async def test_handshake_jwt_sub_is_the_decimal_user_id(proto, registered, jwt_secret) -> None:
    claims = jwt.decode(registered["token"], jwt_secret, algorithms=["HS256"])
    assert claims["sub"] == registered["id"]
    assert claims["sub"].isdecimal()
    assert jwt.get_unverified_header(registered["token"])["alg"] == "HS256"
    # A token minted by anyone holding the secret, in that shape, is accepted.
    minted = token(jwt_secret, sub=registered["id"], username=registered["username"])
    _, reply = await proto.hello(token=minted)
    assert reply["payload"]["user"] == {"username": registered["username"], "is_guest": False}


@pytest.mark.parametrize(
    "case",
    [
        "garbage",
        "empty",
        "wrong-secret",
        "expired",
        "no-exp",
        "no-sub",
        "sub-not-decimal",
        "sub-a-number",
        "alg-none",
        "alg-hs512",
    ],
)
async def test_handshake_bad_token_closes_1000_with_reason(
    proto, jwt_secret: str, case: str
) -> None:
    now = int(time.time())
    bad = {
        "garbage": "not.a.jwt",
        "empty": "",
        "wrong-secret": token("s" * 48),
        "expired": token(jwt_secret, iat=now - 3600, exp=now - 60),
        "no-exp": token(jwt_secret, exp=None),
        "no-sub": token(jwt_secret, sub=None),
        "sub-not-decimal": token(jwt_secret, sub="user-1"),
        "sub-a-number": token(jwt_secret, sub=1),
        "alg-none": jwt.encode(
            {"sub": "1", "username": "x", "exp": now + 600}, key=None, algorithm="none"
        ),
        "alg-hs512": jwt.encode(
            {"sub": "1", "username": "x", "exp": now + 600}, jwt_secret, algorithm="HS512"
        ),
    }[case]
    ws = await proto.raw()
    await ws.send(hello({"token": bad}))
    code, reason, frames = await proto.closed_with(ws)
    assert code == 1000
    assert reason.startswith("Authentication failed: ")
    assert reason.removeprefix("Authentication failed: ").strip()
    assert not any(json.loads(f)["type"] == "hello" for f in frames)


async def test_handshake_expired_token_reason_says_so(proto, jwt_secret: str) -> None:
    now = int(time.time())
    ws = await proto.raw(1)
    await ws.send(hello({"token": token(jwt_secret, iat=now - 3600, exp=now - 1)}))
    _, reason, _ = await proto.closed_with(ws)
    assert "expired" in reason


@pytest.mark.parametrize(
    "first",
    [
        json.dumps({"type": "chat_send", "payload": {"channel_id": 1, "content": "x"}}),
        json.dumps({"type": "channel_join", "payload": {"channel_id": 1}}),
        json.dumps({"type": "nope", "payload": {}}),
        "not json",
        "[]",
        json.dumps({"type": "hello"}),
        json.dumps({"type": "hello", "payload": []}),
        json.dumps({"type": "hello", "payload": None}),
        json.dumps({"type": "hello", "payload": {"token": 5}}),
        json.dumps({"payload": {}}),
        json.dumps({"type": "hello", "payload": {}, "id": "not-a-uuid"}),
        json.dumps({"type": "hello", "payload": {}, "timestamp": "noon"}),
        b"\x00binary",
        json.dumps({"type": "hello", "payload": {}}).encode(),
    ],
)
async def test_handshake_bad_hello_gets_error_then_close_1000(proto, first: str | bytes) -> None:
    ws = await proto.raw()
    await ws.send(first)
    code, reason, frames = await proto.closed_with(ws)
    assert len(frames) == 1
    assert json.loads(frames[0])["type"] == "error"
    assert json.loads(frames[0])["payload"] == {"detail": INVALID_HELLO}
    assert (code, reason) == (1000, INVALID_HELLO)


async def test_handshake_hello_reply_comes_before_anything_else(proto, channel_id: int) -> None:
    ws = await proto.raw()
    # The client does not wait: hello and a join in one burst.
    await ws.send(hello({}))
    await ws.send(json.dumps({"type": "channel_join", "payload": {"channel_id": channel_id}}))
    first = await proto.recv_json(ws)
    assert first["type"] == "hello"
    assert (await proto.recv_json(ws))["type"] == "channel_members"


async def test_handshake_hello_reply_goes_to_this_socket_only(proto, channel_id: int) -> None:
    watchers = [await proto.connect(0), await proto.connect(1)]
    for watcher in watchers:
        await proto.joined(watcher, channel_id)
    await proto.collect(watchers[0], 0.3)
    await proto.hello(0)
    await proto.hello(1)
    await proto.quiet(*watchers)


async def test_handshake_hello_after_the_handshake_is_not_a_second_hello(proto) -> None:
    ws, first = await proto.hello()
    await ws.send(hello({}))
    error = await proto.recv_json(ws)
    assert error["type"] == "error"
    assert error["payload"]["detail"] == "Invalid message format"
    # Still the same user, still connected.
    await ws.send(
        json.dumps({"type": "channel_join", "payload": {"channel_id": proto.new_channel()}})
    )
    members = await proto.recv_json(ws)
    assert members["payload"]["members"] == [first["payload"]["user"]]


async def test_handshake_timeout_closes_a_silent_socket(proto) -> None:
    ws = await proto.raw(1)
    started = time.monotonic()
    code, _, frames = await proto.closed_with(ws, timeout_s=HANDSHAKE_TIMEOUT_S + 8)
    elapsed = time.monotonic() - started
    assert frames == []
    assert code == 1000
    assert HANDSHAKE_TIMEOUT_S - 0.5 <= elapsed <= HANDSHAKE_TIMEOUT_S + 5, elapsed
