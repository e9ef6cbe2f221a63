"""What is at risk right now: the risk gate's view of the portfolio."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import bindparam
from sqlmodel import Session, func, select

from engine.config import Settings
from engine.execution.orders import WORKING_VALUES
from engine.execution.ports import BrokerAccount
from engine.models import AccountSnapshot, Order, Position
from engine.operator import kill_switch_on
from engine.portfolio.accounting import cents
from engine.risk import PortfolioRisk

if TYPE_CHECKING:
    from engine.portfolio.sync import ExternalView



def portfolio_risk_for_account(session: Session, account: BrokerAccount, now: datetime,
                               exclude_order_id: int | None = None, settings: Settings | None = None,
                               exclude_external: str | None = None) -> PortfolioRisk:
    """The gate's view: open risk from the engine's positions and orders, equity and buying power from the
    broker's account, read beforehand (a network call, never inside a write transaction). Aggregated in SQL so the
    gate's cost does not grow with the number of positions and orders. With ``settings``, positions at the
    broker the engine did not open count too (what the gate itself always uses)."""
    external = _external(session, settings, exclude_external) if settings is not None else None
    return _risk(session, account.equity, account.buying_power, now, exclude_order_id, external)


def portfolio_risk_offline(session: Session, settings: Settings, now: datetime,
                           exclude_order_id: int | None = None, exclude_external: str | None = None) -> PortfolioRisk:
    """The same view without a broker call (for the console): equity and buying power from the newest
    account snapshot, or the starting cash before the first one. The gate itself always asks the broker."""
    snap = session.exec(select(AccountSnapshot).order_by(AccountSnapshot.at.desc(), AccountSnapshot.id.desc())).first()
    equity = snap.equity if snap else Decimal(str(settings.starting_cash))
    buying_power = snap.buying_power if snap and snap.buying_power > 0 else equity
    return _risk(session, equity, buying_power, now, exclude_order_id,
                 _external(session, settings, exclude_external))


def _external(session: Session, settings: Settings, exclude_instrument: str | None) -> ExternalView:
    """Positions at the broker the engine did not open count in every limit (DESIGN §6, §9), the sector
    limit included."""
    from engine.portfolio.sync import external_view

    return external_view(session, settings.broker.value, exclude_instrument)


def _risk(session: Session, equity: Decimal, buying_power: Decimal, now: datetime,
          exclude_order_id: int | None, external_view: ExternalView | None = None) -> PortfolioRisk:
    # one aggregate query for both views: per (symbol, sector), summed up per symbol and per sector here
    groups = session.exec(_OPEN_RISK).all()
    risk_by_symbol: dict[str, Decimal] = {}
    sectors: dict[str, float] = {}
    for sym, sector, loss, delta in groups:
        risk_by_symbol[sym] = risk_by_symbol.get(sym, Decimal("0")) + _dec(loss)
        sectors[sector] = sectors.get(sector, 0.0) + float(delta or 0.0)
    external = external_view.risk_by_symbol if external_view is not None else {}
    for sector, dd in (external_view.delta_dollars_by_sector if external_view is not None else {}).items():
        sectors[sector] = sectors.get(sector, 0.0) + dd
    for sym, ext in external.items():
        risk_by_symbol[sym] = risk_by_symbol.get(sym, Decimal("0")) + ext
    pending_rows = (session.exec(_PENDING_RISK).all() if exclude_order_id is None
                    else session.exec(_PENDING_RISK_EXCEPT, params={"exclude": exclude_order_id}).all())
    pending = Decimal("0")
    for sym, total in pending_rows:
        # A working entry is a position in waiting (DESIGN §6): it counts for heat, for its symbol's risk
        # and as an open position, or ten working entries could open ten more positions at once.
        pending += _dec(total)
        risk_by_symbol[sym] = risk_by_symbol.get(sym, Decimal("0")) + _dec(total)
    return PortfolioRisk(
        equity=equity,
        buying_power=buying_power,
        day_start_equity=day_start_equity(session, now) or equity,
        open_positions=len(risk_by_symbol),  # open, external and working-entry symbols alike
        heat=sum((_dec(loss) for _, _, loss, _ in groups), Decimal("0")) + sum(external.values(), Decimal("0")),
        risk_by_symbol=risk_by_symbol,
        delta_dollars_by_sector=sectors,
        pending_risk=pending,
        kill_switch=kill_switch_on(session),
    )


def _dec(value: object) -> Decimal:
    """SQL sums come back as Decimal (PostgreSQL) or float (SQLite): cents either way."""
    return cents(Decimal(str(value or 0)))


def day_start_equity(session: Session, now: datetime) -> Decimal | None:
    """Equity at the last account snapshot before today's session (New York date)."""
    from engine.clock import new_york

    snap = session.exec(_DAY_START, params={"today": new_york(now).date()}).first()
    return snap.equity if snap is not None else None


# Built once: the gate runs these for every order it sends, and building a statement costs more than
# SQLite takes to run it (issue 11).
_OPEN_RISK = (select(Position.symbol, Position.sector, func.sum(Position.max_loss),
                     func.sum(func.abs(Position.delta_dollars)))
              .where(Position.status == "open").group_by(Position.symbol, Position.sector))
_PENDING_RISK = (select(Order.symbol, func.sum(Order.risk_per_unit * (Order.quantity - Order.filled_quantity)))
                 .where(Order.status.in_(WORKING_VALUES), Order.intent == "open").group_by(Order.symbol))
_PENDING_RISK_EXCEPT = _PENDING_RISK.where(Order.id != bindparam("exclude"))
_DAY_START = (select(AccountSnapshot).where(AccountSnapshot.trade_date < bindparam("today"))
              .order_by(AccountSnapshot.trade_date.desc(), AccountSnapshot.id.desc()))
