"""SIC codes (Massive ticker details' ``sic_code``) to the eleven GICS-style sectors the simulated market
uses (``engine.data.sim.SECTORS``), so the sector cap means the same thing on every source.

SIC is an industry code of the SEC, not GICS: the table maps each SIC range to the GICS sector most of
its companies belong to, most specific ranges first (e.g. 2834 pharmaceutical preparations -> Health Care
before 2800-2899 chemicals -> Materials). Unknown or non-classifiable codes (9xxx) give "".
"""

from __future__ import annotations

IT, HC, FIN, CD = "Information Technology", "Health Care", "Financials", "Consumer Discretionary"
COM, IND, CS, EN = "Communication Services", "Industrials", "Consumer Staples", "Energy"
UT, RE, MAT = "Utilities", "Real Estate", "Materials"

# (first, last, sector): the first range containing the code wins.
_RANGES: tuple[tuple[int, int, str], ...] = (
    (800, 899, MAT), (100, 999, CS),
    (1000, 1099, MAT), (1200, 1399, EN), (1400, 1499, MAT),
    (1520, 1531, CD), (1500, 1799, IND),
    (2000, 2199, CS), (2200, 2399, CD), (2400, 2499, MAT), (2500, 2599, CD), (2600, 2699, MAT),
    (2700, 2799, COM), (2830, 2836, HC), (2840, 2844, CS), (2800, 2899, MAT), (2900, 2999, EN),
    (3011, 3011, CD), (3000, 3099, MAT), (3100, 3199, CD), (3200, 3399, MAT), (3400, 3499, IND),
    (3570, 3579, IT), (3500, 3599, IND),
    (3630, 3639, CD), (3651, 3652, CD), (3660, 3679, IT), (3600, 3699, IND),
    (3710, 3716, CD), (3750, 3751, CD), (3790, 3799, CD), (3700, 3799, IND),
    (3840, 3851, HC), (3873, 3873, CD), (3800, 3899, IT), (3900, 3999, CD),
    (4000, 4799, IND), (4800, 4899, COM), (4922, 4923, EN), (4950, 4959, IND), (4900, 4999, UT),
    (5120, 5122, HC), (5140, 5149, CS), (5170, 5172, EN), (5000, 5199, IND),
    (5400, 5499, CS), (5912, 5912, CS), (5200, 5999, CD),
    (6500, 6553, RE), (6798, 6798, RE), (6000, 6799, FIN),
    (7000, 7299, CD), (7310, 7319, COM), (7370, 7379, IT), (7300, 7399, IND), (7500, 7599, CD),
    (7800, 7899, COM), (7900, 7999, CD), (8000, 8099, HC), (8200, 8299, CD), (8731, 8731, HC),
    (8100, 8999, IND),
)


def sector_for_sic(code: str | int | None) -> str:
    """The GICS-style sector of a SIC code ("" when unknown)."""
    try:
        sic = int(str(code).strip())
    except (TypeError, ValueError):
        return ""
    for first, last, sector in _RANGES:
        if first <= sic <= last:
            return sector
    return ""
