"""The console's pages, in menu order. Each page module exposes ``render()``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pages import home


@dataclass(frozen=True)
class PageSpec:
    render: Callable[[], None]
    title: str
    icon: str
    url_path: str


PAGES: list[PageSpec] = [
    PageSpec(home.render, "Overview", "🏠", "overview"),
]
