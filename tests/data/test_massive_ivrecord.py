"""Audit of issue 13 item 7: on Massive (no IV series) every chain a signal fetches records that day's
30-day ATM IV, not only the chains of signals that reach ``build_candidates``; a chain too narrow to show
the money (one strike, as a split's contract lookup asks) records nothing. Local fake Massive."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, select

from engine.models import IvHistory
from tests.data.fake_massive import FakeMassive
from tests.data.test_massive import market_for
from tests.data.test_massive_chains import NOW, TODAY, chain_results


def test_every_fetched_chain_records_the_days_atm_iv(tmp_path: Path, migrated_sqlite) -> None:
    with FakeMassive() as fake:
        # The fake's contracts all carry the provider IV 0.3: a flat surface, so the 30-day ATM IV is 0.3.
        fake.chains["SPY"] = chain_results("SPY", 180.0, [21, 35, 49], [170.0, 175.0, 180.0, 185.0, 190.0])
        market = market_for(fake, tmp_path, db=migrated_sqlite)
        market.option_chain("SPY", NOW, expiry_from=TODAY + timedelta(days=21), expiry_to=TODAY + timedelta(days=60),
                            strike_min=170.0, strike_max=190.0)
        with Session(migrated_sqlite) as session:
            rows = session.exec(select(IvHistory)).all()
        assert [(r.symbol, r.trade_date, r.source) for r in rows] == [("SPY", TODAY, "massive")]
        assert rows[0].atm_iv == pytest.approx(0.3)
        expiry = TODAY + timedelta(days=35)
        market.option_chain("SPY", NOW + timedelta(hours=1), expiry_from=expiry, expiry_to=expiry,
                            strike_min=185.0, strike_max=185.0, contract_type="call")
    with Session(migrated_sqlite) as session:
        after = session.exec(select(IvHistory)).all()
    assert len(after) == 1 and after[0].atm_iv == pytest.approx(0.3)  # the one-strike chain told nothing
