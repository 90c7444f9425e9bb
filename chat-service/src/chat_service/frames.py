"""Encoded wire frames that chat-service publishes."""

from __future__ import annotations

import functools
from datetime import datetime

from msgspec import UNSET

from chat_service.store import StoredMessage
from justchat import wire


@functools.lru_cache(maxsize=256)
def _timestamp(moment: datetime) -> str:
    """A batch's messages share one created_at: format it once."""
    return wire.utc_timestamp(moment)


def message_frame(m: StoredMessage) -> bytes:
    """A stored message as ``chat_send``: its id and timestamp are the message's, forever."""
    payload = wire.ChatSendOut(
        channel_id=m.channel_id,
        sender=wire.UserFrom(username=m.sender_username, is_guest=m.sender_is_guest),
        content=m.content,
        seq=m.seq,
        client_msg_id=UNSET if m.client_msg_id is None else m.client_msg_id,
        reactions=UNSET if m.reactions is None else m.reactions,
    )
    return wire.encode_frame(
        wire.ChatSendFrame(timestamp=_timestamp(m.created_at), id=str(m.id), payload=payload)
    )


def resumed_frame(channel_id: int, recovered: bool, last_seq: int) -> bytes:
    payload = wire.ResumedOut(channel_id=channel_id, recovered=recovered, last_seq=last_seq)
    return wire.fresh_frame(wire.ResumedFrame, payload)


def history_frame(channel_id: int, messages: list[StoredMessage], has_more: bool) -> bytes:
    """A ``channel_history`` page: each message as in ``chat_send`` plus its id and timestamp."""
    page = [
        wire.HistoryMessage(
            id=str(m.id),
            timestamp=wire.utc_timestamp(m.created_at),
            channel_id=m.channel_id,
            sender=wire.UserFrom(username=m.sender_username, is_guest=m.sender_is_guest),
            content=m.content,
            seq=m.seq,
            client_msg_id=UNSET if m.client_msg_id is None else m.client_msg_id,
            reactions=m.reactions or [],
        )
        for m in messages
    ]
    payload = wire.HistoryOut(channel_id=channel_id, messages=page, has_more=has_more)
    return wire.fresh_frame(wire.HistoryFrame, payload)
