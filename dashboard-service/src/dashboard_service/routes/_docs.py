"""OpenAPI helpers: responses documented with the body they really have, and an example."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar.enums import MediaType
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example

from dashboard_service.schemas import ErrorBody


def error(description: str, *details: str) -> ResponseSpec:
    return ResponseSpec(
        data_container=ErrorBody,
        description=description,
        generate_examples=False,
        examples=[Example(summary=d, value={"detail": d}) for d in details],
    )


def ok(
    description: str,
    example: Any,
    *,
    data_container: Any = None,
    media_type: MediaType | str = MediaType.JSON,
) -> ResponseSpec:
    """A success response with one whole-body example.

    Given under the handler's own status code it replaces the response Litestar derives from the
    return type (same schema), which has no example of the whole body. ``example`` may be a
    Struct: then its type is the schema and the example is its JSON form, so the two agree.
    """
    if isinstance(example, msgspec.Struct):
        data_container = data_container or type(example)
        example = msgspec.to_builtins(example)
    return ResponseSpec(
        data_container=data_container,
        description=description,
        media_type=media_type,
        generate_examples=False,
        examples=[Example(summary=description, value=example)],
    )
