"""``/api/v1/dashboard/channels/{id}/sanctions`` [ext]: listing, and the 404s and 422s.

Sanctions are written with SQL here; imposing and lifting are tested in
``test_dashboard_moderation_api.py``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol

import asyncpg
import httpx
import pytest


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


def when(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text)


# -- listing -------------------------------------------------------------------------------------


async def test_list_only_active_sanctions_newest_first(
    client: httpx.AsyncClient,
    db: asyncpg.Pool,
    make_user: MakeUser,
    moderator: Caller,
    create_channel: Callable[[], Awaitable[int]],
) -> None:
    channel_id = await create_channel()
    other_channel = await create_channel()
    rows = [
        # username, kind, created (minutes ago), expires (minutes from now; None = never)
        ("ann", "mute", 30, None),
        ("ann", "ban", 20, 60),
        ("bob", "mute", 10, 5),
        ("cid", "mute", 40, -1),  # expired: not listed
        ("dan", "ban", 5, -30),  # expired
    ]
    for username, kind, ago, ahead in rows:
        await db.execute(
            "INSERT INTO sanctions (channel_id, username, kind, reason, created_by, created_at,"
            " expires_at) VALUES ($1, $2, $3, $4, 'mod', now() - $5 * interval '1 minute',"
            " now() + $6 * interval '1 minute')",
            channel_id,
            username,
            kind,
            f"{username} {kind}",
            ago,
            ahead,
        )
    await db.execute(
        "INSERT INTO sanctions (channel_id, username, kind, created_by) VALUES ($1, 'eve',"
        " 'mute', 'mod')",
        other_channel,
    )
    url = sanctions_url(channel_id)

    async def listed(**params: str) -> list[tuple[str, str]]:
        response = await client.get(url, params=params, headers=moderator.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["count"] == len(body["sanctions"])
        return [(s["username"], s["kind"]) for s in body["sanctions"]]

    assert await listed() == [("bob", "mute"), ("ann", "ban"), ("ann", "mute")]
    assert await listed(kind="") == [("bob", "mute"), ("ann", "ban"), ("ann", "mute")]
    assert await listed(kind="mute") == [("bob", "mute"), ("ann", "mute")]
    assert await listed(kind="ban") == [("ann", "ban")]

    stored = await db.fetchrow(
        "SELECT created_at, expires_at FROM sanctions WHERE channel_id = $1 AND username = 'ann'"
        " AND kind = 'mute'",
        channel_id,
    )
    full = (await client.get(url, headers=moderator.headers)).json()["sanctions"][2]
    assert full["reason"] == "ann mute"
    assert full["created_by"] == "mod"
    assert full["expires_at"] is None
    assert when(full["created_at"]) == stored["created_at"]


async def test_empty_list(
    client: httpx.AsyncClient, admin: Caller, create_channel: Callable[[], Awaitable[int]]
) -> None:
    response = await client.get(sanctions_url(await create_channel()), headers=admin.headers)
    assert response.json() == {"count": 0, "sanctions": []}


# -- 404 and 422 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("channel_id", ["2147483000", "2147483648", "99999999999999999999"])
async def test_unknown_channel_is_404(
    client: httpx.AsyncClient, admin: Caller, channel_id: str, assert_error: AssertError
) -> None:
    url = sanctions_url(channel_id)
    body = {"username": admin.username, "kind": "mute"}
    for response in [
        await client.get(url, headers=admin.headers),
        await client.post(url, json=body, headers=admin.headers),
        await client.delete(f"{url}/mute/{admin.username}", headers=admin.headers),
    ]:
        assert_error(response, 404, "Channel doesn't exist")


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ({"kind": "mute"}, "`username`"),
        ({"username": "x", "kind": "kick"}, "kind"),
        ({"username": "x"}, "`kind`"),
        ({"username": "x", "kind": "mute", "duration_s": -1}, "duration_s"),
        ({"username": "x", "kind": "mute", "duration_s": 10**10}, "duration_s"),
        ({"username": "x", "kind": "mute", "duration_s": "soon"}, "duration_s"),
        ({"username": "x", "kind": "mute", "reason": "r" * 501}, "reason"),
    ],
)
async def test_bad_sanction_body_is_422(
    client: httpx.AsyncClient,
    admin: Caller,
    create_channel: Callable[[], Awaitable[int]],
    body: dict[str, Any],
    key: str,
    assert_error: AssertError,
) -> None:
    response = await client.post(
        sanctions_url(await create_channel()), json=body, headers=admin.headers
    )
    detail = assert_error(response, 422)
    assert detail.startswith("Invalid request: ")
    assert key in detail


async def test_bad_kind_is_422(
    client: httpx.AsyncClient,
    admin: Caller,
    create_channel: Callable[[], Awaitable[int]],
    assert_error: AssertError,
) -> None:
    url = sanctions_url(await create_channel())
    listed = await client.get(url, params={"kind": "kick"}, headers=admin.headers)
    lifted = await client.delete(f"{url}/kick/{admin.username}", headers=admin.headers)
    assert assert_error(listed, 422).startswith("Invalid request: kind: ")
    assert assert_error(lifted, 422).startswith("Invalid request: kind: ")
