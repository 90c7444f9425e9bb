"""Error details built from Litestar's validation problems, and the gateway rotation; pure."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.exceptions import ValidationException

from dashboard_service.errors import validation_detail
from dashboard_service.gateways import choose


@pytest.mark.parametrize(
    ("extra", "detail"),
    [
        (
            [
                {
                    "message": "Object missing required field `password`",
                    "key": "data",
                    "source": "body",
                }
            ],
            "Invalid request: Object missing required field `password`",
        ),
        (
            [{"message": "Expected `str`, got `int`", "key": "username", "source": "body"}],
            "Invalid request: username: Expected `str`, got `int`",
        ),
        (
            [{"message": "'data'", "key": "data", "source": "body"}],
            "Invalid request: the request body is missing",
        ),
        (
            [{"message": "'page'", "key": "page", "source": "query"}],
            "Invalid request: page: missing",
        ),
        (
            [{"message": "a", "key": "x"}, {"message": "b", "key": "y"}],
            "Invalid request: x: a; y: b",
        ),
        (["plain text"], "Invalid request: plain text"),
        (None, "Validation failed for POST /x"),
        ({"not": "a list"}, "Validation failed for POST /x"),
    ],
)
def test_validation_detail_is_one_string(extra: Any, detail: str) -> None:
    exc = ValidationException(detail="Validation failed for POST /x", extra=extra)
    assert validation_detail(exc) == detail


def test_choose_walks_the_urls_in_turn() -> None:
    urls = ["ws://a/ws", "ws://b/ws", "ws://c/ws"]
    assert [choose(urls, turn) for turn in range(1, 7)] == [
        "ws://b/ws",
        "ws://c/ws",
        "ws://a/ws",
        "ws://b/ws",
        "ws://c/ws",
        "ws://a/ws",
    ]
