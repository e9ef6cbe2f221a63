"""Report values and the formatting every report shares (money, percents, dates, sessions)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from typing import Any

from engine.clock import NEW_YORK
from engine.data import calendar
from engine.notify.embeds import GREEN, GREY, RED, Message
from engine.portfolio.accounting import cents

INDEX_PROXIES = ("SPY", "QQQ", "IWM", "DIA")


TOP_SETUPS = 5  # setups detailed in the Morning Brew


TOP_LIST = 10  # rows of any other list (attention, plan, orders)


TOP_POSITIONS = 15  # positions listed in the digest


SIGNAL_MESSAGES = 25  # entry signals announced one by one each day; the rest share one message


SIGNAL_LIST_MAX = 200  # ... which lists at most this many


ATTENTION_DTE = 10  # an option position this close to expiry needs attention


ATTENTION_ATR = 1.0  # ... and one whose underlying is within this many ATRs of its stop


PLAN_BELOW = 0.5  # tomorrow's plan: atr_distance in [-0.5, 0): one reclaim of the SMA50 from the zone


PLAN_ABOVE = 0.5  # ... or in (4, 4.5]: one small pullback from the zone


SWEEP_LOOKBACK = timedelta(days=4)  # fills, exits and closes younger than this are announced if not yet


HEARTBEAT_STALE = timedelta(minutes=2)  # the scheduler beats every 15 s and its lease lasts 90 s


STOP_CODES = ("stop_hit", "premium_stop")





@dataclass(frozen=True)
class Report:
    channel: str
    key: str
    message: Message


# --- formatting -------------------------------------------------------------------------------------


def _dec(value: Any) -> Decimal:
    return Decimal(str(value if value is not None else 0))


def money(value: Any, signed: bool = False) -> str:
    """``$1,234.56``; ``-$1,234.56`` for negatives; ``+$1,234.56`` with ``signed`` (P&L)."""
    if value is None:
        return "n/a"
    d = cents(_dec(value))  # the one money rounding (half-even), as the books round
    sign = "-" if d < 0 else ("+" if signed and d > 0 else "")
    return f"{sign}${abs(d):,.2f}"


def signed_pct(value: float | Decimal | None, digits: int = 2) -> str:
    """A change in percent with its sign: ``+1.23%``, ``-0.40%`` (``0.00%`` when it rounds to zero)."""
    if value is None:
        return "n/a"
    text = f"{float(value):+.{digits}f}%"
    return text[1:] if float(text[:-1]) == 0 else text


def share(fraction: float | None, digits: int = 1) -> str:
    """A share of a whole (0..1) as a percent: ``0.5768`` -> ``57.7%``."""
    return "n/a" if fraction is None else f"{100 * float(fraction):.{digits}f}%"


def price(value: float | Decimal | None) -> str:
    return "n/a" if value is None else f"{float(value):,.2f}"


def r_multiple(value: float | Decimal | None) -> str:
    return "n/a" if value is None else f"{float(value):+.2f}R"


def big_money(value: float | None) -> str:
    """Large amounts (dollar volume) shortened: ``$86.7M``."""
    if value is None:
        return "n/a"
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= size:
            return f"${value / size:,.1f}{unit}"
    return f"${value:,.0f}"


def duration(delta: timedelta) -> str:
    """``45s``, ``30m``, ``1h 05m``, ``2d 3h 00m``."""
    seconds = int(abs(delta).total_seconds())
    if seconds < 60:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    days, rest = divmod(minutes, 24 * 60)
    text = f"{rest // 60}h {rest % 60:02d}m"
    return f"{days}d {text}" if days else text


def net(value: Any) -> str:
    """A structure price per unit (+ debit, - credit): ``$4.10 debit``, ``$0.85 credit``."""
    if value is None:
        return "n/a"
    d = _dec(value)
    return f"{money(abs(d))} {'credit' if d < 0 else 'debit'}"


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def hhmm(ts: datetime) -> str:
    return f"{ts.astimezone(NEW_YORK):%H:%M} ET"


def pnl_color(value: Any) -> int:
    d = _dec(value)
    return GREEN if d > 0 else RED if d < 0 else GREY


def occ(symbol: str) -> str:
    """An OCC option symbol without its padding: ``AECN  261218C00062500`` -> ``AECN 261218C00062500``."""
    return " ".join(str(symbol).split())


def _lines(items: Iterable[str], empty: str) -> str:
    out = [i for i in items if i]
    return "\n".join(out) if out else empty


# --- time helpers -----------------------------------------------------------------------------------


def market_date(now: datetime) -> date:
    return now.astimezone(NEW_YORK).date()


def _ny_date(ts: datetime | None) -> str:
    return "n/a" if ts is None else ts.astimezone(NEW_YORK).date().isoformat()


def _day_bounds(day: date, zone: tzinfo | None) -> tuple[datetime, datetime]:
    """New York midnight to midnight of ``day``, expressed in ``zone``."""
    start = datetime.combine(day, time(0), NEW_YORK)
    end = datetime.combine(day + timedelta(days=1), time(0), NEW_YORK)
    return start.astimezone(zone or UTC), end.astimezone(zone or UTC)


last_completed_session = calendar.last_completed_session


def session_line(day: date) -> str:
    times = calendar.session_times(day)
    if times is None:
        return f"{day.isoformat()} ({day:%A}): market closed (holiday or weekend)"
    open_, close = times
    text = f"{day.isoformat()} ({day:%A}): {open_:%H:%M}-{close:%H:%M} ET"
    if calendar.session_minutes(day) < 390:
        text += f", **early close at {close:%H:%M} ET**"
    return text


def open_line(now: datetime) -> str:
    times = calendar.session_times(market_date(now))
    if times is None:
        return f"No session today; next session {calendar.next_session(market_date(now)).isoformat()}"
    open_, close = times
    if now < open_:
        return f"Opens in {duration(open_ - now)} ({hhmm(open_)})"
    if now < close:
        return f"Open since {hhmm(open_)} ({duration(now - open_)} ago); closes in {duration(close - now)}"
    return f"Closed at {hhmm(close)}"


# --- shared reads -----------------------------------------------------------------------------------
