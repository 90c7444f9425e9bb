"""``/dashboard/dead-letters`` [ext]: commands the services gave up on, newest first."""

from __future__ import annotations

from typing import Annotated, Final

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from dashboard_service.dead_letters import DeadLetterStream, DeadLetterStreams
from dashboard_service.routes._common import BEARER_AUTH, STAFF, from_redis, staff_errors
from dashboard_service.routes._docs import error, ok
from dashboard_service.schemas import DeadLetter, DeadLetterCounts, DeadLetters

MAX_COUNT: Final = 1000
DEAD_LETTERS_DOWN: Final = "Dead letters are unavailable; try again."

_DOWN = {503: error("Redis does not answer", DEAD_LETTERS_DOWN)}
_EXAMPLE = DeadLetters(
    count=2,
    entries=[
        DeadLetter(
            id="1714564805000-0",
            source_stream="jc:cmd:3",
            entry="1714564804990-0",
            command=None,
            error="DecodeError('MessagePack data is malformed: trailing characters (byte 1)')",
        ),
        DeadLetter(
            id="1714564800000-0",
            source_stream="jc:cmd:3",
            entry="1714564799000-0",
            command={
                "k": "react",
                "add": True,
                "channel_id": 7,
                "message_id": "0b7e3f6c-5d0a-4c59-9b0e-2f0f8b6f2a11",
                "emote": "+1",
                "actor": [42, "alice", False, "user"],
                "origin": ["gw-1", "c-9"],
            },
            error="DataError('invalid input for query argument $1')",
        ),
    ],
)


class DeadLettersController(Controller):
    path = "/dashboard/dead-letters"
    tags = ["dashboard: operations"]
    guards = [STAFF]
    security = BEARER_AUTH

    @get(
        "/",
        summary="Dead letters",
        description="[ext] The newest entries of a dead-letter stream: commands chat-service"
        " (`cmd`) or presence-service (`presence`) failed to apply for good. `command` is the"
        " decoded command (structs sent as arrays, such as `actor`, stay arrays), or null when"
        " it did not decode, which is often why it is here.",
        responses={
            200: ok("The newest dead letters", _EXAMPLE),
            **staff_errors(),
            422: error(
                "A query parameter does not validate",
                "Invalid request: stream: Invalid enum value 'chat'",
                f"Invalid request: count: Expected `int` <= {MAX_COUNT}",
            ),
            **_DOWN,
        },
    )
    async def dead_letters(
        self,
        dead_letters: NamedDependency[DeadLetterStreams],
        stream: Annotated[
            DeadLetterStream,
            QueryParameter(description="`cmd` (chat commands) or `presence`"),
        ] = "cmd",
        count: Annotated[
            int, QueryParameter(ge=1, le=MAX_COUNT, description=f"entries, 1-{MAX_COUNT}")
        ] = 50,
    ) -> DeadLetters:
        entries = await from_redis(dead_letters.newest(stream, count), DEAD_LETTERS_DOWN)
        return DeadLetters(count=len(entries), entries=entries)

    @get(
        "/summary",
        summary="Dead-letter counts",
        description="[ext] How many entries each dead-letter stream holds (XLEN); each is"
        " trimmed to about 10,000.",
        responses={
            200: ok("Entries per stream", DeadLetterCounts(cmd=3, presence=0)),
            **staff_errors(),
            **_DOWN,
        },
    )
    async def summary(self, dead_letters: NamedDependency[DeadLetterStreams]) -> DeadLetterCounts:
        return await from_redis(dead_letters.counts(), DEAD_LETTERS_DOWN)
