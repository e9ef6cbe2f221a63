"""Every console page renders without exceptions on an empty database and on one filled by a replay, and
shows the database's numbers."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from sqlmodel import Session, func, select

from app.registry import PAGES
from engine.models import AccountSnapshot, Order, Position, ScanRun

PAGE_IDS = [p.module for p in PAGES]
TITLES = {p.module: p.title for p in PAGES}


def _texts(at) -> str:  # type: ignore[no-untyped-def]
    parts = []
    for kind in ("markdown", "caption", "info", "success", "warning", "error", "subheader", "title"):
        parts += [str(e.value) for e in getattr(at, kind)]
    return "\n".join(parts)


def _figure(at, index: int = 0) -> dict:  # type: ignore[no-untyped-def, type-arg]
    charts = at.get("plotly_chart")
    assert charts, "no plotly chart on the page"
    return json.loads(charts[index].proto.spec)


def _money(x: Decimal) -> str:
    return f"${x:,.2f}" if x >= 0 else f"−${-x:,.2f}"


@pytest.mark.parametrize("page", PAGE_IDS)
def test_page_renders_on_empty_database(page: str, empty, console) -> None:  # type: ignore[no-untyped-def]
    at = console().open(page)
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == TITLES[page]


@pytest.mark.parametrize("page", PAGE_IDS)
def test_page_renders_on_filled_database(page: str, filled, console) -> None:  # type: ignore[no-untyped-def]
    at = console().open(page)
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == TITLES[page]
    assert not [e.value for e in at.error if "Traceback" in str(e.value)]


def test_empty_states_say_what_to_do(empty, console) -> None:  # type: ignore[no-untyped-def]
    scanner = console().open("scanner")
    assert "No scan yet — press Scan now or start the scheduler" in _texts(scanner)
    overview = console().open("overview")
    assert "No account snapshot yet" in _texts(overview)
    approvals = console().open("approvals")
    assert "No orders waiting for approval" in _texts(approvals)


def test_overview_shows_the_database_numbers(filled, console, db) -> None:  # type: ignore[no-untyped-def]
    at = console().open("overview")
    with Session(db) as session:
        snap = session.exec(select(AccountSnapshot).order_by(AccountSnapshot.at.desc(),
                                                             AccountSnapshot.id.desc())).first()
        pending = session.exec(select(func.count()).select_from(Order).where(Order.status == "proposed")).one()
        held = session.exec(select(func.count()).select_from(Position).where(Position.status == "open")).one()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Equity"] == _money(snap.equity)
    assert metrics["Total P&L"] == ("+" if snap.equity > 100_000 else "") + _money(snap.equity - Decimal(100_000))
    assert metrics["Waiting for approval"] == str(pending)
    assert pending >= 1  # the manual-mode pre-market left orders waiting
    assert metrics["Open positions"] == str(held)
    assert at.get("plotly_chart"), "equity curve"


def test_scanner_table_and_views(filled, console, db) -> None:  # type: ignore[no-untyped-def]
    at = console().open("scanner")
    with Session(db) as session:
        run = session.exec(select(ScanRun).order_by(ScanRun.data_date.desc(), ScanRun.id.desc())).first()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Scanned"] == f"{run.n_scanned:,}"
    assert metrics["Signals"] == f"{run.n_signals:,}"
    table = at.dataframe[0].value
    assert {"zone", "score", "atr_distance", "atr_pct", "ma_aligned", "dollar_volume_20", "excluded_reason"} <= set(
        table.columns)
    assert table["excluded_reason"].isna().all()  # excluded symbols are hidden until asked for
    at.toggle(key="scan_show_excluded").set_value(True).run()
    assert at.dataframe[0].value["excluded_reason"].notna().any()
    at.toggle(key="scan_signals_only").set_value(True).run()
    assert at.dataframe[0].value["signal"].all()
    at.segmented_control(key="scanner_view").set_value("Matrix").run()
    assert not at.exception
    matrix = _figure(at)
    assert {t["type"] for t in matrix["data"]} == {"scattergl"}
    assert sum(len(t.get("text", [])) for t in matrix["data"] if t["name"] != "signal") > 400
    at.segmented_control(key="scanner_view").set_value("Chart").run()
    assert not at.exception
    chart = _figure(at)
    names = {t.get("name") for t in chart["data"]}
    assert "candlestick" in {t["type"] for t in chart["data"]}
    assert {"SMA20", "SMA50", "SMA200", "SMA50 ± 4 ATR", "SMA50 ± 7 ATR", "SMA50 ± 10 ATR"} <= names
    levels = " ".join(a.get("text", "") for a in chart["layout"].get("annotations", []))
    assert "stop" in levels and all(f"T{i} " in levels for i in (1, 2, 3, 4))


def test_candidates_show_structure_payoff_and_rejections(filled, console) -> None:  # type: ignore[no-untyped-def]
    at = console().open("candidates")
    labels = {m.label for m in at.metric}
    assert {"Max loss", "Max profit", "Breakeven", "Delta", "Theta"} <= labels
    names = {t.get("name") for t in _figure(at)["data"]}
    assert {"at expiry", "today (model)"} <= names
    assert any(s.value == "Rejected contracts" for s in at.subheader)
    rejected = [d.value for d in at.dataframe if "reason" in d.value.columns]
    assert rejected and len(rejected[0]) > 0


def test_positions_show_next_action_and_r_multiples(filled, console, db) -> None:  # type: ignore[no-untyped-def]
    at = console().open("positions")
    with Session(db) as session:
        held = session.exec(select(func.count()).select_from(Position).where(Position.status == "open")).one()
    assert {m.label: m.value for m in at.metric}["Open positions"] == str(held)
    open_table = at.dataframe[0].value
    assert len(open_table) == held
    assert open_table["next_action"].str.contains("stop at").all()
    closed = at.dataframe[1].value
    assert "r_multiple" in closed.columns
    at.multiselect(key="pos_symbols").set_value([open_table["symbol"].iloc[0]]).run()
    assert len(at.dataframe[0].value) == 1


def test_risk_page_lists_every_limit(filled, console) -> None:  # type: ignore[no-untyped-def]
    at = console().open("risk")
    rules = set(at.dataframe[0].value["rule"])
    # every rule of the gate's entry checks, plus the kill switch and the equity the percentages use
    assert rules == {"risk_per_trade", "symbol_risk", "heat", "open_positions", "sector_exposure", "daily_loss",
                     "buying_power", "kill_switch", "equity"}
    assert {"Delta (shares)", "Theta / day", "Vega / vol pt"} <= {m.label for m in at.metric}


def test_orders_page_shows_history_and_fills(filled, console, db) -> None:  # type: ignore[no-untyped-def]
    at = console().open("orders")
    with Session(db) as session:
        n = session.exec(select(func.count()).select_from(Order)).one()
    assert {m.label: m.value for m in at.metric}["Orders"] == f"{n:,}"
    book = at.dataframe[0].value
    assert book["client_order_id"].str.startswith("qm-").all()
    events = at.dataframe[1].value
    assert len(events) >= 1 and {"from", "to", "actor", "reason"} <= set(events.columns)


def test_alerts_and_system_pages_read_the_outbox_and_jobs(filled, console) -> None:  # type: ignore[no-untyped-def]
    alerts = console().open("alerts")
    metrics = {m.label: m.value for m in alerts.metric}
    assert int(metrics["Not configured"].replace(",", "")) > 0  # no webhooks configured in tests
    system = console().open("system")
    assert any("runs" in str(m.value) for m in system.markdown)
    assert any(d.value is not None and "job_id" in d.value.columns for d in system.dataframe)
