"""IV rank at a decision uses only sessions before the decision's day (DESIGN §5, issue 11 item 9).

The 08:30 pre-market used to read an IV history holding today's closing IV (the simulated source
answers up to and including ``end``), a number nobody knows before the close.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pandas as pd
import pytest
from sqlmodel import Session, SQLModel, create_engine, select

from engine.models import IvHistory
from engine.options.candidates import iv_history
from engine.options.ivrank import iv_rank

DAY = date(2026, 3, 10)  # a Tuesday: the decision day


def _history(days: int = 40) -> pd.Series:
    # sessions before DAY: 0.20, 0.21, ... rising by 0.01, then DAY itself spikes to 0.90
    idx = [DAY - timedelta(days=days - i) for i in range(days)]
    s = pd.Series([0.20 + 0.01 * i for i in range(days)], index=idx, dtype="float64")
    s.loc[DAY] = 0.90
    return s


def test_rank_ignores_the_decision_day_and_later():
    s = _history()
    s.loc[DAY + timedelta(days=1)] = 0.05  # and a later day, lower than everything
    # before DAY: 40 points 0.20 .. 0.59, the latest (0.59) is the max -> rank 100
    assert iv_rank(s, as_of=DAY) == pytest.approx(100.0)
    # as of the next day, DAY's 0.90 is history and the current value: still the max
    assert iv_rank(s, as_of=DAY + timedelta(days=1)) == pytest.approx(100.0)
    # as of two days later the 0.05 is current and the min -> 0
    assert iv_rank(s, as_of=DAY + timedelta(days=2)) == pytest.approx(0.0)
    # a value inside the range, by hand
    t = pd.Series([0.30, 0.10, 0.50, 0.20, 0.40, 0.25], index=[DAY - timedelta(days=6 - i) for i in range(6)])
    # as of DAY the current value is 0.25 (the day before), min 0.10, max 0.50 -> 37.5
    assert iv_rank(t, as_of=DAY, min_periods=5) == pytest.approx((0.25 - 0.10) / (0.50 - 0.10) * 100)
    t.loc[DAY] = 0.10  # today's close must not make the current value 0.10 (rank 0)
    assert iv_rank(t, as_of=DAY, min_periods=5) == pytest.approx(37.5)


def test_as_of_is_required():
    with pytest.raises(TypeError):
        iv_rank(_history())  # type: ignore[call-arg]


class _Source:
    """A source that, like the simulated market, answers the close IV of every session through ``end``."""

    name = "fake"

    def __init__(self, series: pd.Series) -> None:
        self.series = series
        self.asked: list[tuple[date, date]] = []

    def atm_iv_series(self, symbol: str, start: date, end: date) -> pd.Series:
        self.asked.append((start, end))
        s = self.series
        return s[(s.index >= start) & (s.index <= end)]


def test_premarket_history_and_rank_hold_no_close_of_today():
    engine = create_engine("sqlite://")
    SQLModel.metadata.create_all(engine, tables=[IvHistory.__table__])
    source = _Source(_history())
    premarket = datetime(2026, 3, 10, 8, 30)
    with Session(engine) as session:
        hist = iv_history(session, source, "XYZ", premarket.date())
        assert max(hist.index) == DAY - timedelta(days=1)
        assert DAY not in hist.index
        stored = session.exec(select(IvHistory.trade_date)).all()
        assert DAY not in stored  # nothing from the future is written either
        assert iv_rank(hist, as_of=DAY) == pytest.approx(100.0)  # 0.59, the highest of 0.20 .. 0.59
    # a dip on DAY - 1: 0.25 among 0.20 .. 0.58 -> (0.25 - 0.20) / 0.38 * 100 = 13.2; reading DAY's 0.90
    # as the current value would give 100
    dip = _history()
    dip.loc[DAY - timedelta(days=1)] = 0.25
    source = _Source(dip)
    with Session(engine) as session:
        for row in session.exec(select(IvHistory)).all():
            session.delete(row)
        session.flush()
        hist = iv_history(session, source, "XYZ", DAY)
        assert iv_rank(hist, as_of=DAY) == pytest.approx((0.25 - 0.20) / (0.58 - 0.20) * 100)
