"""What a page shows, kept in the URL's fragment (`#run=ID`, `#sweep=ID`): a link, a reload or a new tab
shows it again. The query (`?...`) is the run form's: the two never overwrite each other."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

from app.components import triggered


def from_hash(fragment: str | None, key: str) -> str | None:
    """A value kept in the URL's fragment (`#run=ID`): what a page shows, so that a link or a new tab shows it too."""
    return dict(parse_qsl((fragment or "").lstrip("#"))).get(key) or None


def as_hash(key: str, value: str | None) -> str:
    return "#" + urlencode({key: value}) if value else ""


def triggered_by_url() -> bool:
    """Whether the running callback was set off by the URL (a page load, a link, Back), not by a choice on the
    page. On a page load the URL and the stored selection come in together."""
    return triggered("url")


def is_train_page(pathname: str | None) -> bool:
    return not (pathname or "").rstrip("/").endswith(("/compare", "/sweeps"))
