"""``/api/v1/dashboard/channels/{id}/sanctions`` [ext]: mutes and bans over REST.

The REST routes only put a ``ModerateCmd`` on the channel's command stream and wait for its
effect in PostgreSQL; chat-service applies it. Here a small simulated applier (``Applier``)
stands in for chat-service so that these tests exercise the dashboard's half alone: the command
it sends and how it waits. THE END-TO-END VERSION, WITH THE REAL CHAT-SERVICE APPLYING THE
COMMAND, IS TESTED WITH CHAT-SERVICE AND IN THE ROOT END-TO-END SUITE, NOT HERE.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, cast

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
from justchat.service import redis_client
from justchat.settings import Settings

ServeApp = Callable[[Litestar], AbstractAsyncContextManager[httpx.AsyncClient]]
Serve = Callable[[Settings], AbstractAsyncContextManager[httpx.AsyncClient]]
NOT_APPLIED = {"detail": "Accepted; not applied yet."}
Entry = tuple[bytes, dict[bytes, bytes]]  # a stream entry as the client returns it


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


class Applier:
    """A stand-in for chat-service's moderation: reads the command streams, writes the rows.

    It applies what it reads without checking permissions (chat-service does that), writing the
    sanction (refreshing ``created_at`` when re-imposed) and the audit entry.
    """

    def __init__(self, redis: aioredis.Redis, db: asyncpg.Pool, after: dict[str, bytes]) -> None:
        self.redis, self.db, self.after = redis, db, dict(after)
        self.received: list[tuple[str, dict[bytes, bytes], ModerateCmd]] = []

    async def run(self) -> None:
        while True:
            replies = cast(
                list[tuple[bytes, list[Entry]]],
                await self.redis.xread(self.after, block=100),  # type: ignore[arg-type]
            )
            for stream, entries in replies:
                name = stream.decode()
                for entry_id, fields in entries:
                    self.after[name] = entry_id
                    command = events.chat_command_decoder.decode(fields[b"c"])
                    if isinstance(command, ModerateCmd):
                        self.received.append((name, fields, command))
                        await self.apply(command)

    async def apply(self, cmd: ModerateCmd) -> None:
        kind = {"mute": "mute", "ban": "ban", "unmute": "mute", "unban": "ban"}[cmd.action]
        async with self.db.acquire() as conn, conn.transaction():
            if cmd.action in ("mute", "ban"):
                expires = await conn.fetchval(
                    "INSERT INTO sanctions (channel_id, username, kind, reason, created_by,"
                    " expires_at) VALUES ($1, $2, $3, $4, $5,"
                    " CASE WHEN $6::bigint > 0 THEN now() + $6::bigint * interval '1 second' END)"
                    " ON CONFLICT (channel_id, username, kind) DO UPDATE SET"
                    " reason = excluded.reason, created_by = excluded.created_by,"
                    " created_at = now(), expires_at = excluded.expires_at"
                    " RETURNING expires_at",
                    cmd.channel_id,
                    cmd.target,
                    kind,
                    cmd.reason,
                    cmd.actor.username,
                    cmd.duration_s or 0,
                )
            else:
                expires = None
                await conn.execute(
                    "DELETE FROM sanctions WHERE channel_id = $1 AND username = $2 AND kind = $3",
                    cmd.channel_id,
                    cmd.target,
                    kind,
                )
            await conn.execute(
                "INSERT INTO audit_log (actor, actor_id, action, target, channel_id, reason,"
                " expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                cmd.actor.username,
                cmd.actor.user_id,
                cmd.action,
                cmd.target,
                cmd.channel_id,
                cmd.reason,
                expires,
            )


async def stream_ends(redis: aioredis.Redis, streams: list[str]) -> dict[str, bytes]:
    """The last entry id of each stream: an applier started from here sees only new commands."""
    ends = {}
    for stream in streams:
        last = cast(list[Entry], await redis.xrevrange(stream, count=1))
        ends[stream] = last[0][0] if last else b"0-0"
    return ends


StartApplier = Callable[..., Awaitable[Applier]]


@pytest.fixture
async def all_streams(keys: Keys, settings: Settings) -> list[str]:
    return [keys.cmd_stream(p) for p in range(settings.partitions)]


@pytest.fixture
async def start_applier(
    redis_url: str, db: asyncpg.Pool, all_streams: list[str]
) -> AsyncIterator[StartApplier]:
    """``await start_applier(after=None)``: an applier from ``after`` (default: now) onwards."""
    client = redis_client(redis_url)
    tasks: list[asyncio.Task[None]] = []

    async def start(after: dict[str, bytes] | None = None) -> Applier:
        applier = Applier(client, db, after or await stream_ends(client, all_streams))
        tasks.append(asyncio.create_task(applier.run()))
        return applier

    yield start
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert task.cancelled(), "the applier failed"
    await client.aclose()


@pytest.fixture
async def applier(start_applier: StartApplier) -> Applier:
    return await start_applier()


@pytest.fixture
async def impatient(settings: Settings, serve_app: ServeApp) -> AsyncIterator[httpx.AsyncClient]:
    """The app waiting 0.3 s for chat-service instead of 5 s."""
    async with serve_app(create_app(settings, moderation_wait_s=0.3)) as http:
        yield http


async def setup(
    make_user: MakeUser, create_channel: Callable[[], Awaitable[int]]
) -> tuple[int, Caller]:
    return await create_channel(), await make_user()


def when(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text)


# -- imposing ------------------------------------------------------------------------------------


async def test_mute_goes_through_the_command_stream(
    client: httpx.AsyncClient,
    applier: Applier,
    keys: Keys,
    settings: Settings,
    make_user: MakeUser,
    admin: Caller,
    create_channel: Callable[[], Awaitable[int]],
) -> None:
    channel_id, target = await setup(make_user, create_channel)
    before = datetime.now(UTC)
    response = await client.post(
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

    [(stream, fields, command)] = applier.received
    assert stream == keys.cmd_stream(partition_of(channel_id, settings.partitions))
    assert list(fields) == [b"c"]
    assert command == ModerateCmd(
        action="mute",
        channel_id=channel_id,
        actor=Actor(user_id=admin.id, username=admin.username, is_guest=False, role="admin"),
        target=target.username,
        duration_s=600,
        reason="spam",
        origin=None,
    )

    listed = await client.get(sanctions_url(channel_id), headers=admin.headers)
    assert listed.json() == {"count": 1, "sanctions": [body]}


@pytest.mark.parametrize("duration", [0, None, "absent"])
async def test_ban_until_lifted(
    client: httpx.AsyncClient,
    applier: Applier,
    make_user: MakeUser,
    moderator: Caller,
    create_channel: Callable[[], Awaitable[int]],
    duration: int | str | None,
) -> None:
    channel_id, target = await setup(make_user, create_channel)
    request: dict[str, Any] = {"username": target.username, "kind": "ban"}
    if duration != "absent":
        request["duration_s"] = duration
    response = await client.post(sanctions_url(channel_id), json=request, headers=moderator.headers)
    assert response.status_code == 201, response.text
    assert response.json()["expires_at"] is None
    assert response.json()["reason"] is None
    assert response.json()["created_by"] == moderator.username
    [(_, _, command)] = applier.received
    assert command.actor.role == "moderator"
    assert command.duration_s == (None if duration == "absent" else duration)


async def test_imposing_again_answers_the_new_sanction(
    client: httpx.AsyncClient,
    applier: Applier,
    make_user: MakeUser,
    admin: Caller,
    create_channel: Callable[[], Awaitable[int]],
) -> None:
    channel_id, target = await setup(make_user, create_channel)
    url = sanctions_url(channel_id)
    first = await client.post(
        url,
        json={"username": target.username, "kind": "mute", "reason": "one"},
        headers=admin.headers,
    )
    second = await client.post(
        url,
        json={"username": target.username, "kind": "mute", "reason": "two", "duration_s": 60},
        headers=admin.headers,
    )
    assert first.status_code == second.status_code == 201
    assert second.json()["reason"] == "two"
    assert when(second.json()["created_at"]) > when(first.json()["created_at"])
    listed = (await client.get(url, headers=admin.headers)).json()
    assert listed == {"count": 1, "sanctions": [second.json()]}


async def test_imposed_sanctions_reach_the_audit_log(
    client: httpx.AsyncClient,
    applier: Applier,
    make_user: MakeUser,
    admin: Caller,
    create_channel: Callable[[], Awaitable[int]],
) -> None:
    channel_id, target = await setup(make_user, create_channel)
    imposed = await client.post(
        sanctions_url(channel_id),
        json={"username": target.username, "kind": "ban", "duration_s": 30, "reason": "flood"},
        headers=admin.headers,
    )
    assert imposed.status_code == 201
    audit = await client.get(
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


# -- lifting -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "action"), [("mute", "unmute"), ("ban", "unban")])
async def test_lift(
    client: httpx.AsyncClient,
    applier: Applier,
    db: asyncpg.Pool,
    make_user: MakeUser,
    admin: Caller,
    create_channel: Callable[[], Awaitable[int]],
    kind: str,
    action: str,
) -> None:
    channel_id, target = await setup(make_user, create_channel)
    url = sanctions_url(channel_id)
    for sanction in ["mute", "ban"]:
        imposed = await client.post(
            url, json={"username": target.username, "kind": sanction}, headers=admin.headers
        )
        assert imposed.status_code == 201
    response = await client.delete(f"{url}/{kind}/{target.username}", headers=admin.headers)
    assert response.status_code == 204, response.text
    assert response.content == b""
    left = await db.fetch("SELECT kind FROM sanctions WHERE channel_id = $1", channel_id)
    assert [row["kind"] for row in left] == [{"mute": "ban", "ban": "mute"}[kind]]
    _, _, command = applier.received[-1]
    assert command == ModerateCmd(
        action=action,
        channel_id=channel_id,
        actor=Actor(user_id=admin.id, username=admin.username, is_guest=False, role="admin"),
        target=target.username,
    )


async def test_lifting_nothing_still_sends_the_command(
    client: httpx.AsyncClient,
    applier: Applier,
    make_user: MakeUser,
    moderator: Caller,
    create_channel: Callable[[], Awaitable[int]],
) -> None:
    channel_id, target = await setup(make_user, create_channel)
    response = await client.delete(
        f"{sanctions_url(channel_id)}/mute/{target.username}", headers=moderator.headers
    )
    assert response.status_code == 204
    for _ in range(50):
        if applier.received:
            break
        await asyncio.sleep(0.02)
    assert [c.action for _, _, c in applier.received] == ["unmute"]


async def test_lift_a_username_with_slashes(
    client: httpx.AsyncClient,
    applier: Applier,
    make_user: MakeUser,
    admin: Caller,
    create_channel: Callable[[], Awaitable[int]],
) -> None:
    channel_id = await create_channel()
    target = await make_user(username=f"a/b c/{channel_id}")
    url = sanctions_url(channel_id)
    imposed = await client.post(
        url, json={"username": target.username, "kind": "mute"}, headers=admin.headers
    )
    assert imposed.status_code == 201
    response = await client.delete(f"{url}/mute/{target.username}", headers=admin.headers)
    assert response.status_code == 204, response.text
    assert (await client.get(url, headers=admin.headers)).json() == {"count": 0, "sanctions": []}
    assert applier.received[-1][2].target == target.username


# -- when chat-service is slow: 202 ---------------------------------------------------------------


async def test_unapplied_sanction_is_202_and_stays_queued(
    impatient: httpx.AsyncClient,
    redis: aioredis.Redis,
    db: asyncpg.Pool,
    keys: Keys,
    settings: Settings,
    all_streams: list[str],
    start_applier: StartApplier,
    make_user: MakeUser,
    admin: Caller,
    create_channel: Callable[[], Awaitable[int]],
) -> None:
    channel_id, target = await setup(make_user, create_channel)
    before = await stream_ends(redis, all_streams)
    response = await impatient.post(
        sanctions_url(channel_id),
        json={"username": target.username, "kind": "mute", "duration_s": 60},
        headers=admin.headers,
    )
    assert response.status_code == 202
    assert response.json() == NOT_APPLIED
    stream = keys.cmd_stream(partition_of(channel_id, settings.partitions))
    queued = cast(list[Entry], await redis.xrange(stream, min=f"({before[stream].decode()}"))
    assert [events.chat_command_decoder.decode(f[b"c"]).target for _, f in queued] == [
        target.username
    ]
    assert (
        await db.fetchval("SELECT count(*) FROM sanctions WHERE channel_id = $1", channel_id) == 0
    )

    # chat-service catches up later: the queued command then takes effect.
    await start_applier(before)
    for _ in range(100):
        listed = (await impatient.get(sanctions_url(channel_id), headers=admin.headers)).json()
        if listed["count"]:
            break
        await asyncio.sleep(0.05)
    assert [s["username"] for s in listed["sanctions"]] == [target.username]


async def test_an_older_sanction_does_not_count_as_applied(
    impatient: httpx.AsyncClient,
    db: asyncpg.Pool,
    make_user: MakeUser,
    admin: Caller,
    create_channel: Callable[[], Awaitable[int]],
) -> None:
    channel_id, target = await setup(make_user, create_channel)
    await db.execute(
        "INSERT INTO sanctions (channel_id, username, kind, created_by, created_at)"
        " VALUES ($1, $2, 'mute', 'someone', now() - interval '1 hour')",
        channel_id,
        target.username,
    )
    response = await impatient.post(
        sanctions_url(channel_id),
        json={"username": target.username, "kind": "mute"},
        headers=admin.headers,
    )
    assert response.status_code == 202
    assert response.json() == NOT_APPLIED


async def test_unapplied_lift_is_202(
    impatient: httpx.AsyncClient,
    db: asyncpg.Pool,
    make_user: MakeUser,
    admin: Caller,
    create_channel: Callable[[], Awaitable[int]],
) -> None:
    channel_id, target = await setup(make_user, create_channel)
    await db.execute(
        "INSERT INTO sanctions (channel_id, username, kind, created_by)"
        " VALUES ($1, $2, 'ban', 'x')",
        channel_id,
        target.username,
    )
    response = await impatient.delete(
        f"{sanctions_url(channel_id)}/ban/{target.username}", headers=admin.headers
    )
    assert response.status_code == 202
    assert response.json() == NOT_APPLIED
    assert (
        await db.fetchval("SELECT count(*) FROM sanctions WHERE channel_id = $1", channel_id) == 1
    )


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


# -- 404 -----------------------------------------------------------------------------------------


async def test_unknown_user_is_404_and_sends_nothing(
    client: httpx.AsyncClient,
    redis: aioredis.Redis,
    all_streams: list[str],
    admin: Caller,
    create_channel: Callable[[], Awaitable[int]],
    assert_error: AssertError,
) -> None:
    channel_id = await create_channel()
    before = await stream_ends(redis, all_streams)
    url = sanctions_url(channel_id)
    post = await client.post(
        url, json={"username": "no-such-user-here", "kind": "ban"}, headers=admin.headers
    )
    lift = await client.delete(f"{url}/ban/no-such-user-here", headers=admin.headers)
    assert_error(post, 404, "User not found")
    assert_error(lift, 404, "User not found")
    assert await stream_ends(redis, all_streams) == before
