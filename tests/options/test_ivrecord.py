"""Issue 13 item 7: the 30-day interpolated ATM IV recorded from chain snapshots (hand-calculated
values), and IV rank becoming known on Massive after 20 recorded sessions (local fake server)."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlmodel import Session, select

from engine.config import load_settings
from engine.models import IvHistory, OptionCandidate, Signal
from engine.options.candidates import build_candidates
from engine.options.ivrecord import MIN_PERIODS, atm_iv_30d
from tests.data.fake_massive import FakeMassive, option_result
from tests.data.test_massive import market_for

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
TODAY = date(2026, 3, 2)


def _chain(rows: list[tuple[int, float, float]], spot: float = 100.0) -> pd.DataFrame:
    return pd.DataFrame([{"dte": d, "strike": k, "iv": v, "underlying_price": spot, "right": "C"} for d, k, v in rows])


def test_atm_iv_interpolates_strikes_then_total_variance_to_30_days() -> None:
    chain = _chain([(20, 95.0, 0.28), (20, 105.0, 0.32), (40, 95.0, 0.38), (40, 105.0, 0.42)])
    # ATM: 0.30 at 20 days, 0.40 at 40 days; variance 0.09*20 = 1.8 and 0.16*40 = 6.4, halfway: 4.1.
    assert atm_iv_30d(chain) == pytest.approx(math.sqrt(4.1 / 30), rel=1e-12)
    assert atm_iv_30d(_chain([(45, 100.0, 0.25)])) == 0.25  # one expiry: flat
    assert math.isnan(atm_iv_30d(_chain([])))


def test_a_candidate_build_on_massive_records_todays_atm_iv_and_ranks_on_the_20_sessions_before(
    tmp_path: Path, migrated_sqlite
) -> None:
    settings = load_settings(data_dir=tmp_path)
    expiries = [TODAY + timedelta(days=d) for d in (24, 38)]
    results = [option_result("XYZ", e, "C", k, bid=max(100 - k, 0) + 3.0, ask=max(100 - k, 0) + 3.2,
                             delta=0.62 if k < 100 else 0.5 if k == 100 else 0.3, spot=100.0, quoted=NOW,
                             iv=0.30 if e == expiries[0] else 0.40)
               for e in expiries for k in (95.0, 100.0, 105.0)]
    with FakeMassive() as fake:
        fake.chains["XYZ"] = results
        market = market_for(fake, tmp_path)
        with Session(migrated_sqlite) as session:
            # 20 earlier sessions (MIN_PERIODS), yesterday 0.20 and older ones up to 0.39.
            for i in range(MIN_PERIODS):
                session.add(IvHistory(symbol="XYZ", trade_date=TODAY - timedelta(days=i + 1),
                                      atm_iv=0.20 + 0.01 * i, source="massive"))
            signal = Signal(strategy="atr_matrix", symbol="XYZ", data_date=TODAY, zone="entry", entry_price=100.0,
                            atr=2.0, stop=96.0, targets=[102.0, 104.0, 106.0, 108.0], score=1.0)
            session.add(signal)
            session.flush()
            build_candidates(session, market, settings, signal, NOW)
            session.commit()
            today = session.exec(select(IvHistory).where(IvHistory.trade_date == TODAY)).one()
            cands = session.exec(select(OptionCandidate)).all()
    # 0.30 at 24 days and 0.40 at 38: variance 2.16 and 6.08, at 30 days 2.16 + 3.92 * 6/14 = 3.84.
    expected = math.sqrt((0.09 * 24 + (0.16 * 38 - 0.09 * 24) * 6 / 14) / 30)
    assert today.atm_iv == pytest.approx(expected, rel=1e-12) and today.source == "massive"
    # The rank leaves today out (issue 11 #9, no look-ahead): yesterday's 0.20 within 0.20..0.39 is rank 0,
    # so the plan is a long call and only calls were requested; today's 0.3578 counts from tomorrow on.
    assert MIN_PERIODS == 20
    assert cands and all(c.iv_rank == pytest.approx(0.0, abs=1e-12) for c in cands)
    chain_requests = [s.params for s in fake.seen if s.path == "/v3/snapshot/options/XYZ"]
    assert [p.get("contract_type") for p in chain_requests] == ["call"]
