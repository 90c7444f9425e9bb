"""``/dashboard/channels``: channels with live members, and who is live in one channel."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

from dashboard_service.chat_store import ChatStore
from dashboard_service.presence import LivePresence
from dashboard_service.routes._common import (
    BEARER_AUTH,
    CHANNEL_NOT_FOUND,
    PRESENCE_DOWN,
    STAFF,
    from_redis,
    is_channel_id,
    staff_errors,
)
from dashboard_service.routes._docs import error, ok
from dashboard_service.schemas import ActiveChannels, ChannelMember, ChannelMembers, ChannelRef
from dashboard_service.store import UserStore

T = TypeVar("T")

_PRESENCE_DOWN = {503: error("Redis does not answer", PRESENCE_DOWN)}


async def _live(read: Awaitable[T]) -> T:
    return await from_redis(read, PRESENCE_DOWN)


class ChannelsController(Controller):
    path = "/dashboard/channels"
    tags = ["dashboard: channels"]
    guards = [STAFF]
    security = BEARER_AUTH

    @get(
        "/active",
        summary="Channels with live members",
        description="Channels where at least one connection, on any gateway, is a member now;"
        " sorted by id.",
        responses={
            200: ok(
                "The active channels",
                ActiveChannels(count=2, channels=[ChannelRef(id=1), ChannelRef(id=7)]),
            ),
            **staff_errors(),
            **_PRESENCE_DOWN,
        },
    )
    async def active_channels(self, presence: NamedDependency[LivePresence]) -> ActiveChannels:
        ids = await _live(presence.active_channels())
        return ActiveChannels(count=len(ids), channels=[ChannelRef(id=i) for i in ids])

    @get(
        "/members/{channel_id:int}",
        summary="Live members of a channel",
        description="Each user once, however many connections it has, in order of arrival."
        " A channel that exists but has nobody in it has no members.",
        responses={
            200: ok(
                "The live members",
                ChannelMembers(
                    count=2,
                    users=[
                        ChannelMember(id=42, username="alice", is_guest=False),
                        ChannelMember(id=57, username="Guest1234", is_guest=True),
                    ],
                ),
            ),
            **staff_errors(),
            404: error("No channel has this id", CHANNEL_NOT_FOUND),
            **_PRESENCE_DOWN,
        },
    )
    async def channel_members(
        self,
        channel_id: FromPath[int],
        chat: NamedDependency[ChatStore],
        users: NamedDependency[UserStore],
        presence: NamedDependency[LivePresence],
    ) -> ChannelMembers:
        if not is_channel_id(channel_id) or not await chat.channel_exists(channel_id):
            raise NotFoundException(detail=CHANNEL_NOT_FOUND)
        live = await _live(presence.members(channel_id))
        ids = await users.ids_by_username([member.username for member in live]) if live else {}
        # A member without a row (deleted while connected) cannot be given an id: left out.
        members = [
            ChannelMember(id=ids[m.username], username=m.username, is_guest=m.is_guest)
            for m in live
            if m.username in ids
        ]
        return ChannelMembers(count=len(members), users=members)
