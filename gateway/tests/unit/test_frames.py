"""Server frames encoded once: what a standard WebSocket parser reads back from them."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from gateway.frames import text_frame


def parse(data: bytes) -> Frame:
    """Parse one frame as a client would (server frames are unmasked), all bytes consumed."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        assert reader.at_eof(), "bytes left after the frame"
        frame: Frame = done.value
        return frame
    raise AssertionError("incomplete frame")


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65_535, 65_536, 200_000])
def test_text_frame_is_one_final_unmasked_text_frame(size: int) -> None:
    payload = (b'{"type":"chat_send","x":"' + b"y" * size + b'"}')[: max(size, 2)]
    frame = parse(text_frame(payload))
    assert frame.opcode is Opcode.TEXT
    assert frame.fin
    assert not (frame.rsv1 or frame.rsv2 or frame.rsv3)
    assert frame.data == payload


@pytest.mark.parametrize(("size", "header"), [(125, 2), (126, 4), (65_535, 4), (65_536, 10)])
def test_text_frame_uses_the_shortest_length_encoding(size: int, header: int) -> None:
    assert len(text_frame(b"a" * size)) == header + size


def test_text_frame_keeps_utf8_bytes_as_they_are() -> None:
    payload = '{"content":"héllo 👋"}'.encode()
    assert parse(text_frame(payload)).data.decode() == '{"content":"héllo 👋"}'
