"""Morning Brew and entry-signal reports (pre-market)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, select

from engine.clock import NEW_YORK
from engine.config import Settings
from engine.models import (
    ScanResult,
    ScanRun,
    Signal,
)
from engine.notify.embeds import BLUE, Message
from engine.notify.reports.format import (
    ATTENTION_ATR,
    ATTENTION_DTE,
    INDEX_PROXIES,
    SIGNAL_LIST_MAX,
    SIGNAL_MESSAGES,
    TOP_LIST,
    TOP_SETUPS,
    Report,
    _dec,
    _lines,
    big_money,
    market_date,
    money,
    open_line,
    plural,
    price,
    session_line,
    share,
)
from engine.notify.reports.reads import (
    attention_items,
    candidate_text,
    chosen_candidate,
    entry_order,
    levels_text,
    open_positions,
    order_text,
    scan_for_day,
    scan_rows,
    strategy_params,
)
from engine.operator import kill_switch_on
from engine.portfolio.exposure import portfolio_risk_offline


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
        Signal.data_date == run.data_date, Signal.kind == "entry", Signal.strategy == run.strategy,
        Signal.direction == "long")).all()))  # neutral (iron-condor) setups are not entry signals
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
