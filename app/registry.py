"""The console's pages, in menu order. Each page is a module in pages/ that exposes ``render()``.

Pages are registered as files (``st.Page(path)``): Streamlit runs the module as a script, and its last
line calls ``render()``. Nothing in pages/ runs unless ``app/console.py`` reaches ``navigation.run()``,
which it does only after the login gate.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PAGES_DIR = Path(__file__).resolve().parent.parent / "pages"


@dataclass(frozen=True)
class PageSpec:
    module: str  # file name in pages/, without .py
    title: str
    icon: str
    url_path: str
    section: str

    @property
    def path(self) -> Path:
        return PAGES_DIR / f"{self.module}.py"


PAGES: list[PageSpec] = [
    PageSpec("overview", "Overview", "🏠", "overview", "Trading"),
    PageSpec("scanner", "Scanner", "🧭", "scanner", "Trading"),
    PageSpec("candidates", "Options candidates", "🧩", "candidates", "Trading"),
    PageSpec("approvals", "Approvals", "✅", "approvals", "Trading"),
    PageSpec("positions", "Positions", "📊", "positions", "Portfolio"),
    PageSpec("risk", "Risk", "🛡️", "risk", "Portfolio"),
    PageSpec("orders", "Orders and fills", "📒", "orders", "Portfolio"),
    PageSpec("broker", "Broker", "🏦", "broker", "Portfolio"),
    PageSpec("transactions", "Transactions", "🧾", "transactions", "Portfolio"),
    PageSpec("tax_lots", "Tax lots", "📑", "tax-lots", "Portfolio"),
    PageSpec("backtests", "Backtests", "🧪", "backtests", "Research"),
    PageSpec("alerts", "Alerts", "🔔", "alerts", "Operations"),
    PageSpec("system", "System", "⚙️", "system", "Operations"),
    PageSpec("settings", "Settings", "🔧", "settings", "Operations"),
]


def by_url(url_path: str) -> PageSpec:
    for page in PAGES:
        if page.url_path == url_path:
            return page
    raise KeyError(url_path)
