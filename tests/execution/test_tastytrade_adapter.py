"""The tastytrade adapter against the local API (httpx2.MockTransport, bodies in the recorded shapes)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx2
import pytest
from pydantic import SecretStr

from engine.config import TastytradeSettings
from engine.execution.brokers.tastytrade import OrderTimes, TastytradeAuthError, TastytradeBroker
from engine.execution.ports import (
    AssetType,
    Broker,
    BrokerOrderStatus,
    BrokerRejected,
    BrokerUnavailable,
    Leg,
    PreviewingBroker,
    Side,
)
from engine.risk import Intent, ProposedOrder
from tests.conftest import shared_data
from tests.execution.tastytrade_fake import ACCOUNT, FakeTastytrade

NOW = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
CALL_600 = "SPY   261218C00600000"
CALL_610 = "SPY   261218C00610000"
PUT_570 = "SPY   261218P00570000"
PUT_580 = "SPY   261218P00580000"
PUT_560 = "SPY   261218P00560000"
CALL_620 = "SPY   261218C00620000"
SECRET, REFRESH = "provider-secret-value", "refresh-token-value"


def make(fake: FakeTastytrade, *, now: Callable[[], datetime] = lambda: NOW,
         order_times: Callable[[str], OrderTimes | None] | None = None, **kw: object) -> TastytradeBroker:
    cfg = TastytradeSettings(client_secret=SecretStr(SECRET), refresh_token=SecretStr(REFRESH),
                             api_url="http://tasty.test", **kw)  # type: ignore[arg-type]
    return TastytradeBroker(cfg, transport=fake.transport(), backoff_seconds=0.0, now=now, order_times=order_times)


@pytest.fixture
def fake() -> FakeTastytrade:
    return FakeTastytrade(clock=lambda: NOW)


@pytest.fixture
def broker(fake: FakeTastytrade) -> Iterator[TastytradeBroker]:
    b = make(fake)
    yield b
    b.close()


def _passed(order: ProposedOrder):  # type: ignore[no-untyped-def]
    from engine.config import RiskSettings
    from engine.risk import PortfolioRisk, evaluate

    big = PortfolioRisk(equity=Decimal("10000000"), buying_power=Decimal("10000000"),
                        day_start_equity=Decimal("10000000"), open_positions=0, heat=Decimal(0))
    decision = evaluate(order, big, RiskSettings(), NOW)
    assert decision.gate_pass is not None, decision.summary()
    return decision.gate_pass


def _order(cid: str, legs: tuple[Leg, ...], qty: int, limit: str, intent: Intent = Intent.open,
           tif: str = "day") -> ProposedOrder:
    return ProposedOrder(cid, "SPY", "", intent, legs, qty, Decimal(limit), Decimal("100"), Decimal("100"),
                         position_quantity=qty if intent is Intent.close else None, time_in_force=tif)


CONDOR = (Leg(PUT_570, Side.buy), Leg(PUT_580, Side.sell), Leg(CALL_610, Side.sell), Leg(CALL_620, Side.buy))


def test_it_is_a_broker_with_a_dry_run(broker: TastytradeBroker) -> None:
    assert isinstance(broker, Broker) and isinstance(broker, PreviewingBroker)
    assert broker.account_number == ACCOUNT and broker.environment == "sandbox"


def test_every_call_runs_on_the_adapters_one_event_loop_until_close(fake: FakeTastytrade) -> None:
    """The async SDK is bridged once: one loop on one portal thread for the adapter's life (a loop per
    call, as asyncio.run() would make, breaks the SDK's shared HTTP client and its token refresh)."""
    import threading

    b = make(fake)
    try:
        b.account()
        b.positions()
        b.preview(_order("qm-loop-1", CONDOR, 1, "-2.82"))
        b.live_orders()
    finally:
        b.close()
    assert len(fake.loops) >= 5  # session + account lookup + the four calls above
    loops = {id(loop) for loop, _ in fake.loops}
    threads = {thread.ident for _, thread in fake.loops}
    assert len(loops) == 1 and len(threads) == 1
    loop, thread = fake.loops[0]
    assert thread is not threading.current_thread()  # the portal's thread, not the caller's
    assert loop.is_closed() and not thread.is_alive()  # close() stops the loop and its thread


def test_oauth_refresh_on_expiry_and_after_a_401(fake: FakeTastytrade) -> None:
    fake.token_lifetime = 30  # under the SDK's 60 s margin: every call refreshes first
    b = make(fake)
    try:
        before = fake.token_requests
        b.account()
        b.positions()
        assert fake.token_requests == before + 2
        body = json.loads(next(r for r in fake.requests if r.url.path == "/oauth/token").content)
        assert body == {"grant_type": "refresh_token", "client_secret": SECRET, "refresh_token": REFRESH}
    finally:
        b.close()
    fake.token_lifetime = 900
    b = make(fake)
    try:
        before = fake.token_requests
        fake.expire_token()  # the access token dies early: the API answers 401
        assert b.account().cash == Decimal("100000")
        assert fake.token_requests == before + 1 and b.transport.refreshes_after_401 == 1
    finally:
        b.close()


def test_a_revoked_grant_is_a_clear_error_naming_the_setting(fake: FakeTastytrade) -> None:
    fake.revoked = True
    with pytest.raises(TastytradeAuthError, match="QM_TASTYTRADE__REFRESH_TOKEN") as info:
        make(fake)
    assert REFRESH not in str(info.value) and SECRET not in str(info.value)
    assert isinstance(info.value, BrokerUnavailable)  # an order in flight waits, it is not rejected


def test_accounts_one_many_and_chosen(fake: FakeTastytrade) -> None:
    fake.accounts = 2
    with pytest.raises(BrokerRejected, match="QM_TASTYTRADE__ACCOUNT_NUMBER"):
        make(fake)
    b = make(fake, account_number=ACCOUNT)
    try:
        assert b.account_number == ACCOUNT
    finally:
        b.close()


def test_positions_long_and_short_equity_and_option(fake: FakeTastytrade, broker: TastytradeBroker) -> None:
    fake.position(CALL_600, -2, "3.10", "2.50")
    fake.position(PUT_570, 3, "1.25", "1.40")
    fake.position("AAPL", 100, "99.5", "100.0", "Equity", "AAPL")
    got = {p.instrument: p for p in broker.positions()}
    assert got[CALL_600].quantity == -2 and got[CALL_600].asset is AssetType.option
    assert got[CALL_600].underlying == "SPY" and got[CALL_600].avg_price == Decimal("3.10")
    assert len(CALL_600) == 21  # the padded OCC root survives
    assert got[PUT_570].quantity == 3
    assert got["AAPL"].quantity == 100 and got["AAPL"].asset is AssetType.stock


def test_balances_from_the_recorded_frame(fake: FakeTastytrade, broker: TastytradeBroker) -> None:
    recorded = json.loads(shared_data("tastytrade", "joaquinbejar", "streamer_frames",
                                      "account-balance.derived.json").read_text())["data"]
    fake._balances = lambda: {**recorded, "account-number": ACCOUNT}  # type: ignore[method-assign]
    b = broker.balances()
    assert b.net_liquidating_value == Decimal("15500.0") and b.cash_balance == Decimal("10000.0")
    assert b.buying_power == Decimal("10000.0") and b.equity_buying_power == Decimal("20000.0")
    account = broker.account()
    assert (account.cash, account.buying_power, account.equity) == (Decimal("10000.0"), Decimal("10000.0"),
                                                                    Decimal("15500.0"))


def test_dry_run_of_the_documented_answer(fake: FakeTastytrade, broker: TastytradeBroker) -> None:
    recorded = json.loads(shared_data("tastytrade", "joaquinbejar", "doc_examples", "order_dry_run.json").read_text())
    fake._dry_run = lambda body: httpx2.Response(201, json=copy.deepcopy(recorded))  # type: ignore[method-assign]
    legs = (Leg("SPY   191018C00298000", Side.buy), Leg("SPY   191018C00295000", Side.sell))
    preview = broker.preview(_order("qm-dry-1", legs, 1, "-2.0"))
    # the documented answer: change in buying power 102.302 (debit), total fees 2.302 (debit)
    assert preview.buying_power_effect == Decimal("102.302")
    assert preview.fees == Decimal("2.302")
    assert preview.errors == ()
    sent = json.loads(next(r for r in fake.requests if r.url.path.endswith("/dry-run")).content)
    assert sent["price"] == "2.0" and sent["price-effect"] == "Credit"


def test_dry_run_error_body_becomes_preview_errors(fake: FakeTastytrade, broker: TastytradeBroker) -> None:
    fake.dry_run_errors = [{"code": "insufficient_buying_power", "message": "Insufficient buying power"}]
    preview = broker.preview(_order("qm-dry-2", CONDOR, 1, "-2.82"))
    assert preview.errors and "insufficient_buying_power" in preview.errors[0]


def test_placement_and_fills_per_leg_with_their_fees(fake: FakeTastytrade, broker: TastytradeBroker) -> None:
    fake.quotes = {PUT_570: Decimal("1.25"), PUT_580: Decimal("3.20"), CALL_610: Decimal("1.55"),
                   CALL_620: Decimal("0.55")}
    answer = broker.submit(_passed(_order("qm-ic-1", CONDOR, 2, "-2.82")))
    assert answer.status is BrokerOrderStatus.filled and answer.filled_quantity == 2 and answer.quantity == 2
    assert answer.avg_fill_price == Decimal("-2.82")
    sent = json.loads(next(r for r in fake.requests if r.url.path.endswith("/orders") and r.method == "POST").content)
    assert sent["external-identifier"] == "qm-ic-1" and sent["price-effect"] == "Credit" and sent["price"] == "2.82"
    fills = broker.fills("qm-ic-1")
    assert [(f.instrument, f.side, f.quantity) for f in fills] == [
        (PUT_570, Side.buy, 2), (PUT_580, Side.sell, 2), (CALL_610, Side.sell, 2), (CALL_620, Side.buy, 2)]
    # first leg absorbs the rest so the net is the limit: -2.82 + 3.20 + 1.55 - 0.55 = 1.38
    assert fills[0].price == Decimal("1.38")
    assert all(f.commission == Decimal("2.284") for f in fills)  # 1.142 per contract x 2, booked per leg
    # net cash of the fills = credit 2.82 x 100 x 2 - fees 4 x 2.284
    cash = sum(((-1 if f.side is Side.buy else 1) * f.price * f.quantity * 100 - f.commission - f.fees
                for f in fills), Decimal(0))
    assert cash == Decimal("564") - Decimal("9.136")
    assert broker.submit(_passed(_order("qm-ic-1", CONDOR, 2, "-2.82"))).broker_order_id == answer.broker_order_id
    assert len(fake.orders) == 1  # the same client order id is never placed twice


def test_a_fill_whose_fees_are_not_booked_yet_waits(fake: FakeTastytrade, broker: TastytradeBroker) -> None:
    fake.quotes = {CALL_600: Decimal("4.15")}
    broker.submit(_passed(_order("qm-lc-1", (Leg(CALL_600, Side.buy),), 1, "4.15")))
    booked = list(fake.transactions)
    fake.transactions.clear()
    assert broker.fills("qm-lc-1") == []  # held back inside the grace period
    fake.transactions.extend(booked)
    assert [f.commission for f in broker.fills("qm-lc-1")] == [Decimal("1.142")]


def test_refusal_with_an_error_body_is_a_rejection(fake: FakeTastytrade, broker: TastytradeBroker) -> None:
    original = fake._place

    def refuse(request: httpx2.Request) -> httpx2.Response:
        return fake._error(422, "preflight_check_failure", "Order exceeds the option level",
                           [{"code": "option_level", "message": "Account is not approved for this strategy"}])

    fake._place = refuse  # type: ignore[method-assign]
    with pytest.raises(BrokerRejected, match="option_level: Account is not approved"):
        broker.submit(_passed(_order("qm-refused", CONDOR, 1, "-2.82")))
    fake._place = original  # type: ignore[method-assign]


def test_cancel_and_replace_keep_the_client_order_id(fake: FakeTastytrade, broker: TastytradeBroker) -> None:
    fake.fill_mode = "never"
    legs = (Leg(CALL_600, Side.buy), Leg(CALL_610, Side.sell))
    first = broker.submit(_passed(_order("qm-cds-1", legs, 3, "2.50")))
    assert first.status is BrokerOrderStatus.working and first.filled_quantity == 0
    replaced = broker.replace(_passed(_order("qm-cds-1", legs, 3, "2.55")))
    assert replaced.broker_order_id != first.broker_order_id  # found by the replace link, not the PUT answer
    assert replaced.status is BrokerOrderStatus.working and replaced.quantity == 3
    put = next(r for r in fake.requests if r.method == "PUT")
    assert json.loads(put.content)["price"] == "2.55" and json.loads(put.content)["price-effect"] == "Debit"
    # a new adapter (engine restart) still finds the live order by the client order id
    again = make(fake)
    try:
        assert again.order("qm-cds-1").broker_order_id == replaced.broker_order_id  # type: ignore[union-attr]
        fake.fill(int(replaced.broker_order_id))
        assert again.order("qm-cds-1").status is BrokerOrderStatus.filled  # type: ignore[union-attr]
    finally:
        again.close()
    fake.fill_mode = "never"
    other = broker.submit(_passed(_order("qm-lp-1", (Leg(PUT_560, Side.buy),), 1, "0.80")))
    cancelled = broker.cancel("qm-lp-1")
    assert cancelled.status is BrokerOrderStatus.cancelled and cancelled.broker_order_id == other.broker_order_id
    assert any(r.method == "DELETE" for r in fake.requests)


def test_a_429_is_retried_inside_the_budget(fake: FakeTastytrade, broker: TastytradeBroker) -> None:
    fake.rate_limit_next = 2
    assert broker.account().cash == Decimal("100000")
    assert broker.transport.retries_429 == 2
    fake.rate_limit_next = 50  # more than the retries allow: the caller learns it, nothing hangs
    with pytest.raises(BrokerUnavailable):
        broker.account()


def test_a_5xx_read_is_retried_and_a_5xx_write_is_unknown(fake: FakeTastytrade, broker: TastytradeBroker) -> None:
    fake.server_error_next_get = 1
    assert broker.positions() == []
    fake.fail_next_place = "500_after_create"
    with pytest.raises(BrokerUnavailable, match="502"):
        broker.submit(_passed(_order("qm-5xx", (Leg(CALL_600, Side.buy),), 1, "4.15")))
    assert broker.order("qm-5xx") is not None  # it was created: reconciliation finds it


def test_transactions_all_pages_in_order(fake: FakeTastytrade, broker: TastytradeBroker) -> None:
    fake.seed_recorded_transactions()
    fake.quotes = {CALL_600: Decimal("4.15")}
    broker.submit(_passed(_order("qm-lc-2", (Leg(CALL_600, Side.buy),), 1, "4.15")))
    txns = broker.transactions()
    assert len(txns) == 4  # three recorded + one trade, over two pages of two
    assert len([r for r in fake.requests if r.url.path.endswith("/transactions")]) == 2
    by_id = {t.broker_txn_id: t for t in txns}
    dividend = by_id["252634233"]
    assert dividend.type == "dividend" and dividend.amount == Decimal("27.74") and dividend.symbol == "KBWD"
    reinvest = by_id["252640963"]
    assert reinvest.type == "dividend_reinvest" and reinvest.quantity == Decimal("1.68074")
    trade = next(t for t in txns if t.type == "trade")
    assert trade.quantity == 1 and trade.price == Decimal("4.15") and trade.fees == Decimal("1.142")
    assert trade.amount == Decimal("-416.142")  # paid 415 + 1.142 fees


def _receive_deliver(fake: FakeTastytrade, tid: int, symbol: str, itype: str, sub: str, action: str, qty: str,
                     price: str = "0.0") -> None:
    base = copy.deepcopy(json.loads(shared_data("tastytrade", "joaquinbejar", "doc_examples",
                                                "transactions_listing.json").read_text())["data"]["items"][0])
    base.update({"id": tid, "symbol": symbol, "instrument-type": itype, "underlying-symbol": symbol.split()[0],
                 "transaction-sub-type": sub, "action": action, "quantity": qty, "price": price,
                 "executed-at": "2026-11-30T21:00:00.000+00:00", "transaction-date": "2026-11-30",
                 "description": f"{sub} {symbol}"})
    fake.transactions.append(base)


def test_expiry_and_assignment_events_from_receive_deliver_rows(fake: FakeTastytrade,
                                                                broker: TastytradeBroker) -> None:
    _receive_deliver(fake, 1, PUT_560, "Equity Option", "Expiration", "Sell to Close", "2")
    _receive_deliver(fake, 2, CALL_610, "Equity Option", "Assignment", "Buy to Close", "1")
    _receive_deliver(fake, 3, "SPY", "Equity", "Assignment", "Sell to Close", "100", "610.0")
    events = {e.kind: e for e in broker.events()}
    expired = events["expired"]
    assert (expired.instrument, expired.quantity, expired.cash, expired.stock_quantity) == (PUT_560, -2, 0, 0)
    assigned = events["assigned"]
    # a short 610 call assigned: the short closes (+1), 100 shares leave at the strike, 61,000 comes in
    assert (assigned.instrument, assigned.quantity, assigned.stock_instrument, assigned.stock_quantity) == (
        CALL_610, 1, "SPY", -100)
    assert assigned.stock_price == Decimal("610") and assigned.cash == Decimal("61000")
    assert len(broker.events()) == 2 and assigned.event_id == "tastytrade-assigned-2"


def test_a_5xx_on_the_token_refresh_is_retried(fake: FakeTastytrade) -> None:
    original = fake._oauth
    calls = {"n": 0}

    def flaky(request: httpx2.Request) -> httpx2.Response:
        calls["n"] += 1
        return httpx2.Response(503, text="busy") if calls["n"] == 1 else original(request)

    fake._oauth = flaky  # type: ignore[method-assign]
    b = make(fake)
    try:
        assert b.account_number == ACCOUNT and calls["n"] == 2
    finally:
        b.close()


def test_live_orders_history_and_accounts(fake: FakeTastytrade, broker: TastytradeBroker) -> None:
    fake.fill_mode = "never"
    for i in range(3):
        broker.submit(_passed(_order(f"qm-h-{i}", (Leg(PUT_560, Side.buy),), 1 + i, "0.80")))
    assert broker.accounts() == [ACCOUNT]
    live = broker.live_orders()
    assert [(o.client_order_id, o.quantity, o.status) for o in live] == [
        (f"qm-h-{i}", 1 + i, BrokerOrderStatus.working) for i in range(3)]
    history = broker.order_history()  # two pages of two at the fake
    assert [o.client_order_id for o in history] == ["qm-h-0", "qm-h-1", "qm-h-2"]


def test_an_unreadable_placement_answer_leaves_the_order_unknown(fake: FakeTastytrade,
                                                                 broker: TastytradeBroker) -> None:
    original = fake._place

    def garbled(request: httpx2.Request) -> httpx2.Response:
        original(request)  # the broker did create the order
        return httpx2.Response(201, json={"data": {"unexpected": True}})

    fake._place = garbled  # type: ignore[method-assign]
    with pytest.raises(BrokerUnavailable, match="not understood"):
        broker.submit(_passed(_order("qm-garbled", (Leg(CALL_600, Side.buy),), 1, "4.15")))
    found = broker.order("qm-garbled")
    assert found is not None and found.status is BrokerOrderStatus.filled


def test_an_order_older_than_the_default_window_is_found_back_to_its_creation_day(fake: FakeTastytrade) -> None:
    # a GTC order placed 20 days ago and filled since: not live any more, only in the history
    placed_at = NOW - timedelta(days=20)
    fake.clock = lambda: placed_at
    fake.quotes = {CALL_600: Decimal("4.15")}
    first = make(fake, now=lambda: placed_at)
    try:
        first.submit(_passed(_order("qm-old-1", (Leg(CALL_600, Side.buy),), 1, "4.15")))
    finally:
        first.close()
    fake.clock = lambda: NOW
    blind = make(fake)  # a restarted adapter without the engine's order times: a 7-day window
    try:
        assert blind.order("qm-old-1") is None
    finally:
        blind.close()
    restarted = make(fake, order_times={"qm-old-1": OrderTimes(placed_at, placed_at)}.get)
    try:
        found = restarted.order("qm-old-1")
        assert found is not None and found.status is BrokerOrderStatus.filled
        history = [r for r in fake.requests if r.method == "GET" and r.url.path.endswith("/orders")][-1]
        assert "start-date=2026-11-11" in str(history.url)  # 2026-12-01 minus 20 days
    finally:
        restarted.close()


def test_a_restart_does_not_forget_a_placement_in_flight(fake: FakeTastytrade) -> None:
    """The engine's persisted "submitting" time stands in for the adapter's lost memory after a restart."""
    fake.fail_next_place = "timeout_before_create"
    b = make(fake)
    try:
        with pytest.raises(BrokerUnavailable):
            b.submit(_passed(_order("qm-flight-1", (Leg(CALL_600, Side.buy),), 1, "4.15")))
    finally:
        b.close()
    clock = {"now": NOW + timedelta(seconds=5)}
    times = {"qm-flight-1": OrderTimes(NOW - timedelta(seconds=1), NOW)}
    restarted = make(fake, now=lambda: clock["now"], order_times=times.get)
    try:
        with pytest.raises(BrokerUnavailable, match="not visible yet"):
            restarted.order("qm-flight-1")  # 5 s after the send: it may still appear
        clock["now"] = NOW + timedelta(seconds=61)
        assert restarted.order("qm-flight-1") is None  # proven absent once it had time to appear
    finally:
        restarted.close()


def test_replace_sends_what_remains_keeps_gtc_and_needs_a_pass_for_exactly_that(fake: FakeTastytrade,
                                                                                broker: TastytradeBroker) -> None:
    fake.fill_mode = "partial"  # 2 of the 4 spreads fill at once
    legs = (Leg(CALL_600, Side.buy), Leg(CALL_610, Side.sell))
    first = broker.submit(_passed(_order("qm-gtc-1", legs, 4, "2.50", tif="gtc")))
    assert (first.status, first.quantity, first.filled_quantity) == (BrokerOrderStatus.working, 4, 2)
    refused = [
        (_passed(_order("qm-gtc-1", legs, 4, "2.55", tif="gtc")), "quantity 4 is not the 2 that remain"),
        (_passed(_order("qm-gtc-1", legs, 2, "2.55")), "time_in_force 'day' is not the order's 'gtc'"),
        (_passed(_order("qm-gtc-1", (Leg(CALL_600, Side.buy),), 2, "2.55", tif="gtc")), "legs"),
    ]
    for gate_pass, why in refused:
        with pytest.raises(BrokerRejected, match=why):
            broker.replace(gate_pass)
    with pytest.raises(BrokerRejected, match="passed the risk gate"):
        broker.replace("qm-gtc-1")  # type: ignore[arg-type]
    assert not any(r.method == "PUT" for r in fake.requests)  # nothing refused reached the broker
    replaced = broker.replace(_passed(_order("qm-gtc-1", legs, 2, "2.55", tif="gtc")))
    body = fake.replace_bodies[-1]
    assert [(leg["symbol"], leg["quantity"]) for leg in body["legs"]] == [(CALL_600, 2), (CALL_610, 2)]
    assert body["time-in-force"] == "GTC" and body["price"] == "2.55" and body["price-effect"] == "Debit"
    new = fake.orders[int(replaced.broker_order_id)]
    assert new["replaces-order-id"] == int(first.broker_order_id) and new["time-in-force"] == "GTC"
    # the structure: 2 filled before the replace + 2 asked for now; the client order id still leads to it
    assert (replaced.status, replaced.quantity, replaced.filled_quantity) == (BrokerOrderStatus.working, 4, 2)
    fake.fill(int(replaced.broker_order_id))
    done = broker.order("qm-gtc-1")
    assert done is not None and (done.status, done.quantity, done.filled_quantity) == (
        BrokerOrderStatus.filled, 4, 4)
    assert done.avg_fill_price == Decimal("2.525")  # 2 at 2.50 before the replace, 2 at 2.55 after
