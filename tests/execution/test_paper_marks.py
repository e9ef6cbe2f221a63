"""The paper venue prices what it needs contract by contract: a book's marks and an order's legs in one
pass over all their underlyings, with the chain's listing rules for contracts nobody holds."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal as D
from zoneinfo import ZoneInfo

import pytest

from engine.data.sim import SimMarket
from engine.execution.brokers.quotes import SimQuoteSource, UnknownInstrument

NY = ZoneInfo("America/New_York")
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=NY)  # a Monday session, market open


class CountingMarket:
    """The simulated market, counting how often the venue asks it to price contracts."""

    def __init__(self, market: SimMarket) -> None:
        self.market = market
        self.calls: list[list[str]] = []

    def contract_quotes(self, occ_symbols, at):  # type: ignore[no-untyped-def]
        self.calls.append(list(occ_symbols))
        return self.market.contract_quotes(occ_symbols, at)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.market, name)


@pytest.fixture(scope="module")
def market() -> SimMarket:
    return SimMarket(seed=7, n_symbols=40)


def _atm_calls(market: SimMarket, at: datetime, n: int) -> list:  # type: ignore[type-arg]
    rows = []
    for sym in [s for s in market.universe()["symbol"] if s not in ("SPY", "QQQ", "IWM", "DIA")]:
        chain = market.option_chain(sym, at)
        calls = chain[(chain["right"] == "C") & (chain["dte"] > 20)]
        if len(calls):
            spot = float(calls["underlying_price"].iloc[0])
            rows.append(calls.iloc[(calls["strike"] - spot).abs().argsort().iloc[0]])
        if len(rows) == n:
            return rows
    raise AssertionError("the simulated market has too few optionable symbols")


def test_a_book_on_ten_underlyings_is_priced_in_one_call_per_minute_and_matches_the_chains(market) -> None:
    rows = _atm_calls(market, T0, 10)
    counting = CountingMarket(market)
    source = SimQuoteSource(counting)
    at = T0 + timedelta(seconds=15)
    source.prefetch([r["occ_symbol"] for r in rows] + ["SPY"], at)  # a stock in the book is not a contract
    assert len(counting.calls) == 1 and len(counting.calls[0]) == 10
    for r in rows:
        q = source.quote(r["occ_symbol"], at)  # a cache hit: the same minute
        assert (q.bid, q.ask, q.volume, q.open_interest) == (D(str(r["bid"])), D(str(r["ask"])),
                                                              r["volume"], r["open_interest"])
    assert len(counting.calls) == 1
    source.prefetch([r["occ_symbol"] for r in rows], at + timedelta(minutes=1))  # a new minute: priced again
    assert len(counting.calls) == 2


def test_contracts_the_chain_does_not_list_quote_only_for_a_holder(market) -> None:
    row = _atm_calls(market, T0, 1)[0]
    source = SimQuoteSource(market)
    occ = row["occ_symbol"]
    strike = D(occ[-8:]) / 1000
    # half a strike step off the chain's grid, and an expiry the chain does not list (a Wednesday)
    off_grid = f"{occ[:-8]}{int((strike + D('0.25')) * 1000):08d}"
    wednesday = row["expiry"] - timedelta(days=2)
    off_expiry = f"{occ[:6]}{wednesday:%y%m%d}{occ[12:]}"
    for contract in (off_grid, off_expiry):
        with pytest.raises(UnknownInstrument):
            source.quote(contract, T0)
        assert source.quote(contract, T0, held=True).ask > 0
    expired = f"{occ[:6]}{(T0.date() - timedelta(days=3)):%y%m%d}{occ[12:]}"
    with pytest.raises(UnknownInstrument):
        source.quote(expired, T0, held=True)
    unknown_root = "ZZZZZZ" + occ[6:]
    source.prefetch([unknown_root, occ], T0)  # one unknown underlying does not spoil the batch
    assert source.quote(occ, T0).bid == D(str(row["bid"]))
    with pytest.raises(UnknownInstrument):
        source.quote(unknown_root, T0)
