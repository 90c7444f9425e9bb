"""Small asyncio helpers every service shares."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, Final

RECANCEL_S: Final = 0.5


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until every one has ended, cancelling again while they run.

    One cancellation is not always enough: a stream lane blocked in redis-py's pipeline read was
    seen to lose it (Python 3.11) and read on, which held a service's shutdown forever.
    """
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_S)
