"""The steps of the trading day. The scheduler, the console and `python -m engine run-day` call these.

run_premarket   scan -> option candidates -> sized orders through the approval route; covered calls on held shares
execute_orders  reconcile, then gate and send approved orders; let the venue match
manage_positions marks, stop/target/time rules -> exit orders through the gate
run_postmarket  reconcile, day-order expiry, expiry settlement, marks, account snapshot, daily P&L
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

import numpy as np
from sqlmodel import Session, select

from engine import indicators as ind
from engine import scanning
from engine.clock import new_york
from engine.context import EngineContext
from engine.data import calendar
from engine.data.sources import bar_store, fill_bar_store, settle_sessions
from engine.data.universe import sectors as sectors_of
from engine.db import read_scope, session_scope
from engine.execution import orders as om
from engine.execution import service
from engine.execution.ports import STANDARD_DELIVERABLE, AssetType, BrokerUnavailable, Leg
from engine.execution.reconcile import engine_cash, reconcile
from engine.models import AccountSnapshot, Order, Position, Signal
from engine.options import candidates, covered
from engine.options.chainrequest import fetch_chain
from engine.portfolio import manager
from engine.portfolio.accounting import cents, net_price
from engine.portfolio.exposure import portfolio_risk_for_account
from engine.portfolio.marks import apply_mark, fetch_marks, leg_quotes, mark_all, positions_value
from engine.portfolio.splits import apply_splits, symbols_held_back
from engine.risk import Intent

log = logging.getLogger(__name__)


@runtime_checkable
class SimulatedVenue(Protocol):
    """Duties a real exchange does by itself; the paper venue needs the engine's clock to do them."""

    def process(self, now: datetime | None = None) -> Any: ...

    def expire_day_orders(self, now: datetime) -> Any: ...

    def settle_expiries(self, day: date) -> Any: ...


@dataclass
class StepReport:
    step: str
    at: datetime
    lines: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, line: str) -> None:
        self.lines.append(line)

    def count(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n


# --- data ---------------------------------------------------------------------------------------------


def refresh_bars(ctx: EngineContext, through: date) -> int:
    """Make the bar store hold every session up to ``through`` (never beyond: no look-ahead)."""
    store = bar_store(ctx.settings)
    stored = store.stored_dates()
    start = stored[-1].astype(object) if len(stored) else calendar.sessions_back(through, 420)[0].astype(object)
    return fill_bar_store(ctx.market, store, start, through)


# --- pre-market ---------------------------------------------------------------------------------------


def run_premarket(ctx: EngineContext) -> StepReport:
    """Refresh bars, scan, build option candidates for the top signals, size and route entry orders."""
    now = ctx.now
    today = new_york(now).date()
    report = StepReport("run_premarket", now)
    as_of = calendar.previous_session(today)
    stored = refresh_bars(ctx, as_of)
    report.count("sessions_stored", stored)
    report.count("sessions_settled", settle_sessions(ctx.market))
    apply_splits(ctx, report)  # before anything reads held positions' stops, targets and contracts
    outcome = scanning.run_scan(ctx.settings, ctx.db, as_of=as_of)
    run = outcome.run
    report.add(f"scan {run.data_date}: {run.n_scanned:,} symbols, {run.n_signals} signals"
               + (" (cached)" if outcome.cache_hit else ""))
    report.count("signals", run.n_signals)
    with session_scope(ctx.db) as session:
        # Only the signals of this run (the newest for the current parameters), in the scan's rank order.
        signals = scanning.current_signals(session, run, limit=ctx.settings.scan_top_n)
        # then the extended-zone setups, where an iron condor may sell rich premium (DESIGN §5)
        signals += scanning.current_signals(session, run, limit=ctx.settings.scan_top_n, direction="neutral")
        signal_ids = [s.id for s in signals]
    for signal_id in signal_ids:
        _candidate_and_order(ctx, signal_id, now, report)
    write_covered_calls(ctx, now, report)
    return report


def write_covered_calls(ctx: EngineContext, now: datetime, report: StepReport) -> None:
    """Held stock of 100+ shares not yet covered gets one covered call per 100 shares (DESIGN §5), through
    the same route and gate as every entry. Reads in a short transaction, fetches the price and chain with
    none open, then chooses and proposes in another (re-checking the coverage meanwhile)."""
    today = new_york(now).date()
    with session_scope(ctx.db) as session:
        due = [h for h in covered.holdings(session) if h.uncovered_lots > 0]
    for holding in due:
        try:
            spot = float(ctx.market.quotes([holding.symbol], now)["last"].iloc[0])
        except (KeyError, IndexError, ValueError) as exc:
            report.add(f"{holding.symbol}: no covered call (no price: {exc})")
            continue
        request = covered.chain_request(spot, holding.entry_atr, today, ctx.settings)
        chain = fetch_chain(ctx.market, holding.symbol, now, request)
        q = ctx.market.dividend_yield(holding.symbol, today)
        with session_scope(ctx.db) as session:
            fresh = next((h for h in covered.holdings(session) if h.symbol == holding.symbol), None)
            if fresh is None or fresh.uncovered_lots <= 0:
                report.add(f"{holding.symbol}: covered call skipped (covered meanwhile)")
                continue
            chosen = covered.choose(session, ctx.settings, fresh, spot, chain, q, now)
            if chosen.structure is None:
                report.add(f"{holding.symbol}: no covered call ({chosen.note})")
                continue
            spec = covered.order_spec(fresh, chosen, ctx.settings.fees.open_cost_per_contract_leg, today)
            order = service.propose(session, spec, ctx.settings, now)
            report.add(f"{holding.symbol}: covered call x{spec.quantity} limit {spec.limit_price} -> "
                       f"{order.client_order_id} {order.status} ({spec.reason})")
            report.count("covered_call_orders")


def _already_engaged(session: Session, symbol: str) -> str | None:
    """A symbol with an open position or a live entry order gets no second entry from a new signal."""
    if session.exec(select(Position).where(Position.symbol == symbol, Position.status == "open")).first():
        return "already held"
    if session.exec(select(Order).where(Order.symbol == symbol, Order.intent == "open",
                                        Order.status.in_(om.LIVE_VALUES))).first():
        return "an entry order is already working"
    return None


def _candidate_and_order(ctx: EngineContext, signal_id: int, now: datetime, report: StepReport) -> None:
    """One signal: read (short transaction), fetch chain, IV history and account (no transaction open while
    the network answers), then build, size and route (one short transaction)."""
    with session_scope(ctx.db) as session:
        signal = session.get(Signal, signal_id)
        assert signal is not None
        engaged = _already_engaged(session, signal.symbol)
        if engaged:
            signal.status = "skipped"
            session.add(signal)
            report.add(f"{signal.symbol}: signal skipped ({engaged})")
            return
        symbol = signal.symbol
    as_of = new_york(now).date()
    iv_fresh = candidates.fetch_iv_series(ctx.market, symbol, as_of)
    with session_scope(ctx.db) as session:  # the IV rank decides the structures, so which chain to ask for
        signal = session.get(Signal, signal_id)
        assert signal is not None
        rank = candidates.current_iv_rank(session, ctx.market, symbol, as_of, iv_fresh)
        request = candidates.chain_request_for(signal, rank, as_of, ctx.settings, with_fallback=True)
    chain = fetch_chain(ctx.market, symbol, now, request)
    if chain.empty:
        report.add(f"{symbol}: no option candidate (no option chain)")
        return
    q = ctx.market.dividend_yield(symbol, as_of)
    try:
        account = ctx.broker.account()
    except BrokerUnavailable as exc:
        account = None
        unavailable = exc
    with session_scope(ctx.db) as session:
        signal = session.get(Signal, signal_id)
        assert signal is not None
        if _already_engaged(session, symbol):  # another process took it while we fetched
            report.add(f"{symbol}: signal skipped (engaged meanwhile)")
            return
        outcome = candidates.build_candidates(session, ctx.market, ctx.settings, signal, now, chain=chain,
                                              iv_fresh=iv_fresh, q=q)
        if outcome.structure is None or outcome.candidate_id is None:
            report.add(f"{symbol}: no option candidate ({outcome.note})")
            return
        if account is None:
            report.add(f"{symbol}: broker unavailable for sizing ({unavailable}); candidate kept, no order")
            return
        # positions the engine did not open count in sizing too, as they do in the gate
        portfolio = portfolio_risk_for_account(session, account, now, settings=ctx.settings)
        sector = sectors_of(session).get(symbol, "")
        fees = ctx.settings.fees.open_cost_per_contract_leg
        spec, why = candidates.entry_spec(signal, outcome.candidate_id, outcome.structure, sector, ctx.settings,
                                          portfolio, fees)
        if spec is None and outcome.structure.kind == "long_call":
            # One call is over the risk budget: the same view with a defined, smaller risk is a debit spread.
            note = f"long call not sized ({why}): call debit spread instead"
            spread = candidates.build_candidates(session, ctx.market, ctx.settings, signal, now,
                                                 kinds=["call_debit_spread"], why=note, chain=chain,
                                                 iv_fresh=iv_fresh, q=q)
            if spread.structure is not None and spread.candidate_id is not None:
                report.add(f"{symbol}: {note}")
                outcome = spread
                spec, why = candidates.entry_spec(signal, spread.candidate_id, spread.structure, sector,
                                                  ctx.settings, portfolio, fees)
        if spec is None:
            report.add(f"{symbol}: {outcome.structure.kind} not ordered: {why}")
            signal.status = "skipped"
            session.add(signal)
            return
        order = service.propose(session, spec, ctx.settings, now)
        signal.status = "ordered"
        session.add(signal)
        report.add(f"{symbol}: {spec.structure} x{spec.quantity} limit {spec.limit_price} -> "
                   f"{order.client_order_id} {order.status}")
        report.count("entry_orders")


# --- market hours -------------------------------------------------------------------------------------


def execute_orders(ctx: EngineContext) -> StepReport:
    now = ctx.now
    report = StepReport("execute_orders", now)
    _venue_tick(ctx, now)
    run = reconcile(ctx.db, ctx.broker, Decimal(str(ctx.settings.starting_cash)), now)
    if run.differences:
        report.add(f"reconciliation: {len(run.differences)} differences")
    result = service.submit_approved(ctx.db, ctx.settings, ctx.broker, now)
    _venue_tick(ctx, now)
    report.count("submitted", len(result.submitted))
    for cid, why in result.rejected.items():
        report.add(f"rejected {cid}: {why}")
        report.count("rejected")
    report.count("in_flight", len(result.in_flight))
    report.count("fills", result.fills)
    return report


def _venue_tick(ctx: EngineContext, now: datetime) -> None:
    if isinstance(ctx.broker, SimulatedVenue):
        ctx.broker.process(now)


def manage_positions(ctx: EngineContext) -> StepReport:
    """Apply DESIGN §4-§5 to every open position; exits become orders through the gate.

    No write transaction spans a network call (issue 12 #2): positions are read, then quotes and chains
    are fetched with no transaction open, then each position is written in its own short transaction."""
    now = ctx.now
    today = new_york(now).date()
    report = StepReport("manage_positions", now)
    with session_scope(ctx.db) as session:
        positions = list(session.exec(select(Position).where(Position.status == "open")).all())
    fetched = {pos.id: _fetch_position_market(ctx, pos, now) for pos in positions}
    daily = _daily_levels(ctx, sorted({p.symbol for p in positions}), today)
    for pos in positions:
        assert pos.id is not None
        _manage_one(ctx, pos.id, fetched[pos.id], daily.get(pos.symbol), now, report)
    return report


@dataclass
class _Fetched:
    quotes: dict[str, Any] | None  # per-leg quotes (marks and exit prices), None when they could not be read
    price: float | None  # the underlying now
    error: str = ""


def _fetch_position_market(ctx: EngineContext, pos: Position, now: datetime) -> _Fetched:
    legs = [Leg.from_dict(d) for d in pos.legs]
    try:
        quotes = leg_quotes(ctx.market, pos.symbol, legs, now)
    except (KeyError, IndexError, ValueError) as exc:
        quotes, error = None, str(exc)
    else:
        error = ""
    try:
        price = float(ctx.market.quotes([pos.symbol], now)["last"].iloc[0])
    except (KeyError, IndexError, ValueError) as exc:
        price, error = None, error or str(exc)
    return _Fetched(quotes, price, error)


def _daily_levels(ctx: EngineContext, symbols: list[str], today: date) -> dict[str, dict[str, float]]:
    """Last completed session's close, SMA50 and ATR per held symbol (from the bar store). A symbol whose
    split could not be applied (``symbols_held_back``) is left out: its bars may be at pre-split prices,
    and without levels its positions are not managed (the operator was alerted)."""
    held_back = symbols_held_back(ctx.db, symbols)
    symbols = [s for s in symbols if s not in held_back]
    if not symbols:
        return {}
    store = bar_store(ctx.settings)
    last = calendar.previous_session(today)
    panel = store.load(calendar.sessions_back(last, 120)[0].astype(object), last, dtype=np.float64)
    out: dict[str, dict[str, float]] = {}
    params = ctx.settings.strategy
    in_panel = set(panel.symbols)
    present = [s for s in symbols if s in in_panel]
    if not present:
        return out
    p = panel.select(present)
    sma50 = ind.sma_last(p.close, params.sma_trend)
    atr = ind.atr_last(p.high, p.low, p.close, params.atr_period)
    for j, s in enumerate(present):
        out[s] = {"close": float(p.close[-1, j]), "sma50": float(sma50[j]), "atr": float(atr[j])}
    return out


def _manage_one(ctx: EngineContext, pos_id: int, market: _Fetched, daily: dict[str, float] | None,
                now: datetime, report: StepReport) -> None:
    exits = ctx.settings.exits
    close_at_dte = None if exits.hold_to_expiry else exits.close_at_dte
    full_exit: manager.Action | None = None
    covering: list[Position] = []
    with session_scope(ctx.db) as session:
        pos = session.get(Position, pos_id)
        if pos is None or pos.status != "open" or pos.quantity <= 0:
            return
        legs = [Leg.from_dict(d) for d in pos.legs]
        if market.quotes is not None:
            apply_mark(pos, legs, market.quotes)
            session.add(pos)
        else:
            report.add(f"could not mark {pos.symbol}: kept its last mark ({market.error})")
        available = pos.quantity - service.working_close_quantity(session, pos.id)
        if pos.strategy == "assignment":  # stock delivered by an older engine: sold at once
            if available > 0:
                _propose_exit(ctx, session, pos, legs, market, available, "stock delivered at expiry: sell it",
                              "delivered", now, report, urgent=True)
            return
        short_stock = manager.is_short_stock(pos.structure, list(pos.legs))
        long_stock = pos.structure == "stock" and not short_stock
        # Condors, covered calls and short stock follow rules of their own, not the daily ATR levels.
        own_rules = short_stock or pos.structure in ("iron_condor", covered.STRUCTURE)
        has_daily = daily is not None and np.isfinite(daily["sma50"]) and np.isfinite(daily["atr"])
        if not own_rules and (not has_daily or market.price is None):
            report.add(f"{pos.symbol}: no daily levels or price; position not managed this cycle")
            return
        nan = float("nan")
        lv = daily if daily is not None and has_daily else {"close": nan, "sma50": nan, "atr": nan}
        expiries = [leg.expiry for leg in legs if leg.asset is AssetType.option and leg.expiry]
        view = manager.PositionView(
            quantity=pos.quantity, initial_quantity=pos.initial_quantity, entry_price=pos.entry_price,
            underlying_entry=pos.underlying_entry, entry_atr=pos.entry_atr or lv["atr"], stop=pos.stop,
            targets=tuple(pos.targets), targets_hit=pos.targets_hit, highest_close=pos.highest_close,
            expiry=min(expiries) if expiries else None, structure=pos.structure, short_stock=short_stock,
            stock_held=covered.long_shares(session, pos.symbol) if pos.structure == covered.STRUCTURE else None,
            deliverable=max((leg.deliverable for leg in legs if leg.asset is AssetType.option),
                            default=STANDARD_DELIVERABLE))
        mkt = manager.MarketView(today=new_york(now).date(), price=market.price if market.price is not None else nan,
                                 close=lv["close"], sma50=lv["sma50"], atr=lv["atr"], mark=pos.mark)
        for action in manager.decide(view, mkt, ctx.settings.strategy, exits.premium_stop_pct, close_at_dte):
            if action.kind == "close_all":
                full_exit = action
                break
            if action.kind == "move_stop":
                report.add(f"{pos.symbol}: {action.reason}")
                pos.stop = float(action.new_stop)  # type: ignore[arg-type]
                report.count("stop_moves")
            if action.kind == "scale_out":
                report.add(f"{pos.symbol}: {action.reason}")
            pos.targets_hit = max(pos.targets_hit, action.targets_hit or 0)
            session.add(pos)
        if full_exit is None:
            if long_stock:  # shares a covered call needs are not sold at a target (the call would be naked)
                committed = covered.covered_shares(session, pos.symbol)
                available = min(available, max(0, covered.long_shares(session, pos.symbol) - committed))
            if available > 0:
                _ensure_scale_outs(ctx, session, pos, legs, market, available, now, report)
            return
        to_stop = service.orders_to_stop_for_full_exit(session, pos, f"position:{pos.id}:all")
        if long_stock:
            covering = [c for c in (session.get(Position, i) for i in covered.covering_positions(session, pos.symbol))
                        if c is not None]
    # A stop-out or trend exit closes everything: working scale-outs and entries stop first (broker calls
    # outside any transaction), then one exit takes the whole remaining quantity (issue 11 #5).
    for cid in service.cancel_orders(ctx.db, ctx.broker, to_stop, "position is being closed", now):
        report.add(f"{pos.symbol}: cancelled {cid} (closing the position)")
    if covering:
        # The venue refuses to sell shares a short call needs: the covered calls are bought back first (by
        # rule, crossing the spread) and the shares go at the next cycle, if their exit rule still holds.
        call_markets = {c.id: _fetch_position_market(ctx, c, now) for c in covering}
        with session_scope(ctx.db) as session:
            for c in covering:
                call = session.get(Position, c.id)
                if call is None or call.status != "open":
                    continue
                left = call.quantity - service.working_close_quantity(session, call.id)
                if left > 0:
                    _propose_exit(ctx, session, call, [Leg.from_dict(d) for d in call.legs], call_markets[c.id],
                                  left, f"the covered shares are being sold ({full_exit.reason}): buy back the "
                                  "call first", "all", now, report, urgent=True, protective=True)
        report.add(f"{pos.symbol}: stock exit waits for its covered call(s) to be bought back ({full_exit.reason})")
        return
    with session_scope(ctx.db) as session:
        pos = session.get(Position, pos_id)
        if pos is None or pos.status != "open":
            return
        legs = [Leg.from_dict(d) for d in pos.legs]
        remaining = pos.quantity - service.working_close_quantity(session, pos.id)
        if remaining > 0:
            _propose_exit(ctx, session, pos, legs, market, remaining, full_exit.reason, "all", now, report,
                          urgent=True, protective=True)


def _ensure_scale_outs(ctx: EngineContext, session: Session, pos: Position, legs: list[Leg], market: _Fetched,
                       available: int, now: datetime, report: StepReport) -> None:
    """Every reached target has its allocation sold or being sold; an exit that expired unfilled is retried."""
    plan = manager.scale_out_plan(pos.initial_quantity, len(pos.targets)) if pos.targets else []
    for k in range(1, min(pos.targets_hit, len(plan)) + 1):
        key = f"t{k}"
        decision = f"position:{pos.id}:{key}"
        remaining = min(plan[k - 1] - service.filled_for_decision(session, decision), available)
        if remaining <= 0 or service.live_for_decision(session, decision):
            continue
        target = pos.targets[k - 1]
        _propose_exit(ctx, session, pos, legs, market, remaining, f"scale-out at target {k} ({target:.2f})", key,
                      now, report, urgent=False)
        available -= remaining


def _propose_exit(ctx: EngineContext, session: Session, pos: Position, legs: list[Leg], market: _Fetched,
                  quantity: int, reason: str, key: str, now: datetime, report: StepReport, urgent: bool,
                  protective: bool = False) -> None:
    closing = tuple(leg.reversed() for leg in legs)
    quotes = market.quotes
    if quotes is None or any(leg.instrument not in quotes for leg in closing):
        report.add(f"{pos.symbol}: cannot price the exit ({market.error or 'no quote'}); will retry")
        return
    natural = net_price(closing, {leg.instrument: (quotes[leg.instrument].ask if leg.side.value == "buy"
                                                   else quotes[leg.instrument].bid) for leg in closing})
    mid = net_price(closing, {k: q.mid for k, q in quotes.items()})
    # Stops and time exits cross the spread (natural); scale-outs ask for the middle of it.
    limit = natural if urgent else (mid + natural) / 2
    spec = service.OrderSpec(
        strategy=pos.strategy, signal_key=f"position:{pos.id}:{key}", underlying=pos.symbol, sector=pos.sector,
        structure=pos.structure, intent=Intent.close, legs=closing, quantity=quantity,
        limit_price=om.money(limit), max_loss_per_unit=Decimal("0"), buying_power_per_unit=Decimal("0"),
        reason=reason, signal_id=pos.signal_id, position_id=pos.id, protective=protective or urgent)
    order = service.propose(session, spec, ctx.settings, now, retry_terminal=True)
    report.add(f"{pos.symbol}: exit {quantity} ({reason}) -> order {order.client_order_id} {order.status}")
    report.count("exit_orders")


# --- post-market --------------------------------------------------------------------------------------


def run_postmarket(ctx: EngineContext) -> StepReport:
    now = ctx.now
    today = new_york(now).date()
    report = StepReport("run_postmarket", now)
    if isinstance(ctx.broker, SimulatedVenue):
        ctx.broker.expire_day_orders(now)
        ctx.broker.settle_expiries(today)
    run = reconcile(ctx.db, ctx.broker, Decimal(str(ctx.settings.starting_cash)), now)
    report.add(f"reconciliation: {run.orders_checked} orders checked, {len(run.differences)} differences")
    for diff in run.differences:
        report.add(f"  difference: {diff}")
    _expire_unsent(ctx, now, report)
    written = refresh_bars(ctx, today) if calendar.is_session(today) else 0
    report.count("sessions_stored", written)
    # Quotes first, with no transaction open (issue 12 #2); then the marks are written in a short one.
    with read_scope(ctx.db) as session:
        held = list(session.exec(select(Position).where(Position.status == "open")).all())
        session.expunge_all()  # read after the snapshot ends (its rollback would expire them)
    marks = fetch_marks(ctx.market, held, now)
    with session_scope(ctx.db) as session:
        for symbol in mark_all(session, marks):
            report.add(f"could not mark {symbol}: kept its last mark")
        _update_highest_closes(ctx, session, today)
    snapshot = account_snapshot(ctx, now)
    report.add(f"equity ${snapshot.equity:,.2f} = cash ${snapshot.cash:,.2f} + positions "
               f"${snapshot.positions_value:,.2f}; day P&L ${Decimal(snapshot.detail['day_pnl']):,.2f}")
    return report


def _expire_unsent(ctx: EngineContext, now: datetime, report: StepReport) -> None:
    """Day orders never sent (waiting for approval) do not survive the session."""
    with session_scope(ctx.db) as session:
        for order in om.open_orders(session, [om.OrderStatus.proposed, om.OrderStatus.approved]):
            if order.time_in_force == "day" and new_york(order.created_at).date() <= new_york(now).date():
                om.transition(session, order, om.OrderStatus.expired, "day order not sent before the close", now=now)
                report.count("expired_unsent")


def _update_highest_closes(ctx: EngineContext, session: Session, today: date) -> None:
    positions = list(session.exec(select(Position).where(Position.status == "open")).all())
    symbols = sorted({p.symbol for p in positions})
    if not symbols:
        return
    panel = bar_store(ctx.settings).load(today, today, symbols=symbols, dtype=np.float64)
    if panel.n_days == 0:
        return
    close = dict(zip(panel.symbols, panel.close[-1], strict=True))
    for p in positions:
        c = close.get(p.symbol)
        if c is not None and np.isfinite(c) and c > p.highest_close:
            p.highest_close = float(c)
            session.add(p)


def account_snapshot(ctx: EngineContext, now: datetime) -> AccountSnapshot:
    today = new_york(now).date()
    starting = Decimal(str(ctx.settings.starting_cash))
    try:  # a network call at a real broker: made before the write transaction (issue 12 #2)
        broker_account = ctx.broker.account()
        buying_power, broker_equity = broker_account.buying_power, broker_account.equity
    except BrokerUnavailable:
        buying_power, broker_equity = Decimal("0"), None
    with session_scope(ctx.db) as session:
        cash = cents(engine_cash(session, starting))
        value = cents(positions_value(session))
        open_positions = list(session.exec(select(Position).where(Position.status == "open")).all())
        unrealized = sum((p.unrealized_pnl for p in open_positions), Decimal("0"))
        heat = sum((p.max_loss for p in open_positions), Decimal("0"))
        prev = session.exec(select(AccountSnapshot).where(AccountSnapshot.trade_date < today)
                            .order_by(AccountSnapshot.trade_date.desc(), AccountSnapshot.id.desc())).first()
        prev_equity = prev.equity if prev else starting
        prev_unrealized = prev.unrealized_pnl if prev else Decimal("0")
        equity = cash + value
        snap = AccountSnapshot(
            at=now, trade_date=today, cash=cash, positions_value=value, equity=equity, buying_power=buying_power,
            realized_pnl_day=cents((equity - prev_equity) - (unrealized - prev_unrealized)),
            unrealized_pnl=cents(unrealized),
            open_risk=cents(heat),
            detail={"broker_equity": None if broker_equity is None else str(broker_equity),
                    "day_pnl": str(cents(equity - prev_equity)), "open_positions": len(open_positions)})
        session.add(snap)
    return snap

