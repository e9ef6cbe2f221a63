"""Discord reports built from what the engine stored: pure reads of the database, never placeholder text.

Every builder takes an open ``Session`` (plus settings and the market time ``now``) and returns
:class:`Report` objects: a channel, a deterministic idempotency key and the :class:`Message`. Nothing here
writes; :func:`engine.notify.hooks.after_job` decides which reports a job produces and enqueues them.

Reports, channels and keys (built after which job):

- Morning Brew: ``morning_brew``, ``morning_brew:<date>`` (premarket)
- entry signal: ``signals``, ``signal:<signal id>``; beyond the best 25 of a day one list,
  ``signals-more:<scan date>`` (premarket)
- exit order: ``signals``, ``exit-order:<client order id>`` (every job: a sweep of the last days)
- fill: ``portfolio``, ``fill:<broker fill id>`` (every job)
- scale-out: ``portfolio``, ``scale-out:<client order id>`` (every job)
- stop hit / position closed: ``portfolio``, ``closed:<position id>`` (every job)
- portfolio digest: ``portfolio``, ``digest:<date>`` (postmarket)
- post-market report: ``morning_brew``, ``postmarket:<date>`` (postmarket)
- health check: ``system_status``, ``health:<date>`` (postmarket, always) and ``health-nightly:<date>``
  (nightly, only when a check fails)

The post-market report goes to ``morning_brew``: it is the evening half of the daily briefing (the day's
activity and tomorrow's plan), while ``portfolio`` carries the numbers (fills, closes, the digest).

Formatting: money ``$1,234.56`` (``+$``/``-$`` for P&L), changes as signed percents (``+1.23%``), shares of
a whole (breadth, heat) as plain percents (``57.7%``), dates ISO, times America/New_York ("ET"). Colours:
green for gains, red for losses and problems, blue for information, orange for exits.

Timestamps come back timezone-aware (UTC) from every database (engine.models.UTCDateTime).
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from itertools import pairwise
from typing import Any

from sqlalchemy import and_, not_, or_
from sqlmodel import Session, col, select

from engine.clock import NEW_YORK
from engine.config import Settings
from engine.data import calendar
from engine.models import (
    AccountSnapshot,
    Fill,
    Heartbeat,
    JobRun,
    OptionCandidate,
    Order,
    OrderEvent,
    Position,
    ReconciliationRun,
    ScanResult,
    ScanRun,
    Signal,
)
from engine.notify.embeds import BLUE, GREEN, GREY, ORANGE, RED, Message
from engine.operator import kill_switch_on
from engine.portfolio.exposure import portfolio_risk_offline
from engine.readings import latest_scan, latest_snapshot
from engine.readings import nearest_expiry as option_expiry
from engine.schedule import JOB_IDS, POSTMARKET_DELAY

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
_CENT = Decimal("0.01")


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
    d = _dec(value).quantize(_CENT, ROUND_HALF_UP)
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


def scan_for_day(session: Session, day: date) -> ScanRun | None:
    """The scan the pre-market of ``day`` uses: the newest successful one on data up to the previous session."""
    as_of = calendar.previous_session(day)
    return session.exec(
        select(ScanRun).where(ScanRun.status == "ok", ScanRun.data_date <= as_of)
        .order_by(col(ScanRun.data_date).desc(), col(ScanRun.id).desc())
    ).first()


def scan_rows(session: Session, run_id: int, symbols: Sequence[str]) -> dict[str, ScanResult]:
    if not symbols:
        return {}
    rows = session.exec(select(ScanResult).where(ScanResult.scan_run_id == run_id,
                                                 col(ScanResult.symbol).in_(list(symbols)))).all()
    return {r.symbol: r for r in rows}


def strategy_params(run: ScanRun | None, settings: Settings) -> dict[str, Any]:
    """The thresholds the scan used (stored with the run), else the configured ones."""
    params = settings.strategy.model_dump(mode="json")
    if run is not None and run.params:
        params.update(run.params)
    return params


def chosen_candidate(session: Session, signal_id: int) -> OptionCandidate | None:
    return session.exec(select(OptionCandidate).where(OptionCandidate.signal_id == signal_id, OptionCandidate.chosen)
                        .order_by(col(OptionCandidate.id).desc())).first()


def entry_order(session: Session, signal_id: int) -> Order | None:
    return session.exec(select(Order).where(Order.signal_id == signal_id, Order.intent == "open")
                        .order_by(col(Order.id).desc())).first()


def open_positions(session: Session) -> list[Position]:
    return list(session.exec(select(Position).where(Position.status == "open").order_by(Position.symbol,
                                                                                       col(Position.id))).all())


def reason_codes(reason: str) -> list[str]:
    """``"stop_hit: price 45.73 <= stop 46.78; premium_stop: ..."`` -> ``["stop_hit", "premium_stop"]``."""
    codes = []
    for part in (reason or "").split("; "):
        head = part.split(":", 1)[0].strip()
        if head:
            codes.append(head)
    return codes


def exit_kind(reason: str) -> str:
    """``stop`` (stop or premium stop), ``scale_out`` (a target) or ``exit`` (trend, time, exhaustion...)."""
    codes = reason_codes(reason)
    if any(c in STOP_CODES for c in codes):
        return "stop"
    lowered = (reason or "").lower()
    if lowered.startswith(("target", "scale-out", "scale_out")):
        return "scale_out"
    return "exit"


# --- Morning Brew -----------------------------------------------------------------------------------


def candidate_text(cand: OptionCandidate | None) -> str:
    if cand is None:
        return "no option candidate"
    legs = "; ".join(f"{'BUY' if int(leg.get('qty', 1)) > 0 else 'SELL'} {abs(int(leg.get('qty', 1)))} "
                     f"{occ(leg.get('occ_symbol', ''))}" for leg in cand.legs)
    parts = [f"{cand.structure}: {legs}", f"net {net(cand.net_mid)}",
             f"max loss {money(cand.max_loss)}/contract"]
    if cand.breakevens:
        parts.append("breakeven " + ", ".join(price(b) for b in cand.breakevens))
    if cand.iv_rank is not None:
        parts.append(f"IV rank {cand.iv_rank:.0f}")
    return " · ".join(parts)


def order_text(order: Order | None, signal: Signal) -> str:
    if order is None:
        return f"not ordered (signal {signal.status})"
    limit = net(order.limit_price) if order.limit_price is not None else "market"
    text = f"order x{order.quantity} limit {limit}, max loss {money(order.max_loss)}: {order.status}"
    if order.filled_quantity:
        text += f", filled {order.filled_quantity} at {net(order.avg_fill_price)}"
    return text


def levels_text(entry: float, stop: float, targets: Sequence[float]) -> str:
    stop_pct = 100 * (stop / entry - 1) if entry else None
    tgt = " / ".join(price(t) for t in targets) or "n/a"
    return f"entry {price(entry)} · stop {price(stop)} ({signed_pct(stop_pct, 1)}) · targets {tgt}"


def attention_items(positions: Sequence[Position], rows: dict[str, ScanResult], today: date) -> list[str]:
    """Why each open position needs a look: near its stop, at its next target, close to expiry."""
    out = []
    for pos in positions:
        row = rows.get(pos.symbol)
        close = row.close if row is not None and row.close is not None else pos.greeks.get("underlying_price")
        atr = row.atr if row is not None and row.atr else pos.entry_atr
        why = []
        if close is not None and atr:
            gap = (float(close) - pos.stop) / float(atr)
            if gap <= 0:
                why.append(f"close {price(close)} at or below stop {price(pos.stop)}")
            elif gap <= ATTENTION_ATR:
                why.append(f"{gap:.2f} ATR above stop {price(pos.stop)} (close {price(close)})")
        if close is not None and pos.targets_hit < len(pos.targets) and float(close) >= pos.targets[pos.targets_hit]:
            why.append(f"at target {pos.targets_hit + 1} {price(pos.targets[pos.targets_hit])} "
                       f"(close {price(close)})")
        expiry = option_expiry(pos.legs)
        if expiry is not None and (expiry - today).days <= ATTENTION_DTE:
            why.append(f"{(expiry - today).days} DTE (expires {expiry.isoformat()})")
        if why:
            out.append(f"**{pos.symbol}** {pos.structure} x{pos.quantity}: " + "; ".join(why))
    return out


def morning_brew(session: Session, settings: Settings, now: datetime) -> Report:
    today = market_date(now)
    run = scan_for_day(session, today)
    fields: list[tuple[str, str, bool]] = []
    description = [session_line(today), open_line(now)]
    if run is None:
        description.append("No scan stored yet: no index readings, breadth or setups.")
    else:
        b = run.breadth or {}
        description.append(f"Scan of {run.data_date.isoformat()}: {run.n_scanned:,} symbols, "
                           f"{b.get('included', run.n_scanned - run.n_excluded):,} included, "
                           f"{plural(run.n_signals, 'entry signal')}")
        proxies = scan_rows(session, run.id, INDEX_PROXIES)  # type: ignore[arg-type]
        fields.append(("Index proxies (ATR Matrix)", _lines(
            (proxy_line(s, proxies.get(s)) for s in INDEX_PROXIES), "n/a"), False))
        fields.append(("Breadth", breadth_text(b), False))
        fields += setup_fields(session, run)
    positions = open_positions(session)
    rows = scan_rows(session, run.id, [p.symbol for p in positions]) if run is not None else {}  # type: ignore[arg-type]
    items = attention_items(positions, rows, today)
    if not positions:
        attention = "No open positions."
    elif not items:
        attention = (f"{plural(len(positions), 'open position')}; none within {ATTENTION_ATR:g} ATR of its stop, "
                     f"at a target or within {ATTENTION_DTE} DTE.")
    else:
        attention = _lines(items[:TOP_LIST], "") + (f"\n... and {len(items) - TOP_LIST} more"
                                                      if len(items) > TOP_LIST else "")
    fields.append(("Positions needing attention", attention, False))
    risk = portfolio_risk_offline(session, settings, now)
    fields.append(("Risk used", risk_text(risk, settings, kill_switch_on(session)), False))
    return Report("morning_brew", f"morning_brew:{today.isoformat()}", Message(
        title=f"Morning Brew: {today.isoformat()}",
        description="\n".join(description),
        fields=fields,
        color=BLUE,
        footer=f"QuantMatrix · market time {now.astimezone(NEW_YORK):%Y-%m-%d %H:%M} ET",
        timestamp=now,
        kind="morning_brew",
    ))


def proxy_line(symbol: str, row: ScanResult | None) -> str:
    if row is None:
        return f"**{symbol}**: not in the scan"
    if row.excluded_reason:
        return f"**{symbol}** {price(row.close)}: excluded ({row.excluded_reason})"
    distance = "n/a" if row.atr_distance is None else f"{row.atr_distance:+.2f}"
    atr_pct = "n/a" if row.atr_pct is None else f"{row.atr_pct:.2f}%"
    return f"**{symbol}** {price(row.close)} · zone {row.zone or 'n/a'} · ATR distance {distance} · ATR% {atr_pct}"


def breadth_text(b: dict[str, Any]) -> str:
    return (f"Above SMA50: {share(b.get('above_sma50'))}\n"
            f"In the entry zone: {share(b.get('entry_zone'))}\n"
            f"Extended (ATR distance > 4): {share(b.get('extended'))}\n"
            f"of {int(b.get('included', 0)):,} symbols that passed the data gate")


def setup_fields(session: Session, run: ScanRun) -> list[tuple[str, str, bool]]:
    """One field per top setup (entry, stop, targets, the option chosen and its order)."""
    signals = list(session.exec(select(Signal).where(Signal.data_date == run.data_date, Signal.kind == "entry",
                                                     Signal.strategy == run.strategy)).all())
    if not signals:
        return [("Top setups", f"No entry signals in the {run.data_date.isoformat()} scan.", False)]
    signals = _signal_order(signals)
    out = []
    for i, sig in enumerate(signals[:TOP_SETUPS], start=1):
        cand = chosen_candidate(session, sig.id)  # type: ignore[arg-type]
        order = entry_order(session, sig.id)  # type: ignore[arg-type]
        out.append((f"Setup {i}: {sig.symbol} (score {sig.score:.2f}, zone {sig.zone})",
                    f"{levels_text(sig.entry_price, sig.stop, sig.targets)}\n"
                    f"option: {candidate_text(cand)}\n{order_text(order, sig)}", False))
    if len(signals) > TOP_SETUPS:
        rest = ", ".join(s.symbol for s in signals[TOP_SETUPS:TOP_SETUPS + 20])
        out.append(("Other signals", f"{len(signals) - TOP_SETUPS} more: {rest}"
                    + (", ..." if len(signals) > TOP_SETUPS + 20 else ""), False))
    return out


def risk_text(risk: Any, settings: Settings, kill_switch: bool) -> str:
    limits = settings.risk
    equity = _dec(risk.equity)
    heat_pct = float(risk.heat / equity * 100) if equity > 0 else None
    lines = [
        f"Heat {money(risk.heat)} = {'n/a' if heat_pct is None else f'{heat_pct:.2f}%'} of equity "
        f"(limit {limits.max_heat_pct:.2f}%)",
        f"Positions {risk.open_positions} / {limits.max_open_positions}",
        f"Pending entry risk {money(risk.pending_risk)}",
        f"Equity {money(risk.equity)}",
    ]
    if kill_switch:
        lines.append("**Kill switch is ON**: no new entries")
    return "\n".join(lines)


# --- signals channel --------------------------------------------------------------------------------


def _check(ok: bool | None) -> str:
    return "✓" if ok else "✗"


def signal_reasons(values: dict[str, Any], p: dict[str, Any]) -> list[str]:
    """The values that produced an entry signal, each with the rule it met."""

    def v(name: str) -> float | None:
        x = values.get(name)
        return None if x is None else float(x)

    close, d, atr_pct, rng, dv = v("close"), v("atr_distance"), v("atr_pct"), v("range_pos_20"), v("dollar_volume_20")
    sma20, sma50, sma100, sma200, ema10 = v("sma20"), v("sma50"), v("sma100"), v("sma200"), v("ema10")
    lo, hi = float(p.get("entry_min_distance", 0.0)), float(p.get("entry_max_distance", 4.0))

    def ge(a: float | None, b: float) -> bool:
        return a is not None and a >= b

    lines = [
        f"{_check(d is not None and lo <= d <= hi)} ATR distance {'n/a' if d is None else f'{d:.2f}'} "
        f"in [{lo:g}, {hi:g}] (zone {values.get('zone', 'n/a')})",
        f"{_check(ge(atr_pct, float(p.get('min_atr_pct', 0))))} ATR% {'n/a' if atr_pct is None else f'{atr_pct:.2f}%'} "
        f">= {float(p.get('min_atr_pct', 0)):g}%",
        f"{_check(ge(rng, float(p.get('min_range_pos', 0))))} 20-day range position "
        f"{'n/a' if rng is None else f'{rng:.1f}'} >= {float(p.get('min_range_pos', 0)):g}",
        f"{_check(ge(close, float(p.get('min_close', 0))))} close {price(close)} >= {float(p.get('min_close', 0)):g}",
        f"{_check(ge(dv, float(p.get('min_dollar_volume', 0))))} 20-day dollar volume {big_money(dv)} "
        f">= {big_money(float(p.get('min_dollar_volume', 0)))}",
    ]
    if p.get("require_close_above_sma_fast", True):
        lines.append(f"{_check(close is not None and sma20 is not None and close > sma20)} close {price(close)} "
                     f"> SMA20 {price(sma20)}")
    if p.get("require_ma_aligned", True):
        lines.append(f"{_check(bool(values.get('ma_aligned')))} MAs aligned: EMA10 {price(ema10)} >= SMA20 "
                     f"{price(sma20)} >= SMA50 {price(sma50)} >= SMA100 {price(sma100)} >= SMA200 {price(sma200)}")
    return lines


def entry_signal(session: Session, signal: Signal, settings: Settings) -> Report:
    run = session.get(ScanRun, signal.scan_run_id) if signal.scan_run_id else None
    params = strategy_params(run, settings)
    cand = chosen_candidate(session, signal.id)  # type: ignore[arg-type]
    order = entry_order(session, signal.id)  # type: ignore[arg-type]
    fields = [
        ("Why (values that produced it)", "\n".join(signal_reasons(signal.values, params)), False),
        ("Levels", f"{levels_text(signal.entry_price, signal.stop, signal.targets)}\nATR {price(signal.atr)}", False),
        ("Option", candidate_text(cand), False),
        ("Action", order_text(order, signal), False),
    ]
    return Report("signals", f"signal:{signal.id}", Message(
        title=f"Entry signal: {signal.symbol} ({signal.direction})",
        description=(f"{signal.strategy} scan of {signal.data_date.isoformat()} · score {signal.score:.2f} · "
                     f"zone {signal.zone} · sector {signal.values.get('sector') or 'n/a'}"),
        fields=fields, color=BLUE, footer=f"signal #{signal.id}", kind="signal",
    ))


def _signal_order(signals: list[Signal]) -> list[Signal]:
    """Best first: score, then those that reached an order or a candidate."""
    rank = {"ordered": 0, "candidates_built": 1}
    return sorted(signals, key=lambda s: (-s.score, rank.get(s.status, 2), s.id))


def entry_signals(session: Session, settings: Settings, now: datetime) -> list[Report]:
    """The entry signals of the scan the pre-market of ``now``'s day used: one message each for the best
    SIGNAL_MESSAGES, the rest listed in one message (a full-market scan can produce hundreds)."""
    run = scan_for_day(session, market_date(now))
    if run is None:
        return []
    signals = _signal_order(list(session.exec(select(Signal).where(
        Signal.data_date == run.data_date, Signal.kind == "entry", Signal.strategy == run.strategy)).all()))
    out = [entry_signal(session, s, settings) for s in signals[:SIGNAL_MESSAGES]]
    rest = signals[SIGNAL_MESSAGES:]
    if rest:
        lines = [f"**{s.symbol}** score {s.score:.2f} · close {price(s.entry_price)} · stop {price(s.stop)} · "
                 f"T1 {price(s.targets[0] if s.targets else None)} · {s.status}" for s in rest[:SIGNAL_LIST_MAX]]
        if len(rest) > SIGNAL_LIST_MAX:
            lines.append(f"... and {len(rest) - SIGNAL_LIST_MAX} more (the console lists them all)")
        out.append(Report("signals", f"signals-more:{run.data_date.isoformat()}", Message(
            title=f"{plural(len(rest), 'more entry signal')} in the {run.data_date.isoformat()} scan",
            description="\n".join(lines), color=BLUE, kind="signal_list")))
    return out


def exit_order(session: Session, order: Order) -> Report:
    pos = session.get(Position, order.position_id) if order.position_id else None
    kind = exit_kind(order.reason)
    codes = reason_codes(order.reason)
    rule = " + ".join(codes) if codes else "exit"
    if kind == "scale_out":
        rule = "scale-out"
    limit = net(order.limit_price) if order.limit_price is not None else "market"
    legs = "; ".join(f"{leg.get('side', '').upper()} {occ(leg.get('instrument', ''))}" for leg in order.legs)
    fields = [
        ("Rule and values", _lines((f"• {part}" for part in (order.reason or "").split("; ")), "n/a"), False),
        ("Order", f"{order.structure} x{order.quantity} limit {limit} ({order.status})\n{legs}"
                  + (f"\nattempt {order.attempt}" if order.attempt > 1 else ""), False),
    ]
    if pos is not None:
        fields.append(("Position", (
            f"#{pos.id} opened {_ny_date(pos.opened_at)} at {net(entry_price(session, pos))}/unit, "
            f"underlying entry {price(pos.underlying_entry)}\n"
            f"stop {price(pos.stop)} · targets hit {pos.targets_hit}/{len(pos.targets)} · "
            f"1R {money(pos.initial_risk)}"), False))
    return Report("signals", f"exit-order:{order.client_order_id}", Message(
        title=f"Exit order: {order.symbol} ({rule})",
        description=f"{order.strategy} · {order.intent} {order.quantity} of {order.symbol} {order.structure}",
        fields=fields, color=RED if kind == "stop" else ORANGE, footer=f"order {order.client_order_id}",
        timestamp=order.created_at, kind="exit_order",
    ))


def exit_orders(session: Session, now: datetime) -> list[Report]:
    since = now - SWEEP_LOOKBACK
    orders = session.exec(select(Order).where(Order.intent != "open", Order.created_at >= since)
                          .order_by(col(Order.id))).all()
    return [exit_order(session, o) for o in orders]


# --- portfolio channel ------------------------------------------------------------------------------


def fill_report(fill: Fill, order: Order | None) -> Report:
    value = _dec(fill.price) * fill.quantity * fill.multiplier
    fees = _dec(fill.commission) + _dec(fill.fees)
    what = f"{order.intent} {order.symbol} {order.structure}" if order is not None else "order not found"
    filled_at = fill.filled_at
    return Report("portfolio", f"fill:{fill.broker_fill_id}", Message(
        title=f"Fill: {fill.side.upper()} {fill.quantity} {occ(fill.instrument)} @ {money(fill.price)}",
        fields=[
            ("Instrument", occ(fill.instrument), True),
            ("Side", fill.side, True),
            ("Quantity", f"{fill.quantity} x {fill.multiplier}", True),
            ("Price", money(fill.price), True),
            ("Value", money(value), True),
            ("Fees", f"{money(fees)} (commission {money(fill.commission)}, fees {money(fill.fees)})", True),
            ("For", what, False),
        ],
        color=BLUE if fill.side == "buy" else ORANGE,
        footer=f"fill {fill.broker_fill_id} · order {fill.client_order_id}",
        timestamp=filled_at, kind="fill",
    ))


def last_reported_fill_id(session: Session) -> int | None:
    """The newest fill (by row id, i.e. by when we learned of it) that already has its announcement."""
    from sqlalchemy import exists, func, literal

    from engine.models import NotificationOutbox

    reported = exists().where(NotificationOutbox.idempotency_key == literal("fill:") + Fill.broker_fill_id)
    return session.exec(select(func.max(Fill.id)).where(reported)).one()


def fills(session: Session, now: datetime) -> list[Report]:
    """Fills not announced yet: every fill recorded after the last one announced (however long the scheduler
    was down), or the last SWEEP_LOOKBACK when nothing was ever announced."""
    last = last_reported_fill_id(session)
    query = select(Fill).where(col(Fill.id) > last) if last is not None else \
        select(Fill).where(Fill.filled_at >= now - SWEEP_LOOKBACK)
    rows = session.exec(query.order_by(col(Fill.id))).all()
    ids = sorted({f.order_id for f in rows})
    orders = {o.id: o for o in session.exec(select(Order).where(col(Order.id).in_(ids)))} if ids else {}
    return [fill_report(f, orders.get(f.order_id)) for f in rows]


def scale_out(session: Session, order: Order) -> Report:
    pos = session.get(Position, order.position_id) if order.position_id else None
    fields = [
        ("Sold", f"{order.filled_quantity} of {order.quantity} at {net(order.avg_fill_price)}/unit", True),
        ("Rule", order.reason or "n/a", False),
    ]
    if pos is not None:
        fields += [
            ("Remaining", f"{pos.quantity} of {pos.initial_quantity}", True),
            ("Realized P&L so far", money(pos.realized_pnl, signed=True), True),
            ("Stop now", price(pos.stop), True),
        ]
    color = pnl_color(pos.realized_pnl) if pos is not None else GREEN
    return Report("portfolio", f"scale-out:{order.client_order_id}", Message(
        title=f"Scale-out: {order.symbol} {order.structure}", fields=fields, color=color,
        footer=f"order {order.client_order_id}", timestamp=order.updated_at, kind="scale_out",
    ))


def scale_outs(session: Session, now: datetime) -> list[Report]:
    """Closing orders for a target that finished (filled, or ended with a partial fill)."""
    since = now - SWEEP_LOOKBACK
    done = ("filled", "cancelled", "expired", "rejected")
    orders = session.exec(select(Order).where(Order.intent != "open", col(Order.status).in_(done),
                                              Order.filled_quantity > 0, Order.updated_at >= since)
                          .order_by(col(Order.id))).all()
    return [scale_out(session, o) for o in orders if exit_kind(o.reason) == "scale_out"]


def entry_price(session: Session, pos: Position) -> Decimal | None:
    """What was paid per unit: the position's book price while open, the entry orders' average once closed
    (the book resets its price when the quantity reaches zero)."""
    if pos.quantity:
        return _dec(pos.entry_price)
    entries = session.exec(select(Order).where(Order.position_id == pos.id, Order.intent == "open",
                                               Order.filled_quantity > 0)).all()
    units = sum(o.filled_quantity for o in entries)
    if not units:
        return None
    return sum((_dec(o.avg_fill_price) * o.filled_quantity for o in entries), Decimal("0")) / units


def position_r(pos: Position) -> float | None:
    risk = _dec(pos.initial_risk)
    return float(_dec(pos.realized_pnl) / risk) if risk > 0 else None


def position_closed(session: Session, pos: Position) -> Report:
    kind = exit_kind(pos.exit_reason or "")
    closes = session.exec(select(Order).where(Order.position_id == pos.id, Order.intent != "open",
                                              Order.filled_quantity > 0).order_by(col(Order.id))).all()
    exits = "; ".join(f"{o.filled_quantity} at {net(o.avg_fill_price)}" for o in closes) or "at expiry"
    closed = pos.closed_at
    held = f"{_ny_date(pos.opened_at)} to {_ny_date(pos.closed_at)}"
    title = ("Stop hit" if kind == "stop" else "Position closed") + f": {pos.symbol} {pos.structure}"
    return Report("portfolio", f"closed:{pos.id}", Message(
        title=title,
        fields=[
            ("Realized P&L", money(pos.realized_pnl, signed=True), True),
            ("R multiple", r_multiple(position_r(pos)), True),
            ("1R (initial risk)", money(pos.initial_risk), True),
            ("Quantity", f"{pos.initial_quantity}", True),
            ("Entry", f"{net(entry_price(session, pos))}/unit", True),
            ("Exits", exits, True),
            ("Held", held, True),
            ("Exit reason", pos.exit_reason or "n/a", False),
        ],
        color=pnl_color(pos.realized_pnl), footer=f"position #{pos.id}", timestamp=closed, kind="position_closed",
    ))


def closed_positions(session: Session, now: datetime) -> list[Report]:
    since = now - SWEEP_LOOKBACK
    rows = session.exec(select(Position).where(Position.status == "closed", Position.closed_at >= since)
                        .order_by(col(Position.id))).all()
    return [position_closed(session, p) for p in rows]


def _greek(pos: Position, name: str) -> float:
    try:
        return float(pos.greeks.get(name) or 0.0)
    except (TypeError, ValueError):
        return 0.0


def position_line(pos: Position) -> str:
    total = _dec(pos.realized_pnl) + _dec(pos.unrealized_pnl)
    return (f"**{pos.symbol}** {pos.structure} x{pos.quantity} · entry {net(pos.entry_price)} · "
            f"mark {net(pos.mark)} · P&L {money(total, signed=True)} "
            f"(unrealized {money(pos.unrealized_pnl, signed=True)}) · "
            f"Δ {_greek(pos, 'delta'):.1f} Θ {_greek(pos, 'theta'):.2f} V {_greek(pos, 'vega'):.2f} · "
            f"stop {price(pos.stop)}")


def portfolio_digest(session: Session, settings: Settings, now: datetime) -> Report:
    today = market_date(now)
    key = f"digest:{today.isoformat()}"
    snap = latest_snapshot(session, today)
    if snap is None:
        return Report("portfolio", key, Message(title=f"Portfolio digest: {today.isoformat()}",
                                                description="No account snapshot stored yet.", color=GREY,
                                                kind="digest"))
    starting = _dec(settings.starting_cash)
    day_pnl = _dec(snap.detail.get("day_pnl", 0))
    prev_equity = _dec(snap.equity) - day_pnl
    total = _dec(snap.equity) - starting
    positions = open_positions(session)
    heat = _dec(snap.open_risk)
    heat_pct = float(heat / _dec(snap.equity) * 100) if snap.equity > 0 else None
    listed = _lines((position_line(p) for p in positions[:TOP_POSITIONS]), "No open positions.")
    if len(positions) > TOP_POSITIONS:
        listed += f"\n... and {len(positions) - TOP_POSITIONS} more"
    greeks = ", ".join(f"{name} {sum(_greek(p, key_) for p in positions):,.2f}"
                       for name, key_ in (("delta", "delta"), ("theta/day", "theta"), ("vega", "vega")))
    return Report("portfolio", key, Message(
        title=f"Portfolio digest: {today.isoformat()}",
        description=(f"Equity **{money(snap.equity)}** = cash {money(snap.cash)} + positions "
                     f"{money(snap.positions_value)}"),
        fields=[
            ("Day P&L", f"{money(day_pnl, signed=True)} "
                        f"({signed_pct(day_pnl / prev_equity * 100 if prev_equity > 0 else None)})", True),
            ("Total P&L", f"{money(total, signed=True)} ({signed_pct(total / starting * 100)}) "
                          f"since {money(starting)}", True),
            ("Realized today", money(snap.realized_pnl_day, signed=True), True),
            ("Unrealized", money(snap.unrealized_pnl, signed=True), True),
            ("Heat", f"{money(heat)} = {'n/a' if heat_pct is None else f'{heat_pct:.2f}%'} of equity "
                     f"(limit {settings.risk.max_heat_pct:.2f}%)", True),
            ("Open positions", f"{len(positions)} / {settings.risk.max_open_positions}", True),
            ("Portfolio greeks", greeks if positions else "n/a", False),
            ("Positions", listed, False),
        ],
        color=pnl_color(day_pnl), footer=f"snapshot #{snap.id} at {snap.trade_date.isoformat()}",
        timestamp=snap.at, kind="digest",
    ))


# --- post-market report -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TradeStats:
    closed: int
    winners: int
    r_multiples: list[float]
    realized: Decimal

    @property
    def win_rate(self) -> float | None:
        return self.winners / self.closed if self.closed else None


def trade_stats(session: Session) -> TradeStats:
    rows = session.exec(select(Position).where(Position.status == "closed")).all()
    rs = [r for r in (position_r(p) for p in rows) if r is not None]
    return TradeStats(len(rows), sum(1 for p in rows if _dec(p.realized_pnl) > 0), rs,
                      sum((_dec(p.realized_pnl) for p in rows), Decimal("0")))


def stats_text(stats: TradeStats) -> str:
    if not stats.closed:
        return "No closed positions yet."
    lines = [f"Win rate {stats.winners}/{stats.closed} = {share(stats.win_rate)}",
             f"Realized on closed positions {money(stats.realized, signed=True)}"]
    if stats.r_multiples:
        rs = stats.r_multiples
        lines.append(f"R multiples: average {r_multiple(statistics.fmean(rs))}, total {r_multiple(sum(rs))}, "
                     f"best {r_multiple(max(rs))}, worst {r_multiple(min(rs))}")
    return "\n".join(lines)


@dataclass(frozen=True)
class Drawdown:
    equity: Decimal
    peak: Decimal
    peak_date: date
    max_drawdown_pct: float

    @property
    def amount(self) -> Decimal:
        return self.equity - self.peak

    @property
    def pct(self) -> float:
        return float(self.amount / self.peak * 100) if self.peak > 0 else 0.0


def drawdown(session: Session, up_to: date) -> Drawdown | None:
    snaps = session.exec(select(AccountSnapshot).where(AccountSnapshot.source == "engine",
                                                       AccountSnapshot.trade_date <= up_to)
                         .order_by(AccountSnapshot.trade_date, col(AccountSnapshot.at), col(AccountSnapshot.id))).all()
    if not snaps:
        return None
    peak, peak_date, worst = _dec(snaps[0].equity), snaps[0].trade_date, 0.0
    for s in snaps:
        eq = _dec(s.equity)
        if eq > peak:
            peak, peak_date = eq, s.trade_date
        if peak > 0:
            worst = min(worst, float((eq - peak) / peak * 100))
    return Drawdown(_dec(snaps[-1].equity), peak, peak_date, worst)


def plan_candidates(session: Session, run: ScanRun, settings: Settings) -> list[tuple[ScanResult, str]]:
    """Tomorrow's watch list from ``run``: names one step from an entry signal.

    A symbol that passed the data gate and has no signal qualifies when exactly one entry rule fails and that
    rule is either the zone with atr_distance in [-0.5, 0) or (4, 4.5], or any other filter (ATR%, range
    position, close, dollar volume, close > SMA20, aligned MAs) while the symbol is inside the entry zone."""
    p = strategy_params(run, settings)
    lo, hi = float(p.get("entry_min_distance", 0.0)), float(p.get("entry_max_distance", 4.0))
    rows = session.exec(select(ScanResult).where(
        ScanResult.scan_run_id == run.id, col(ScanResult.excluded_reason).is_(None), not_(col(ScanResult.signal)),
        col(ScanResult.atr_distance) >= lo - PLAN_BELOW, col(ScanResult.atr_distance) <= hi + PLAN_ABOVE,
    ).order_by(col(ScanResult.rank))).all()
    out = []
    for r in rows:
        failing = _failing_filters(r, p, lo, hi)
        if len(failing) == 1:
            out.append((r, failing[0]))
    return out


def _failing_filters(r: ScanResult, p: dict[str, Any], lo: float, hi: float) -> list[str]:
    def below(value: float | None, limit: float) -> bool:
        return value is None or value < limit

    fails = []
    d = r.atr_distance
    if d is None or not lo <= d <= hi:
        fails.append(f"ATR distance {d:+.2f} outside [{lo:g}, {hi:g}]" if d is not None else "no ATR distance")
    if below(r.atr_pct, float(p.get("min_atr_pct", 0))):
        fails.append(f"ATR% {r.atr_pct or 0:.2f}% < {float(p.get('min_atr_pct', 0)):g}%")
    if below(r.range_pos_20, float(p.get("min_range_pos", 0))):
        fails.append(f"range position {r.range_pos_20 or 0:.1f} < {float(p.get('min_range_pos', 0)):g}")
    if below(r.close, float(p.get("min_close", 0))):
        fails.append(f"close {price(r.close)} < {float(p.get('min_close', 0)):g}")
    if below(r.dollar_volume_20, float(p.get("min_dollar_volume", 0))):
        fails.append(f"dollar volume {big_money(r.dollar_volume_20)} < "
                     f"{big_money(float(p.get('min_dollar_volume', 0)))}")
    if p.get("require_close_above_sma_fast", True) and (r.close is None or r.sma20 is None or r.close <= r.sma20):
        fails.append(f"close {price(r.close)} <= SMA20 {price(r.sma20)}")
    if p.get("require_ma_aligned", True) and not r.ma_aligned:
        fails.append("MAs not aligned")
    return fails


def plan_text(session: Session, settings: Settings, today: date) -> str:
    try:
        nxt = calendar.next_session(today)
        head = f"Next session {session_line(nxt)}"
    except ValueError:
        head = "No next session in the calendar"
    run = latest_scan(session)
    if run is None:
        return head + "\nNo scan stored: no watch list."
    picks = plan_candidates(session, run, settings)
    if not picks:
        return head + f"\nNo symbols one step from an entry in the {run.data_date.isoformat()} scan."
    lines = [f"**{r.symbol}** {price(r.close)} · ATR distance {r.atr_distance:+.2f} · missing: {why}"
             for r, why in picks[:TOP_LIST]]
    more = f"\n... and {len(picks) - TOP_LIST} more" if len(picks) > TOP_LIST else ""
    return (head + f"\nOne step from an entry signal (scan of {run.data_date.isoformat()}; "
            f"tomorrow's pre-market rescans with today's bars):\n" + "\n".join(lines) + more)


def last_reason(session: Session, order: Order, limit: int = 160) -> str:
    event = session.exec(select(OrderEvent).where(OrderEvent.order_id == order.id)
                         .order_by(col(OrderEvent.id).desc())).first()
    text = event.reason if event is not None and event.reason else "no reason recorded"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def postmarket_report(session: Session, settings: Settings, now: datetime) -> Report:
    today = market_date(now)
    start, end = _day_bounds(today, now.tzinfo)
    orders = list(session.exec(select(Order).where(Order.created_at >= start, Order.created_at < end)
                               .order_by(col(Order.id))).all())
    day_fills = list(session.exec(select(Fill).where(Fill.filled_at >= start, Fill.filled_at < end)).all())
    snap = latest_snapshot(session, today)
    by_status = Counter(f"{o.intent} {o.status}" for o in orders)
    order_lines = [f"{o.symbol} {o.intent} {o.structure} x{o.quantity} · {o.status}"
                   + (f" · filled {o.filled_quantity} at {net(o.avg_fill_price)}" if o.filled_quantity else
                      f" · limit {net(o.limit_price)}")
                   + (f" ({last_reason(session, o)})" if o.status in ("rejected", "cancelled", "expired") else "")
                   for o in orders[:TOP_LIST]]
    if len(orders) > TOP_LIST:
        order_lines.append(f"... and {len(orders) - TOP_LIST} more")
    summary = ", ".join(f"{n} {k}" for k, n in sorted(by_status.items()))
    fees = sum((_dec(f.commission) + _dec(f.fees) for f in day_fills), Decimal("0"))
    contracts = sum(f.quantity for f in day_fills)
    pnl_lines = ["No account snapshot for today."]
    color = GREY
    if snap is not None and snap.trade_date == today:
        day_pnl = _dec(snap.detail.get("day_pnl", 0))
        color = pnl_color(day_pnl)
        pnl_lines = [f"Day P&L {money(day_pnl, signed=True)}",
                     f"Realized today {money(snap.realized_pnl_day, signed=True)}",
                     f"Unrealized (open positions) {money(snap.unrealized_pnl, signed=True)}",
                     f"Equity {money(snap.equity)}"]
    dd = drawdown(session, today)
    dd_text = "No account snapshots yet." if dd is None else (
        f"{signed_pct(dd.pct)} ({money(dd.amount, signed=True)}) from the peak {money(dd.peak)} of "
        f"{dd.peak_date.isoformat()}\nMax drawdown to date {signed_pct(dd.max_drawdown_pct)}")
    return Report("morning_brew", f"postmarket:{today.isoformat()}", Message(
        title=f"Post-market report: {today.isoformat()}",
        description=(f"{plural(len(orders), 'order')} today ({summary or 'none'}); {plural(len(day_fills), 'fill')}, "
                     f"{plural(contracts, 'contract')}, fees {money(fees)}"),
        fields=[
            ("Orders", _lines(order_lines, "No orders today."), False),
            ("P&L", "\n".join(pnl_lines), False),
            ("Closed positions to date", stats_text(trade_stats(session)), False),
            ("Drawdown", dd_text, False),
            ("Tomorrow's plan", plan_text(session, settings, today), False),
        ],
        color=color, footer=f"QuantMatrix · market time {now.astimezone(NEW_YORK):%Y-%m-%d %H:%M} ET",
        timestamp=now, kind="postmarket",
    ))


# --- system status ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    name: str
    text: str
    problems: list[str]


def heartbeat_check(session: Session, wall_now: datetime) -> Check:
    """Age of each component's last beat (wall clock). Only the scheduler's is a problem when stale: the
    console beats only while someone has it open. Missed job runs (a stalled scheduler) are job_check's."""
    rows = session.exec(select(Heartbeat).order_by(Heartbeat.component)).all()
    lines, problems = [], []
    for hb in rows:
        age = wall_now - hb.at  # type: ignore[operator]
        market = hb.info.get("market_time")
        text = f"{hb.component} ({hb.instance_id}): last beat {duration(age)} ago"
        if market:
            text += f", market time {market}"
        lines.append(text)
        if hb.component == "scheduler" and age > HEARTBEAT_STALE:
            problems.append(f"{hb.component} heartbeat is {duration(age)} old (limit {duration(HEARTBEAT_STALE)})")
    return Check("Heartbeats", _lines(lines, "No heartbeats recorded."), problems)


def _run_times(session: Session, day: date) -> list[tuple[str, datetime, str]]:
    """(job, when it was due, outcome) of the day's job runs: a replay's trigger carries its market time,
    a live run's start is its wall time (UTC)."""
    start, end = _day_bounds(day, UTC)
    prefix = f"replay@{day.isoformat()}"
    rows = session.exec(select(JobRun.job_id, JobRun.trigger, JobRun.started_at, JobRun.outcome).where(
        col(JobRun.job_id).in_(JOB_IDS),
        or_(col(JobRun.trigger).like(prefix + "%"),
            and_(not_(col(JobRun.trigger).like("replay@%")), JobRun.started_at >= start, JobRun.started_at < end)),
    )).all()
    out = []
    for job_id, trigger, started, outcome in rows:
        at = datetime.fromisoformat(trigger.removeprefix("replay@")) if trigger.startswith("replay@") else \
            started
        out.append((job_id, at, outcome))  # type: ignore[arg-type]
    return sorted(out, key=lambda r: r[1])


def job_check(session: Session, now: datetime, expect: Sequence[str], intraday_gaps: bool = True) -> Check:
    """Which of the day's jobs ran, and (``intraday_gaps``) gaps in the intraday cycle: a stopped or stalled
    scheduler between heartbeats shows as missing cycles."""
    today = market_date(now)
    runs = _run_times(session, today)
    counts = Counter(job for job, _, _ in runs)
    failures = sum(1 for _, _, outcome in runs if outcome == "error")
    problems: list[str] = []
    lines = [", ".join(f"{job} {counts.get(job, 0)}" for job in ("premarket", "intraday", "postmarket", "nightly"))
             + f"; failures {failures} (each alerted when it happened)"]
    times = calendar.session_times(today)
    if times is None:
        return Check("Job runs today", lines[0] + "\nNo session today.", problems)
    open_, close = times
    for job in expect:
        if not counts.get(job):
            problems.append(f"{job} did not run today")
    if not intraday_gaps:
        return Check("Job runs today", lines[0], problems)
    intraday = [at for job, at, _ in runs if job == "intraday" and open_ <= at <= close]
    end = min(now, close)
    if now > open_ and not intraday:
        problems.append(f"no intraday cycle ran between {hhmm(open_)} and {hhmm(end)}")
    elif intraday:
        steps = [b - a for a, b in pairwise(intraday)]
        cadence = statistics.median(steps) if steps else timedelta(minutes=5)
        allowed = max(2 * cadence, timedelta(minutes=10))
        marks = [open_, *intraday] + ([end] if now >= close else [])
        gaps = [(a, b) for a, b in pairwise(marks) if b - a > allowed]
        largest = max((b - a for a, b in pairwise(marks)), default=timedelta(0))
        lines.append(f"intraday cycles {hhmm(intraday[0])} to {hhmm(intraday[-1])}, every {duration(cadence)}, "
                     f"largest gap {duration(largest)}")
        for a, b in gaps[:5]:
            problems.append(f"no intraday cycle {hhmm(a)} to {hhmm(b)} ({duration(b - a)})")
    return Check("Job runs today", "\n".join(lines), problems)


def freshness_check(newest_bar: date | None, now: datetime, job_id: str) -> Check:
    """Newest stored daily bar against the session it must cover: the previous session after the post-market
    (today's bar may still be on its way), the last completed session after the nightly backfill."""
    today = market_date(now)
    expected = calendar.previous_session(today) if job_id == "postmarket" else last_completed_session(now)
    if newest_bar is None:
        return Check("Data freshness", "No daily bars stored.", ["no daily bars stored"])
    text = f"bars stored through {newest_bar.isoformat()}; required {expected.isoformat()}"
    if job_id == "postmarket" and calendar.is_session(today):
        text += "; today's bars " + ("stored" if newest_bar >= today else "not stored yet (the nightly backfills)")
    if newest_bar >= expected:
        return Check("Data freshness", text + ": current", [])
    behind = len(calendar.sessions(calendar.next_session(newest_bar), expected))
    return Check("Data freshness", text + f": {plural(behind, 'session')} behind",
                 [f"daily bars end {newest_bar.isoformat()}, {plural(behind, 'session')} behind "
                  f"{expected.isoformat()}"])


def reconciliation_check(session: Session, since: datetime, until: datetime) -> Check:
    runs = session.exec(select(ReconciliationRun).where(ReconciliationRun.at >= since, ReconciliationRun.at <= until)
                        .order_by(col(ReconciliationRun.id))).all()
    if not runs:
        return Check("Reconciliation", "No reconciliation runs in this window.", [])
    bad = [r for r in runs if r.differences]
    if not bad:
        return Check("Reconciliation", f"{plural(len(runs), 'run')}, the engine and the broker agree.", [])
    distinct = Counter(json.dumps(d, sort_keys=True, default=str) for r in bad for d in r.differences)
    shown = [f"• {text} (in {plural(n, 'run')})" for text, n in distinct.most_common(5)]
    if len(distinct) > 5:
        shown.append(f"... and {len(distinct) - 5} more")
    problem = f"{len(bad)} of {len(runs)} reconciliation runs found differences ({len(distinct)} distinct)"
    return Check("Reconciliation", problem + "\n" + "\n".join(shown), [problem])


def health_report(session: Session, settings: Settings, now: datetime, job_id: str, newest_bar: date | None,
                  wall_now: datetime) -> Report | None:
    """Post-market: the daily health check, always sent (a missing one is itself a signal).
    Nightly: sent only when a check fails (after the bar backfill, and reconciliations after the post-market)."""
    today = market_date(now)
    start, _ = _day_bounds(today, now.tzinfo)
    times = calendar.session_times(today)
    if job_id == "nightly":
        # after the post-market's own reconciliation (reported by the post-market check)
        # What the post-market check could not see: its own run, and reconciliations after it. Its findings
        # (missed cycles, the morning's reconciliations) are not repeated.
        since = (times[1] + POSTMARKET_DELAY + timedelta(minutes=1)).astimezone(now.tzinfo) if times else start
        jobs = job_check(session, now, ("postmarket",) if times else (), intraday_gaps=False)
    else:
        since, jobs = start, job_check(session, now, ("premarket",))
    checks = [heartbeat_check(session, wall_now), jobs,
              freshness_check(newest_bar, now, job_id), reconciliation_check(session, since, max(now, since))]
    problems = [p for c in checks for p in c.problems]
    if job_id == "nightly" and not problems:
        return None
    label = "nightly" if job_id == "nightly" else "post-market"
    key = f"health-nightly:{today.isoformat()}" if job_id == "nightly" else f"health:{today.isoformat()}"
    description = ("All checks passed." if not problems else
                   f"**{len(problems)} problem{'s' if len(problems) > 1 else ''}:**\n"
                   + "\n".join(f"• {p}" for p in problems[:TOP_LIST]))
    return Report("system_status", key, Message(
        title=f"System health ({label}): {today.isoformat()}", description=description,
        fields=[(c.name, c.text, False) for c in checks], color=RED if problems else GREEN,
        footer=f"market time {now.astimezone(NEW_YORK):%Y-%m-%d %H:%M} ET", timestamp=now, kind="health",
    ))
