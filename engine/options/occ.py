"""OCC option symbols in the two spellings seen in real data.

- OCC / tastytrade: root padded with spaces to 6 characters, then yymmdd, C or P, and the strike in
  thousandths of a dollar on 8 digits: ``SPY   250701C00605000``.
- Polygon / Massive: ``O:`` then the unpadded root and the same 15 characters: ``O:AAPL230616C00150000``.

The compact form without padding or prefix (``SPY250701C00605000``) is also accepted when parsing.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Literal, NamedTuple

__all__ = ["OccSymbol", "format_occ", "occ_padded", "parse_occ"]

_ROOT = re.compile(r"[A-Z0-9]{1,6}")
_TAIL = re.compile(r"(\d{2})(\d{2})(\d{2})([CP])(\d{8})")
_THOUSAND = Decimal(1000)


class OccSymbol(NamedTuple):
    root: str
    expiry: date
    right: str  # 'C' or 'P'
    strike: Decimal  # exact, in dollars (the symbol carries thousandths)

    def occ(self) -> str:
        return format_occ(self.root, self.expiry, self.right, self.strike, style="occ")

    def polygon(self) -> str:
        return format_occ(self.root, self.expiry, self.right, self.strike, style="polygon")


def parse_occ(symbol: str) -> OccSymbol:
    """Parse an OCC symbol in either spelling; ValueError naming the value when it is not one."""
    if not isinstance(symbol, str):
        raise ValueError(f"not an OCC option symbol: {symbol!r} (expected a string)")
    text = symbol.strip()
    if text.startswith("O:"):
        text = text[2:]
    if len(text) < 16:
        raise ValueError(f"not an OCC option symbol: {symbol!r} (too short)")
    root, tail = text[:-15].rstrip(), text[-15:]
    if not _ROOT.fullmatch(root):
        raise ValueError(f"not an OCC option symbol: {symbol!r} (root {root!r} is not 1-6 letters/digits)")
    m = _TAIL.fullmatch(tail)
    if m is None:
        raise ValueError(f"not an OCC option symbol: {symbol!r} (expected yymmdd, C/P and 8 strike digits)")
    yy, mm, dd, right, strike = m.groups()
    try:
        expiry = date(2000 + int(yy), int(mm), int(dd))
    except ValueError as exc:
        raise ValueError(f"not an OCC option symbol: {symbol!r} (bad expiry {yy}{mm}{dd}: {exc})") from None
    thousandths = int(strike)
    if thousandths == 0:
        raise ValueError(f"not an OCC option symbol: {symbol!r} (zero strike)")
    return OccSymbol(root, expiry, right, Decimal(thousandths) / _THOUSAND)


def _right(right: str) -> str:
    r = str(right).strip().upper()
    if r in ("C", "CALL"):
        return "C"
    if r in ("P", "PUT"):
        return "P"
    raise ValueError(f"option right must be 'C' or 'P' (or call/put): {right!r}")


def occ_padded(root: str, expiry: date, right: str, strike: float) -> str:
    """Unchecked fast path for trusted inputs (chain generation): ``AAPL  230616C00150000``."""
    return f"{root:<6}{expiry:%y%m%d}{right}{round(strike * 1000):08d}"


def format_occ(root: str, expiry: date, right: str, strike: Decimal | float | int | str,
               style: Literal["occ", "polygon"] = "occ") -> str:
    """Build a symbol: ``style='occ'`` pads the root to 6, ``style='polygon'`` prefixes ``O:``."""
    r = str(root).strip().upper()
    if not _ROOT.fullmatch(r):
        raise ValueError(f"OCC root must be 1-6 letters/digits: {root!r}")
    if isinstance(expiry, datetime):
        expiry = expiry.date()
    if not isinstance(expiry, date):
        raise ValueError(f"expiry must be a date: {expiry!r}")
    if not 2000 <= expiry.year <= 2099:
        raise ValueError(f"expiry year outside what yymmdd can hold: {expiry!r}")
    try:
        # str() first so a float like 605.1 becomes Decimal('605.1'), not its binary expansion
        k = Decimal(str(strike)) if not isinstance(strike, Decimal) else strike
        thousandths = k * _THOUSAND
    except (InvalidOperation, ValueError):
        raise ValueError(f"strike is not a number: {strike!r}") from None
    if not thousandths.is_finite() or thousandths != thousandths.to_integral_value():
        raise ValueError(f"strike must be a whole number of thousandths of a dollar: {strike!r}")
    n = int(thousandths)
    if not 0 < n < 100_000_000:
        raise ValueError(f"strike out of the OCC range (0, 99999.999]: {strike!r}")
    tail = f"{expiry:%y%m%d}{_right(right)}{n:08d}"
    if style == "occ":
        return f"{r:<6}{tail}"
    if style == "polygon":
        return f"O:{r}{tail}"
    raise ValueError(f"style must be 'occ' or 'polygon': {style!r}")
