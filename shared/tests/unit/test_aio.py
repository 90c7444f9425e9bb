"""justchat.aio.cancel_and_wait: shutdown ends even when a task loses a cancellation."""

from __future__ import annotations

import asyncio

from justchat.aio import cancel_and_wait


async def test_a_task_that_swallows_one_cancellation_is_cancelled_again() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1  # lost, as a library retrying its read would lose it
                asyncio.current_task().uncancel()  # type: ignore[union-attr]

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    async with asyncio.timeout(5):
        await cancel_and_wait([task])
    assert task.cancelled()
    assert swallowed == 1


async def test_finished_tasks_are_left_alone() -> None:
    done = asyncio.create_task(asyncio.sleep(0, result="ok"))
    await done
    await cancel_and_wait([done])
    assert done.result() == "ok"
