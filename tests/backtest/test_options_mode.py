"""ATR Matrix options mode: no look-ahead, EOD chain import, layered fill sources, paper fill bounds."""

from __future__ import annotations

from datetime import date, time
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from engine.backtest.chains import EOD, SIM, EodChains, LayeredChains, SurfaceChains, read_vendor_eod
from engine.backtest.options_mode import _quote_map, _Run, run_options_backtest
from engine.backtest.runner import BacktestSpec
from engine.data.panel import FIELDS, Panel
from engine.data.sim import SimMarket
from engine.execution.ports import Leg, Side
from tests.conftest import shared_data


def _trend_panel(days: int = 420, n: int = 12, seed: int = 5) -> Panel:
    """Trending, volatile, liquid bars: enough ATR Matrix entry signals to trade."""
    rng = np.random.default_rng(seed)
    drift = rng.uniform(0.001, 0.004, n)
    r = rng.normal(0, 0.025, (days, n)) + drift
    close = np.round(40 * np.exp(np.cumsum(r, axis=0)), 2)
    open_ = np.round(close * np.exp(rng.normal(0, 0.006, (days, n))), 2)
    high = np.round(np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.012, (days, n)))), 2)
    low = np.round(np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.012, (days, n)))), 2)
    vol = np.full((days, n), 3e6)
    dates = np.busday_offset(np.datetime64("2022-01-03"), np.arange(days), roll="forward").astype("datetime64[D]")
    return Panel(dates, np.array([f"T{i:02d}" for i in range(n)], dtype=object), open_, high, low, close, vol)


def _run(panel: Panel, first_day: int, mode: str = "options"):
    spec = BacktestSpec(strategy="atr_matrix", mode=mode, source="csv",
                        start=panel.dates[first_day].astype(object), end=panel.dates[-1].astype(object),
                        params={"min_atr_pct": 1.5})
    return run_options_backtest(spec, panel, first_day, chains=SurfaceChains(panel))


@pytest.mark.parametrize("mode", ["options", "stock"])
def test_a_planted_future_spike_changes_nothing_before_it(mode: str) -> None:
    panel = _trend_panel()
    first_day, k = 260, 360
    base = _run(panel, first_day, mode)
    assert len(base.trades) >= 3, "the fixture must trade for the test to mean anything"
    spiked = {f: getattr(panel, f).copy() for f in FIELDS}
    for f in ("open", "high", "low", "close"):
        spiked[f][k + 1 :] *= 3.0  # a tripling right after day k: any look-ahead would act on it earlier
    other = _run(Panel(panel.dates, panel.symbols, *(spiked[f] for f in FIELDS)), first_day, mode)
    upto = k - first_day + 1
    np.testing.assert_array_equal(base.equity[:upto], other.equity[:upto])
    cut = pd.Timestamp(panel.dates[k])

    def early(tr: pd.DataFrame) -> pd.DataFrame:
        done = tr[(tr["exit_date"] <= cut) & (tr["exit_reason"] != "open")]
        return done.drop(columns=["detail"]).reset_index(drop=True)

    pd.testing.assert_frame_equal(early(base.trades), early(other.trades))
    assert base.equity[upto:].tolist() != other.equity[upto:].tolist()  # the spike is seen once it happens


def test_options_trades_record_structure_fill_source_fees() -> None:
    res = _run(_trend_panel(), 260)
    tr = res.trades
    assert len(tr) >= 3
    assert set(tr["fill_source"]) == {SIM}
    assert tr["detail"].map(lambda d: d["structure"]).isin(
        ["long_call", "call_debit_spread", "bull_put_credit_spread", "iron_condor"]).all()
    assert res.metrics["fees"] > 0 and res.metrics["slippage"] > 0
    assert res.metrics["fills_by_source"] == {SIM: len(tr)}
    # every fill (entry, scale-outs, exits) carries its own source, not only the trade
    fills = [f for d in tr["detail"] for f in d["fills"]]
    assert {f["intent"] for f in fills} >= {"open", "close"}
    assert all(f["source"] == SIM and f["units"] > 0 for f in fills)
    for row in tr[tr["exit_reason"] != "open"].itertuples():
        assert sum(f["units"] for f in row.detail["fills"] if f["intent"] != "open") == row.quantity
    closed = tr[tr["exit_reason"] != "open"]
    assert set(closed["exit_reason"]) <= {"stop_hit", "trend_break", "exhausted", "premium_stop", "time_exit",
                                          "expiry", "target 4 of 4"} | {f"target {i} of 4" for i in range(1, 5)}


def test_vendor_eod_layouts_import() -> None:
    vxx = read_vendor_eod(shared_data("options_eod", "VXX.csv"))
    a = read_vendor_eod(shared_data("options_eod", "A.csv"))
    assert len(vxx) == 27_940 and vxx["quote_date"].nunique() == 20
    assert len(a) == 208 and set(a["quote_date"]) == {date(2016, 1, 5)}
    first = vxx.iloc[0]  # VXX,28.95,W,VXX161202C00020000,,call,12/02/2016,12/01/2016,20,7.96,8.75,8.95,0,1,0.01,0,...
    assert first["occ_symbol"] == "VXX   161202C00020000" and first["right"] == "C" and first["strike"] == 20
    assert (first["bid"], first["ask"], first["dte"], first["underlying_price"]) == (8.75, 8.95, 1.0, 28.95)
    assert np.isnan(first["iv"]) and np.isnan(first["delta"])  # the vendor's deep-ITM placeholder (0.01, 0)
    row = a[a["occ_symbol"] == "A     160115P00020000"].iloc[0]
    assert (row["right"], row["bid"], row["ask"], row["delta"]) == ("P", 0.0, 0.35, -0.0247)


def test_vendor_eod_bad_type_names_the_row(tmp_path) -> None:
    src = shared_data("options_eod", "A.csv").read_text().splitlines()
    src[3] = src[3].replace(",put,", ",straddle,").replace(",call,", ",straddle,")
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(src))
    with pytest.raises(ValueError, match=r"row 4: type='straddle'"):
        read_vendor_eod(path)


def test_layered_chains_use_history_when_present_and_say_so() -> None:
    eod = EodChains([read_vendor_eod(shared_data("options_eod", "VXX.csv"))])
    market = SimMarket(seed=7, n_symbols=20)
    from engine.backtest.chains import SimChains

    layered = LayeredChains(eod, SimChains(market))
    ch, src = layered.chain("VXX", date(2016, 12, 1), time(16))
    assert src == EOD and len(ch) > 100 and (ch["underlying"] == "VXX").all()
    sym = str(market.symbols[5])
    ch2, src2 = layered.chain(sym, date(2025, 3, 3), time(10))
    assert src2 == SIM and len(ch2) > 0


def test_fill_is_mid_plus_spread_fraction_never_beyond_the_quote() -> None:
    chain = read_vendor_eod(shared_data("options_eod", "VXX.csv"))
    row = chain[(chain["bid"] > 0.5) & (chain["ask"] - chain["bid"] >= 0.1)].iloc[0]
    quotes = _quote_map(chain[chain["occ_symbol"] == row["occ_symbol"]])
    spec = BacktestSpec(strategy="atr_matrix", mode="options", source="csv", start=date(2016, 12, 1),
                        end=date(2016, 12, 30), params={"spread_fraction": 0.25})
    panel = _trend_panel(days=30, n=1)
    run = _Run(spec, panel, 0, SurfaceChains(panel), None, None)
    leg = Leg(row["occ_symbol"], Side.buy, 1, underlying="VXX", right=row["right"])
    q = quotes[row["occ_symbol"]]
    buy = run._price((leg,), [q]).fill
    sell = run._price((Leg(row["occ_symbol"], Side.sell, 1, underlying="VXX", right=row["right"]),), [q]).fill
    bid, ask = Decimal(str(row["bid"])), Decimal(str(row["ask"]))
    mid = (bid + ask) / 2
    # buying: mid + 25% of the half spread, rounded up to the cent; selling (fill is signed: -price)
    expected = (mid + Decimal("0.25") * (ask - bid) / 2).quantize(Decimal("0.01"), rounding="ROUND_CEILING")
    assert buy == expected and mid <= buy <= ask
    assert bid <= -sell <= mid


def _entries_on(tr: pd.DataFrame, day: pd.Timestamp) -> list[tuple]:
    on = tr[tr["entry_date"] == day]
    return sorted((r.symbol, r.entry_price, r.quantity, r.detail["structure"], tuple(r.detail["legs"]))
                  for r in on.itertuples())


@pytest.mark.parametrize("mode", ["options", "stock"])
def test_the_close_of_day_k_does_not_change_the_entries_of_day_k(mode: str) -> None:
    """Entries are made at the open/10:00 of day k from data through k-1: halving only the close of day k
    (which a same-day look-ahead would see through equity, cash or freed slots) leaves them unchanged."""
    panel = _trend_panel()
    first_day = 260
    base = _run(panel, first_day, mode)
    tried = 0
    for k in range(first_day + 5, panel.n_days - 1):
        day = pd.Timestamp(panel.dates[k])
        want = _entries_on(base.trades, day)
        if not want:
            continue
        close = panel.close.copy()
        close[k] = np.round(close[k] * 0.5, 2)  # only the close of day k
        other = _run(Panel(panel.dates, panel.symbols, panel.open, panel.high, panel.low, close, panel.volume),
                     first_day, mode)
        assert _entries_on(other.trades, day) == want, f"entries of {day.date()} changed with its close"
        tried += 1
        if tried == 6:
            break
    assert tried >= 3, "the fixture must enter on several days for the test to mean anything"


def test_eod_chain_is_known_only_from_its_close() -> None:
    """Vendor EOD quotes are taken at the 16:00 close: a 10:00 request on 2016-12-02 must get the chain
    quoted on 2016-12-01 (the previous session), and only at/after 16:00 the chain of 2016-12-02."""
    frame = read_vendor_eod(shared_data("options_eod", "VXX.csv"))
    eod = EodChains([frame])
    assert eod.has("VXX", date(2016, 12, 1)) and eod.has("VXX", date(2016, 12, 2))
    morning, src = eod.chain("VXX", date(2016, 12, 2), time(10))
    assert src == EOD
    prev = frame[frame["quote_date"] == date(2016, 12, 1)]
    assert len(morning) == len(prev)
    assert sorted(morning["bid"].round(4)) == sorted(prev["bid"].round(4))
    evening, _ = eod.chain("VXX", date(2016, 12, 2), time(16))
    same = frame[frame["quote_date"] == date(2016, 12, 2)]
    assert sorted(evening["bid"].round(4)) == sorted(same["bid"].round(4))
    first = min(eod.days("VXX"))
    assert eod.chain("VXX", first, time(10))[0].empty  # nothing quoted before the first day
    # the layered source falls back to the surface when no earlier chain is known
    panel = _trend_panel(days=30, n=1)
    layered = LayeredChains(eod, SurfaceChains(panel))
    assert layered.chain("VXX", date(2016, 12, 2), time(10))[1] == EOD


def test_cli_chains_flag_reaches_the_option_fills(monkeypatch, tmp_path) -> None:
    import engine.backtest.options_mode as om
    from engine.cli import main

    seen = {}
    real = om.run_options_backtest

    def spy(spec, panel, first_day, **kw):  # type: ignore[no-untyped-def]
        seen["eod_dir"] = kw.get("eod_dir")
        return real(spec, panel.select(list(panel.symbols[:10])), first_day, **kw)

    monkeypatch.setattr(om, "run_options_backtest", spy)
    chains = shared_data("options_eod", "VXX.csv").parent
    rc = main(["backtest", "--mode", "options", "--source", "sim", "--symbols", "10", "--start", "2025-06-02",
               "--end", "2025-06-10", "--chains", str(chains), "--no-store", "--quiet"])
    assert rc == 0 and str(seen["eod_dir"]) == str(chains)
    rc = main(["backtest", "--mode", "options", "--source", "sim", "--symbols", "10", "--start", "2025-06-02",
               "--end", "2025-06-10", "--chains", str(tmp_path / "none"), "--no-store", "--quiet"])
    assert rc == 1
