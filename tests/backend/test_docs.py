"""/docs uses only assets the backend serves itself (no CDN): it works without internet."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlparse

import httpx


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [v for k, v in attrs if k in ("src", "href") and v]


def referenced_urls(html: str) -> list[str]:
    parser = _Links()
    parser.feed(html)
    # URLs inside the inline script too (e.g. `url: '/openapi.json'`, `oauth2RedirectUrl`).
    quoted = re.findall(r"""['"]((?:https?:)?//[^'"\s]+|/[^'"\s]*)['"]""", html)
    return parser.urls + quoted


EXPECTED_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png", ".json": "application/json"}


def test_docs_pages_reference_only_local_assets_that_answer(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server()
    with httpx.Client(base_url=server.url, timeout=30.0) as http:
        for page, must_have in (("/docs", "swagger-ui-bundle.js"),):
            r = http.get(page)
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), (page, r.status_code)
            urls = referenced_urls(r.text)
            assert any(must_have in u for u in urls), (page, urls)
            assert "fonts.googleapis" not in r.text and "cdn." not in r.text, page
            for url in urls:
                absolute = urljoin(f"{server.url}{page}", url)
                assert urlparse(absolute).netloc == urlparse(server.url).netloc, f"{page} loads {url} from elsewhere"
                if url.startswith("/docs/oauth2-redirect"):
                    continue  # a page of its own, checked below
                got = http.get(absolute)
                assert got.status_code == 200, (page, url, got.status_code)
                suffix = "." + url.rsplit(".", 1)[-1]
                assert EXPECTED_TYPES[suffix] in got.headers["content-type"], (url, got.headers["content-type"])
                if suffix == ".js":
                    assert len(got.content) > 100_000, (url, len(got.content))  # the real bundle, not a stub
        assert http.get("/docs/oauth2-redirect").status_code == 200
        assert http.get("/docs/assets/nothing-here.js").status_code == 404
        assert http.get("/redoc").status_code == 404  # not served: ReDoc's page loads its logo from a CDN
