"""Audit of issue 13 item 3: the paper broker on Massive quotes a held contract by its own ticker (the
universal snapshot, one request), not by paging the underlying's whole chain for every quote and mark.
Local fake Massive with a 1,000-contract chain (four 250-contract pages)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from engine.execution.brokers.quotes import SimQuoteSource, UnknownInstrument
from tests.data.fake_massive import FakeMassive
from tests.data.test_massive import market_for
from tests.data.test_massive_chains import NOW, TODAY, chain_results

STRIKES = [float(k) for k in range(50, 300, 2)]  # 125 strikes x 4 expiries x 2 rights = 1,000 contracts


def test_a_held_contract_is_quoted_by_its_own_ticker_not_the_whole_chain(tmp_path: Path) -> None:
    with FakeMassive() as fake:
        fake.chains["SPY"] = chain_results("SPY", 180.0, [21, 35, 49, 63], STRIKES)
        assert len(fake.chains["SPY"]) == 1000
        expiry = TODAY + timedelta(days=35)
        occ = f"SPY   {expiry:%y%m%d}C00180000"
        source = SimQuoteSource(market_for(fake, tmp_path))
        quote = source.quote(occ, NOW, held=True)
        again = source.quote(occ, NOW + timedelta(seconds=20), held=True)  # same minute: no request
        with pytest.raises(UnknownInstrument):
            source.quote(f"SPY   {expiry:%y%m%d}C00181000", NOW)  # not listed (odd strike)
        chain_pages = fake.count("/v3/snapshot/options/")
        universal = sum(1 for s in fake.seen if s.path == "/v3/snapshot")
    expected = next(r for r in fake.chains["SPY"] if r["details"]["ticker"] == f"O:SPY{expiry:%y%m%d}C00180000")
    assert quote.bid == Decimal(str(expected["last_quote"]["bid"])) and quote == again
    assert quote.ask == Decimal(str(expected["last_quote"]["ask"]))
    assert chain_pages == 0 and universal == 2  # the held contract once, the unlisted one once
