"""Issue 13 items 6 and 9: sectors from ticker details' SIC codes (recorded ``v3/reference/tickers/AAPL``)
within a nightly request budget, a nightly universe refresh (new listings, retired names, counts in the
nightly report) and gap repair (``list_aggs``) for holes the grouped-daily files left. Local fake server."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import numpy as np
from sqlmodel import Session, select

from engine.config import load_settings
from engine.data.ratelimit import Backoff
from engine.data.refresh import refresh_reference_data, refresh_sectors
from engine.data.sic import sector_for_sic
from engine.models import Instrument, Position, Signal
from engine.pipeline import StepReport
from tests.conftest import shared_data
from tests.data.fake_massive import FakeMassive, Reply, Seen, daily_aggs, server_error
from tests.data.test_massive import market_for

NY = ZoneInfo("America/New_York")
NIGHT = datetime(2024, 3, 8, 20, 0, tzinfo=NY)


def _listing(*symbols: str) -> Reply:
    rows = [{"ticker": s, "name": s, "market": "stocks", "type": "CS", "active": True, "currency_name": "usd",
             "primary_exchange": "XNAS"} for s in symbols]
    return Reply(200, {"results": rows, "status": "OK", "request_id": "fake", "count": len(rows)})


def _aapl_details() -> dict:
    return json.loads((shared_data("polygon") / "v3/reference/tickers/AAPL.json").read_text())["results"]


def test_sic_codes_map_to_the_simulated_markets_sectors() -> None:
    # Apple (recorded: 3571 electronic computers), Pfizer 2834, a REIT 6798, Exxon 2911, a utility 4911.
    assert sector_for_sic(_aapl_details()["sic_code"]) == "Information Technology"
    assert [sector_for_sic(c) for c in ("2834", "6798", "2911", "4911", "6022", "3711", "9995", "")] == [
        "Health Care", "Real Estate", "Energy", "Utilities", "Financials", "Consumer Discretionary", "", ""]


def test_the_nightly_refresh_adds_retires_fills_sectors_within_budget_and_reports_counts(
    tmp_path: Path, migrated_sqlite
) -> None:
    settings = load_settings(data_dir=tmp_path).model_copy(update={"reference_data": load_settings(
        data_dir=tmp_path).reference_data.model_copy(update={"sector_requests_per_night": 1})})
    with Session(migrated_sqlite) as session:
        session.add(Instrument(symbol="GONE", source="massive"))
        session.commit()
    with FakeMassive() as fake:
        fake.routes["/v3/reference/tickers"] = _listing("AAPL", "MSFT")
        fake.tickers["AAPL"] = _aapl_details()
        fake.tickers["MSFT"] = {**_aapl_details(), "ticker": "MSFT", "sic_code": "7372"}
        market = market_for(fake, tmp_path, db=migrated_sqlite, cache=False)
        ctx = SimpleNamespace(market=market, settings=settings, db=migrated_sqlite, now=NIGHT)
        report = StepReport("nightly", NIGHT)
        first = refresh_reference_data(ctx, report)
        assert first is not None and (first.listed, first.added, first.retired) == (2, 2, 1)
        assert first.awaiting_history == 2  # no bars yet: scanned once they have min_history sessions
        assert (first.sectors_fetched, first.sectors_pending) == (1, 1)  # the budget: one request a night
        assert report.counts["added"] == 2 and report.counts["retired"] == 1 and "2 new" in report.lines[-1]
        second = refresh_reference_data(ctx, StepReport("nightly", NIGHT))
        third = refresh_reference_data(ctx, StepReport("nightly", NIGHT))
        details_requests = fake.count("/v3/reference/tickers/")
    assert second is not None and (second.sectors_fetched, second.sectors_pending) == (1, 0)
    assert third is not None and third.sectors_fetched == 0  # fetched once, refreshed rarely
    assert details_requests == 2
    with Session(migrated_sqlite) as session:
        rows = {i.symbol: i for i in session.exec(select(Instrument)).all()}
    assert (rows["AAPL"].sector, rows["AAPL"].sic_code) == ("Information Technology", "3571")
    assert rows["MSFT"].sector == "Information Technology"
    assert not rows["GONE"].active and not rows["GONE"].tradable and rows["GONE"].retired_at is not None


class Holey:
    """Three tickers; BBB is missing from the grouped file of 2024-02-28 (a gap between stored bars)."""

    def body(self, day: date) -> bytes:
        tickers = ["AAA", "BBB", "CCC"] if day != date(2024, 2, 28) else ["AAA", "CCC"]
        rows = [{"T": t, "v": 1000, "vw": 50.0, "o": 50.0, "c": 50.0, "h": 50.0, "l": 50.0, "t": 0, "n": 1}
                for t in tickers]
        return json.dumps({"queryCount": len(rows), "resultsCount": len(rows), "adjusted": True, "results": rows,
                           "status": "OK", "request_id": "x", "count": len(rows)}).encode()


def test_gap_repair_refetches_holes_the_grouped_files_left(tmp_path: Path, migrated_sqlite) -> None:
    settings = load_settings(data_dir=tmp_path)
    with FakeMassive(grouped=Holey()) as fake:
        fake.routes["/v3/reference/tickers"] = _listing("AAA", "BBB", "CCC")
        fake.aggs = lambda ticker, start, end: daily_aggs(ticker, start, end, price=50.0)
        market = market_for(fake, tmp_path, db=migrated_sqlite)
        market.backfill(days=5, end=date(2024, 3, 1))  # 02-26 .. 03-01
        before = market.store.load(dtype=np.float64)  # type: ignore[union-attr]
        assert before.n_days == 5 and np.isnan(before.select(["BBB"]).close).sum() == 1  # 02-28
        ctx = SimpleNamespace(market=market, settings=settings, db=migrated_sqlite, now=NIGHT)
        out = refresh_reference_data(ctx, StepReport("nightly", NIGHT))
        aggs = [s.path for s in fake.seen if s.path.startswith("/v2/aggs/ticker/")]
    assert out is not None and (out.repaired_symbols, out.repaired_bars) == (1, 1)
    assert aggs == ["/v2/aggs/ticker/BBB/range/1/day/2024-02-28/2024-02-28"]
    after = market.store.load(dtype=np.float64).select(["BBB"]).close  # type: ignore[union-attr]
    assert after.shape == (5, 1) and np.isfinite(after).all()


def test_refresh_sectors_does_nothing_without_tradable_instruments(tmp_path: Path, migrated_sqlite) -> None:
    with FakeMassive() as fake:
        assert refresh_sectors(migrated_sqlite, market_for(fake, tmp_path), NIGHT, 10, 180) == (0, 0)


class Missing:
    """Three tickers; ``gaps`` maps a date to the tickers its grouped file lacks."""

    def __init__(self, gaps: dict[date, set[str]]) -> None:
        self.gaps = gaps

    def body(self, day: date) -> bytes:
        tickers = [t for t in ("AAA", "BBB", "CCC") if t not in self.gaps.get(day, set())]
        rows = [{"T": t, "v": 1000, "vw": 50.0, "o": 50.0, "c": 50.0, "h": 50.0, "l": 50.0, "t": 0, "n": 1}
                for t in tickers]
        return json.dumps({"queryCount": len(rows), "resultsCount": len(rows), "adjusted": True, "results": rows,
                           "status": "OK", "request_id": "x", "count": len(rows)}).encode()


def test_a_hole_the_symbol_did_not_trade_is_asked_once_not_every_night(tmp_path: Path, migrated_sqlite) -> None:
    # BBB genuinely did not trade on 02-28 (a halt): list_aggs answers 0 bars. Repro of the audit: three
    # nights sent three identical requests.
    settings = load_settings(data_dir=tmp_path)
    with FakeMassive(grouped=Missing({date(2024, 2, 28): {"BBB"}})) as fake:
        fake.routes["/v3/reference/tickers"] = _listing("AAA", "BBB", "CCC")
        fake.aggs = lambda ticker, start, end: [
            b for b in daily_aggs(ticker, start, end, price=50.0)
            if not (ticker == "BBB" and b["t"] == int(datetime(2024, 2, 28, tzinfo=NY).timestamp() * 1000))]
        market = market_for(fake, tmp_path, db=migrated_sqlite)
        market.backfill(days=5, end=date(2024, 3, 1))
        ctx = SimpleNamespace(market=market, settings=settings, db=migrated_sqlite, now=NIGHT)
        nights = [refresh_reference_data(ctx, StepReport("nightly", NIGHT)) for _ in range(3)]
        aggs = [s.path for s in fake.seen if s.path.startswith("/v2/aggs/ticker/")]
    assert aggs == ["/v2/aggs/ticker/BBB/range/1/day/2024-02-28/2024-02-28"]
    assert [(n.repaired_symbols, n.repaired_bars) for n in nights if n is not None] == [(1, 0), (0, 0), (0, 0)]


def test_a_hole_at_the_newest_edge_of_the_store_is_repaired(tmp_path: Path, migrated_sqlite) -> None:
    # BBB is missing from the newest stored grouped file (03-01): no bar after it, still a hole to repair.
    settings = load_settings(data_dir=tmp_path)
    with FakeMassive(grouped=Missing({date(2024, 3, 1): {"BBB"}})) as fake:
        fake.routes["/v3/reference/tickers"] = _listing("AAA", "BBB", "CCC")
        fake.aggs = lambda ticker, start, end: daily_aggs(ticker, start, end, price=50.0)
        market = market_for(fake, tmp_path, db=migrated_sqlite)
        market.backfill(days=5, end=date(2024, 3, 1))
        ctx = SimpleNamespace(market=market, settings=settings, db=migrated_sqlite, now=NIGHT)
        out = refresh_reference_data(ctx, StepReport("nightly", NIGHT))
        aggs = [s.path for s in fake.seen if s.path.startswith("/v2/aggs/ticker/")]
    assert aggs == ["/v2/aggs/ticker/BBB/range/1/day/2024-03-01/2024-03-01"]
    assert out is not None and (out.repaired_symbols, out.repaired_bars) == (1, 1)
    after = market.store.load(dtype=np.float64).select(["BBB"]).close  # type: ignore[union-attr]
    assert np.isfinite(after).all()


def _write_lock_probe(db) -> tuple[list[str], Callable[[Seen], None]]:  # type: ignore[no-untyped-def]
    """A hook that, during each reference request, tries to take SQLite's write lock the way the lease
    renewal or a console write would (without waiting); the paths answered while it was held."""
    path = db.url.database
    locked: list[str] = []

    def probe(seen: Seen) -> None:
        con = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            con.execute("BEGIN IMMEDIATE")
            con.execute("ROLLBACK")
        except sqlite3.OperationalError:
            locked.append(seen.path)
        finally:
            con.close()

    return locked, probe


def test_the_nightly_refresh_fetches_outside_the_write_lock(tmp_path: Path, migrated_sqlite) -> None:
    # At 5 requests a minute, 600 ticker-details requests take two hours: no write lock may span them.
    settings = load_settings(data_dir=tmp_path)
    with FakeMassive() as fake:
        fake.routes["/v3/reference/tickers"] = _listing("AAPL", "MSFT", "NVDA")
        for sym in ("AAPL", "MSFT", "NVDA"):
            fake.tickers[sym] = {**_aapl_details(), "ticker": sym}
        locked, fake.on_request = _write_lock_probe(migrated_sqlite)
        market = market_for(fake, tmp_path, db=migrated_sqlite, cache=False)
        ctx = SimpleNamespace(market=market, settings=settings, db=migrated_sqlite, now=NIGHT)
        out = refresh_reference_data(ctx, StepReport("nightly", NIGHT))
        requests = fake.count("/v3/reference/tickers")
    assert out is not None and out.sectors_fetched == 3 and requests == 4
    assert locked == []


def test_a_transient_failure_leaves_the_symbol_due_and_held_symbols_come_first(
    tmp_path: Path, migrated_sqlite
) -> None:
    settings = load_settings(data_dir=tmp_path)
    settings = settings.model_copy(update={"reference_data": settings.reference_data.model_copy(
        update={"sector_requests_per_night": 2})})
    with Session(migrated_sqlite) as session:  # ZZZ is held, YYY signalled: both before AAA..CCC
        session.add(Position(strategy="atr_matrix", symbol="ZZZ", structure="long_call", quantity=1))
        session.add(Signal(strategy="atr_matrix", symbol="YYY", data_date=date(2024, 3, 7)))
        session.commit()
    with FakeMassive() as fake:
        fake.routes["/v3/reference/tickers"] = _listing("AAA", "BBB", "CCC", "YYY", "ZZZ")
        for sym in ("AAA", "BBB", "CCC", "YYY", "ZZZ"):
            fake.tickers[sym] = {**_aapl_details(), "ticker": sym}
        fake.fault("/v3/reference/tickers/YYY", *[server_error()] * 20)  # a 500 outlasting every retry
        market = market_for(fake, tmp_path, db=migrated_sqlite, cache=False, backoff=Backoff.none())
        ctx = SimpleNamespace(market=market, settings=settings, db=migrated_sqlite, now=NIGHT)
        first = refresh_reference_data(ctx, StepReport("nightly", NIGHT))
        fetched_first = [s.path.rsplit("/", 1)[1] for s in fake.seen if s.path.startswith("/v3/reference/tickers/")]
        fake.faults.clear()
        second = refresh_reference_data(ctx, StepReport("nightly", NIGHT))
    assert dict.fromkeys(fetched_first) == {"ZZZ": None, "YYY": None}
    assert first is not None and first.sectors_fetched == 1 and first.sectors_pending == 4
    with Session(migrated_sqlite) as session:
        rows = {i.symbol: i for i in session.exec(select(Instrument)).all()}
    assert rows["ZZZ"].details_at is not None and rows["ZZZ"].sector == "Information Technology"
    assert rows["YYY"].details_at is not None  # not parked for 180 days: fetched the next night
    assert second is not None and second.sectors_fetched == 2
