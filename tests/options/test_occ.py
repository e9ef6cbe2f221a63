"""OCC symbols: both spellings, checked against the fields the recorded responses carry beside them."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from engine.options.occ import OccSymbol, format_occ, parse_occ

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _load(*parts: str):
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"recorded data not found at {path} (../shared/data is absent in this checkout)")
    return json.loads(path.read_text())


def test_polygon_snapshot_ticker_matches_its_details():
    doc = _load("polygon", "v3", "snapshot", "options", "AAPL.json")
    details = doc["results"][0]["details"]
    sym = parse_occ(details["ticker"])
    assert sym.root == "AAPL"
    assert sym.expiry == date.fromisoformat(details["expiration_date"])
    assert sym.right == ("C" if details["contract_type"] == "call" else "P")
    assert sym.strike == Decimal(str(details["strike_price"]))
    assert format_occ(sym.root, sym.expiry, sym.right, sym.strike, style="polygon") == details["ticker"]
    assert sym.occ() == "AAPL  230616C00150000"


def test_tastytrade_nested_chain_symbols_match_their_strikes_and_expiries():
    doc = _load("tastytrade", "joaquinbejar", "captures", "nested-option-chain.json")
    n = 0
    for chain in doc["items"]:
        for exp in chain["expirations"]:
            for strike in exp["strikes"]:
                for right, key in (("C", "call"), ("P", "put")):
                    sym = parse_occ(strike[key])
                    assert sym == OccSymbol(chain["root-symbol"], date.fromisoformat(exp["expiration-date"]),
                                            right, Decimal(strike["strike-price"]))
                    # the padded spelling round-trips byte for byte
                    assert format_occ(sym.root, sym.expiry, right, Decimal(strike["strike-price"])) == strike[key]
                    n += 1
    assert n == 18  # 3 expiries x 3 strikes x call/put in the capture


def test_tastytrade_market_data_symbols():
    doc = _load("tastytrade", "tastyware", "market_data_equity_option_response.json")
    syms = [parse_occ(item["symbol"]) for item in doc["items"]]
    assert syms[0] == OccSymbol("SPY", date(2025, 7, 1), "C", Decimal("605"))
    assert syms[1].strike == Decimal("610")
    assert syms[0].polygon() == "O:SPY250701C00605000"


def test_hand_built_symbols_both_styles():
    assert format_occ("SPY", date(2025, 7, 1), "P", 605.5) == "SPY   250701P00605500"
    assert format_occ("spxw", date(2026, 12, 18), "call", Decimal("5000"), style="polygon") == \
        "O:SPXW261218C05000000"
    # fractional strikes down to a tenth of a cent (8 digits = 5 whole + 3 decimals)
    assert format_occ("F", date(2025, 1, 17), "C", "12.125") == "F     250117C00012125"
    assert parse_occ("F     250117C00012125").strike == Decimal("12.125")
    # the compact spelling without padding or prefix parses too; datetimes are taken as dates
    assert parse_occ("SPY250701C00605000") == parse_occ("SPY   250701C00605000")
    assert format_occ("AAPL", datetime(2023, 6, 16, 16, 0), "C", 150) == "AAPL  230616C00150000"
    # a six-character root fills the padding exactly
    assert parse_occ("GOOGL1250117P00100000").root == "GOOGL1"


@pytest.mark.parametrize(
    "bad",
    ["", "AAPL", "O:AAPL230616X00150000", "O:AAPL231316C00150000", "O:AAPL230631C00150000",
     "TOOLONGROOT230616C00150000", "AAPL  230616C0015000", "AAPL  230616C00000000", "O:AA-L230616C00150000"],
)
def test_bad_symbols_raise_value_error_naming_the_value(bad):
    with pytest.raises(ValueError, match="not an OCC option symbol") as info:
        parse_occ(bad)
    assert repr(bad) in str(info.value)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("AAPL", date(2023, 6, 16), "X", 150), "'X'"),
        (("AAPL", date(2023, 6, 16), "C", 150.0001), "150.0001"),
        (("AAPL", date(2023, 6, 16), "C", -5), "-5"),
        (("AAPL", date(2023, 6, 16), "C", 100000), "100000"),
        (("", date(2023, 6, 16), "C", 150), "''"),
        (("AAPL", "2023-06-16", "C", 150), "'2023-06-16'"),
        (("AAPL", date(2023, 6, 16), "C", "abc"), "'abc'"),
    ],
)
def test_bad_format_arguments_raise_value_error_naming_the_value(args, fragment):
    with pytest.raises(ValueError) as info:
        format_occ(*args)
    assert fragment in str(info.value)


def test_bad_style():
    with pytest.raises(ValueError, match="style"):
        format_occ("AAPL", date(2023, 6, 16), "C", 150, style="ib")  # type: ignore[arg-type]


def test_fast_padded_form_matches_the_checked_formatter() -> None:
    from datetime import date

    from engine.options.occ import format_occ, occ_padded

    for root, strike in (("AAPL", 150.0), ("SPY", 605.0), ("F", 12.5), ("BRKB", 0.5)):
        assert occ_padded(root, date(2025, 7, 1), "C", strike) == format_occ(root, date(2025, 7, 1), "C", strike)
