"""``/api/v1/docs`` works offline: Swagger UI's page and every file it loads come from the app."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import httpx

DOCS = "/api/v1/docs"


class _Refs(HTMLParser):
    """Every ``src`` and ``href`` in a page, plus the text of its inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_script = tag == "script"
        for name, value in attrs:
            if name in ("src", "href") and value is not None:
                self.refs.append((tag, value))

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)


async def _page(client: httpx.AsyncClient, path: str) -> _Refs:
    response = await client.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    refs = _Refs()
    refs.feed(response.text)
    return refs


async def test_the_docs_page_loads_nothing_from_another_host(client: httpx.AsyncClient) -> None:
    for path in (DOCS, f"{DOCS}/"):
        page = await _page(client, path)
        assert page.refs, "the page refers to no script or style at all"
        for tag, ref in page.refs:
            # Paths on this server only: no scheme, no protocol-relative //host.
            assert ref.startswith("/") and not ref.startswith("//"), (tag, ref)
        # The spec is inlined; nothing in the scripts fetches from elsewhere either.
        assert not re.search(r"https?://", "".join(page.scripts)), page.scripts


async def test_every_file_the_docs_page_loads_is_served_by_the_app(
    client: httpx.AsyncClient,
) -> None:
    page = await _page(client, DOCS)
    loaded = {ref: tag for tag, ref in page.refs}
    kinds = {"script": "text/javascript", "link": ""}
    assert sum(tag == "script" for tag in loaded.values()) == 2, loaded  # bundle + preset
    for ref, tag in loaded.items():
        response = await client.get(ref)
        assert response.status_code == 200, (ref, response.status_code)
        assert response.headers["content-type"].startswith(kinds[tag]), response.headers
        assert "attachment" not in response.headers.get("content-disposition", "")
        if ref.endswith("swagger-ui-bundle.js"):
            assert b"SwaggerUIBundle" in response.content
        if ref.endswith(".css"):
            assert response.headers["content-type"].startswith("text/css")
            assert b".swagger-ui" in response.content


async def test_only_swagger_ui_files_are_served_from_the_assets_path(
    client: httpx.AsyncClient,
) -> None:
    for name in ("index.html", "swagger-initializer.js", "..%2F..%2Fopenapi.json", "nope.js"):
        response = await client.get(f"{DOCS}/assets/{name}")
        assert response.status_code == 404, (name, response.status_code)
