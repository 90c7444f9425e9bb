"""``/api/v1/dashboard/channels/{id}/sanctions`` [ext]: mutes and bans over REST.

The REST routes put a ``ModerateCmd`` on the channel's command stream and wait for chat-service's
answer. Here the real chat-service runs in process (its app and stream consumer, on a Redis
prefix of this module's own), so every status is the one chat-service's decision leads to:
201/200 with the sanction, 204 for a lift, 403 with its refusal, 404, 422, and 503 only when no
chat-service answers in time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar, cast

import asyncpg
import httpx
import msgspec
import pytest
import redis.asyncio as aioredis
from litestar import Litestar

from dashboard_service import create_app
from justchat import events
from justchat.events import Actor, ModerateCmd
from justchat.keys import Keys, partition_of
from justchat.settings import Settings
from justchat.wire import MAX_SANCTION_S

ServeApp = Callable[[Litestar], AbstractAsyncContextManager[httpx.AsyncClient]]
Serve = Callable[[Settings], AbstractAsyncContextManager[httpx.AsyncClient]]
RunChatService = Callable[[Settings], AbstractAsyncContextManager[None]]
OwnPrefix = Callable[[Settings, str], Settings]
Entry = tuple[bytes, dict[bytes, bytes]]  # a stream entry as the client returns it
T = TypeVar("T")

NO_PERMISSION = "You don't have permission to run this command."
NO_ANSWER = "chat-service did not answer in time; the command may still take effect."
WAIT_S = 10.0  # for effects that follow an answer (a later chat-service applying a command)


class Caller(Protocol):
    id: int
    username: str
    role: str
    is_guest: bool
    headers: dict[str, str]


MakeUser = Callable[..., Awaitable[Caller]]
AssertError = Callable[..., str]  # the conftest fixtures' types


def sanctions_url(channel_id: int | str) -> str:
    return f"/api/v1/dashboard/channels/{channel_id}/sanctions"


async def eventually(what: str, check: Callable[[], Awaitable[T | None]]) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + WAIT_S
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def last_commands(redis: aioredis.Redis, stream: str, after: bytes) -> list[ModerateCmd]:
    entries = cast(list[Entry], await redis.xrange(stream, min=f"({after.decode()}"))
    decoded = [events.chat_command_decoder.decode(fields[b"c"]) for _, fields in entries]
    return [c for c in decoded if isinstance(c, ModerateCmd)]


async def stream_end(redis: aioredis.Redis, stream: str) -> bytes:
    last = cast(list[Entry], await redis.xrevrange(stream, count=1))
    return last[0][0] if last else b"0-0"


@pytest.fixture(scope="module")
def mod_settings(settings: Settings, with_own_prefix: OwnPrefix) -> Settings:
    return with_own_prefix(settings, "moderation")


@pytest.fixture(scope="module")
async def http(
    mod_settings: Settings, serve: Serve, chat_service: RunChatService
) -> AsyncIterator[httpx.AsyncClient]:
    """The dashboard, with the real chat-service applying its commands."""
    async with chat_service(mod_settings), serve(mod_settings) as client:
        yield client


@pytest.fixture
def stream_of(mod_settings: Settings) -> Callable[[int], str]:
    keys = Keys(mod_settings.redis_prefix)
    return lambda channel_id: keys.cmd_stream(partition_of(channel_id, mod_settings.partitions))


async def setup(
    make_user: MakeUser, create_channel: Callable[[], Awaitable[int]]
) -> tuple[int, Caller]:
    return await create_channel(), await make_user()


def when(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text)


async def sanction_rows(db: asyncpg.Pool, channel_id: int) -> list[tuple[str, str]]:
    rows = await db.fetch(
        "SELECT username, kind FROM sanctions WHERE channel_id = $1 ORDER BY username, kind",
        channel_id,
    )
    return [(r["username"], r["kind"]) for r in rows]


# -- 201 and 200: applied ------------------------------------------------------------------------


async def test_mute_is_applied_by_chat_service_and_answers_the_sanction(
    http: httpx.AsyncClient,
    redis: aioredis.Redis,
    mod_settings: Settings,
    stream_of: Callable[[int], str],
    make_user: MakeUser,
    admin: Caller,
    create_channel: Callable[[], Awaitable[int]],
) -> None:
    channel_id, target = await setup(make_user, create_channel)
    before_stream = await stream_end(redis, stream_of(channel_id))
    before = datetime.now(UTC)
    response = await http.post(
        sanctions_url(channel_id),
        json={"username": target.username, "kind": "mute", "duration_s": 600, "reason": "spam"},
        headers=admin.headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert list(body) == [
        "channel_id",
        "username",
        "kind",
        "reason",
        "created_by",
        "created_at",
        "expires_at",
    ]
    assert {k: body[k] for k in ["channel_id", "username", "kind", "reason", "created_by"]} == {
        "channel_id": channel_id,
        "username": target.username,
        "kind": "mute",
        "reason": "spam",
        "created_by": admin.username,
    }
    created, expires = when(body["created_at"]), when(body["expires_at"])
    assert abs(created - before) < timedelta(seconds=5)
    assert expires - created == timedelta(seconds=600)

    [command] = await last_commands(redis, stream_of(channel_id), before_stream)
    assert command.request_id
    assert command == ModerateCmd(
        action="mute",
        channel_id=channel_id,
        actor=Actor(user_id=admin.id, username=admin.username, is_guest=False, role="admin"),
        target=target.username,
        duration_s=600,
        reason="spam",
        origin=None,
        request_id=command.request_id,
    )
    # chat-service enforces it on every gateway: the mutes hash has the expiry in ms.
    mutes = Keys(mod_settings.redis_prefix).channel_mutes(channel_id)
    expiry_ms = cast(bytes, await redis.hget(mutes, target.username))
    assert int(expiry_ms) == int(expires.timestamp() * 1000)
    listed = await http.get(sanctions_url(channel_id), headers=admin.headers)
    assert listed.json() == {"count": 1, "sanctions": [body]}


@pytest.mark.parametrize("duration", [0, None, "absent"])
async def test_ban_until_lifted(
    http: httpx.AsyncClient,
    make_user: MakeUser,
    moderator: Caller,
    create_channel: Callable[[], Awaitable[int]],
    duration: int | str | None,
) -> None:
    channel_id, target = await setup(make_user, create_channel)
    request: dict[str, Any] = {"username": target.username, "kind": "ban"}
    if duration != "absent":
        request["duration_s"] = duration
    response = await http.post(sanctions_url(channel_id), json=request, headers=moderator.headers)
    assert response.status_code == 201, response.text
    assert response.json()["expires_at"] is None
    assert response.json()["reason"] is None
    assert response.json()["created_by"] == moderator.username
    listed = await http.get(sanctions_url(channel_id), headers=moderator.headers)
    assert listed.json() == {"count": 1, "sanctions": [response.json()]}


async def test_the_longest_duration_storage_holds_is_applied(
    http: httpx.AsyncClient,
    make_user: MakeUser,
    admin: Caller,
    create_channel: Callable[[], Awaitable[int]],
) -> None:
    channel_id, target = await setup(make_user, create_channel)
    response = await http.post(
        sanctions_url(channel_id),
        json={"username": target.username, "kind": "mute", "duration_s": MAX_SANCTION_S},
        headers=admin.headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert when(body["expires_at"]) - when(body["created_at"]) == timedelta(seconds=MAX_SANCTION_S)


async def test_imposing_again_renews_and_answers_200(
    http: httpx.AsyncClient,
    make_user: MakeUser,
    admin: Caller,
    create_channel: Callable[[], Awaitable[int]],
) -> None:
    channel_id, target = await setup(make_user, create_channel)
    url = sanctions_url(channel_id)
    first = await http.post(
        url,
        json={"username": target.username, "kind": "mute", "reason": "one"},
        headers=admin.headers,
    )
    second = await http.post(
        url,
        json={"username": target.username, "kind": "mute", "reason": "two", "duration_s": 60},
        headers=admin.headers,
    )
    assert first.status_code == 201, first.text
    assert second.status_code == 200, second.text
    assert second.json()["reason"] == "two"
    assert when(second.json()["created_at"]) > when(first.json()["created_at"])
    listed = (await http.get(url, headers=admin.headers)).json()
    assert listed == {"count": 1, "sanctions": [second.json()]}


async def test_imposed_sanctions_reach_the_audit_log(
    http: httpx.AsyncClient,
    make_user: MakeUser,
    admin: Caller,
    create_channel: Callable[[], Awaitable[int]],
) -> None:
    channel_id, target = await setup(make_user, create_channel)
    imposed = await http.post(
        sanctions_url(channel_id),
        json={"username": target.username, "kind": "ban", "duration_s": 30, "reason": "flood"},
        headers=admin.headers,
    )
    assert imposed.status_code == 201
    audit = await http.get(
        "/api/v1/dashboard/audit", params={"target": target.username}, headers=admin.headers
    )
    [entry] = audit.json()["entries"]
    assert {k: v for k, v in entry.items() if k not in ("id", "created_at")} == {
        "actor": admin.username,
        "action": "ban",
        "target": target.username,
        "channel_id": channel_id,
        "reason": "flood",
        "expires_at": imposed.json()["expires_at"],
    }


# -- 204: lifted ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "action"), [("mute", "unmute"), ("ban", "unban")])
async def test_lift(
    http: httpx.AsyncClient,
    redis: aioredis.Redis,
    db: asyncpg.Pool,
    stream_of: Callable[[int], str],
    make_user: MakeUser,
    admin: Caller,
    create_channel: Callable[[], Awaitable[int]],
    kind: str,
    action: str,
) -> None:
    channel_id, target = await setup(make_user, create_channel)
    url = sanctions_url(channel_id)
    for sanction in ["mute", "ban"]:
        imposed = await http.post(
            url, json={"username": target.username, "kind": sanction}, headers=admin.headers
        )
        assert imposed.status_code == 201
    before_stream = await stream_end(redis, stream_of(channel_id))
    response = await http.delete(f"{url}/{kind}/{target.username}", headers=admin.headers)
    assert response.status_code == 204, response.text
    assert response.content == b""
    other = {"mute": "ban", "ban": "mute"}[kind]
    assert await sanction_rows(db, channel_id) == [(target.username, other)]
    [command] = await last_commands(redis, stream_of(channel_id), before_stream)
    assert command == ModerateCmd(
        action=action,
        channel_id=channel_id,
        actor=Actor(user_id=admin.id, username=admin.username, is_guest=False, role="admin"),
        target=target.username,
        request_id=command.request_id,
    )


async def test_lifting_nothing_is_204_and_audited(
    http: httpx.AsyncClient,
    make_user: MakeUser,
    moderator: Caller,
    create_channel: Callable[[], Awaitable[int]],
) -> None:
    channel_id, target = await setup(make_user, create_channel)
    response = await http.delete(
        f"{sanctions_url(channel_id)}/mute/{target.username}", headers=moderator.headers
    )
    assert response.status_code == 204, response.text
    audit = await http.get(
        "/api/v1/dashboard/audit", params={"target": target.username}, headers=moderator.headers
    )
    assert [e["action"] for e in audit.json()["entries"]] == ["unmute"]


async def test_lift_a_username_with_slashes(
    http: httpx.AsyncClient,
    make_user: MakeUser,
    admin: Caller,
    create_channel: Callable[[], Awaitable[int]],
) -> None:
    channel_id = await create_channel()
    target = await make_user(username=f"a/b c/{channel_id}")
    url = sanctions_url(channel_id)
    imposed = await http.post(
        url, json={"username": target.username, "kind": "mute"}, headers=admin.headers
    )
    assert imposed.status_code == 201
    response = await http.delete(f"{url}/mute/{target.username}", headers=admin.headers)
    assert response.status_code == 204, response.text
    assert (await http.get(url, headers=admin.headers)).json() == {"count": 0, "sanctions": []}


# -- 403: chat-service refuses -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["mute", "ban"])
async def test_a_moderator_sanctioning_an_admin_gets_the_refusal(
    http: httpx.AsyncClient,
    db: asyncpg.Pool,
    make_user: MakeUser,
    moderator: Caller,
    create_channel: Callable[[], Awaitable[int]],
    assert_error: AssertError,
    kind: str,
) -> None:
    channel_id = await create_channel()
    target = await make_user("admin")
    response = await http.post(
        sanctions_url(channel_id),
        json={"username": target.username, "kind": kind, "reason": "coup"},
        headers=moderator.headers,
    )
    assert_error(response, 403, NO_PERMISSION)
    assert await sanction_rows(db, channel_id) == []


async def test_a_moderator_lifting_an_admins_sanction_gets_the_refusal(
    http: httpx.AsyncClient,
    db: asyncpg.Pool,
    make_user: MakeUser,
    moderator: Caller,
    admin: Caller,
    create_channel: Callable[[], Awaitable[int]],
    assert_error: AssertError,
) -> None:
    channel_id = await create_channel()
    target = await make_user("admin")
    url = sanctions_url(channel_id)
    imposed = await http.post(
        url, json={"username": target.username, "kind": "ban"}, headers=admin.headers
    )
    assert imposed.status_code == 201
    response = await http.delete(f"{url}/ban/{target.username}", headers=moderator.headers)
    assert_error(response, 403, NO_PERMISSION)
    assert await sanction_rows(db, channel_id) == [(target.username, "ban")]


# -- 404 -----------------------------------------------------------------------------------------


async def test_unknown_user_is_404_and_sends_nothing(
    http: httpx.AsyncClient,
    redis: aioredis.Redis,
    stream_of: Callable[[int], str],
    admin: Caller,
    create_channel: Callable[[], Awaitable[int]],
    assert_error: AssertError,
) -> None:
    channel_id = await create_channel()
    before = await stream_end(redis, stream_of(channel_id))
    url = sanctions_url(channel_id)
    post = await http.post(
        url, json={"username": "no-such-user-here", "kind": "ban"}, headers=admin.headers
    )
    lift = await http.delete(f"{url}/ban/no-such-user-here", headers=admin.headers)
    assert_error(post, 404, "User not found")
    assert_error(lift, 404, "User not found")
    assert await stream_end(redis, stream_of(channel_id)) == before


@pytest.mark.parametrize("method", ["post", "delete"])
async def test_a_user_gone_before_chat_service_applies_is_404(
    settings: Settings,
    with_own_prefix: OwnPrefix,
    serve: Serve,
    chat_service: RunChatService,
    redis: aioredis.Redis,
    db: asyncpg.Pool,
    make_user: MakeUser,
    admin: Caller,
    create_channel: Callable[[], Awaitable[int]],
    assert_error: AssertError,
    method: str,
) -> None:
    """chat-service decides on the user it finds, not on the dashboard's earlier look."""
    quiet = with_own_prefix(settings, f"gone-{method}")
    channel_id, target = await setup(make_user, create_channel)
    stream = Keys(quiet.redis_prefix).cmd_stream(partition_of(channel_id, quiet.partitions))
    url = sanctions_url(channel_id)
    async with serve(quiet) as http:
        if method == "post":
            body = {"username": target.username, "kind": "mute"}
            request = http.post(url, json=body, headers=admin.headers)
        else:
            request = http.delete(f"{url}/mute/{target.username}", headers=admin.headers)
        answer = asyncio.create_task(request)
        await eventually("the command on its stream", lambda: redis.xlen(stream))
        await db.execute("DELETE FROM users WHERE id = $1", target.id)
        async with chat_service(quiet):
            response = await answer
    assert_error(response, 404, "User not found")
    assert await sanction_rows(db, channel_id) == []


# -- 422 -----------------------------------------------------------------------------------------


# 2^31: PostgreSQL's int; 3162240000: today's former cap (100 years), which let 2^31 through.
@pytest.mark.parametrize("duration", [MAX_SANCTION_S + 1, 3_162_240_000, 10**10, 2**63])
async def test_a_duration_storage_cannot_hold_is_422_and_sends_nothing(
    http: httpx.AsyncClient,
    redis: aioredis.Redis,
    stream_of: Callable[[int], str],
    make_user: MakeUser,
    admin: Caller,
    create_channel: Callable[[], Awaitable[int]],
    assert_error: AssertError,
    duration: int,
) -> None:
    channel_id, target = await setup(make_user, create_channel)
    before = await stream_end(redis, stream_of(channel_id))
    response = await http.post(
        sanctions_url(channel_id),
        json={"username": target.username, "kind": "mute", "duration_s": duration},
        headers=admin.headers,
    )
    detail = assert_error(response, 422)
    assert detail == f"Invalid request: duration_s: Expected `int` <= {MAX_SANCTION_S}"
    assert await stream_end(redis, stream_of(channel_id)) == before


@pytest.mark.parametrize("field", ["reason", "username", "lifted username"])
async def test_a_nul_character_is_422_and_sends_nothing(
    http: httpx.AsyncClient,
    redis: aioredis.Redis,
    stream_of: Callable[[int], str],
    make_user: MakeUser,
    admin: Caller,
    create_channel: Callable[[], Awaitable[int]],
    assert_error: AssertError,
    field: str,
) -> None:
    """PostgreSQL text cannot hold NUL: the edge says so instead of failing further in."""
    channel_id, target = await setup(make_user, create_channel)
    before = await stream_end(redis, stream_of(channel_id))
    url = sanctions_url(channel_id)
    if field == "reason":
        body = {"username": target.username, "kind": "mute", "reason": "a\x00b"}
        response = await http.post(url, json=body, headers=admin.headers)
    elif field == "username":
        body = {"username": f"{target.username}\x00", "kind": "ban"}
        response = await http.post(url, json=body, headers=admin.headers)
    else:
        response = await http.delete(f"{url}/mute/{target.username}%00", headers=admin.headers)
    name = field.removeprefix("lifted ")
    assert_error(
        response,
        422,
        f"Invalid request: {name}: NUL characters and lone surrogates are not allowed",
    )
    assert await stream_end(redis, stream_of(channel_id)) == before


async def test_chat_service_refuses_a_duration_beyond_storage_as_invalid(
    http: httpx.AsyncClient,
    redis: aioredis.Redis,
    db: asyncpg.Pool,
    mod_settings: Settings,
    stream_of: Callable[[int], str],
    make_user: MakeUser,
    admin: Caller,
    create_channel: Callable[[], Awaitable[int]],
) -> None:
    """A command past the dashboard's check (another client, an older dashboard) is answered
    ``invalid``, which the dashboard turns into 422; it is no dead letter."""
    channel_id, target = await setup(make_user, create_channel)
    keys = Keys(mod_settings.redis_prefix)
    dead_before = await redis.xlen(keys.dead_letters)
    command = ModerateCmd(
        action="mute",
        channel_id=channel_id,
        actor=Actor(user_id=admin.id, username=admin.username, is_guest=False, role="admin"),
        target=target.username,
        duration_s=MAX_SANCTION_S + 1,
        request_id=f"too-long-{channel_id}",
    )
    await redis.xadd(stream_of(channel_id), {"c": events.encode(command)})
    popped = await redis.blpop([keys.moderation_reply(f"too-long-{channel_id}")], timeout=WAIT_S)
    assert popped is not None
    reply = events.moderate_reply_decoder.decode(cast(tuple[bytes, bytes], popped)[1])
    assert reply.outcome == "invalid"
    assert str(MAX_SANCTION_S) in reply.detail
    assert await redis.xlen(keys.dead_letters) == dead_before
    assert await sanction_rows(db, channel_id) == []


# -- 503: no answer in time ----------------------------------------------------------------------


async def test_no_chat_service_is_503_and_the_command_stays_queued(
    settings: Settings,
    with_own_prefix: OwnPrefix,
    serve_app: ServeApp,
    chat_service: RunChatService,
    redis: aioredis.Redis,
    db: asyncpg.Pool,
    make_user: MakeUser,
    admin: Caller,
    create_channel: Callable[[], Awaitable[int]],
    assert_error: AssertError,
) -> None:
    quiet = with_own_prefix(settings, "no-chat-service")
    channel_id, target = await setup(make_user, create_channel)
    stream = Keys(quiet.redis_prefix).cmd_stream(partition_of(channel_id, quiet.partitions))
    url = sanctions_url(channel_id)
    # The wait's length is not what is tested here: a shorter one keeps the test short.
    async with serve_app(create_app(quiet, moderation_wait_s=0.5)) as http:
        post = await http.post(
            url,
            json={"username": target.username, "kind": "mute", "duration_s": 60},
            headers=admin.headers,
        )
        lift = await http.delete(f"{url}/ban/{target.username}", headers=admin.headers)
    assert_error(post, 503, NO_ANSWER)
    assert_error(lift, 503, NO_ANSWER)
    queued = await last_commands(redis, stream, b"0-0")
    assert [c.action for c in queued] == ["mute", "unban"]
    assert await sanction_rows(db, channel_id) == []

    # A chat-service that starts later applies the queued command.
    async with chat_service(quiet):

        async def applied() -> list[tuple[str, str]]:
            return await sanction_rows(db, channel_id)

        assert await eventually("the queued mute", applied) == [(target.username, "mute")]


async def test_sanctions_are_503_without_redis(
    settings: Settings,
    serve: Serve,
    make_user: MakeUser,
    admin: Caller,
    create_channel: Callable[[], Awaitable[int]],
    assert_error: AssertError,
) -> None:
    channel_id, target = await setup(make_user, create_channel)
    broken = msgspec.structs.replace(settings, redis_url="redis://127.0.0.1:1/0")
    async with serve(broken) as http:
        post = await http.post(
            sanctions_url(channel_id),
            json={"username": target.username, "kind": "mute"},
            headers=admin.headers,
        )
        lift = await http.delete(
            f"{sanctions_url(channel_id)}/mute/{target.username}", headers=admin.headers
        )
    assert_error(post, 503, "Moderation is unavailable; try again.")
    assert_error(lift, 503, "Moderation is unavailable; try again.")
