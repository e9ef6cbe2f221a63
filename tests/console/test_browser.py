"""The console in a real browser: `streamlit run app/console.py` against a replay-filled database, driven with
Debian's Chromium through Playwright.

- every page's URL opened directly before login shows only the login form;
- after login (on a deep link) every page renders without an exception, and is saved as a screenshot under
  test-artifacts/console/;
- an order waiting for approval is approved from its button and the database records it as the operator's.

Needs /usr/bin/chromium (`apt-get install -y chromium`); without it the test skips, unless
QM_REQUIRE_BROWSER=1 (then it fails).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import Session, select

from app.registry import PAGES
from engine.models import Order, OrderEvent
from tests.console.conftest import CONSOLE, PASSWORD, ROOT

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts" / "console"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ERROR_TEXT = re.compile(r"Traceback|\b\w*Error\b|\b\w*Exception\b")


def _require_browser() -> None:
    problem = None
    if not CHROMIUM.exists():
        problem = f"Debian's Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "the playwright Python package is not installed (pip install -r requirements-dev.txt)"
    if problem:
        if os.environ.get("QM_REQUIRE_BROWSER") == "1":
            pytest.fail(f"QM_REQUIRE_BROWSER=1 but {problem}")
        pytest.skip(f"{problem}; set QM_REQUIRE_BROWSER=1 to make this a failure")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(filled: Path, tmp_path: Path) -> Iterator[str]:
    _require_browser()
    port = _free_port()
    cwd = tmp_path / "server"
    (cwd / ".streamlit").mkdir(parents=True)
    shutil.copy(ROOT / ".streamlit" / "config.toml", cwd / ".streamlit" / "config.toml")  # the repo's server config
    log_path = tmp_path / "streamlit.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", CONSOLE, "--server.port", str(port),
             "--server.headless", "true", "--server.fileWatcherType", "none"],
            cwd=cwd, env=os.environ.copy(), stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"streamlit did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    log_text = log_path.read_text()
    assert "Traceback" not in log_text, f"the console logged an exception:\n{log_text[-3000:]}"


def _settle(page, title: str | None = None, timeout: float = 60.0, draw: float = 0.6) -> None:  # type: ignore[no-untyped-def]
    """Wait until the script run is over (and the page's title is shown), then let charts draw."""
    deadline = time.monotonic() + timeout
    if title is not None:
        page.locator("h1", has_text=title).first.wait_for(timeout=timeout * 1000)
    time.sleep(0.3)
    while page.locator("[data-testid=stStatusWidget]").count() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(draw)


def _assert_clean(page, where: str, page_errors: list[str]) -> None:  # type: ignore[no-untyped-def]
    assert page.locator("[data-testid=stException]").count() == 0, f"exception box on {where}"
    text = page.inner_text("body")
    found = ERROR_TEXT.findall(text)
    assert not found, f"error text on {where}: {found[:5]}"
    assert not page_errors, f"browser errors on {where}: {page_errors[:3]}"


def test_console_in_a_browser(server: str, db) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with Session(db) as session:
        waiting = session.exec(select(Order).where(Order.status == "proposed").order_by(Order.id)).all()
    assert waiting, "the filled database has an order waiting for approval"

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1500, "height": 2400})
            page = context.new_page()
            page_errors: list[str] = []
            page.on("pageerror", lambda exc: page_errors.append(str(exc)))

            # 1. Before login, every page's URL shows the login form and nothing of the page.
            for spec in PAGES:
                page.goto(f"{server}/{spec.url_path}")
                page.locator("input[type=password]").wait_for(timeout=60_000)
                _settle(page, draw=0.2)
                assert page.locator("[data-testid=stSidebarNavLink]").count() == 0, spec.url_path
                headings = [h.strip() for h in page.locator("h1").all_inner_texts()]
                assert headings == ["📈 QuantMatrix"], (spec.url_path, headings)
                assert page.locator("[data-testid=stMetric]").count() == 0
                assert page.locator("[data-testid=stDataFrame]").count() == 0
                _assert_clean(page, f"login at /{spec.url_path}", page_errors)
            page.screenshot(path=str(ARTIFACTS / "login.png"))

            # 2. Log in on a deep link: the page asked for opens.
            page.goto(f"{server}/approvals")
            page.locator("input[type=password]").fill(PASSWORD)
            page.get_by_role("button", name="Log in").click()
            _settle(page, "Approvals")

            # 3. Every page, through the menu (a session lives as long as the browser tab's connection).
            for spec in PAGES:
                page.locator("[data-testid=stSidebarNavLink]", has_text=spec.title).first.click()
                _settle(page, spec.title)
                _assert_clean(page, spec.url_path, page_errors)
                page.screenshot(path=str(ARTIFACTS / f"{spec.module}.png"))
                if spec.module == "scanner":  # the universe matrix (WebGL) and a symbol's chart
                    for view in ("Matrix", "Chart"):
                        page.locator("[data-testid=stButtonGroup] button", has_text=view).first.click()
                        page.locator(".stPlotlyChart").first.wait_for(timeout=30_000)
                        _settle(page, draw=1.0)
                        _assert_clean(page, f"scanner {view}", page_errors)
                        page.screenshot(path=str(ARTIFACTS / f"scanner-{view.lower()}.png"))

            # 4. A reload (a new Streamlit session) keeps the login from its cookie, and the menu with it.
            page.goto(f"{server}/positions")
            _settle(page, "Positions")
            assert page.locator("[data-testid=stSidebarNavLink]").count() == len(PAGES)
            _assert_clean(page, "positions after a reload", page_errors)

            # 5. Approve the first waiting order.
            first = waiting[0]
            page.locator("[data-testid=stSidebarNavLink]", has_text="Approvals").first.click()
            _settle(page, "Approvals")
            page.locator(f".st-key-approve_{first.id} button").click()
            page.get_by_text(f"Approved {first.symbol}").wait_for(timeout=30_000)
            _settle(page)
            _assert_clean(page, "approvals after approving", page_errors)
            page.screenshot(path=str(ARTIFACTS / "approvals-after-approve.png"))
        finally:
            browser.close()

    with Session(db) as session:
        order = session.get(Order, first.id)
        events = session.exec(select(OrderEvent).where(OrderEvent.order_id == first.id,
                                                       OrderEvent.actor == "operator")).all()
    assert order is not None and order.status == "approved"
    assert [(e.from_status, e.to_status) for e in events] == [("proposed", "approved")]
