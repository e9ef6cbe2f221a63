"""The one risk gate: every rule with hand-computed numbers, and a property over random sequences."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config import RiskSettings
from engine.execution.ports import Leg, Side
from engine.risk import GatePass, Intent, PortfolioRisk, ProposedOrder, evaluate, is_gate_pass, size_for_risk

D = Decimal
LIMITS = RiskSettings()  # DESIGN §6: 1% per trade, 5% per symbol, 10% heat, 10 positions, 30% sector, 3% day
CALL = Leg("AAA   261218C00050000", Side.buy, 1)


def order(qty: int = 3, symbol: str = "AAA", sector: str = "Tech", intent: Intent = Intent.open,
          held: int | None = None, delta_dollars: float = 3000.0) -> ProposedOrder:
    # A long call bought at 3.10: max loss 3.10 x 100 = $310 per contract, fees $1.10 per contract.
    return ProposedOrder(f"qm-test-{qty}", symbol, sector, intent, (CALL,), qty, D("3.10"), D("310"), D("310"),
                         delta_dollars, D("1.10"), position_quantity=held)


def book(**kw) -> PortfolioRisk:  # type: ignore[no-untyped-def]
    base = dict(equity=D(100_000), buying_power=D(100_000), day_start_equity=D(100_000), open_positions=0,
                heat=D(0))
    base.update(kw)
    return PortfolioRisk(**base)  # type: ignore[arg-type]


def failed(decision) -> set[str]:  # type: ignore[no-untyped-def]
    return {c.rule for c in decision.failures}


def test_per_trade_risk_one_percent() -> None:
    # 3 contracts x (310 + 1.10) = 933.30 = 0.9333% of 100,000: passes
    ok = evaluate(order(3), book(), LIMITS)
    assert ok.approved and ok.order_risk == D("933.30") and is_gate_pass(ok.gate_pass)
    # 4 contracts x 311.10 = 1,244.40 = 1.2444% > 1%: fails, and the message carries the numbers
    bad = evaluate(order(4), book(), LIMITS)
    assert not bad.approved and failed(bad) == {"risk_per_trade"} and bad.gate_pass is None
    msg = bad.failures[0].message
    assert "1.24%" in msg and "1.00%" in msg
    assert bad.failures[0].after == pytest.approx(1.2444)


def test_symbol_risk_five_percent() -> None:
    # 4,500 already at risk in AAA + 933.30 = 5,433.30 = 5.4333% > 5%
    d = evaluate(order(3), book(risk_by_symbol={"AAA": D(4500)}, heat=D(4500), open_positions=1), LIMITS)
    assert failed(d) == {"symbol_risk"}
    assert d.failures[0].current == pytest.approx(4.5) and d.failures[0].after == pytest.approx(5.4333)
    # the same risk in another symbol does not count against AAA
    assert evaluate(order(3), book(risk_by_symbol={"BBB": D(4500)}, heat=D(4500), open_positions=1), LIMITS).approved


def test_heat_ten_percent_counts_pending_orders() -> None:
    # 9,000 open + 500 pending + 933.30 = 10,433.30 = 10.43% > 10%
    d = evaluate(order(3), book(heat=D(9000), pending_risk=D(500), open_positions=5,
                                risk_by_symbol={f"S{i}": D(1800) for i in range(5)}), LIMITS)
    assert failed(d) == {"heat"}
    assert d.failures[0].after == pytest.approx(10.4333)


def test_open_positions_limit_counts_new_symbols_only() -> None:
    ten = {f"S{i}": D(100) for i in range(10)}
    d = evaluate(order(1, symbol="NEW"), book(open_positions=10, heat=D(1000), risk_by_symbol=ten), LIMITS)
    assert failed(d) == {"open_positions"} and d.failures[0].after == 11
    # adding to a symbol already held does not open a new position
    d2 = evaluate(order(1, symbol="S3"), book(open_positions=10, heat=D(1000), risk_by_symbol=ten), LIMITS)
    assert d2.approved


def test_sector_exposure_in_delta_dollars() -> None:
    # 25,000 delta dollars in Tech + 3 x 3,000 = 34,000 = 34% > 30%
    d = evaluate(order(3), book(delta_dollars_by_sector={"Tech": 25_000.0}), LIMITS)
    assert failed(d) == {"sector_exposure"} and d.failures[0].after == pytest.approx(34.0)
    assert evaluate(order(3, sector="Energy"), book(delta_dollars_by_sector={"Tech": 25_000.0}), LIMITS).approved


def test_daily_loss_limit_blocks_entries_but_not_exits() -> None:
    down_31 = book(equity=D(96_900))  # -3.1% on the day
    assert "daily_loss" in failed(evaluate(order(3), down_31, LIMITS))
    assert evaluate(order(3), book(equity=D(97_100)), LIMITS).approved  # -2.9%
    assert evaluate(order(2, intent=Intent.close, held=3), down_31, LIMITS).approved


def test_kill_switch_blocks_entries_but_not_exits() -> None:
    d = evaluate(order(1), book(kill_switch=True), LIMITS)
    assert failed(d) == {"kill_switch"} and "no new entries" in d.summary()
    assert evaluate(order(1, intent=Intent.close, held=1), book(kill_switch=True), LIMITS).approved


def test_buying_power_must_cover_cost_and_fees() -> None:
    # 3 x 310 + 3 x 1.10 = 933.30 > 900
    d = evaluate(order(3), book(buying_power=D(900)), LIMITS)
    assert failed(d) == {"buying_power"} and "$933.30" in d.summary() and "$900.00" in d.summary()


def test_close_orders_must_reduce() -> None:
    assert failed(evaluate(order(3, intent=Intent.close, held=2), book(), LIMITS)) == {"reduce_only"}
    assert failed(evaluate(order(1, intent=Intent.close, held=0), book(), LIMITS)) == {"reduce_only"}


def test_all_failures_are_reported_not_just_the_first() -> None:
    d = evaluate(order(40), book(kill_switch=True, buying_power=D(100)), LIMITS)
    assert {"kill_switch", "risk_per_trade", "buying_power", "heat", "symbol_risk"} <= failed(d)


def test_gate_pass_cannot_be_made_or_changed_outside_the_gate() -> None:
    with pytest.raises(PermissionError):
        GatePass(object(), order(1), None)  # type: ignore[arg-type]
    forged = GatePass.__new__(GatePass)
    assert not is_gate_pass(forged)
    real = evaluate(order(1), book(), LIMITS).gate_pass
    assert real is not None and is_gate_pass(real)
    with pytest.raises(AttributeError):
        real.quantity = 50  # type: ignore[misc]


def test_sizing_takes_the_tightest_room() -> None:
    # room: min(1% = 1,000; 5% - 0 = 5,000; 10% - 0 = 10,000) = 1,000 -> floor(1000 / 311.10) = 3
    assert size_for_risk(D("310"), D("1.10"), book(), LIMITS, "AAA") == 3
    # heat room 10,000 - 9,500 = 500 -> 1 contract
    assert size_for_risk(D("310"), D("1.10"), book(heat=D(9500)), LIMITS, "AAA") == 1
    assert size_for_risk(D("310"), D("1.10"), book(heat=D(9900)), LIMITS, "AAA") == 0


RULES = {"quantity", "legs", "limit_price", "kill_switch", "daily_loss", "equity", "risk_per_trade", "symbol_risk",
         "heat", "open_positions", "sector_exposure", "buying_power", "reduce_only"}


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["AAA", "BBB", "CCC", "DDD", "EEE", "FFF", "GGG", "HHH", "III", "JJJ",
                                           "KKK", "LLL"]),
                          st.sampled_from(["Tech", "Energy", "Health"]),
                          st.integers(1, 12), st.integers(50, 900), st.floats(0, 20_000)),
                min_size=1, max_size=40),
       st.integers(0, 4000))
def test_no_sequence_of_approved_orders_exceeds_any_limit(orders, day_loss) -> None:  # type: ignore[no-untyped-def]
    """Approve whatever the gate lets through, apply it, and check every limit after every step."""
    equity = D(100_000) - day_loss
    risk_by_symbol: dict[str, Decimal] = {}
    sector: dict[str, float] = {}
    bp = equity
    for i, (sym, sec, qty, premium, delta) in enumerate(orders):
        o = ProposedOrder(f"o{i}", sym, sec, Intent.open, (CALL,), qty, D(premium) / 100, D(premium), D(premium),
                          delta, D("1.10"))
        state = PortfolioRisk(equity, bp, D(100_000), len(risk_by_symbol), sum(risk_by_symbol.values(), D(0)),
                              dict(risk_by_symbol), dict(sector))
        d = evaluate(o, state, LIMITS)
        if not d.approved:
            assert d.failures and {c.rule for c in d.failures} <= RULES
            assert all(c.message for c in d.failures)
            continue
        risk = d.order_risk
        risk_by_symbol[sym] = risk_by_symbol.get(sym, D(0)) + risk
        sector[sec] = sector.get(sec, 0.0) + delta * qty
        bp -= risk
        heat = sum(risk_by_symbol.values(), D(0))
        assert day_loss / 1000 < LIMITS.daily_loss_limit_pct  # entries only while the day is within the limit
        assert risk <= equity * D("0.01")
        assert risk_by_symbol[sym] <= equity * D("0.05")
        assert heat <= equity * D("0.10")
        assert len(risk_by_symbol) <= LIMITS.max_open_positions
        assert sector[sec] <= float(equity) * 0.30 + 1e-6
        assert bp >= 0
