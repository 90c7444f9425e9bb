"""Per-connection protocol state, with no sockets in it.

A connection's channel goes through two states: *joining* (subscribed to the channel's events,
waiting for its history) and *joined*. While joining, live events are buffered; when the history
arrives, the buffer is flushed minus whatever the history already covered. Every sequenced event
is delivered only if its seq is above the last one this connection saw on that channel, which
makes the join gap-free and duplicate-free and makes republished events harmless.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from justchat.auth import ROLES
from justchat.events import Actor
from justchat.wire import UserFrom


@dataclass(slots=True)
class ChannelState:
    last_seq: int = 0
    buffer: list[tuple[int, bytes]] | None = field(default_factory=list)  # None once joined

    @property
    def joined(self) -> bool:
        return self.buffer is None


@dataclass(slots=True)
class Session:
    conn_id: str
    user_id: int | None
    username: str
    is_guest: bool
    role: str
    channels: dict[int, ChannelState] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}")

    @property
    def user(self) -> UserFrom:
        return UserFrom(username=self.username, is_guest=self.is_guest)

    @property
    def actor(self) -> Actor:
        return Actor(
            user_id=self.user_id, username=self.username, is_guest=self.is_guest, role=self.role
        )

    def is_member(self, channel_id: int) -> bool:
        state = self.channels.get(channel_id)
        return state is not None and state.joined

    def begin_join(self, channel_id: int) -> None:
        """Start buffering the channel's live events (a re-join starts over)."""
        self.channels[channel_id] = ChannelState()

    def finish_join(self, channel_id: int, history_last_seq: int) -> list[bytes]:
        """The history reached ``history_last_seq``: return the buffered frames still owed and
        mark the channel joined (for callers that send them without yielding)."""
        self.history_sent(channel_id, history_last_seq)
        owed = self.take_buffered(channel_id)
        self.mark_joined(channel_id)
        return owed

    # The three steps below tolerate a channel that was left meanwhile (kicked, cut off).

    def history_sent(self, channel_id: int, history_last_seq: int) -> None:
        state = self.channels.get(channel_id)
        if state is not None:
            state.last_seq = max(state.last_seq, history_last_seq)

    def take_buffered(self, channel_id: int) -> list[bytes]:
        """The buffered frames still owed, in order; the channel keeps buffering meanwhile, so
        frames arriving while these are sent cannot overtake them."""
        state = self.channels.get(channel_id)
        if state is None:
            return []
        buffered, state.buffer = state.buffer or [], []
        return [frame for seq, frame in buffered if self._advance(state, seq)]

    def mark_joined(self, channel_id: int) -> None:
        state = self.channels.get(channel_id)
        if state is not None:
            state.buffer = None

    def buffered(self, channel_id: int) -> int:
        """How many live frames wait for the channel's join to finish."""
        state = self.channels.get(channel_id)
        return 0 if state is None or state.buffer is None else len(state.buffer)

    def leave(self, channel_id: int) -> bool:
        """Forget the channel; False if this connection was not in it."""
        return self.channels.pop(channel_id, None) is not None

    def accept(self, channel_id: int, seq: int, frame: bytes) -> bytes | None:
        """Route one live event: the frame to send now, or None (buffered, stale or not ours)."""
        state = self.channels.get(channel_id)
        if state is None:
            return None
        if state.buffer is not None:
            state.buffer.append((seq, frame))
            return None
        return frame if self._advance(state, seq) else None

    @staticmethod
    def _advance(state: ChannelState, seq: int) -> bool:
        if seq == 0:  # unsequenced: typing, members, join, leave
            return True
        if seq <= state.last_seq:
            return False
        state.last_seq = seq
        return True
