"""The byte-budget writer: frames straight to the sink, a client over budget cut off with 1013,
paced sends that wait for the client to read."""

from __future__ import annotations

import asyncio

from gateway.connection import CLOSE_SLOW_CONSUMER, Connection
from gateway.frames import text_frame
from gateway.session import Session

BUDGET = 1_000


class FakeSink:
    """A transport whose unread byte count the test sets (``unread``)."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.unread = 0
        self.closed: tuple[int, str, float] | None = None
        self.drained = asyncio.Event()

    def write_frame(self, frame: bytes) -> None:
        assert self.closed is None, "a frame after the close frame"
        self.written.append(frame)
        self.unread += len(frame)

    def buffered(self) -> int:
        return self.unread

    async def wait_writable(self) -> None:
        await self.drained.wait()
        self.drained.clear()

    def close_now(self, code: int, reason: str, timeout_s: float) -> None:
        self.closed = (code, reason, timeout_s)

    def release_handshake(self) -> None:
        pass

    def client_reads(self) -> None:
        self.unread = 0
        self.drained.set()


def make(join_frames: int = 4) -> tuple[Connection, FakeSink, list[Connection]]:
    sink = FakeSink()
    cut: list[Connection] = []
    session = Session(conn_id="c1", user_id=1, username="ann", is_guest=False, role="user")
    conn = Connection(sink, session, budget=BUDGET, join_frames=join_frames, on_cut_off=cut.append)
    return conn, sink, cut


def joined(conn: Connection, channel_id: int = 5) -> None:
    conn.session.begin_join(channel_id)
    assert conn.session.finish_join(channel_id, 0) == []


def test_frames_go_straight_to_the_sink_in_order() -> None:
    conn, sink, cut = make()
    joined(conn)
    for seq in (1, 2, 3):
        conn.deliver(5, seq, text_frame(b"m%d" % seq))
    conn.send_frames([b'{"type":"error"}'])
    assert sink.written == [
        text_frame(b"m1"),
        text_frame(b"m2"),
        text_frame(b"m3"),
        text_frame(b'{"type":"error"}'),
    ]
    assert cut == [] and sink.closed is None


def test_a_client_over_its_byte_budget_is_cut_off_once_and_gets_nothing_more() -> None:
    conn, sink, cut = make()
    joined(conn)
    big = text_frame(b"x" * 600)
    conn.deliver(5, 1, big)
    conn.deliver(5, 2, big)  # still under budget when written: over it afterwards
    assert len(sink.written) == 2
    conn.deliver(5, 3, big)
    conn.deliver(5, 4, big)
    assert len(sink.written) == 2  # a gap-free prefix: 1 and 2
    assert sink.closed is not None and sink.closed[0] == CLOSE_SLOW_CONSUMER
    assert cut == [conn]
    assert conn.closing is not None and conn.closing[0] == CLOSE_SLOW_CONSUMER


def test_a_client_that_reads_keeps_receiving() -> None:
    conn, sink, cut = make()
    joined(conn)
    for seq in range(1, 51):
        conn.deliver(5, seq, text_frame(b"x" * 300))
        sink.client_reads()
    assert len(sink.written) == 50 and cut == []


def test_a_join_that_buffers_too_many_live_frames_is_cut_off() -> None:
    conn, sink, cut = make(join_frames=3)
    conn.session.begin_join(5)
    for seq in (1, 2, 3):
        conn.deliver(5, seq, text_frame(b"m"))
    assert cut == [] and sink.written == []
    conn.deliver(5, 4, text_frame(b"m"))
    assert cut == [conn]


def test_close_sends_nothing_after_it() -> None:
    conn, sink, _ = make()
    joined(conn)
    conn.close(1000, "bye")
    conn.close(1001, "again")  # the first close wins
    conn.deliver(5, 1, text_frame(b"late"))
    conn.send_frames([b"late"])
    assert sink.written == []
    assert sink.closed is not None and sink.closed[:2] == (1000, "bye")


async def test_paced_send_waits_for_the_client_to_read_instead_of_cutting_it_off() -> None:
    conn, sink, cut = make()
    frames = [text_frame(b"h" * 400) for _ in range(10)]  # 4 KB: four times the budget
    sending = asyncio.create_task(conn.send_paced(frames, timeout_s=5))
    while not sending.done():
        await asyncio.sleep(0)
        if sink.unread > BUDGET:
            sink.client_reads()
    await sending
    assert sink.written == frames and cut == []


async def test_paced_send_cuts_off_a_client_that_reads_nothing_for_the_timeout() -> None:
    conn, sink, cut = make()
    frames = [text_frame(b"h" * 400) for _ in range(10)]
    await conn.send_paced(frames, timeout_s=0.01)
    assert len(sink.written) == 3  # up to the budget, then nothing was read
    assert cut == [conn] and sink.closed is not None
