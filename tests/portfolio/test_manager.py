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
