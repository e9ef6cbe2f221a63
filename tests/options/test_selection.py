"""Contract selection on small hand-built chains: each filter rejects what it should, with its reason."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta, timezone

import pandas as pd
import pytest

from engine.options.chain import CHAIN_COLUMNS
from engine.options.occ import format_occ
from engine.options.selection import OptionParams, select_candidates

TODAY = date(2026, 2, 2)
SIGNAL = {"symbol": "XYZ", "close": 100.0, "atr": 3.0, "stop": 95.5,
          "targets": [110.0, 113.0, 116.0, 119.0], "zone": "entry"}


def c(right, strike, dte, delta, *, bid=4.90, ask=5.10, oi=1000, vol=100, iv=0.35):
    expiry = TODAY + timedelta(days=dte)
    return {
        "underlying": "XYZ", "occ_symbol": format_occ("XYZ", expiry, right, strike), "expiry": expiry,
        "dte": dte, "strike": float(strike), "right": right, "bid": bid, "ask": ask, "mid": (bid + ask) / 2,
        "last": (bid + ask) / 2, "volume": vol, "open_interest": oi, "iv": iv, "delta": delta,
        "gamma": 0.03, "theta": -0.05, "vega": 0.12, "underlying_price": 100.0,
        "quote_time": datetime(2026, 2, 2, 20, 0, tzinfo=timezone.utc), "source": "test",
    }


def chain(*rows):
    return pd.DataFrame(list(rows), columns=list(CHAIN_COLUMNS))


def reasons(sel):
    return dict(zip(sel.rejected["occ_symbol"], sel.rejected["reason"], strict=True))


def sym(right, strike, dte):
    return format_occ("XYZ", TODAY + timedelta(days=dte), right, strike)


def test_long_call_by_default_and_every_filter_names_its_rule():
    ch = chain(
        c("C", 98, 35, 0.60),                                # chosen
        c("C", 99, 35, 0.66),                                # eligible, ranked second
        c("C", 97, 14, 0.60),                                # too close to expiry
        c("C", 96, 75, 0.60),                                # too far
        c("C", 95, 35, 0.62, oi=120),                        # thin open interest
        c("C", 94, 35, 0.62, vol=10),                        # thin volume
        c("C", 93, 35, 0.62, bid=2.00, ask=2.30),            # spread 0.30 / mid 2.15 = 13.95%
        c("C", 92, 35, 0.62, bid=5.20, ask=5.00),            # crossed
        c("C", 91, 35, 0.62, bid=0.0, ask=0.10),             # no bid
        c("C", 105, 35, 0.45),                               # delta outside the long band
        c("P", 100, 35, -0.40),                              # a put: no put leg in a long call
    )
    sel = select_candidates(SIGNAL, ch)
    assert [s.kind for s in sel.structures] == ["long_call"]
    assert sel.chosen.legs[0].occ_symbol == sym("C", 98, 35)
    why = reasons(sel)
    assert why == {
        sym("C", 99, 35): "not chosen: long_call ranked 2 of 2",
        sym("C", 97, 14): "dte 14 < 21",
        sym("C", 96, 75): "dte 75 > 60",
        sym("C", 95, 35): "open_interest 120 < 500",
        sym("C", 94, 35): "volume 10 < 50",
        sym("C", 93, 35): "spread 14.0% of mid > 10%",
        sym("C", 92, 35): "quote crossed",
        sym("C", 91, 35): "quote no_bid",
        sym("C", 105, 35): "|delta| 0.45 outside long 0.55-0.70",
        sym("P", 100, 35): "put not used by long_call",
    }
    assert sel.notes[0] == "iv rank unknown: long call"


def test_earnings_inside_the_expiry_window_rejects_the_expiry():
    ch = chain(c("C", 98, 35, 0.60), c("C", 98, 28, 0.60))
    earnings = TODAY + timedelta(days=30)  # between the 28-day and the 35-day expiry
    sel = select_candidates(SIGNAL, ch, earnings_date=earnings)
    assert sel.chosen.legs[0].occ_symbol == sym("C", 98, 28)
    expiry = TODAY + timedelta(days=35)
    assert reasons(sel) == {sym("C", 98, 35): f"expiry {expiry} after earnings {earnings}"}
    # an earnings date already in the past does not matter
    sel = select_candidates(SIGNAL, ch, earnings_date=TODAY - timedelta(days=3))
    assert sel.chosen.legs[0].occ_symbol == sym("C", 98, 35)


def test_tie_breaks_delta_then_target_dte_then_spread():
    # |0.58 - 0.60| == |0.62 - 0.60|: the 40-day one is inside the 30-45 window, the 50-day one is not
    ch = chain(c("C", 98, 50, 0.62), c("C", 99, 40, 0.58))
    assert select_candidates(SIGNAL, ch).chosen.legs[0].occ_symbol == sym("C", 99, 40)
    # same delta distance and dte window: the tighter spread wins (2% vs 4% of mid)
    ch = chain(c("C", 98, 35, 0.62, bid=4.90, ask=5.10), c("C", 99, 40, 0.58, bid=4.95, ask=5.05))
    assert select_candidates(SIGNAL, ch).chosen.legs[0].occ_symbol == sym("C", 99, 40)
    # delta distance comes first, even against a better dte
    ch = chain(c("C", 98, 55, 0.60), c("C", 99, 35, 0.63))
    assert select_candidates(SIGNAL, ch).chosen.legs[0].occ_symbol == sym("C", 98, 55)
    # and the result does not depend on row order
    assert select_candidates(SIGNAL, ch.iloc[::-1]).chosen.legs[0].occ_symbol == sym("C", 98, 55)


def test_debit_spread_when_iv_rank_is_high():
    ch = chain(
        c("C", 98, 35, 0.60, bid=4.90, ask=5.10),
        c("C", 108, 35, 0.30, bid=1.45, ask=1.55),
        c("C", 106, 42, 0.30, bid=1.95, ask=2.05),           # short candidate in another expiry
        c("C", 95, 35, 0.28),                                # short band, but below the long strike
    )
    sel = select_candidates(SIGNAL, ch, iv_rank=60)
    assert [s.kind for s in sel.structures] == ["call_debit_spread"]
    spread = sel.chosen
    assert [leg.occ_symbol for leg in spread.legs] == [sym("C", 98, 35), sym("C", 108, 35)]
    assert [leg.qty for leg in spread.legs] == [1, -1]
    assert str(spread.net_price("mid")) == "3.50"
    assert reasons(sel)[sym("C", 106, 42)].startswith("not chosen: short_call ranked")


def test_credit_spread_also_allowed_at_iv_rank_70_with_short_put_at_or_below_the_stop():
    ch = chain(
        c("C", 98, 35, 0.60), c("C", 108, 35, 0.30, bid=1.45, ask=1.55),
        c("P", 95, 35, -0.30, bid=2.00, ask=2.10),            # short put, 95 <= stop 95.5
        c("P", 97, 35, -0.34, bid=2.60, ask=2.80),            # short band but above the stop
        c("P", 88, 35, -0.10, bid=0.60, ask=0.64),            # wing
        c("P", 80, 35, -0.03, bid=0.10, ask=0.11),            # too far out even for a wing
    )
    sel = select_candidates(SIGNAL, ch, iv_rank=75)
    # DESIGN §5: at IV rank >= 70 the credit spread is preferred (chosen), the debit spread comes second
    assert [s.kind for s in sel.structures] == ["bull_put_credit_spread", "call_debit_spread"]
    assert "bull put credit spread preferred" in sel.notes[0]
    credit = sel.chosen
    assert [leg.occ_symbol for leg in credit.legs] == [sym("P", 95, 35), sym("P", 88, 35)]
    assert credit.is_credit
    assert str(credit.net_price("mid")) == "-1.43"           # 2.05 - 0.62
    why = reasons(sel)
    assert why[sym("P", 97, 35)] == "strike 97 above stop 95.5 (short put of the credit spread)"
    assert why[sym("P", 80, 35)] == "|delta| 0.03 outside short 0.20-0.35 / wing 0.05-0.20"


def test_iron_condor_in_the_extended_zone_with_high_iv_rank():
    ch = chain(
        c("P", 85, 35, -0.10, bid=0.48, ask=0.52), c("P", 92, 35, -0.20, bid=1.15, ask=1.25),
        c("C", 108, 35, 0.20, bid=1.25, ask=1.35), c("C", 115, 35, 0.10, bid=0.58, ask=0.62),
        c("C", 100, 35, 0.55),                                # long band: not a condor role
        c("C", 104, 35, 0.30, bid=2.00, ask=2.10),            # a spread's short, but the condor's are 0.15-0.25
    )
    signal = {**SIGNAL, "zone": "extended"}
    sel = select_candidates(signal, ch, iv_rank=80)
    assert [s.kind for s in sel.structures] == ["iron_condor"]
    assert [leg.occ_symbol for leg in sel.chosen.legs] == [sym("P", 85, 35), sym("P", 92, 35),
                                                           sym("C", 108, 35), sym("C", 115, 35)]
    assert str(sel.chosen.net_price("mid")) == "-1.40"       # -0.50 + 1.20 + 1.30 - 0.60
    assert reasons(sel) == {sym("C", 100, 35): "|delta| 0.55 outside condor 0.15-0.25 / wing 0.05-0.20",
                            sym("C", 104, 35): "|delta| 0.30 outside condor 0.15-0.25 / wing 0.05-0.20"}
    # low IV rank in the extended zone: nothing, and the notes say why
    sel = select_candidates(signal, ch, iv_rank=40)
    assert sel.structures == ()
    assert "iron condor needs iv rank >= 70" in sel.notes[0]
    assert set(reasons(sel).values()) == {"no structure for zone 'extended'"}


def test_our_delta_is_used_when_the_provider_has_none():
    rows = [c("C", 98, 35, math.nan), c("C", 99, 35, math.nan)]
    ch = chain(*rows)
    ch["calc_delta"] = [0.61, math.nan]
    sel = select_candidates(SIGNAL, ch)
    assert sel.chosen.legs[0].occ_symbol == sym("C", 98, 35)
    assert reasons(sel) == {sym("C", 99, 35): "delta unknown"}


def test_no_eligible_contract_gives_no_structure_and_a_note():
    sel = select_candidates(SIGNAL, chain(c("C", 98, 10, 0.60)))
    assert sel.structures == ()
    assert sel.notes[-1].startswith("long_call: no eligible combination")
    assert reasons(sel) == {sym("C", 98, 10): "dte 10 < 21"}


def test_every_contract_is_either_used_or_rejected():
    ch = chain(*(c(r, k, d, (0.6 if r == "C" else -0.3)) for r in "CP" for k in (90, 100, 110) for d in (14, 35)))
    sel = select_candidates(SIGNAL, ch, iv_rank=80)
    used = {leg.occ_symbol for s in sel.structures for leg in s.legs}
    assert used.isdisjoint(sel.rejected["occ_symbol"])
    assert used | set(sel.rejected["occ_symbol"]) == set(ch["occ_symbol"])
    assert (sel.rejected["reason"] != "").all()


def test_params_are_validated_and_configurable():
    with pytest.raises(ValueError):
        OptionParams(dte_min=50, dte_max=40)
    with pytest.raises(ValueError):
        OptionParams(long_delta_min=0.7, long_delta_max=0.6)
    loose = OptionParams(min_open_interest=100)
    sel = select_candidates(SIGNAL, chain(c("C", 95, 35, 0.62, oi=120)), loose)
    assert sel.chosen is not None


def test_covered_call_is_a_30_to_45_day_call_at_delta_025_to_035():
    ch = chain(
        c("C", 106, 38, 0.30),                               # chosen: delta on target, dte in 30-45
        c("C", 107, 38, 0.26),                               # eligible, further from 0.30
        c("C", 105, 52, 0.30),                               # within 21-60 but not a 30-45 day call
        c("C", 104, 38, 0.40),                               # too close to the money
        c("C", 110, 38, 0.15),                               # too far out
    )
    held = {**SIGNAL, "close": 100.0, "zone": "held"}
    sel = select_candidates(held, ch, kinds=["covered_call"])
    assert [s.kind for s in sel.structures] == ["covered_call"]
    stock, call = sel.chosen.legs
    assert (stock.right, stock.qty, stock.occ_symbol) == ("S", 1, "XYZ")
    assert (call.occ_symbol, call.qty) == (sym("C", 106, 38), -1)
    assert reasons(sel) == {
        sym("C", 107, 38): "not chosen: covered_call ranked 2 of 2",
        sym("C", 105, 52): "dte 52 outside 30-45 (the covered call's window)",
        sym("C", 104, 38): "|delta| 0.40 outside covered 0.25-0.35",
        sym("C", 110, 38): "|delta| 0.15 outside covered 0.25-0.35",
    }
    # max loss of the pair is the shares' (covered: the call adds none): 100 - 5.00 credit, x 100
    assert sel.chosen.max_loss_per_contract("mid") == 9500
