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


PAGES = {"": "train", "compare": "compare", "sweeps": "sweeps"}  # a path, without its slashes, to its page


def page_of(pathname: str | None) -> str | None:
    """The page a path shows ("train", "compare" or "sweeps"); None where the lab has no page."""
    return PAGES.get((pathname or "/").strip("/"))


def is_train_page(pathname: str | None) -> bool:
    return page_of(pathname) == "train"


def is_compare(pathname: str | None) -> bool:
    return page_of(pathname) == "compare"


def is_sweeps(pathname: str | None) -> bool:
    return page_of(pathname) == "sweeps"
