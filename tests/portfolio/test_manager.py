"""Position rules of DESIGN §4-§5, with levels computed by hand."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from engine.portfolio.manager import MarketView, PositionView, decide, scale_out_plan, scale_out_quantity
from engine.strategies.atr_matrix import ATRMatrixParams

P = ATRMatrixParams()
# Entry at 100 with ATR 4: stop = max(100 - 6, 90) = 94; SMA50 90 -> targets 90 + 28/32/36/40 = 118/122/126/130
BASE = PositionView(quantity=8, initial_quantity=8, entry_price=Decimal("5.00"), underlying_entry=100.0,
                    entry_atr=4.0, stop=94.0, targets=(118.0, 122.0, 126.0, 130.0), targets_hit=0,
                    highest_close=100.0, expiry=date(2027, 1, 15))


def mkt(price: float, close: float | None = None, sma50: float = 90.0, atr: float = 4.0,
        mark: str | None = "5.00", today: date = date(2026, 11, 24)) -> MarketView:
    return MarketView(today=today, price=price, close=price if close is None else close, sma50=sma50, atr=atr,
                      mark=None if mark is None else Decimal(mark))


def run(view: PositionView, m: MarketView):  # type: ignore[no-untyped-def]
    return decide(view, m, P, premium_stop_pct=50.0, close_at_dte=7)


def test_hold_inside_the_levels() -> None:
    assert run(BASE, mkt(105.0)) == []


def test_stop_hit_closes_everything() -> None:
    (a,) = run(BASE, mkt(93.9, close=96.0))
    assert a.kind == "close_all" and a.quantity == 8 and "stop_hit" in a.reason


def test_trend_break_and_exhaustion() -> None:
    (a,) = run(BASE, mkt(95.0, close=89.0))  # close < SMA50 (90)
    assert a.kind == "close_all" and "trend_break" in a.reason
    (b,) = run(BASE, mkt(131.0, close=131.0, mark="9.00"))  # (131 - 90) / 4 = 10.25 > 10
    assert b.kind == "close_all" and "exhausted" in b.reason


def test_premium_stop_at_half_the_premium() -> None:
    (a,) = run(BASE, mkt(99.0, mark="2.50"))  # lost exactly 50%
    assert a.kind == "close_all" and "premium_stop" in a.reason
    assert run(BASE, mkt(99.0, mark="2.51")) == []


def test_time_exit_at_seven_days() -> None:
    (a,) = run(BASE, mkt(105.0, today=date(2027, 1, 8)))  # 7 days to 2027-01-15
    assert a.kind == "close_all" and "time_exit: 7 days" in a.reason
    assert run(BASE, mkt(105.0, today=date(2027, 1, 7))) == []


def test_first_target_sells_a_quarter_and_moves_stop_to_break_even() -> None:
    actions = run(BASE, mkt(118.5, close=110.0, mark="9.00"))
    sell, stop = actions
    assert sell.kind == "scale_out" and sell.quantity == 2 and sell.targets_hit == 1  # 8 * 1 // 4
    # break-even 100 vs trail: highest close 110 - 3 x 4 = 98 -> 100
    assert stop.kind == "move_stop" and stop.new_stop == 100.0 and "break-even" in stop.reason


def test_trailing_stop_after_the_first_target() -> None:
    after = PositionView(**{**BASE.__dict__, "targets_hit": 1, "stop": 100.0, "highest_close": 117.0, "quantity": 6})
    (stop,) = run(after, mkt(120.0, close=120.0, mark="9.00"))
    # highest close 120 - 3 x 4 = 108 > 100
    assert stop.kind == "move_stop" and stop.new_stop == 108.0
    assert stop.new_stop > after.stop


def test_gap_through_two_targets_sells_both_quarters() -> None:
    sell = run(BASE, mkt(123.0, close=112.0, mark="10.00"))[0]
    assert sell.kind == "scale_out" and sell.quantity == 4 and sell.targets_hit == 2


def test_quarters_of_small_positions_add_up_exactly() -> None:
    for q in range(1, 30):
        parts = [scale_out_quantity(q, k - 1, k) for k in range(1, 5)]
        assert sum(parts) == q and all(p >= 0 for p in parts)
    assert [scale_out_quantity(2, k - 1, k) for k in range(1, 5)] == [1, 1, 0, 0]


def test_scale_out_plan_is_front_loaded() -> None:
    # DESIGN §4: target k gets ceil((n - sold before k) / (5 - k))
    assert scale_out_plan(1) == [1, 0, 0, 0]
    assert scale_out_plan(2) == [1, 1, 0, 0]
    assert scale_out_plan(3) == [1, 1, 1, 0]
    assert scale_out_plan(5) == [2, 1, 1, 1]
    assert scale_out_plan(6) == [2, 2, 1, 1]
    assert scale_out_plan(8) == [2, 2, 2, 2]
    assert scale_out_plan(11) == [3, 3, 3, 2]


def test_a_one_lot_sells_at_the_first_target() -> None:
    one = PositionView(**{**BASE.__dict__, "quantity": 1, "initial_quantity": 1})
    sell = run(one, mkt(118.5, close=110.0, mark="9.00"))[0]
    assert sell.kind == "scale_out" and sell.quantity == 1 and sell.targets_hit == 1


# --- iron condor: its own exit levels (DESIGN §5; issue 11, item 11) --------------------------------------


def _condor(entry: str = "-1.40", expiry=None):  # type: ignore[no-untyped-def]
    from datetime import date
    from decimal import Decimal

    from engine.portfolio.manager import PositionView

    # stop/targets of an underlying view would close it on any ATR rule: a condor must ignore them
    return PositionView(quantity=2, initial_quantity=2, entry_price=Decimal(entry), underlying_entry=100.0,
                        entry_atr=3.0, stop=200.0, targets=(101.0, 102.0, 103.0, 104.0), targets_hit=0,
                        highest_close=100.0, expiry=expiry or date(2026, 7, 17), structure="iron_condor")


def _market(mark: str, today=None):  # type: ignore[no-untyped-def]
    from datetime import date
    from decimal import Decimal

    from engine.portfolio.manager import MarketView

    return MarketView(today=today or date(2026, 6, 1), price=100.0, close=90.0, sma50=95.0, atr=3.0,
                      mark=Decimal(mark))


def test_iron_condor_closes_at_half_its_max_profit() -> None:
    from engine.config import load_settings
    from engine.portfolio.manager import decide

    params = load_settings().strategy
    # credit 1.40: half of the max profit is 0.70 kept, i.e. the legs worth -0.70 or less to buy back
    assert decide(_condor(), _market("-0.71"), params, 50, 7) == []  # 0.69 kept: hold (ATR rules ignored)
    (action,) = decide(_condor(), _market("-0.70"), params, 50, 7)
    assert action.kind == "close_all" and action.quantity == 2 and action.reason.startswith("condor_profit")


def test_iron_condor_closes_at_a_loss_of_twice_the_credit() -> None:
    from engine.config import load_settings
    from engine.portfolio.manager import decide

    params = load_settings().strategy
    # loss 2 x 1.40 = 2.80: the legs cost 1.40 + 2.80 = 4.20 to buy back
    assert decide(_condor(), _market("-4.19"), params, 50, 7) == []
    (action,) = decide(_condor(), _market("-4.20"), params, 50, 7)
    assert "condor_loss: loss 2.80 >= 2x the 1.40 credit" in action.reason


def test_iron_condor_closes_at_21_days_to_expiry() -> None:
    from datetime import date

    from engine.config import load_settings
    from engine.portfolio.manager import decide

    params = load_settings().strategy
    assert decide(_condor(), _market("-1.40", today=date(2026, 6, 25)), params, 50, 7) == []  # 22 days
    (action,) = decide(_condor(), _market("-1.40", today=date(2026, 6, 26)), params, 50, 7)  # 21 days
    assert action.reason == "condor_time: 21 days to expiry <= 21"


# --- one statement of the condor's levels, shown by the console (issue 11 review, condor levels) -----------


def test_condor_next_steps_are_its_own_three_levels_not_the_atr_ones() -> None:
    from datetime import date

    from engine.portfolio.manager import next_steps

    # credit 1.40 x 2 condors x 100: profit take at a buy-back of 0.70 keeps 0.70 x 200 = $140;
    # the stop at a buy-back of 1.40 + 2.80 = 4.20 loses 2.80 x 200 = $560; time exit 2026-07-17 - 21 days
    steps = next_steps(_condor(), _market("-1.40"), P, 50.0, 7)
    assert steps.condor is not None
    assert (steps.condor.take_profit_cost, steps.condor.stop_cost) == (Decimal("0.70"), Decimal("4.20"))
    assert (steps.condor.profit_usd, steps.condor.loss_usd) == (Decimal("140.00"), Decimal("560.00"))
    assert steps.time_exit_on == date(2026, 6, 26) and steps.days_to_expiry == 46
    assert steps.stop == 0.0 and steps.plan == () and steps.next_target is None


def test_condor_next_action_shows_the_managers_levels_in_money_and_dates() -> None:
    from datetime import date

    from engine.models import Position
    from engine.queries.positions import next_action

    # the position still carries copied long levels (older rows): they must not be shown
    pos = Position(strategy="atr_matrix", symbol="XYZ", structure="iron_condor", quantity=2, initial_quantity=2,
                   entry_price=Decimal("-1.40"), underlying_entry=50.0, entry_atr=2.0, stop=47.0,
                   targets=[54.0, 56.0, 58.0, 60.0], legs=[{"instrument": "XYZ   261211P00045000", "side": "sell",
                                                           "asset": "option", "expiry": "2026-07-17"}],
                   mark=Decimal("-1.40"))
    text = next_action(pos, 50.0, date(2026, 6, 1), close_at_dte=7)
    assert text == "take profit at buy-back ≤ 0.70 (+$140.00) · stop at buy-back ≥ 4.20 (−$560.00) · " \
                   "time exit Jun 26 (46 DTE)"
    assert "47.00" not in text and "target" not in text and "plan" not in text


def test_short_stock_is_bought_back_by_rule() -> None:
    from engine.portfolio.manager import SHORT_STOCK_RULE

    short = PositionView(quantity=100, initial_quantity=100, entry_price=Decimal("-110.00"), underlying_entry=100.0,
                         entry_atr=4.0, stop=0.0, targets=(), targets_hit=0, highest_close=100.0, expiry=None,
                         structure="stock", short_stock=True)
    (a,) = run(short, mkt(105.0, mark="105.00"))
    assert (a.kind, a.quantity, a.reason) == ("close_all", 100, SHORT_STOCK_RULE)


def test_short_stock_stop_mirrors_the_long_stop() -> None:
    from engine.portfolio.manager import short_stock_stop

    assert short_stock_stop(100.0, 4.0) == 106.0  # 100 + 1.5 x 4, within 10%
    assert abs(short_stock_stop(100.0, 8.0) - 110.0) < 1e-9  # 100 + 12 capped at 10% above


def test_covered_call_is_held_while_covered_and_bought_back_when_not() -> None:
    call = PositionView(quantity=2, initial_quantity=2, entry_price=Decimal("-1.50"), underlying_entry=100.0,
                        entry_atr=4.0, stop=0.0, targets=(), targets_hit=0, highest_close=100.0,
                        expiry=date(2026, 12, 31), structure="covered_call", stock_held=200)
    # no premium stop, no time exit: a covered call is held to expiry or assignment
    assert run(call, mkt(99.0, mark="-4.00", today=date(2026, 12, 30))) == []
    (a,) = run(PositionView(**{**call.__dict__, "stock_held": 100}), mkt(99.0, mark="-1.00"))
    assert a.kind == "close_all" and a.quantity == 2 and a.reason.startswith("uncovered: 100 shares held")
