"""How a closed member-list window turns into frames: lists first, then what they explain."""

from __future__ import annotations

from presence_service.windows import FRAME, LIST, Window, frames_to_send


def test_one_segment_is_led_by_the_truth() -> None:
    window = Window(held=[FRAME + b"join-b", FRAME + b"join-c"], members=[])
    assert frames_to_send(window, b"truth") == [b"truth", b"join-b", b"join-c"]


def test_each_segment_is_led_by_the_list_that_closed_it() -> None:
    # leave(b), then join(b) again: the list recorded before the rejoin explains the leave.
    window = Window(
        held=[FRAME + b"leave-b", FRAME + b"join-c", LIST + b"without-b", FRAME + b"join-b"],
        members=[],
    )
    assert frames_to_send(window, b"truth") == [
        b"without-b",
        b"leave-b",
        b"join-c",
        b"truth",
        b"join-b",
    ]


def test_an_empty_window_sends_nothing() -> None:
    assert frames_to_send(Window(held=[], members=[]), b"truth") == []
