"""Swagger UI that works offline: the page's scripts, style and icon come from the dashboard.

Litestar's Swagger plugin loads them from a CDN by default, so ``/api/v1/docs`` was blank on a
machine without internet access. The files ship in the ``swagger-ui-bundle-v2`` wheel (Swagger UI
5, which reads the OpenAPI 3.1 documents Litestar writes); only the four the page uses are served.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from litestar import Router, get
from litestar.datastructures import CacheControlHeader
from litestar.exceptions import NotFoundException
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.params import FromPath
from litestar.response import File
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

ASSETS_PATH: Final = "/assets"
# name -> media type: everything the rendered page refers to, and nothing else.
ASSETS: Final = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui-standalone-preset.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
_ASSET_DIR: Final = Path(str(swagger_ui_path))
_CACHE: Final = CacheControlHeader(max_age=3600, public=True)


class OfflineSwagger(SwaggerRenderPlugin):
    """Litestar's Swagger page, pointing at copies of its assets under ``<docs>/assets/``."""

    def __init__(self, docs_path: str, *, path: str = "/") -> None:
        assets = f"{docs_path.rstrip('/')}{ASSETS_PATH}"
        super().__init__(
            js_url=f"{assets}/swagger-ui-bundle.js",
            css_url=f"{assets}/swagger-ui.css",
            standalone_preset_js_url=f"{assets}/swagger-ui-standalone-preset.js",
            favicon=f"<link rel='icon' type='image/png' href='{assets}/favicon-32x32.png'>",
            path=path,
        )

    def receive_router(self, router: Router) -> None:
        super().receive_router(router)
        router.register(swagger_asset)


@get(
    f"{ASSETS_PATH}/{{name:str}}",
    include_in_schema=False,
    sync_to_thread=False,
    cache_control=_CACHE,
)
def swagger_asset(name: FromPath[str]) -> File:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise NotFoundException(detail="Not found")
    return File(_ASSET_DIR / name, media_type=media_type, content_disposition_type="inline")
