"""OpenAPI helpers: error responses documented with the body they really have."""

from __future__ import annotations

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
