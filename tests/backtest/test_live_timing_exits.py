"""Live timing (paper validation): exits are capped by the paper broker's participation rule, as entries
are: 20% of the contract's volume so far that day, cumulative over the day's entries and exits, the rest
working at later cycles within the order's limit until the close. Expected fills worked out by hand."""

from __future__ import annotations

from datetime import date, time
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from engine.backtest.live_timing import LiveTimingRun
from engine.backtest.options_mode import _Position
from engine.backtest.runner import BacktestSpec, load_panel
from engine.data.sim import SimMarket
from engine.execution.ports import Leg, Side

OCC = "AAA   271217C00050000"


class Chain:
    """Quotes of the one contract by cycle: (bid, ask, volume so far today); the last entry holds after."""

    def __init__(self, by_time: dict[time, tuple[float, float, int]]) -> None:
        self.by_time = by_time

    def quotes(self, symbol: str, occ: list[str], day: date, at: time) -> tuple[pd.DataFrame, str]:
        bid, ask, vol = self.by_time[max((t for t in self.by_time if t <= at), default=min(self.by_time))]
        return pd.DataFrame({"occ_symbol": [OCC], "bid": [bid], "ask": [ask], "volume": [float(vol)],
                             "open_interest": [1000.0], "underlying_price": [50.0]}), "sim"


def _run(chain: Chain) -> tuple[LiveTimingRun, _Position, int, date]:
    spec = BacktestSpec(strategy="atr_matrix", mode="options", source="sim", symbols=10, seed=7,
                        start=date(2026, 6, 1), end=date(2026, 6, 5), params={})
    panel = load_panel(spec)
    t = int((panel.dates < np.datetime64(spec.start)).sum())
    run = LiveTimingRun(spec, panel, t, chain, SimMarket(seed=7, n_symbols=10), None)
    symbol = panel.symbols[0]
    leg = Leg(OCC, Side.buy, underlying=symbol, right="C", strike=Decimal(50), expiry=date(2027, 12, 17))
    # A long call of 10 contracts whose stop is far above any price: every cycle's manager says close_all.
    pos = _Position(symbol, "long_call", (leg,), 10, 10, Decimal("2.00"), 100, 50.0, 1.0, 1e9, (1e9 + 1,),
                    date(2027, 12, 17), date(2026, 5, 29), Decimal(200), "sim", "Tech", 50.0)
    pos.fills.append({"date": "2026-05-29", "intent": "open", "units": 10, "price": 2.0, "source": "sim",
                      "reason": "entry"})
    run.open.append(pos)
    return run, pos, t, panel.dates[t].astype(object)


def test_a_stop_exit_fills_in_parts_under_the_cumulative_cap() -> None:
    # 1 contract of this call was already taken today (an entry), so the cap starts 1 lower.
    # Sell price (paper broker): mid - 0.25 * half spread, floored to the cent:
    #   2.00/2.20 -> 2.10 - 0.025 = 2.075 -> 2.07 ;  2.10/2.30 -> 2.20 - 0.025 = 2.175 -> 2.17
    # cap = int(0.2 * volume so far) minus contracts already filled today:
    #   09:35 vol 20: 4 - 1 = 3 @ 2.07 | 09:40 vol 30: 6 - 4 = 2 @ 2.07 | 09:45 vol 35: 7 - 6 = 1 @ 2.17
    #   09:50 vol 50: 10 - 7 = 3 @ 2.17 | 09:55 vol 55: 11 - 10 = 1 @ 2.17 -> 10 sold, 5 @ 2.07 + 5 @ 2.17
    # one exit order, one fill at the average: (5 * 2.07 + 5 * 2.17) / 10 = 2.12
    chain = Chain({time(9, 35): (2.00, 2.20, 20), time(9, 40): (2.00, 2.20, 30), time(9, 45): (2.10, 2.30, 35),
                   time(9, 50): (2.10, 2.30, 50), time(9, 55): (2.10, 2.30, 55)})
    run, pos, t, day = _run(chain)
    run.used = {OCC: 1}
    cash = run.cash
    run._manage_day(t, day)
    assert pos.quantity == 0 and pos in run.closed
    exits = [f for f in pos.fills if f["intent"] != "open"]
    assert len(exits) == 1
    assert exits[0]["units"] == 10 and exits[0]["intent"] == "close"
    assert exits[0]["price"] == pytest.approx(2.12, abs=1e-9)
    assert run.used[OCC] == 11
    # proceeds: 5 * 2.07 * 100 + 5 * 2.17 * 100 = 2120, less the venue's $0.10 fee per contract (no close commission)
    assert run.cash - cash == Decimal("2120") - Decimal("1.00")


def test_an_exit_the_volume_cannot_take_expires_at_the_close() -> None:
    # volume 5 all day: the cap is int(0.2 * 5) = 1, raised to the venue's minimum of 1 contract a session:
    # 1 contract sells at 09:35 (2.07), nothing more that day; the rest expires with the day order.
    run, pos, t, day = _run(Chain({time(9, 35): (2.00, 2.20, 5)}))
    run._manage_day(t, day)
    assert pos.quantity == 9 and pos in run.open
    exits = [f for f in pos.fills if f["intent"] != "open"]
    assert [(f["units"], f["price"], f["intent"]) for f in exits] == [(1, 2.07, "scale_out")]
    assert run.resting_exits == []
