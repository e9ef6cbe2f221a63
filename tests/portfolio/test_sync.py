"""Portfolio sync: positions broker vs engine, external positions in the gate, transactions incremental
and idempotent, adoption through the gate, and the `sync` / `broker preview` commands."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlmodel import Session, select

from engine.config import load_settings
from engine.db import make_engine, migrate, session_scope
from engine.execution.ports import AssetType, BrokerPosition, Leg, Side
from engine.models import BrokerSyncState, Position, Transaction
from engine.portfolio import sync as ps
from engine.portfolio.exposure import portfolio_risk_offline
from tests.execution.tastytrade_fake import ACCOUNT, FakeTastytrade
from tests.execution.test_tastytrade_adapter import NOW, make

CALL_600 = "SPY   261218C00600000"
CALL_610 = "SPY   261218C00610000"
PUT_180 = "AAPL  261218P00180000"


@pytest.fixture
def fake() -> FakeTastytrade:
    f = FakeTastytrade(clock=lambda: NOW)
    f.position(CALL_600, 2, "4.00", "4.50")
    f.position(CALL_610, -2, "1.50", "1.70")
    f.position(PUT_180, -1, "2.10", "1.90", underlying="AAPL")
    f.position("AAPL", 100, "99.5", "100.0", "Equity", "AAPL")
    f.seed_recorded_transactions()
    return f


@pytest.fixture
def db(sqlite_url: str):  # type: ignore[no-untyped-def]
    migrate(sqlite_url)
    return make_engine(sqlite_url)


@pytest.fixture
def broker(fake: FakeTastytrade) -> Iterator[object]:
    b = make(fake)
    yield b
    b.close()


def _engine_position(db, legs: list[Leg], quantity: int) -> None:  # type: ignore[no-untyped-def]
    with session_scope(db) as s:
        s.add(Position(strategy="atr_matrix", symbol="SPY", structure="call_debit_spread",
                       legs=[leg.to_dict() for leg in legs], quantity=quantity, initial_quantity=quantity,
                       entry_price=Decimal("2.50"), max_loss=Decimal("250") * quantity, opened_at=NOW))


def test_sync_compares_positions_and_stores_transactions_once(db, fake, broker) -> None:  # type: ignore[no-untyped-def]
    # the engine opened one of the two SPY call spreads; the rest of the account is external
    _engine_position(db, [Leg(CALL_600, Side.buy), Leg(CALL_610, Side.sell)], 1)
    report = ps.sync(db, broker, NOW)
    assert report.broker == "tastytrade" and report.account == ACCOUNT
    assert report.transactions_new == 3
    diffs = {d["instrument"]: d for d in report.differences}
    assert diffs[CALL_600] == {"kind": "external", "instrument": CALL_600, "engine": 1, "broker": 2, "external": 1,
                               "underlying": "SPY"}
    assert diffs[CALL_610]["kind"] == "external" and diffs[CALL_610]["external"] == -1
    assert diffs["AAPL"]["external"] == 100 and diffs[PUT_180]["external"] == -1
    out = report.to_json()
    # issue 14 names the fields exactly: no more, no fewer
    assert set(out) == {"broker", "account", "positions", "balances", "transactions_new", "differences"}
    assert {"symbol": CALL_610, "quantity": -2, "average_open_price": 1.5, "instrument_type": "option"
            } in out["positions"]
    assert all(set(p) == {"symbol", "quantity", "average_open_price", "instrument_type"} for p in out["positions"])
    assert set(out["balances"]) == {"net_liquidating_value", "cash_balance"}
    # rerun: nothing new; a new transaction later: exactly one new
    assert ps.sync(db, broker, NOW).transactions_new == 0
    fake.quotes = {}
    fake._book({"symbol": "AAPL", "instrument-type": "Equity", "action": "Sell to Close"}, 10, Decimal("101"),
               Decimal("1010"), Decimal("0"), 5, NOW + timedelta(days=1), "x1")
    assert ps.sync(db, broker, NOW + timedelta(days=1)).transactions_new == 1
    with Session(db) as s:
        rows = s.exec(select(Transaction)).all()
        state = s.exec(select(BrokerSyncState)).one()
    assert len(rows) == 4 and len({r.broker_txn_id for r in rows}) == 4
    assert state.last_txn_id == str(fake._txn_id) and state.transactions_total == 4
    sold = next(r for r in rows if r.broker_txn_id == str(fake._txn_id))
    assert sold.quantity == Decimal("-10") and sold.amount == Decimal("1010")
    # the next pull asks from the last synced transaction's day
    assert ps.sync(db, broker, NOW + timedelta(days=1)).transactions_new == 0
    last = [r for r in fake.requests if r.url.path.endswith("/transactions")][-1]
    assert "start-date=2026-12-02" in str(last.url)


def test_max_loss_of_external_positions_by_hand() -> None:
    spread = [BrokerPosition(CALL_600, 1, Decimal("4.00"), AssetType.option, "SPY"),
              BrokerPosition(CALL_610, -1, Decimal("1.50"), AssetType.option, "SPY")]
    assert ps.max_loss(spread) == Decimal("250.00")  # debit 2.50 x 100
    short_put = [BrokerPosition(PUT_180, -1, Decimal("2.10"), AssetType.option, "AAPL")]
    assert ps.max_loss(short_put) == Decimal("17790.00")  # (180 - 2.10) x 100, the stock going to 0
    stock = [BrokerPosition("AAPL", 100, Decimal("99.5"), AssetType.stock, "AAPL")]
    assert ps.max_loss(stock) == Decimal("9950.00")
    naked_call = [BrokerPosition(CALL_610, -1, Decimal("1.50"), AssetType.option, "SPY")]
    assert ps.max_loss(naked_call) == Decimal("60850.00")  # stress bound: SPY at 2 x 610 -> 610 x 100 - 150


def test_external_positions_count_in_the_gate_until_adopted(db, fake, broker) -> None:  # type: ignore[no-untyped-def]
    fake.positions = [p for p in fake.positions if p["underlying-symbol"] == "SPY"]  # the SPY spread x2
    settings = load_settings(database_url=str(db.url), broker="tastytrade",
                             tastytrade={"client_secret": "s", "refresh_token": "r"})
    with Session(db) as s:
        before = portfolio_risk_offline(s, settings, NOW)
    assert before.heat == 0 and before.open_positions == 0
    ps.sync(db, broker, NOW)
    with Session(db) as s:
        after = portfolio_risk_offline(s, settings, NOW)
    assert after.heat == Decimal("500.00")  # two 600/610 call spreads bought for 2.50
    assert after.risk_by_symbol == {"SPY": Decimal("500.00")} and after.open_positions == 1
    # paper trading does not count another broker's account
    paper = load_settings(database_url=str(db.url))
    with Session(db) as s:
        assert portfolio_risk_offline(s, paper, NOW).heat == 0

    def portfolio_for(underlying: str):  # type: ignore[no-untyped-def]
        return portfolio_risk_offline(s, settings, NOW, exclude_external=underlying)

    with session_scope(db) as s:
        result = ps.adopt(s, "tastytrade", "SPY", portfolio_for, settings.risk, NOW)
    assert result.adopted, result.message
    with Session(db) as s:
        pos = s.get(Position, result.position_id)
        assert pos is not None and pos.strategy == "adopted" and pos.quantity == 2
        assert [(leg["instrument"], leg["side"], leg["ratio"]) for leg in pos.legs] == [
            (CALL_600, "buy", 1), (CALL_610, "sell", 1)]
        assert pos.entry_price == Decimal("2.50") and pos.max_loss == Decimal("500.00")
        snapshot = [ps._from_row(r) for r in s.exec(select(BrokerSyncState)).one().positions]
        assert ps.differences(snapshot, ps.engine_instrument_positions(s)) == []
        assert ps.external_risk(s, "tastytrade") == {}  # now the engine's own risk, counted once
        assert portfolio_risk_offline(s, settings, NOW).heat == Decimal("500.00")


def test_adoption_is_refused_by_the_gate_when_too_big(db, fake, broker) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings(database_url=str(db.url), broker="tastytrade",
                             tastytrade={"client_secret": "s", "refresh_token": "r"})
    ps.sync(db, broker, NOW)
    with session_scope(db) as s:
        result = ps.adopt(s, "tastytrade", "AAPL", lambda i: portfolio_risk_offline(s, settings, NOW,
                                                                                      exclude_external=i),
                          settings.risk, NOW)
    # AAPL: 100 shares at 99.50 and a short 180 put at 2.10: worst case AAPL at 0 loses 9,950 + 17,790
    assert not result.adopted and "risk_per_trade: 27.74%" in result.message
    with Session(db) as s:
        assert s.exec(select(Position)).all() == []


def test_sync_and_preview_commands_print_the_issue_json(db, fake, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from engine.cli import main
    from engine.config import get_settings
    from engine.portfolio import cli_sync

    monkeypatch.setenv("QM_DATABASE_URL", str(db.url))
    get_settings.cache_clear()
    monkeypatch.setitem(cli_sync.SYNC_BUILDERS, "tastytrade", lambda settings: make(fake))
    assert main(["sync", "--broker", "tastytrade", "--json"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    out = json.loads(printed[-1])
    assert set(out) == {"broker", "account", "positions", "balances", "transactions_new", "differences"}
    assert out["broker"] == "tastytrade" and out["account"] == ACCOUNT and out["transactions_new"] == 3
    assert {"symbol": "AAPL", "quantity": 100, "average_open_price": 99.5, "instrument_type": "stock"
            } in out["positions"]
    assert all(set(p) == {"symbol", "quantity", "average_open_price", "instrument_type"} for p in out["positions"])
    assert out["balances"] == {"net_liquidating_value": 100000.0 + 2 * 450 - 2 * 170 - 190 + 10000,
                               "cash_balance": 100000.0}
    assert "sandbox" in " ".join(printed[:-1])  # the environment is in the human-readable lines
    assert len(out["differences"]) == 4
    assert main(["broker", "preview", "--symbol", CALL_600, "--side", "buy", "--quantity", "2", "--limit", "4.15",
                 "--broker", "tastytrade", "--json"]) == 0
    preview = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # fake dry run: 4.15 x 100 x 2 + fees 2 x 1.142
    assert preview["buying_power_effect"] == pytest.approx(832.284) and preview["fees"] == pytest.approx(2.284)
    assert preview["price_effect"] == "Debit" and preview["errors"] == []
    assert main(["sync", "--broker", "nosuch"]) == 2
    assert main(["broker", "preview", "--symbol", CALL_600, "--side", "buy", "--quantity", "0", "--limit", "1",
                 "--broker", "tastytrade"]) == 2
    get_settings.cache_clear()


def test_external_position_risk_is_fresh_after_close(db) -> None:  # type: ignore[no-untyped-def]
    # An engine position that the broker no longer holds is a difference, never external risk.
    _engine_position(db, [Leg(CALL_600, Side.buy), Leg(CALL_610, Side.sell)], 1)
    with session_scope(db) as s:
        s.add(BrokerSyncState(broker="tastytrade", account=ACCOUNT, last_sync_at=datetime(2026, 12, 1, tzinfo=UTC),
                              positions=[]))
    with Session(db) as s:
        assert ps.external_risk(s, "tastytrade") == {}
        d = ps.differences([], ps.engine_instrument_positions(s))
    assert {x["kind"] for x in d} == {"missing_at_broker"}


def test_a_position_opened_between_syncs_counts_after_the_next_reconcile(db, fake, broker) -> None:  # type: ignore[no-untyped-def]
    from engine.execution.reconcile import reconcile

    settings = load_settings(database_url=str(db.url), broker="tastytrade",
                             tastytrade={"client_secret": "s", "refresh_token": "r"})
    fake.positions = []
    ps.sync(db, broker, NOW)  # the nightly sync saw an empty account
    fake.position(CALL_600, 2, "4.00", "4.50")  # the operator opens a call spread by hand during the day
    fake.position(CALL_610, -2, "1.50", "1.70")
    with Session(db) as s:
        assert portfolio_risk_offline(s, settings, NOW).heat == 0  # not seen yet
    # the engine started with 50,000 of its own: the account's 100,000 cash is no difference on a real account
    run = reconcile(db, broker, Decimal("50000"), NOW + timedelta(minutes=5))
    assert run.differences == [] and run.ok  # external positions are expected, not differences
    with Session(db) as s:
        assert portfolio_risk_offline(s, settings, NOW).heat == Decimal("500.00")  # 2 x (4.00 - 1.50) x 100
        state = s.exec(select(BrokerSyncState)).one()
    assert state.last_sync_at is not None and state.last_sync_at.replace(tzinfo=UTC) == NOW  # still the full sync's
    assert [(d["instrument"], d["kind"], d["external"]) for d in state.differences] == [
        (CALL_600, "external", 2), (CALL_610, "external", -2)]
    # an engine position the broker does not hold is still a difference
    _engine_position(db, [Leg(PUT_180, Side.buy)], 1)
    run = reconcile(db, broker, Decimal("50000"), NOW + timedelta(minutes=10))
    assert [(d["kind"], d["instrument"], d["engine"], d["broker"]) for d in run.differences] == [
        ("position", PUT_180, 1, 0)]


def test_external_positions_count_in_the_sector_limit(db, fake, broker) -> None:  # type: ignore[no-untyped-def]
    from engine.models import Instrument, ScanResult, ScanRun

    settings = load_settings(database_url=str(db.url), broker="tastytrade",
                             tastytrade={"client_secret": "s", "refresh_token": "r"})
    with session_scope(db) as s:
        s.add(Instrument(symbol="AAPL", sector="Information Technology"))
        s.add(Instrument(symbol="SPY", sector="ETF"))
        run = ScanRun(strategy="atr_matrix", data_source="sim", data_date=NOW.date(), params_hash="x")
        s.add(run)
        s.flush()
        s.add(ScanResult(scan_run_id=run.id, rank=1, symbol="SPY", close=605.0))
    ps.sync(db, broker, NOW)
    with Session(db) as s:
        sectors = portfolio_risk_offline(s, settings, NOW).delta_dollars_by_sector
    # AAPL: 100 shares (delta 100) + a short 180 put (delta 0..+100): at most 200 shares x 99.50 (no scan,
    # the stock's open price) = 19,900
    assert sectors["Information Technology"] == pytest.approx(19900.0)
    # SPY: long 2 600 calls (0..+200) and short 2 610 calls (-200..0): at most 200 shares x the scan's 605
    assert sectors["ETF"] == pytest.approx(121000.0)
    # the engine's own positions keep their delta dollars; externals add to their sector
    with session_scope(db) as s:
        s.add(Position(strategy="atr_matrix", symbol="MSFT", sector="Information Technology", structure="long_call",
                       legs=[Leg("MSFT  261218C00400000", Side.buy).to_dict()], quantity=1, initial_quantity=1,
                       entry_price=Decimal("5"), max_loss=Decimal("500"), delta_dollars=2000.0, opened_at=NOW))
    with Session(db) as s:
        sectors = portfolio_risk_offline(s, settings, NOW).delta_dollars_by_sector
    assert sectors["Information Technology"] == pytest.approx(21900.0)
