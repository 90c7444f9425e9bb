"""``/api/v1/dashboard/dead-letters`` [ext]: dead-letter entries written here the way
``justchat.streams`` writes them, read back through the API."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import httpx
import msgspec
import pytest
import redis.asyncio as aioredis

from justchat import events
from justchat.keys import Keys
from justchat.settings import Settings
from justchat.wire import UserFrom

DEAD = "/api/v1/dashboard/dead-letters"
SUMMARY = "/api/v1/dashboard/dead-letters/summary"
FORBIDDEN = "You don't have permission to access this resource."
DOWN = "Dead letters are unavailable; try again."
GARBAGE = b"\xc1\xff not msgpack"

Serve = Callable[[Settings], AbstractAsyncContextManager[httpx.AsyncClient]]


class Caller(Protocol):
    id: int
    username: str
    role: str
    is_guest: bool
    headers: dict[str, str]


MakeUser = Callable[..., Awaitable[Caller]]
AssertError = Callable[..., str]  # the conftest fixtures' types


@pytest.fixture
async def empty_dead_letters(redis: aioredis.Redis, keys: Keys) -> AsyncIterator[None]:
    """The session shares one prefix: each test starts and ends with no dead letters."""
    await redis.delete(keys.dead_letters, keys.presence_dead_letters)
    yield
    await redis.delete(keys.dead_letters, keys.presence_dead_letters)


async def dead_letter(
    redis: aioredis.Redis, stream: str, *, source: str, entry: str, raw: bytes, error: str
) -> str:
    """XADD as ``PartitionWorker._dead_letter`` does; the new entry's id."""
    entry_id = await redis.xadd(
        stream, {"stream": source, "entry": entry, "c": raw, "error": error}
    )
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


def send_command() -> events.SendCmd:
    return events.SendCmd(
        msg_id=str(uuid.uuid4()),
        channel_id=7,
        actor=events.Actor(user_id=42, username="alice", is_guest=False, role="user"),
        origin=events.Origin(gateway="gw-1", conn="c-9"),
        content="hello",
        client_msg_id="c-1",
    )


pytestmark = pytest.mark.usefixtures("empty_dead_letters")


async def test_newest_first_with_decoded_commands(
    client: httpx.AsyncClient, redis: aioredis.Redis, keys: Keys, moderator: Caller
) -> None:
    command = send_command()
    good = await dead_letter(
        redis,
        keys.dead_letters,
        source=keys.cmd_stream(3),
        entry="1714564799000-0",
        raw=events.encode(command),
        error="ValueError('boom')",
    )
    bad = await dead_letter(
        redis,
        keys.dead_letters,
        source=keys.cmd_stream(5),
        entry="1714564799001-0",
        raw=GARBAGE,
        error="DecodeError('MessagePack data is malformed')",
    )
    response = await client.get(DEAD, headers=moderator.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "count": 2,
        "entries": [
            {
                "id": bad,
                "source_stream": keys.cmd_stream(5),
                "entry": "1714564799001-0",
                "command": None,
                "error": "DecodeError('MessagePack data is malformed')",
            },
            {
                "id": good,
                "source_stream": keys.cmd_stream(3),
                "entry": "1714564799000-0",
                "command": {
                    "k": "send",
                    "msg_id": command.msg_id,
                    "channel_id": 7,
                    "actor": [42, "alice", False, "user"],
                    "origin": ["gw-1", "c-9"],
                    "content": "hello",
                    "client_msg_id": "c-1",
                },
                "error": "ValueError('boom')",
            },
        ],
    }
    assert response.json()["entries"][1]["command"] == msgspec.to_builtins(command)


async def test_count_limits_to_the_newest(
    client: httpx.AsyncClient, redis: aioredis.Redis, keys: Keys, admin: Caller
) -> None:
    ids = [
        await dead_letter(
            redis,
            keys.dead_letters,
            source=keys.cmd_stream(0),
            entry=f"{n}-0",
            raw=events.encode(send_command()),
            error=f"error {n}",
        )
        for n in range(5)
    ]
    response = await client.get(DEAD, params={"count": 3}, headers=admin.headers)
    body = response.json()
    assert body["count"] == 3
    assert [e["id"] for e in body["entries"]] == ids[::-1][:3]
    assert [e["error"] for e in body["entries"]] == ["error 4", "error 3", "error 2"]
    everything = (await client.get(DEAD, headers=admin.headers)).json()
    assert [e["id"] for e in everything["entries"]] == ids[::-1]


async def test_presence_dead_letters_decode_as_presence_commands(
    client: httpx.AsyncClient, redis: aioredis.Redis, keys: Keys, admin: Caller
) -> None:
    typing = events.PresenceTyping(channel_id=9, user=UserFrom(username="bob", is_guest=True))
    first = await dead_letter(
        redis,
        keys.presence_dead_letters,
        source=keys.presence_stream(1),
        entry="5-0",
        raw=events.encode(typing),
        error="KeyError('x')",
    )
    # A chat command is no presence command: it does not decode here.
    second = await dead_letter(
        redis,
        keys.presence_dead_letters,
        source=keys.presence_stream(1),
        entry="6-0",
        raw=events.encode(send_command()),
        error="DecodeError('x')",
    )
    body = (await client.get(DEAD, params={"stream": "presence"}, headers=admin.headers)).json()
    assert body["count"] == 2
    assert [e["id"] for e in body["entries"]] == [second, first]
    assert body["entries"][0]["command"] is None
    assert body["entries"][1]["command"] == {
        "k": "typing",
        "channel_id": 9,
        "user": {"username": "bob", "is_guest": True},
    }
    assert body["entries"][1]["source_stream"] == keys.presence_stream(1)
    # The chat stream is another stream: still empty.
    chat = (await client.get(DEAD, params={"stream": "cmd"}, headers=admin.headers)).json()
    assert chat == {"count": 0, "entries": []}


async def test_an_entry_missing_fields_still_lists(
    client: httpx.AsyncClient, redis: aioredis.Redis, keys: Keys, admin: Caller
) -> None:
    entry_id = await redis.xadd(keys.dead_letters, {"error": "written by hand"})
    body = (await client.get(DEAD, headers=admin.headers)).json()
    assert body["entries"] == [
        {
            "id": entry_id.decode() if isinstance(entry_id, bytes) else entry_id,
            "source_stream": "",
            "entry": "",
            "command": None,
            "error": "written by hand",
        }
    ]


async def test_summary_counts_each_stream(
    client: httpx.AsyncClient, redis: aioredis.Redis, keys: Keys, moderator: Caller
) -> None:
    empty = await client.get(SUMMARY, headers=moderator.headers)
    assert empty.status_code == 200, empty.text
    assert empty.json() == {"cmd": 0, "presence": 0}
    for n in range(3):
        await dead_letter(
            redis, keys.dead_letters, source="s", entry=f"{n}-1", raw=GARBAGE, error="e"
        )
    await dead_letter(
        redis, keys.presence_dead_letters, source="s", entry="1-1", raw=GARBAGE, error="e"
    )
    assert (await client.get(SUMMARY, headers=moderator.headers)).json() == {
        "cmd": 3,
        "presence": 1,
    }


@pytest.mark.parametrize("path", [DEAD, SUMMARY])
async def test_plain_users_are_403_and_anonymous_401(
    client: httpx.AsyncClient, make_user: MakeUser, path: str, assert_error: AssertError
) -> None:
    user = await make_user()
    assert_error(await client.get(path, headers=user.headers), 403, FORBIDDEN)
    assert_error(await client.get(path), 401, "Not authenticated")


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"stream": "chat"}, None),
        ({"count": 0}, "Invalid request: count: Expected `int` >= 1"),
        ({"count": 1001}, "Invalid request: count: Expected `int` <= 1000"),
        ({"count": "all"}, None),
    ],
)
async def test_bad_parameters_are_422(
    client: httpx.AsyncClient,
    admin: Caller,
    params: dict[str, Any],
    detail: str | None,
    assert_error: AssertError,
) -> None:
    response = await client.get(DEAD, params=params, headers=admin.headers)
    text = assert_error(response, 422, detail)
    assert text.startswith("Invalid request: ")
    if "stream" in params:
        assert "stream" in text


async def test_503_without_redis(
    settings: Settings, serve: Serve, admin: Caller, assert_error: AssertError
) -> None:
    broken = msgspec.structs.replace(settings, redis_url="redis://127.0.0.1:1/0")
    async with serve(broken) as http:
        listed = await http.get(DEAD, headers=admin.headers)
        summary = await http.get(SUMMARY, headers=admin.headers)
    assert_error(listed, 503, DOWN)
    assert_error(summary, 503, DOWN)
