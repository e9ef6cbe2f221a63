"""Position management (DESIGN §4-§5): what each open position should do this cycle.

``decide`` is pure: given a position and the market, it returns the actions with the rule and the
values behind each. ``plan_exits`` turns them into closing orders that go through the risk gate like
any other order; stop moves are applied to the position directly (they send nothing).

Rules, in order of precedence:
1. full exits: stop hit (underlying price <= stop), trend break (close < SMA50), exhaustion
   (atr_distance > 10), premium stop (structure value lost >= 50% of what was paid), time exit
   (<= 7 days to expiry);
2. scale-outs: a quarter of the initial quantity at each of the four ATR targets, whole contracts
   allocated front-loaded (``scale_out_plan``: 1 -> T1; 3 -> T1, T2, T3; 5 -> 2, 1, 1, 1), so a small
   position still sells at the first target and all targets together sell exactly the initial quantity;
3. stop moves: break-even after the first target, then 3 ATR below the highest close.

Structures with rules of their own (checked first, no ATR levels):
- iron condor (neutral credit, DESIGN §5): closed at 50% of max profit, at a loss of 2x the credit or at
  21 days to expiry (``condor_levels``: the one statement of those three levels, for decisions and the console);
- covered call written on held shares: held to expiry or assignment; bought back when the shares that
  cover it are gone (the stock's own exit buys the call back first: the venue refuses an uncovered short);
- short stock delivered by an assignment (a condor's short call): the strategy is long-only, so it is
  bought back at the next management cycle, by rule (its risk until then: ``short_stock_stop``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from engine.execution.ports import OPTION_MULTIPLIER, STANDARD_DELIVERABLE
from engine.strategies.atr_matrix import ATRMatrixParams, exit_reasons, targets_reached, trailing_stop


@dataclass(frozen=True)
class PositionView:
    quantity: int
    initial_quantity: int
    entry_price: Decimal  # per unit, quote terms (premium for long options; negative for credits)
    underlying_entry: float
    entry_atr: float
    stop: float
    targets: tuple[float, ...]
    targets_hit: int
    highest_close: float
    expiry: date | None  # nearest option expiry, None for stock
    structure: str = ""  # the structure kind: a neutral iron condor has its own exit rules
    short_stock: bool = False  # a "stock" position holding short shares (delivered by an assignment)
    stock_held: int | None = None  # covered calls: long shares of the underlying held to cover them
    deliverable: int = STANDARD_DELIVERABLE  # shares one contract delivers (150 after a 3:2 split)


@dataclass(frozen=True)
class MarketView:
    today: date
    price: float  # the underlying now (intraday)
    close: float  # last daily close
    sma50: float
    atr: float  # today's ATR (for atr_distance)
    mark: Decimal | None  # structure value per unit now


@dataclass(frozen=True)
class Action:
    kind: str  # close_all | scale_out | move_stop
    quantity: int
    reason: str
    new_stop: float | None = None
    targets_hit: int | None = None


def is_short_stock(structure: str, legs: list[dict[str, object]]) -> bool:
    """A plain stock position whose shares are short (stored legs: ``Leg.to_dict`` rows)."""
    return structure == "stock" and any(d.get("asset") == "stock" and d.get("side") == "sell" for d in legs)


def scale_out_plan(initial: int, n_targets: int = 4) -> list[int]:
    """Contracts sold at each target (DESIGN §4): target k gets ceil((n - sold before k) / targets left),
    i.e. n // n_targets each and the remainder to the earliest targets."""
    if initial < 0 or n_targets < 1:
        raise ValueError(f"scale-out plan needs initial >= 0 and n_targets >= 1, got {initial}, {n_targets}")
    base, extra = divmod(initial, n_targets)
    return [base + (1 if k < extra else 0) for k in range(n_targets)]


def scale_out_quantity(initial: int, from_hit: int, to_hit: int, n_targets: int = 4) -> int:
    """Units to sell when the targets hit go from ``from_hit`` to ``to_hit``."""
    return sum(scale_out_plan(initial, n_targets)[from_hit:to_hit])


def decide(pos: PositionView, mkt: MarketView, params: ATRMatrixParams, premium_stop_pct: float,
           close_at_dte: int | None) -> list[Action]:
    """``close_at_dte`` None turns the time exit off (hold to expiry)."""
    if pos.quantity <= 0:
        return []
    if pos.structure == "covered_call":
        return covered_call_actions(pos)
    if pos.short_stock:
        return [Action("close_all", pos.quantity, SHORT_STOCK_RULE)]
    if pos.structure == "iron_condor":
        why = condor_exit_reasons(pos, mkt)  # neutral: its own levels (DESIGN §5), not the ATR ones
        return [Action("close_all", pos.quantity, "; ".join(why))] if why else []
    full = _full_exit_reasons(pos, mkt, params, premium_stop_pct, close_at_dte)
    if full:
        return [Action("close_all", pos.quantity, "; ".join(full))]
    actions: list[Action] = []
    reached = max(pos.targets_hit, targets_reached(mkt.price, pos.targets))
    hit = pos.targets_hit
    if reached > hit:
        qty = min(pos.quantity, scale_out_quantity(pos.initial_quantity, hit, reached, len(pos.targets)))
        levels = ", ".join(f"{t:.2f}" for t in pos.targets[hit:reached])
        reason = f"target {reached} of {len(pos.targets)}: price {mkt.price:.2f} >= {levels}"
        if qty > 0:
            actions.append(Action("scale_out", qty, reason, targets_hit=reached))
        hit = reached
    new_stop = trailing_stop(pos.underlying_entry, pos.entry_atr, max(pos.highest_close, mkt.close), hit, params,
                             previous_stop=pos.stop)
    if new_stop > pos.stop + 1e-9 or reached > pos.targets_hit:
        why = "break-even after target 1" if hit >= 1 and new_stop <= pos.underlying_entry + 1e-9 else (
            f"trail {params.trail_atr_multiple:g} ATR below highest close {max(pos.highest_close, mkt.close):.2f}")
        actions.append(Action("move_stop", 0, f"stop {pos.stop:.2f} -> {new_stop:.2f}: {why}", new_stop=new_stop,
                              targets_hit=hit))
    return actions


def _full_exit_reasons(pos: PositionView, mkt: MarketView, params: ATRMatrixParams, premium_stop_pct: float,
                       close_at_dte: int | None) -> list[str]:
    reasons = exit_reasons(mkt.close, mkt.sma50, mkt.atr, params)
    if mkt.price <= pos.stop:
        reasons.insert(0, f"stop_hit: price {mkt.price:.2f} <= stop {pos.stop:.2f}")
    if mkt.mark is not None and pos.entry_price > 0:
        lost = 100 * float((pos.entry_price - mkt.mark) / pos.entry_price)
        if lost >= premium_stop_pct:
            reasons.append(f"premium_stop: value {mkt.mark:.2f} is {lost:.0f}% below {pos.entry_price:.2f} paid "
                           f"(limit {premium_stop_pct:g}%)")
    if pos.expiry is not None and close_at_dte is not None:
        dte = (pos.expiry - mkt.today).days
        if dte <= close_at_dte:
            reasons.append(f"time_exit: {dte} days to expiry <= {close_at_dte}")
    return reasons


# DESIGN §5: an iron condor is a neutral credit; it is closed at 50% of its max profit (the credit), at a
# loss of 2x the credit, or at 21 days to expiry, not on the underlying's ATR levels.
CONDOR_PROFIT_TAKE = 0.5
CONDOR_LOSS_MULTIPLE = 2.0
CONDOR_CLOSE_AT_DTE = 21

SHORT_STOCK_RULE = ("short_stock: shares delivered short by an assignment; the strategy holds no short stock, "
                    "so they are bought back by rule")


@dataclass(frozen=True)
class CondorLevels:
    """The three exit levels of a held iron condor, per unit in quote terms and in dollars for the position."""

    credit: Decimal  # received per unit (positive)
    take_profit_cost: Decimal  # buying the legs back at or below this keeps >= 50% of the credit
    stop_cost: Decimal  # buying them back at or above this loses >= 2x the credit
    close_on: date | None  # first day of the time exit (21 days to expiry)
    profit_usd: Decimal  # kept at the profit take, whole position
    loss_usd: Decimal  # lost at the stop, whole position


def condor_levels(pos: PositionView, profit_take: float = CONDOR_PROFIT_TAKE,
                  loss_multiple: float = CONDOR_LOSS_MULTIPLE, close_at_dte: int = CONDOR_CLOSE_AT_DTE) -> CondorLevels:
    credit = -pos.entry_price
    kept = credit * Decimal(str(profit_take))
    lost = credit * Decimal(str(loss_multiple))
    dollars = Decimal(OPTION_MULTIPLIER * pos.quantity)
    return CondorLevels(credit, credit - kept, credit + lost,
                        pos.expiry - timedelta(days=close_at_dte) if pos.expiry is not None else None,
                        kept * dollars, lost * dollars)


def condor_exit_reasons(pos: PositionView, mkt: MarketView, profit_take: float = CONDOR_PROFIT_TAKE,
                        loss_multiple: float = CONDOR_LOSS_MULTIPLE,
                        close_at_dte: int = CONDOR_CLOSE_AT_DTE) -> list[str]:
    """Why a held iron condor must be closed now (empty: hold). Prices per unit in quote terms: the entry
    is the (negative) net credit, the mark the (negative) value of the legs now, so -mark is the cost to
    buy them back."""
    reasons: list[str] = []
    lv = condor_levels(pos, profit_take, loss_multiple, close_at_dte)
    if mkt.mark is not None and lv.credit > 0:
        cost = -mkt.mark
        pnl = lv.credit - cost  # per unit: credit kept so far (negative: a loss)
        if cost <= lv.take_profit_cost:
            reasons.append(f"condor_profit: {pnl:.2f} of the {lv.credit:.2f} credit kept "
                           f">= {100 * profit_take:g}% of max profit")
        elif cost >= lv.stop_cost:
            reasons.append(f"condor_loss: loss {-pnl:.2f} >= {loss_multiple:g}x the {lv.credit:.2f} credit")
    if pos.expiry is not None:
        dte = (pos.expiry - mkt.today).days
        if dte <= close_at_dte:
            reasons.append(f"condor_time: {dte} days to expiry <= {close_at_dte}")
    return reasons


def covered_call_actions(pos: PositionView) -> list[Action]:
    """A covered call is held to expiry or assignment; with fewer shares left than it needs (the stock was
    sold or called away elsewhere) it is bought back, since an uncovered short call is unlimited risk."""
    need = pos.quantity * pos.deliverable
    if pos.stock_held is not None and pos.stock_held < need:
        return [Action("close_all", pos.quantity,
                       f"uncovered: {pos.stock_held} shares held, the call needs {need}; buy it back")]
    return []


def short_stock_stop(entry: float, atr: float, params: ATRMatrixParams | None = None) -> float:
    """The long stop mirrored for short shares (DESIGN §6 "entry-to-stop for stock"): E + 1.5A, never more
    than 10% above E. It measures the risk of delivered short stock until the rule buys it back."""
    p = params or ATRMatrixParams()
    return min(entry + p.stop_atr_multiple * atr, (1.0 + p.max_stop_fraction) * entry)


@dataclass(frozen=True)
class NextSteps:
    """What the rules above will do next for a position, for the console (one source of the rules)."""

    due_now: tuple[Action, ...]  # what ``decide`` does at the current price
    stop: float
    plan: tuple[int, ...]  # contracts sold at each target (front-loaded allocation)
    targets_hit: int
    next_target: float | None
    next_target_sells: int
    time_exit_on: date | None  # first day the time exit closes the position
    days_to_expiry: int | None
    condor: CondorLevels | None = None  # an iron condor's own levels (no stop, targets or ATR time exit)
    rule: str = ""  # the structure's own standing rule, in words (covered call, short stock)


def next_steps(pos: PositionView, mkt: MarketView, params: ATRMatrixParams, premium_stop_pct: float,
               close_at_dte: int) -> NextSteps:
    dte = (pos.expiry - mkt.today).days if pos.expiry is not None else None
    due = tuple(decide(pos, mkt, params, premium_stop_pct, close_at_dte))
    if pos.structure == "iron_condor":
        lv = condor_levels(pos)
        return NextSteps(due, 0.0, (), 0, None, 0, lv.close_on, dte, condor=lv)
    if pos.structure == "covered_call":
        return NextSteps(due, 0.0, (), 0, None, 0, None, dte,
                         rule="covered call: held to expiry or assignment; bought back first if the stock is sold")
    if pos.short_stock:
        return NextSteps(due, 0.0, (), 0, None, 0, None, None, rule=SHORT_STOCK_RULE)
    plan = tuple(scale_out_plan(pos.initial_quantity, len(pos.targets))) if pos.targets else ()
    nxt = pos.targets[pos.targets_hit] if pos.targets_hit < len(pos.targets) else None
    sells = min(pos.quantity, plan[pos.targets_hit]) if nxt is not None else 0
    time_exit = pos.expiry - timedelta(days=close_at_dte) if pos.expiry is not None else None
    return NextSteps(due, pos.stop, plan, pos.targets_hit, nxt, sells, time_exit, dte)
